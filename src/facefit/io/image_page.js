// facefit image page: photo, overlay, landmarks and the mesh of each face; runs after viewer.js.
"use strict";
const data = JSON.parse(document.getElementById('facefit-data').textContent);
const ov = document.getElementById('overlay');
document.getElementById('show-overlay').onchange = e => { if (ov) ov.style.display = e.target.checked ? '' : 'none'; };
document.getElementById('show-landmarks').onchange = e => {
  document.getElementById('landmarks').style.display = e.target.checked ? '' : 'none'; };
function bars(values) {
  return (values || []).map((v, i) => {
    const n = Math.min(20, Math.round(Math.abs(v) * 6));
    return `${String(i).padStart(2)} ${v < 0 ? '-'.repeat(n).padStart(20) + '|' + ' '.repeat(20) : ' '.repeat(20) + '|' + '+'.repeat(n).padEnd(20)} ${v.toFixed(2)}`;
  }).join('\n');
}
function info(k) {
  const f = data.faces[k];
  if (!f) { document.getElementById('info').textContent = 'no face found'; return; }
  const p = f.pose || {};
  document.getElementById('info').innerHTML = `<h3>face ${k}</h3><table>
<tr><th>yaw</th><td>${p.yaw_deg}°</td></tr><tr><th>pitch</th><td>${p.pitch_deg}°</td></tr>
<tr><th>roll</th><td>${p.roll_deg}°</td></tr><tr><th>score</th><td>${f.score}</td></tr>
<tr><th>fit residual</th><td>${f.residual_px} px</td></tr>
<tr><th>camera</th><td>${(p.camera || {}).kind}</td></tr></table>
<h4>shape coefficients (N(0,1) units)</h4><pre class="bars">${bars(f.shape_coeffs)}</pre>
<h4>expression coefficients</h4><pre class="bars">${bars(f.expression_coeffs)}</pre>
<h4>68 landmarks (px)</h4><details><summary>show</summary><pre>${JSON.stringify(f.landmarks_68_2d)}</pre></details>`;
}
let viewer = null;
try { viewer = new FacefitViewer(document.getElementById('mesh')); }
catch (e) { document.getElementById('status').textContent = String(e); }
function showFace(k) {
  info(k);
  document.querySelectorAll('button[data-face]').forEach(b => b.classList.toggle('on', +b.dataset.face === k));
  const el = document.getElementById('glb-' + k);
  if (!viewer || !el || !el.textContent.trim()) {
    document.getElementById('status').textContent = 'no mesh (GLB not written)'; return; }
  const rim = document.getElementById('rim-' + k);
  viewer.setMesh(facefitParseGLB(facefitBytes(el.textContent)),
                 facefitRimWeights(rim ? rim.textContent : ''));
}
document.querySelectorAll('button[data-mode]').forEach(b => b.onclick = () => {
  document.querySelectorAll('button[data-mode]').forEach(x => x.classList.toggle('on', x === b));
  viewer && viewer.setMode(b.dataset.mode); });
document.querySelectorAll('button[data-face]').forEach(b => b.onclick = () => showFace(+b.dataset.face));
showFace(0);
document.getElementById('soft-edge').onchange = e => viewer && viewer.setSoftEdge(e.target.checked);
