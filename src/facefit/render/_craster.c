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

static inline float ff_min3(float a, float b, float c)
{
    const float m = a < b ? a : b;
    return m < c ? m : c;
}

static inline float ff_max3(float a, float b, float c)
{
    const float m = a > b ? a : b;
    return m > c ? m : c;
}

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
        /* a NaN coordinate: numpy's minimum/maximum propagate it and every comparison fails */
        if (isnan(xa) || isnan(xb) || isnan(xc) || isnan(ya) || isnan(yb) || isnan(yc))
            continue;
        /* no NaN left: plain comparisons instead of fminf/fmaxf (library calls at -O3) */
        float x0 = ceilf(ff_min3(xa, xb, xc));
        float x1 = floorf(ff_max3(xa, xb, xc));
        float y0 = ceilf(ff_min3(ya, yb, yc));
        float y1 = floorf(ff_max3(ya, yb, yc));
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

/* cross(v1 - v0, v2 - v0) of triangle f into n[3]: each component as numpy's np.cross
 * computes it in float32 (two products, then their difference). */
static inline void tri_cross(const float *verts, const int32_t *tri, long long f, float *n)
{
    const float *a = verts + 3 * (long long)tri[3 * f];
    const float *b = verts + 3 * (long long)tri[3 * f + 1];
    const float *c = verts + 3 * (long long)tri[3 * f + 2];
    const float e1x = b[0] - a[0], e1y = b[1] - a[1], e1z = b[2] - a[2];
    const float e2x = c[0] - a[0], e2y = c[1] - a[1], e2z = c[2] - a[2];
    const float p0 = e1y * e2z, q0 = e1z * e2y;
    const float p1 = e1z * e2x, q1 = e1x * e2z;
    const float p2 = e1x * e2y, q2 = e1y * e2x;
    n[0] = p0 - q0;
    n[1] = p1 - q1;
    n[2] = p2 - q2;
}

/* out (nf, 3) float32: cross(v1 - v0, v2 - v0) of each triangle of `tri` ((nf, 3) int32 ids
 * into `verts` (nv, 3) float32), the same float32 operations as
 * facefit.render.shading.triangle_cross's numpy path. */
void ff_triangle_cross(const float *verts, long long nv, const int32_t *tri, long long nf,
                       float *out)
{
    (void)nv;
    for (long long f = 0; f < nf; ++f) {
        tri_cross(verts, tri, f, out + 3 * f);
    }
}

/* Bilinear sample of an (h, w, 3) uint8 image at (x, y) (integer pixel centres, border
 * replicated), as OpenCV's remap (INTER_LINEAR, BORDER_REPLICATE) computes it for 8-bit
 * images: the point rounded to 1/32 pixel, the weights fixed-point with 15 bits, the sum
 * rounded (tests compare it with cv2.remap). */
static inline void ff_bilinear8(const uint8_t *img, long long h, long long w, float x, float y,
                                float out[3])
{
    const long long sx = (long long)rintf(x * 32.0f), sy = (long long)rintf(y * 32.0f);
    const int fx = (int)(sx & 31), fy = (int)(sy & 31);
    long long x0 = sx >> 5, y0 = sy >> 5;
    long long x1 = x0 + 1, y1 = y0 + 1;
    x0 = x0 < 0 ? 0 : (x0 > w - 1 ? w - 1 : x0);
    x1 = x1 < 0 ? 0 : (x1 > w - 1 ? w - 1 : x1);
    y0 = y0 < 0 ? 0 : (y0 > h - 1 ? h - 1 : y0);
    y1 = y1 < 0 ? 0 : (y1 > h - 1 ? h - 1 : y1);
    const int w00 = (32 - fx) * (32 - fy) * 32, w01 = fx * (32 - fy) * 32;
    const int w10 = (32 - fx) * fy * 32, w11 = fx * fy * 32;
    const uint8_t *p00 = img + 3 * (y0 * w + x0), *p01 = img + 3 * (y0 * w + x1);
    const uint8_t *p10 = img + 3 * (y1 * w + x0), *p11 = img + 3 * (y1 * w + x1);
    for (int k = 0; k < 3; ++k) {
        const int v = p00[k] * w00 + p01[k] * w01 + p10[k] * w10 + p11[k] * w11;
        out[k] = (float)((v + (1 << 14)) >> 15);
    }
}

