// facefit video page: overlay video, animated mesh and plots with a playback cursor; runs after viewer.js.
"use strict";
const anim = JSON.parse(document.getElementById('facefit-anim').textContent);
const video = document.getElementById('video');
let viewer = null, mesh = null;
try {
  viewer = new FacefitViewer(document.getElementById('mesh'));
  viewer.mode = 'shading';
  const el = document.getElementById('glb');
  if (el.textContent.trim()) { mesh = facefitParseGLB(facefitBytes(el.textContent));
    viewer.setMesh(mesh, facefitRimWeights(document.getElementById('rim').textContent));  }
  else document.getElementById('status').textContent = 'no mesh (GLB not written)';
} catch (e) { document.getElementById('status').textContent = String(e); }
document.querySelectorAll('button[data-mode]').forEach(b => b.onclick = () => {
  document.querySelectorAll('button[data-mode]').forEach(x => x.classList.toggle('on', x === b));
  viewer && viewer.setMode(b.dataset.mode); });
const base = mesh ? Float32Array.from(mesh.positions) : null;
function frameAt(t) {
  let lo = 0, hi = anim.length - 1;
  while (lo < hi) { const m = (lo + hi + 1) >> 1; if (anim[m].t <= t) lo = m; else hi = m - 1; }
  return anim[lo];
}
function pose(t) {
  if (!anim.length || !mesh) return;
  const f = frameAt(t), R = f.R, n = base.length / 3, pos = new Float32Array(base.length);
  const w = f.w, targets = mesh.targets;
  for (let i = 0; i < n; i++) {
    let x = base[3 * i], y = base[3 * i + 1], z = base[3 * i + 2];
    for (let k = 0; k < targets.length && k < w.length; k++) {
      const d = targets[k]; x += w[k] * d[3 * i]; y += w[k] * d[3 * i + 1]; z += w[k] * d[3 * i + 2]; }
    pos[3 * i] = R[0][0] * x + R[0][1] * y + R[0][2] * z;
    pos[3 * i + 1] = R[1][0] * x + R[1][1] * y + R[1][2] * z;
    pos[3 * i + 2] = R[2][0] * x + R[2][1] * y + R[2][2] * z;
  }
  viewer.updatePositions(pos);
}
function cursor(t) {
  document.querySelectorAll('svg.plot').forEach(svg => {
    const t0 = +svg.dataset.t0, t1 = +svg.dataset.t1, w = +svg.getAttribute('width');
    const x = 40 + (Math.min(Math.max(t, t0), t1) - t0) / Math.max(t1 - t0, 1e-9) * (w - 50);
    const c = svg.querySelector('.cursor'); c.setAttribute('x1', x); c.setAttribute('x2', x); });
  document.getElementById('time').textContent = `t = ${t.toFixed(2)} s`;
}
let lastT = -1;
function tick() {
  const t = video ? video.currentTime : 0;
  if (t !== lastT) { lastT = t; cursor(t); pose(t); }
  requestAnimationFrame(tick);
}
window.facefitSeek = t => { if (video) video.currentTime = t; cursor(t); pose(t); };
if (anim.length && mesh) pose(anim[0].t);
tick();
document.getElementById('soft-edge').onchange = e => viewer && viewer.setSoftEdge(e.target.checked);
