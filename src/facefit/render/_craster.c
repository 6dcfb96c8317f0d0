/* A z-buffer triangle rasteriser: the compiled twin of facefit.render.raster's numpy path.
 *
 * Plain C (no Python API): facefit.render.raster loads the shared library with ctypes and
 * falls back to numpy when it was not built. The arithmetic is that of the numpy path, float32
 * operation by operation (build with contraction of a*b+c into FMA off), so both cover the
 * same pixels with the same depths: pixel (row i, column j) has its centre at x = j, y = i; it
 * is covered when its barycentrics are all >= -1e-6; the smallest depth wins, a tie going to
 * the triangle with the larger id.
 */
#include <math.h>
#include <stdint.h>

#define FF_EPS (-1e-6f)

/* Rasterise `nf` triangles (`tri`: (nf, 3) int32 vertex ids) of `verts` ((nv, 3) float32 x,
 * y in pixels, z depth) on a (height, width) grid. `depth` (height * width float32) must be
 * filled with +inf by the caller; `tid` ((height * width) int32, filled with -1) and `bary`
 * ((height * width, 3) float32) may be NULL (depth only). cull: 0 none, 1 back faces
 * (keep negative signed area), 2 front faces (keep positive). */
void ff_rasterize(const float *verts, long long nv, const int32_t *tri, long long nf,
                  long long height, long long width, int cull, float *depth,
                  int32_t *tid, float *bary)
{
    (void)nv;
    for (long long f = 0; f < nf; ++f) {
        const int32_t ia = tri[3 * f], ib = tri[3 * f + 1], ic = tri[3 * f + 2];
        const float xa = verts[3 * ia], ya = verts[3 * ia + 1], za = verts[3 * ia + 2];
        const float xb = verts[3 * ib], yb = verts[3 * ib + 1], zb = verts[3 * ib + 2];
        const float xc = verts[3 * ic], yc = verts[3 * ic + 1], zc = verts[3 * ic + 2];
        float x0 = ceilf(fminf(fminf(xa, xb), xc));
        float x1 = floorf(fmaxf(fmaxf(xa, xb), xc));
        float y0 = ceilf(fminf(fminf(ya, yb), yc));
        float y1 = floorf(fmaxf(fmaxf(ya, yb), yc));
        /* a NaN coordinate: numpy's minimum/maximum propagate it and every comparison fails */
        if (isnan(xa) || isnan(xb) || isnan(xc) || isnan(ya) || isnan(yb) || isnan(yc))
            continue;
        if (x0 < 0.0f) x0 = 0.0f;
        if (y0 < 0.0f) y0 = 0.0f;
        if (x1 > (float)(width - 1)) x1 = (float)(width - 1);
        if (y1 > (float)(height - 1)) y1 = (float)(height - 1);
        const float d1x = xb - xa, d1y = yb - ya, d2x = xc - xa, d2y = yc - ya;
        const float p = d1x * d2y, q = d1y * d2x;
        const float den = p - q;
        if (!(x1 >= x0) || !(y1 >= y0) || !(den != 0.0f))
            continue;
        if ((cull == 1 && !(den < 0.0f)) || (cull == 2 && !(den > 0.0f)))
            continue;
        const float inv = 1.0f / den;
        const long long cx0 = (long long)x0, cx1 = (long long)x1;
        const long long cy0 = (long long)y0, cy1 = (long long)y1;
        const float qx0 = x0 - xa, qy0 = y0 - ya;
        for (long long r = 0; r <= cy1 - cy0; ++r) {
            const float qy = qy0 + (float)r;
            float *drow = depth + (cy0 + r) * width;
            for (long long c = 0; c <= cx1 - cx0; ++c) {
                const float qx = qx0 + (float)c;
                const float s1 = d2y * qx, s2 = d2x * qy;
                const float b1 = (s1 - s2) * inv;
                const float t1 = d1x * qy, t2 = d1y * qx;
                const float b2 = (t1 - t2) * inv;
                const float b0 = (1.0f - b1) - b2;
                if (!(b0 >= FF_EPS) || !(b1 >= FF_EPS) || !(b2 >= FF_EPS))
                    continue;
                const float z = (za * b0 + zb * b1) + zc * b2;
                const long long j = cx0 + c;
                if (tid == 0) {
                    if (z < drow[j]) drow[j] = z;
                    continue;
                }
                if (z < drow[j] || (z == drow[j] && (int32_t)f > tid[(cy0 + r) * width + j])) {
                    const long long k = (cy0 + r) * width + j;
                    drow[j] = z;
                    tid[k] = (int32_t)f;
                    bary[3 * k] = b0;
                    bary[3 * k + 1] = b1;
                    bary[3 * k + 2] = b2;
                }
            }
        }
    }
}

/* out (nf, 3) float32: cross(v1 - v0, v2 - v0) of each triangle of `tri` ((nf, 3) int32 ids
 * into `verts` (nv, 3) float32), the same float32 operations as
 * facefit.render.shading.triangle_cross's numpy path. */
void ff_triangle_cross(const float *verts, long long nv, const int32_t *tri, long long nf,
                       float *out)
{
    (void)nv;
    for (long long f = 0; f < nf; ++f) {
        const float *a = verts + 3 * (long long)tri[3 * f];
        const float *b = verts + 3 * (long long)tri[3 * f + 1];
        const float *c = verts + 3 * (long long)tri[3 * f + 2];
        const float e1x = b[0] - a[0], e1y = b[1] - a[1], e1z = b[2] - a[2];
        const float e2x = c[0] - a[0], e2y = c[1] - a[1], e2z = c[2] - a[2];
        const float p0 = e1y * e2z, q0 = e1z * e2y;
        const float p1 = e1z * e2x, q1 = e1x * e2z;
        const float p2 = e1x * e2y, q2 = e1y * e2x;
        out[3 * f] = p0 - q0;
        out[3 * f + 1] = p1 - q1;
        out[3 * f + 2] = p2 - q2;
    }
}

/* setuptools builds this file as an extension module and, on some platforms, exports an
 * initialisation function of this name: it exists so that the link succeeds. The library is
 * loaded with ctypes, never imported. */
#if defined(_WIN32)
__declspec(dllexport)
#endif
void *PyInit__craster(void) { return 0; }