/* out (n, 3) float32: `ff_bilinear8` of the (h, w, 3) uint8 image at the points xy (n, 2). */
void ff_sample_rgb8(const uint8_t *img, long long h, long long w, const float *xy, long long n,
                    float *out)
{
    if (h <= 0 || w <= 0)
        return;
    for (long long i = 0; i < n; ++i)
        ff_bilinear8(img, h, w, xy[2 * i], xy[2 * i + 1], out + 3 * i);
}

/* One view of facefit.texture.extract's texel pass (its numpy `_texel_view`, the same float32
 * operations): for each of the n covered texels,
 *   pos = interp @ verts (CSR rows indptr/indices/data, summed in stored order from 0, as
 *         scipy's product), its triangle t = tid[i];
 *   raw = facing[t] and pos within tol[t] of the z-buffer's nearest pixel (zbuf (zh, zw),
 *         pixel (r, c) at image (zx0 + step c, zy0 + step r); step 1: no division);
 *   visible = more than half of the covered texels of its 3x3 neighbourhood on the
 *         (size, size) grid are raw (covered counts `around`; `index`: the texel's flat
 *         index in that grid padded by one texel a side, (size + 2, size + 2));
 *   weight = grazing[t] * (visible share of its neighbourhood), 0 unless visible and sampled;
 * visible (n) and, where weight > 0 and wanted (NULL: everywhere), the colour (n, 3): the photo
 * sampled at pos.xy from pyramid level 0 (`levels[0]`) when footprint[t] <= 1 (or L = 1),
 * else linear in lod = min(log2(footprint[t]), L - 1) between levels floor(lod) and
 * floor(lod) + 1 (level k: (x - origin) / scale, origin (L, 2), scale (L)); weight (n) is
 * written there (0 elsewhere). Those texels' ids and image points go
 * to sel (count returned) and sel_xy (count, 2) for the caller's face-region fade. `grid`:
 * (size + 2)^2 bytes of scratch. Outputs colour and weight must be zeroed by the caller. */
