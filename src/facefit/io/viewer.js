// facefit's self-contained mesh viewer: WebGL 2 (WebGL 1 + OES_element_index_uint as a
// fallback), no libraries, no network. Reads binary glTF (positions, TEXCOORD_0, uint32 or
// uint16 indices, an embedded JPEG/PNG base-colour texture, optional morph targets), draws it
// textured, shaded or as a wireframe; drag rotates, the wheel (or pinch) zooms. Indices may be
// uint8, uint16 or uint32 (WebGL 1 needs OES_element_index_uint for the last).
"use strict";

function facefitBytes(b64) {
  const s = atob(b64.trim());
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function facefitParseGLB(bytes) {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dv.getUint32(0, true) !== 0x46546c67) throw new Error("not a binary glTF file");
  const jsonLen = dv.getUint32(12, true);
  const gltf = JSON.parse(new TextDecoder().decode(bytes.subarray(20, 20 + jsonLen)));
  const binStart = 20 + jsonLen + 8;
  const bin = bytes.subarray(binStart, binStart + dv.getUint32(20 + jsonLen, true));
  const types = { SCALAR: 1, VEC2: 2, VEC3: 3, VEC4: 4 };
  function accessor(i) {
    const a = gltf.accessors[i];
    const v = gltf.bufferViews[a.bufferView];
    const n = a.count * types[a.type];
    const off = bin.byteOffset + (v.byteOffset || 0) + (a.byteOffset || 0);
    const size = { 5126: 4, 5125: 4, 5123: 2, 5121: 1 }[a.componentType];
    if (!size) throw new Error("unsupported accessor component type " + a.componentType);
    const buf = bin.buffer.slice(off, off + n * size);
    if (a.componentType === 5126) return new Float32Array(buf);
    if (a.componentType === 5125) return new Uint32Array(buf);
    if (a.componentType === 5123) return new Uint16Array(buf);
    if (a.componentType === 5121) return new Uint8Array(buf);
    throw new Error("unsupported accessor component type " + a.componentType);
  }
  const prim = gltf.meshes[0].primitives[0];
  const mesh = {
    positions: accessor(prim.attributes.POSITION),
    uv: prim.attributes.TEXCOORD_0 !== undefined ? accessor(prim.attributes.TEXCOORD_0) : null,
    indices: accessor(prim.indices),
    targets: (prim.targets || []).map(t => accessor(t.POSITION)),
    image: null,
    gltf: gltf,
  };
  if (gltf.images && gltf.images.length) {
    const im = gltf.images[0];
    const v = gltf.bufferViews[im.bufferView];
    mesh.image = new Blob([bin.subarray(v.byteOffset || 0, (v.byteOffset || 0) + v.byteLength)],
                          { type: im.mimeType });
  }
  return mesh;
}

function facefitNormals(pos, idx) {
  const n = new Float32Array(pos.length);
  for (let t = 0; t < idx.length; t += 3) {
    const a = 3 * idx[t], b = 3 * idx[t + 1], c = 3 * idx[t + 2];
    const ux = pos[b] - pos[a], uy = pos[b + 1] - pos[a + 1], uz = pos[b + 2] - pos[a + 2];
    const vx = pos[c] - pos[a], vy = pos[c + 1] - pos[a + 1], vz = pos[c + 2] - pos[a + 2];
    const nx = uy * vz - uz * vy, ny = uz * vx - ux * vz, nz = ux * vy - uy * vx;
    for (const k of [a, b, c]) { n[k] += nx; n[k + 1] += ny; n[k + 2] += nz; }
  }
  for (let i = 0; i < n.length; i += 3) {
    const l = Math.hypot(n[i], n[i + 1], n[i + 2]) || 1;
    n[i] /= l; n[i + 1] /= l; n[i + 2] /= l;
  }
  return n;
}