long long ff_texel_view(const float *verts, long long nv,
                        const int32_t *indptr, const int32_t *indices, const float *data,
                        long long n, const int32_t *tid, const int64_t *index, long long size,
                        const uint8_t *facing, const float *tol, const float *grazing,
                        const float *footprint, const uint8_t *sampled, const float *around,
                        const uint8_t *wanted,
                        const float *zbuf, long long zh, long long zw, long long zx0,
                        long long zy0, float step, int unit_step,
                        long long nlevels, const uint8_t *const *levels,
                        const long long *heights, const long long *widths,
                        const float *origin, const float *scale,
                        uint8_t *grid, float *pos, uint8_t *visible, float *weight,
                        float *colour, int64_t *sel, float *sel_xy)
{
    (void)nv;
    const float fx0 = (float)zx0, fy0 = (float)zy0;
    const long long stride = size + 2; /* the grid padded by one texel on each side */
    for (long long i = 0; i < stride * stride; ++i)
        grid[i] = 0;
    for (long long i = 0; i < n; ++i) {
        float px = 0.0f, py = 0.0f, pz = 0.0f;
        for (int32_t k = indptr[i]; k < indptr[i + 1]; ++k) {
            const float a = data[k];
            const float *v = verts + 3 * (long long)indices[k];
            const float ax = a * v[0], ay = a * v[1], az = a * v[2];
            px += ax;
            py += ay;
            pz += az;
        }
        pos[3 * i] = px;
        pos[3 * i + 1] = py;
        pos[3 * i + 2] = pz;
        const int32_t t = tid[i];
        int raw = 0;
        if (facing[t]) {
            float cx, cy;
            if (unit_step) {
                cx = rintf(px) - fx0;
                cy = rintf(py) - fy0;
            } else {
                cx = rintf((px - fx0) / step);
                cy = rintf((py - fy0) / step);
            }
            if (cx >= 0.0f && cx < (float)zw && cy >= 0.0f && cy < (float)zh) {
                const float z = zbuf[(long long)cy * zw + (long long)cx];
                raw = pz <= z + tol[t];
            }
        }
        grid[index[i]] = (uint8_t)raw;
    }
    /* majority of the 3x3 neighbourhood: bit 0 raw, bit 1 visible */
    for (long long i = 0; i < n; ++i) {
        const uint8_t *g = grid + index[i];
        const int count = (g[-stride - 1] & 1) + (g[-stride] & 1) + (g[-stride + 1] & 1)
                          + (g[-1] & 1) + (g[0] & 1) + (g[1] & 1)
                          + (g[stride - 1] & 1) + (g[stride] & 1) + (g[stride + 1] & 1);
        const float twice = 2.0f * (float)count;
        visible[i] = twice > around[i] + 1e-3f;
    }
    for (long long i = 0; i < n; ++i)
        grid[index[i]] |= (uint8_t)(visible[i] << 1);
    long long m = 0;
    for (long long i = 0; i < n; ++i) {
        if (!visible[i] || !sampled[i] || (wanted && !wanted[i]))
            continue;
        const uint8_t *g = grid + index[i];
        const int count = ((g[-stride - 1] >> 1) & 1) + ((g[-stride] >> 1) & 1)
                          + ((g[-stride + 1] >> 1) & 1) + ((g[-1] >> 1) & 1) + ((g[0] >> 1) & 1)
                          + ((g[1] >> 1) & 1) + ((g[stride - 1] >> 1) & 1)
                          + ((g[stride] >> 1) & 1) + ((g[stride + 1] >> 1) & 1);
        const int32_t t = tid[i];
        const float share = (float)count / around[i];
        const float wgt = grazing[t] * share;
        if (!(wgt > 0.0f))
            continue;
        weight[i] = wgt;
        const float x = pos[3 * i], y = pos[3 * i + 1];
        float *out = colour + 3 * i;
        ff_bilinear8(levels[0], heights[0], widths[0], x, y, out);
        const float fp = footprint[t];
        if (nlevels > 1 && fp > 1.0f) {
            const float top = (float)(nlevels - 1), l2 = log2f(fp);
            const float l = l2 < top ? l2 : top;
            float lo[3] = {out[0], out[1], out[2]}, up[3], b[3];
            ff_bilinear8(levels[1], heights[1], widths[1], (x - origin[2]) / scale[1],
                         (y - origin[3]) / scale[1], up);
            const float f = l < 1.0f ? l : 1.0f;
            for (int k = 0; k < 3; ++k) {
                const float d = up[k] - lo[k];
                const float e = f * d;
                out[k] = lo[k] + e;
            }
            if (l > 1.0f) {
                long long j = (long long)l;
                if (j > nlevels - 2)
                    j = nlevels - 2;
                if (j == 1) {
                    lo[0] = up[0];
                    lo[1] = up[1];
                    lo[2] = up[2];
                } else {
                    ff_bilinear8(levels[j], heights[j], widths[j], (x - origin[2 * j]) / scale[j],
                                 (y - origin[2 * j + 1]) / scale[j], lo);
                }
                ff_bilinear8(levels[j + 1], heights[j + 1], widths[j + 1],
                             (x - origin[2 * j + 2]) / scale[j + 1],
                             (y - origin[2 * j + 3]) / scale[j + 1], b);
                const float g = l - (float)j;
                for (int k = 0; k < 3; ++k) {
                    const float d = b[k] - lo[k];
                    const float e = g * d;
                    out[k] = lo[k] + e;
                }
            }
        }
        sel[m] = i;
        sel_xy[2 * m] = x;
        sel_xy[2 * m + 1] = y;
        ++m;
    }
    return m;
}

/* Per triangle f of `tri` ((nf, 3) int32 ids into `verts` (nv, 3) float32), the terms of
 * facefit.texture.extract's texel pass, the float32 operations of its numpy path: the
 * image-space normal c = sign * cross(v1 - v0, v2 - v0); towards = -c_z / max(|c|, 1e-30);
 * facing[f] = towards > min_facing; tol[f] = tol0 + tol1 * slope, slope = sqrt(max(1 -
 * towards^2, 0)) / max(towards, min_facing); grazing[f] = clip((towards - min_facing) /
 * graze, 0, 1); footprint[f] = sqrt(0.5 |c_z| / max(texel_area[f], 1e-12)) (texel side in
 * pixels). Returns the largest footprint of a facing triangle of at least a texel (0 if
 * none; NaN if one of them is NaN). */
float ff_triangle_terms(const float *verts, long long nv, const int32_t *tri, long long nf,
                        float sign, const float *texel_area, float min_facing, float graze,
                        float tol0, float tol1, uint8_t *facing, float *tol, float *grazing,
                        float *footprint)
{
    (void)nv;
    /* first the gathers: c_z into `footprint` and |c|^2 into `tol` (scratch), then the
     * element-wise terms in a loop without gathers or branches, which the compiler
     * vectorises (select for the NaN-propagating maxima and the clip) */
    for (long long f = 0; f < nf; ++f) {
        float n[3];
        tri_cross(verts, tri, f, n);
        const float cx = sign * n[0], cy = sign * n[1], cz = sign * n[2];
        const float xx = cx * cx, yy = cy * cy, zz = cz * cz;
        const float xy = xx + yy;
        tol[f] = xy + zz;
        footprint[f] = cz;
    }
    for (long long f = 0; f < nf; ++f) {
        const float cz = footprint[f];
        const float length = sqrtf(tol[f]);
        /* np.maximum: a NaN operand wins */
        const float den = (length != length || length > 1e-30f) ? length : 1e-30f;
        const float towards = -cz / den;
        const float t2 = towards * towards;
        const float one_minus = 1.0f - t2;
        const float sin = sqrtf((one_minus != one_minus || one_minus > 0.0f) ? one_minus : 0.0f);
        const float lower = (towards != towards || towards > min_facing) ? towards : min_facing;
        const float slope = sin / lower;
        const float ts = tol1 * slope;
        tol[f] = tol0 + ts;
        facing[f] = towards > min_facing;
        const float g = (towards - min_facing) / graze;
        const float g0 = (g != g || g > 0.0f) ? g : 0.0f;
        grazing[f] = (g0 != g0 || g0 < 1.0f) ? g0 : 1.0f;
        const float area = texel_area[f];
        const float half = 0.5f * fabsf(cz);
        footprint[f] = sqrtf(half / ((area != area || area > 1e-12f) ? area : 1e-12f));
    }
    float best = 0.0f;
    int nan_seen = 0;
    for (long long f = 0; f < nf; ++f) {
        const float fp = footprint[f];
        if (facing[f] && texel_area[f] >= 1.0f) {
            if (fp != fp)
                nan_seen = 1;
            else if (fp > best)
                best = fp;
        }
    }
    return nan_seen ? NAN : best;
}

/* towards (nf) float32: the cosine of each triangle's normal (`cross` (nf, 3) float32, any
 * length) with the direction to the camera, -c_z / max(|c|, 1e-30): the float32 operations
 * of facefit.texture.extract._facing's numpy path (vectorised: no gathers, no branches). */
void ff_towards(const float *cross, long long nf, float *towards)
{
    for (long long f = 0; f < nf; ++f) {
        const float cx = cross[3 * f], cy = cross[3 * f + 1], cz = cross[3 * f + 2];
        const float xx = cx * cx, yy = cy * cy, zz = cz * cz;
        const float xy = xx + yy;
        const float length = sqrtf(xy + zz);
        const float den = (length != length || length > 1e-30f) ? length : 1e-30f;
        towards[f] = -cz / den;
    }
}