function facefitEdges(idx) {
  // unique undirected edges, as a flat uint32 array of vertex pairs
  const seen = new Set();
  const out = [];
  for (let t = 0; t < idx.length; t += 3) {
    for (let k = 0; k < 3; k++) {
      const a = idx[t + k], b = idx[t + (k + 1) % 3];
      const key = a < b ? a * 4294967296 + b : b * 4294967296 + a;
      if (!seen.has(key)) { seen.add(key); out.push(a, b); }
    }
  }
  return new Uint32Array(out);
}

const FACEFIT_BG = [0.16, 0.17, 0.19];

const FACEFIT_VS = `
attribute vec3 aPos; attribute vec3 aNormal; attribute vec2 aUV; attribute float aRim;
uniform mat4 uMVP; uniform mat3 uRot;
varying vec3 vN; varying vec2 vUV; varying float vRim;
void main() { vN = uRot * aNormal; vUV = aUV; vRim = aRim; gl_Position = uMVP * vec4(aPos, 1.0); }`;
const FACEFIT_FS = `
precision mediump float;
varying vec3 vN; varying vec2 vUV; varying float vRim;
uniform sampler2D uTex; uniform int uMode; uniform vec3 uColor; uniform vec3 uBg;
uniform float uSoft;
void main() {
  vec3 n = normalize(vN);
  float lit = 0.35 + 0.65 * max(dot(n, normalize(vec3(0.3, 0.4, 1.0))), 0.0);
  vec3 c;
  if (uMode == 0) { c = texture2D(uTex, vUV).rgb; }
  else if (uMode == 1) { c = vec3(0.82, 0.76, 0.70) * lit; }
  else { c = uColor; }
  float a = mix(1.0, vRim, uSoft);
  if (a < 0.02) discard;
  gl_FragColor = vec4(mix(uBg, c, a), 1.0);
}`;

class FacefitViewer {
  constructor(canvas) {
    this.canvas = canvas;
    const opts = { antialias: true, preserveDrawingBuffer: true };
    let gl = canvas.getContext("webgl2", opts);
    this.webgl2 = !!gl;
    if (!gl) {
      gl = canvas.getContext("webgl", opts);
      if (!gl) throw new Error("WebGL is not available in this browser");
      if (!gl.getExtension("OES_element_index_uint")) throw new Error("WebGL lacks uint32 indices");
    }
    this.gl = gl;
    this.program = this._program(FACEFIT_VS, FACEFIT_FS);
    this.yaw = 0; this.pitch = 0; this.zoom = 1; this.mode = "texture"; this.soft = true;
    this.firstFrameMs = null;
    this.onframe = null;
    this._bindInput();
  }