/* The blend of facefit.texture.extract's two views into the (size * size) texel grid, its
 * numpy operations in float32: for each covered texel i (flat grid index `index`),
 * known = wd + wm, color = (cd wd + cm wm) / max(known, 1e-6) (cd, cm: (n, 3) colours, wd, wm:
 * (n) weights); color (size * size, 3) and weight (size * size) must be zeroed by the caller. */
void ff_blend_views(long long n, const int64_t *index, const float *cd, const float *wd,
                    const float *cm, const float *wm, float *color, float *weight)
{
    for (long long i = 0; i < n; ++i) {
        const float known = wd[i] + wm[i];
        const float den = (known != known || known > 1e-6f) ? known : 1e-6f;
        float *out = color + 3 * index[i];
        for (int k = 0; k < 3; ++k) {
            const float a = cd[3 * i + k] * wd[i], b = cm[3 * i + k] * wm[i];
            const float sum = a + b;
            out[k] = sum / den;
        }
        weight[index[i]] = known;
    }
}

/* out (npix, nattr) float32: per pixel with tid >= 0, the barycentric mix
 * (b0 a0 + b1 a1) + b2 a2 of the attributes `attrs` ((nv, nattr) float32) of the vertices of
 * triangle tid (`tri` (nf, 3) int32); the numbers of facefit.render.raster.interpolate's
 * numpy path. Pixels without a triangle are left as they are (the caller zeroes them). */
void ff_interpolate(const int32_t *tid, const float *bary, long long npix, const int32_t *tri,
                    const float *attrs, long long nattr, float *out)
{
    for (long long p = 0; p < npix; ++p) {
        const int32_t t = tid[p];
        if (t < 0)
            continue;
        const float b0 = bary[3 * p], b1 = bary[3 * p + 1], b2 = bary[3 * p + 2];
        const float *a0 = attrs + nattr * (long long)tri[3 * (long long)t];
        const float *a1 = attrs + nattr * (long long)tri[3 * (long long)t + 1];
        const float *a2 = attrs + nattr * (long long)tri[3 * (long long)t + 2];
        for (long long c = 0; c < nattr; ++c) {
            const float x = b0 * a0[c], y = b1 * a1[c], z = b2 * a2[c];
            const float xy = x + y;
            out[nattr * p + c] = xy + z;
        }
    }
}

/* The overlay blend of facefit.render.overlay (its numpy operations in float32): per pixel
 * of the (h, w) window, shade s = attrs[0] (or attrs[0] / max(attrs[1], 1e-12) when
 * `divide`, for opacity-premultiplied upsampled attributes) and opacity a = alpha attrs[1]
 * (`attrs`: rows of `attr_stride` floats, 2 a pixel); each channel of `crop` (uint8 rows of
 * `crop_stride` bytes, 3 a pixel) becomes trunc(crop (1 - a) + 255 clip(s color, 0, 1) a
 * + 0.5). */
void ff_overlay_blend(const float *attrs, long long h, long long w, long long attr_stride,
                      int divide, float alpha, const float *color, uint8_t *crop,
                      long long crop_stride)
{
    for (long long i = 0; i < h; ++i) {
        const float *row = attrs + i * attr_stride;
        uint8_t *px = crop + i * crop_stride;
        for (long long j = 0; j < w; ++j) {
            float s = row[2 * j];
            const float o = row[2 * j + 1];
            if (divide)
                s = s / ((o != o || o > 1e-12f) ? o : 1e-12f);
            const float a = alpha * o;
            const float keep = 1.0f - a;
            for (int c = 0; c < 3; ++c) {
                float r = s * color[c];
                r = (r != r) ? r : (r < 0.0f ? 0.0f : (r > 1.0f ? 1.0f : r));
                r *= 255.0f;
                r *= a;
                float b = (float)px[3 * j + c];
                b *= keep;
                b += r;
                b += 0.5f;
                px[3 * j + c] = (uint8_t)b;
            }
        }
    }
}

/* setuptools builds this file as an extension module and, on some platforms, exports an
 * initialisation function of this name: it exists so that the link succeeds. The library is
 * loaded with ctypes, never imported. */
#if defined(_WIN32)
__declspec(dllexport)
#endif
void *PyInit__craster(void) { return 0; }