  _program(vs, fs) {
    const gl = this.gl;
    const p = gl.createProgram();
    for (const [type, src] of [[gl.VERTEX_SHADER, vs], [gl.FRAGMENT_SHADER, fs]]) {
      const s = gl.createShader(type);
      gl.shaderSource(s, src); gl.compileShader(s);
      if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
      gl.attachShader(p, s);
    }
    gl.bindAttribLocation(p, 0, "aPos");
    gl.linkProgram(p);
    if (!gl.getProgramParameter(p, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(p));
    return p;
  }

  _buffer(target, data) {
    const gl = this.gl;
    const b = gl.createBuffer();
    gl.bindBuffer(target, b);
    gl.bufferData(target, data, gl.STATIC_DRAW);
    return b;
  }

  setMesh(mesh, rim) {
    const gl = this.gl;
    this.mesh = mesh;
    const pos = mesh.positions;
    let lo = [Infinity, Infinity, Infinity], hi = [-Infinity, -Infinity, -Infinity];
    for (let i = 0; i < pos.length; i += 3)
      for (let k = 0; k < 3; k++) { lo[k] = Math.min(lo[k], pos[i + k]); hi[k] = Math.max(hi[k], pos[i + k]); }
    this.centre = lo.map((v, k) => 0.5 * (v + hi[k]));
    this.radius = 0.5 * Math.max(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]) || 1;
    this.posBuf = this._buffer(gl.ARRAY_BUFFER, pos);
    this.normBuf = this._buffer(gl.ARRAY_BUFFER, facefitNormals(pos, mesh.indices));
    this.uvBuf = this._buffer(gl.ARRAY_BUFFER, mesh.uv || new Float32Array(pos.length / 3 * 2));
    // per-vertex fade towards the mesh's open cut (facefit.render.rim, computed by the page
    // writer): the ragged rim of the face mask fades into the background
    this.rimBuf = this._buffer(gl.ARRAY_BUFFER, rim || new Float32Array(pos.length / 3).fill(1));
    this.idxBuf = this._buffer(gl.ELEMENT_ARRAY_BUFFER, mesh.indices);
    this.nIdx = mesh.indices.length;
    this.edgeBuf = null;
    this.texture = gl.createTexture();
    gl.bindTexture(gl.TEXTURE_2D, this.texture);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, 1, 1, 0, gl.RGBA, gl.UNSIGNED_BYTE,
                  new Uint8Array([200, 180, 160, 255]));
    if (mesh.image) {
      createImageBitmap(mesh.image).then(bmp => {
        gl.bindTexture(gl.TEXTURE_2D, this.texture);
        gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, gl.RGBA, gl.UNSIGNED_BYTE, bmp);
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.LINEAR);
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
        this.textureReady = true;
        this.draw();
      });
    } else {
      this.textureReady = true;
    }
    this.draw();
  }

  updatePositions(pos) {
    const gl = this.gl;
    gl.bindBuffer(gl.ARRAY_BUFFER, this.posBuf);
    gl.bufferData(gl.ARRAY_BUFFER, pos, gl.DYNAMIC_DRAW);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.normBuf);
    gl.bufferData(gl.ARRAY_BUFFER, facefitNormals(pos, this.mesh.indices), gl.DYNAMIC_DRAW);
    this.draw();
  }

  setMode(mode) { this.mode = mode; this.draw(); }

  setSoftEdge(on) { this.soft = !!on; this.draw(); }

  _matrices() {
    const cy = Math.cos(this.yaw), sy = Math.sin(this.yaw);
    const cp = Math.cos(this.pitch), sp = Math.sin(this.pitch);
    // R = Rx(pitch) * Ry(yaw), column-major for WebGL
    const r = [cy, sp * sy, -cp * sy, 0, cp, sp, sy, -sp * cy, cp * cy];
    const w = this.canvas.width, h = this.canvas.height;
    const s = this.zoom / (1.15 * this.radius);
    const ax = s * Math.min(1, h / w), ay = s * Math.min(1, w / h), az = -0.5 / this.radius;
    const c = this.centre;
    const m = new Float32Array(16);
    for (let col = 0; col < 3; col++) {
      m[4 * col] = ax * r[3 * col]; m[4 * col + 1] = ay * r[3 * col + 1]; m[4 * col + 2] = az * r[3 * col + 2];
    }
    for (let k = 0; k < 3; k++) {
      const sc = [ax, ay, az][k];
      m[12 + k] = -sc * (r[k] * c[0] + r[3 + k] * c[1] + r[6 + k] * c[2]);
    }
    m[15] = 1;
    return { mvp: m, rot: new Float32Array(r) };
  }

  draw() {
    if (!this.mesh || this._pending) return;
    this._pending = true;
    requestAnimationFrame(() => { this._pending = false; this._draw(); });
  }

  _attrib(loc, buf, size) {
    const gl = this.gl;
    if (loc < 0) return;
    gl.bindBuffer(gl.ARRAY_BUFFER, buf);
    gl.enableVertexAttribArray(loc);
    gl.vertexAttribPointer(loc, size, gl.FLOAT, false, 0, 0);
  }

  _draw() {
    const gl = this.gl, p = this.program;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.round(this.canvas.clientWidth * dpr), h = Math.round(this.canvas.clientHeight * dpr);
    if (w && h && (this.canvas.width !== w || this.canvas.height !== h)) { this.canvas.width = w; this.canvas.height = h; }
    gl.viewport(0, 0, this.canvas.width, this.canvas.height);
    gl.clearColor(FACEFIT_BG[0], FACEFIT_BG[1], FACEFIT_BG[2], 1); gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
    gl.enable(gl.DEPTH_TEST);
    gl.useProgram(p);
    const { mvp, rot } = this._matrices();
    gl.uniformMatrix4fv(gl.getUniformLocation(p, "uMVP"), false, mvp);
    gl.uniformMatrix3fv(gl.getUniformLocation(p, "uRot"), false, rot);
    this._attrib(gl.getAttribLocation(p, "aPos"), this.posBuf, 3);
    this._attrib(gl.getAttribLocation(p, "aNormal"), this.normBuf, 3);
    this._attrib(gl.getAttribLocation(p, "aUV"), this.uvBuf, 2);
    this._attrib(gl.getAttribLocation(p, "aRim"), this.rimBuf, 1);
    gl.uniform3fv(gl.getUniformLocation(p, "uBg"), FACEFIT_BG);
    gl.uniform1f(gl.getUniformLocation(p, "uSoft"), this.soft ? 1.0 : 0.0);
    gl.activeTexture(gl.TEXTURE0); gl.bindTexture(gl.TEXTURE_2D, this.texture);
    gl.uniform1i(gl.getUniformLocation(p, "uTex"), 0);
    const modeLoc = gl.getUniformLocation(p, "uMode");
    gl.uniform1i(modeLoc, this.mode === "texture" ? 0 : 1);
    gl.enable(gl.POLYGON_OFFSET_FILL); gl.polygonOffset(1, 1);
    gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, this.idxBuf);
    const itype = this.mesh.indices instanceof Uint32Array ? gl.UNSIGNED_INT
      : this.mesh.indices instanceof Uint16Array ? gl.UNSIGNED_SHORT : gl.UNSIGNED_BYTE;
    gl.drawElements(gl.TRIANGLES, this.nIdx, itype, 0);
    gl.disable(gl.POLYGON_OFFSET_FILL);
    if (this.mode === "wireframe") {
      if (!this.edgeBuf) {
        const e = facefitEdges(this.mesh.indices);
        this.edgeBuf = this._buffer(gl.ELEMENT_ARRAY_BUFFER, e);
        this.nEdge = e.length;
      }
      gl.uniform1i(modeLoc, 2);
      gl.uniform3f(gl.getUniformLocation(p, "uColor"), 0.15, 0.35, 0.6);
      gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, this.edgeBuf);
      gl.drawElements(gl.LINES, this.nEdge, gl.UNSIGNED_INT, 0);
    }
    if (this.firstFrameMs === null && this.textureReady) {
      gl.finish();
      this.firstFrameMs = performance.now();
      window.facefitFirstFrameMs = this.firstFrameMs;
    }
    if (this.onframe) this.onframe();
  }

  _bindInput() {
    const c = this.canvas;
    let last = null;
    c.addEventListener("pointerdown", e => { last = [e.clientX, e.clientY]; c.setPointerCapture(e.pointerId); });
    c.addEventListener("pointermove", e => {
      if (!last) return;
      this.yaw += (e.clientX - last[0]) * 0.01;
      this.pitch = Math.max(-1.5, Math.min(1.5, this.pitch + (e.clientY - last[1]) * 0.01));
      last = [e.clientX, e.clientY];
      this.draw();
    });
    const end = () => { last = null; };
    c.addEventListener("pointerup", end); c.addEventListener("pointercancel", end);
    c.addEventListener("wheel", e => {
      e.preventDefault();
      this.zoom = Math.max(0.3, Math.min(8, this.zoom * Math.exp(-e.deltaY * 0.001)));
      this.draw();
    }, { passive: false });
    window.addEventListener("resize", () => this.draw());
  }
}

function facefitRimWeights(b64) {
  // uint8 weights (0: on the cut, 255: 8 mm or more inside) to floats in [0, 1]
  if (!b64 || !b64.trim()) return null;
  return Float32Array.from(facefitBytes(b64), v => v / 255);
}
