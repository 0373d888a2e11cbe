/* Fused multi-step neuron scan (forward and backward over all T) for float32 on the CPU.
 *
 * Plain C, no Python or torch headers, so it compiles in about a second with the system C compiler
 * and is called through ctypes (see ../fused.py).  The math is the same as the reference loop in
 * ../scan.py and the torch backend there; change all three together.
 *
 * Layout: x, s, h are [T, N] row-major (N = all non-time elements).  Lanes (n) are independent;
 * each thread takes blocks of BLK contiguous lanes and runs them through all T, so the inner loop is
 * over contiguous memory and vectorizes.
 *
 *   charge:  h_t = a v_{t-1} + b x_t + c
 *   fire:    s_t = F(h_t; vth)        code 0 binary, 1 ternary {-1,0,1}, 2 ternary {0,1,2}, 3 multi-bit
 *   reset:   hard: v_t = h_t (1 - z_t) + vr z_t   (z_t = "fired": |s| for ternary, H(h - vth) otherwise)
 *            soft: v_t = h_t - vth s_t
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef BLK
#define BLK 1024
#endif
#define INL static inline __attribute__((always_inline))

enum { CODE_BINARY = 0, CODE_TERNARY = 1, CODE_TERNARY012 = 2, CODE_MULTIBIT = 3 };
enum { RESET_HARD = 0, RESET_SOFT = 1 };

INL float step_f(float x) { return x >= 0.0f ? 1.0f : 0.0f; }

/* Surrogate derivative g(x); ids match surrogate.py kernel_id. */
INL float sg_grad(int sg, float x, float alpha) {
    switch (sg) {
    case 0: { float s = 1.0f / (1.0f + expf(-alpha * x)); return alpha * s * (1.0f - s); }
    case 1: { float u = 1.5707963267948966f * alpha * x; return (alpha * 0.5f) / (1.0f + u * u); }
    case 2: return fabsf(x) < alpha * 0.5f ? 1.0f / alpha : 0.0f;
    case 3: { float r = 1.0f - fabsf(x) / alpha; return r > 0.0f ? r / alpha : 0.0f; }
    case 4: { float t = tanhf(alpha * x); return alpha * 0.5f * (1.0f - t * t); }
    default: {
        const float h = 0.15f, sc = 6.0f, inv_sqrt2pi = 0.3989422804014327f;
        float s0 = alpha, s1 = sc * alpha;
        float n0 = expf(-(x * x) / (2.0f * s0 * s0)) * inv_sqrt2pi / s0;
        float np = expf(-((x - alpha) * (x - alpha)) / (2.0f * s1 * s1)) * inv_sqrt2pi / s1;
        float nm = expf(-((x + alpha) * (x + alpha)) / (2.0f * s1 * s1)) * inv_sqrt2pi / s1;
        return (1.0f + h) * n0 - h * np - h * nm;
    }
    }
}

INL float fire(int code, float h, float vth, float margin, int levels) {
    switch (code) {
    case CODE_BINARY: return step_f(h - vth);
    case CODE_TERNARY: return step_f(h - vth) - step_f(-h - vth);
    case CODE_TERNARY012: return step_f(h - vth) + step_f((h - vth) - margin);
    default: {
        float s = 0.0f;
        for (int k = 1; k <= levels; ++k) s += step_f(h - (float)k * vth);
        return s;
    }
    }
}

/* "fired" indicator for the hard reset */
INL float fired(int code, float h, float vth, float s) {
    switch (code) {
    case CODE_BINARY: return s;
    case CODE_TERNARY: return step_f(h - vth) + step_f(-h - vth);
    default: return step_f(h - vth);
    }
}

INL float reset_v(int reset, int code, float h, float s, float vth, float vr) {
    if (reset == RESET_HARD) {
        float z = fired(code, h, vth, s);
        return h * (1.0f - z) + vr * z;
    }
    return h - vth * s;
}

/* dF/dh and dF/dvth */
INL void fire_grads(int code, int sg, float alpha, float h, float vth, float margin, int levels, float *dfdh, float *dfdth) {
    switch (code) {
    case CODE_BINARY: { float g = sg_grad(sg, h - vth, alpha); *dfdh = g; *dfdth = -g; break; }
    case CODE_TERNARY: {
        float gp = sg_grad(sg, h - vth, alpha), gm = sg_grad(sg, -h - vth, alpha);
        *dfdh = gp + gm; *dfdth = -gp + gm; break;
    }
    case CODE_TERNARY012: {
        float g = sg_grad(sg, h - vth, alpha) + sg_grad(sg, (h - vth) - margin, alpha);
        *dfdh = g; *dfdth = -g; break;
    }
    default: {
        float gh = 0.0f, gt = 0.0f;
        for (int k = 1; k <= levels; ++k) { float g = sg_grad(sg, h - (float)k * vth, alpha); gh += g; gt -= (float)k * g; }
        *dfdh = gh; *dfdth = gt;
    }
    }
}

/* dZ/dh and dZ/dvth of the hard-reset indicator */
INL void fired_grads(int code, int sg, float alpha, float h, float vth, float *dzdh, float *dzdth) {
    if (code == CODE_TERNARY) {
        float gp = sg_grad(sg, h - vth, alpha), gm = sg_grad(sg, -h - vth, alpha);
        *dzdh = gp - gm; *dzdth = -gp - gm;
    } else {
        float g = sg_grad(sg, h - vth, alpha);
        *dzdh = g; *dzdth = -g;
    }
}

INL void forward_block(int code, int reset, const float *x, const float *v0, float *s, float *h,
                       int64_t T, int64_t N, int64_t n0, int64_t len, float a, float b, float c, float vth,
                       float vr, float margin, int levels) {
    float v[BLK];
    for (int64_t j = 0; j < len; ++j) v[j] = v0 ? v0[n0 + j] : 0.0f;
    for (int64_t t = 0; t < T; ++t) {
        const float *xt = x + t * N + n0;
        float *st = s + t * N + n0, *ht = h + t * N + n0;
        for (int64_t j = 0; j < len; ++j) {
            float hh = a * v[j] + b * xt[j] + c;
            float ss = fire(code, hh, vth, margin, levels);
            ht[j] = hh;
            st[j] = ss;
            v[j] = reset_v(reset, code, hh, ss, vth, vr);
        }
    }
}

static const float ZEROS[BLK];

INL void backward_block(int code, int reset, int detach, int sg, const float *x, const float *h,
                        const float *gs, const float *gh_out, const float *v0, float *gx, float *gv0,
                        double *acc, int64_t T, int64_t N, int64_t n0, int64_t len, float a, float b,
                        float vth, float vr, float margin, int levels, float alpha) {
    /* Per-lane float accumulators keep the inner loop free of cross-lane reductions (so it vectorizes);
     * lanes are summed in double at the end. */
    float gv[BLK], vprev[BLK], la[BLK], lb[BLK], lth[BLK], lc[BLK];
    for (int64_t j = 0; j < len; ++j) gv[j] = la[j] = lb[j] = lth[j] = lc[j] = 0.0f;
    for (int64_t t = T - 1; t >= 0; --t) {
        const float *ht = h + t * N + n0, *xt = x + t * N + n0, *gst = gs + t * N + n0;
        const float *ghot = gh_out ? gh_out + t * N + n0 : ZEROS;
        float *gxt = gx + t * N + n0;
        if (t > 0) {
            const float *hp = h + (t - 1) * N + n0;
            for (int64_t j = 0; j < len; ++j) {
                float hq = hp[j];
                vprev[j] = reset_v(reset, code, hq, fire(code, hq, vth, margin, levels), vth, vr);
            }
        } else {
            for (int64_t j = 0; j < len; ++j) vprev[j] = v0 ? v0[n0 + j] : 0.0f;
        }
        for (int64_t j = 0; j < len; ++j) {
            float hh = ht[j];
            float ss = fire(code, hh, vth, margin, levels);
            float dfdh, dfdth;
            fire_grads(code, sg, alpha, hh, vth, margin, levels, &dfdh, &dfdth);
            float dvdh, dvdth;
            if (reset == RESET_HARD) {
                float z = fired(code, hh, vth, ss);
                dvdh = 1.0f - z;
                dvdth = 0.0f;
                if (!detach) {
                    float dzdh, dzdth;
                    fired_grads(code, sg, alpha, hh, vth, &dzdh, &dzdth);
                    dvdh += (vr - hh) * dzdh;
                    dvdth = (vr - hh) * dzdth;
                }
            } else {
                dvdh = 1.0f;
                dvdth = -ss;
                if (!detach) {
                    dvdh -= vth * dfdh;
                    dvdth -= vth * dfdth;
                }
            }
            float g = gst[j] * dfdh + gv[j] * dvdh + ghot[j];
            lth[j] += gst[j] * dfdth + gv[j] * dvdth;
            la[j] += g * vprev[j];
            lb[j] += g * xt[j];
            lc[j] += g;
            gxt[j] = b * g;
            gv[j] = a * g;
        }
    }
    if (gv0)
        for (int64_t j = 0; j < len; ++j) gv0[n0 + j] = gv[j];
    for (int64_t j = 0; j < len; ++j) {
        acc[0] += la[j];
        acc[1] += lb[j];
        acc[2] += lth[j];
        acc[3] += lc[j];
    }
}

/* The OpenMP loop lives in the entry points and the switch sits inside it, once per block: each case
 * inlines the block function with literal enum values, so the compiler specializes the inner loop
 * (a switch inside an outlined OpenMP body would otherwise be re-evaluated per element). */
#define FWD_CASE(CODE, RESET) \
    case CODE * 2 + RESET: forward_block(CODE, RESET, x, v0, s, h, T, N, n0, len, a, b, c, vth, vr, margin, levels); break;

int snn_scan_forward(const float *x, const float *v0, float *s, float *h, int64_t T, int64_t N, float a, float b,
                     float c, float vth, float vr, float margin, int levels, int code, int reset, int nthreads) {
    if (code < 0 || code > 3 || reset < 0 || reset > 1) return -1;
    int64_t nblk = (N + BLK - 1) / BLK;
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t bi = 0; bi < nblk; ++bi) {
        int64_t n0 = bi * BLK, len = N - n0 < BLK ? N - n0 : BLK;
        switch (code * 2 + reset) {
            FWD_CASE(0, 0) FWD_CASE(0, 1) FWD_CASE(1, 0) FWD_CASE(1, 1)
            FWD_CASE(2, 0) FWD_CASE(2, 1) FWD_CASE(3, 0) FWD_CASE(3, 1)
        }
    }
    return 0;
}

#define BWD_CASE(CODE, RESET, DETACH, SG)                                                                          \
    case ((CODE * 2 + RESET) * 2 + DETACH) * 6 + SG:                                                              \
        backward_block(CODE, RESET, DETACH, SG, x, h, gs, gh_out, v0, gx, gv0, acc, T, N, n0, len, a, b, vth, vr, \
                       margin, levels, alpha);                                                                     \
        break;
#define BWD_SG(CODE, RESET, DETACH) \
    BWD_CASE(CODE, RESET, DETACH, 0) BWD_CASE(CODE, RESET, DETACH, 1) BWD_CASE(CODE, RESET, DETACH, 2) \
    BWD_CASE(CODE, RESET, DETACH, 3) BWD_CASE(CODE, RESET, DETACH, 4) BWD_CASE(CODE, RESET, DETACH, 5)
#define BWD_DET(CODE, RESET) BWD_SG(CODE, RESET, 0) BWD_SG(CODE, RESET, 1)
#define BWD_RES(CODE) BWD_DET(CODE, 0) BWD_DET(CODE, 1)

int snn_scan_backward(const float *x, const float *h, const float *gs, const float *gh_out, const float *v0,
                      float *gx, float *gv0, double *gparams, int64_t T, int64_t N, float a, float b, float c,
                      float vth, float vr, float margin, int levels, int code, int reset, int detach, int sg,
                      float alpha, int nthreads) {
    (void)c; /* c enters only additively: its gradient is the sum of g, accumulated below */
    if (code < 0 || code > 3 || reset < 0 || reset > 1 || detach < 0 || detach > 1 || sg < 0 || sg > 5) return -1;
    int64_t nblk = (N + BLK - 1) / BLK;
    int key = ((code * 2 + reset) * 2 + detach) * 6 + sg;
    double ga = 0.0, gb = 0.0, gth = 0.0, gc = 0.0;
#pragma omp parallel for schedule(static) num_threads(nthreads) reduction(+ : ga, gb, gth, gc)
    for (int64_t bi = 0; bi < nblk; ++bi) {
        int64_t n0 = bi * BLK, len = N - n0 < BLK ? N - n0 : BLK;
        double acc[4] = {0.0, 0.0, 0.0, 0.0};
        switch (key) {
            BWD_RES(0) BWD_RES(1) BWD_RES(2) BWD_RES(3)
        }
        ga += acc[0];
        gb += acc[1];
        gth += acc[2];
        gc += acc[3];
    }
    gparams[0] = ga;
    gparams[1] = gb;
    gparams[2] = gth;
    gparams[3] = gc;
    return 0;
}

/* Ragged forward (inference): sequences of different lengths with holes, stored row by row.
 *
 * x, s are [N, C]: row n is one valid step of one sequence; the rows of sequence q are starts[q] ..
 * starts[q+1]-1, and t_idx[n] is the time step of row n (increasing along the rows, or decreasing when
 * reverse = 1, which runs the rows from last to first).  Steps that have no row are holes: zero input, the
 * membrane still charges (a v + c), fires and resets, exactly as a zero entry of the dense [T, B, C] layout
 * that forward_block scans, so the spikes are the same bit for bit, without building that layout.  From
 * rest with c = 0 and vth > 0 a hole leaves the state at 0, so leading holes are skipped. */
INL void ragged_block(int code, int reset, const float *x, float *s, const int64_t *t_idx, int64_t r0,
                      int64_t r1, int64_t C, int64_t l0, int64_t len, int reverse, float a, float b, float c,
                      float vth, float vr, float margin, int levels) {
    float v[BLK];
    for (int64_t j = 0; j < len; ++j) v[j] = 0.0f;
    int rest = (c == 0.0f && vth > 0.0f);
    int64_t cur = 0, n = r1 - r0;
    for (int64_t k = 0; k < n; ++k) {
        int64_t row = reverse ? r1 - 1 - k : r0 + k;
        int64_t t = t_idx[row];
        if (rest) cur = t;
        for (; cur < t; ++cur) {
            for (int64_t j = 0; j < len; ++j) {
                float hh = a * v[j] + c;
                float ss = fire(code, hh, vth, margin, levels);
                v[j] = reset_v(reset, code, hh, ss, vth, vr);
            }
        }
        const float *xr = x + row * C + l0;
        float *sr = s + row * C + l0;
        for (int64_t j = 0; j < len; ++j) {
            float hh = a * v[j] + b * xr[j] + c;
            float ss = fire(code, hh, vth, margin, levels);
            sr[j] = ss;
            v[j] = reset_v(reset, code, hh, ss, vth, vr);
        }
        cur = t + 1;
        rest = 0;
    }
}

#define RAG_CASE(CODE, RESET)                                                                                  \
    case CODE * 2 + RESET:                                                                                     \
        ragged_block(CODE, RESET, x, s, t_idx, starts[q], starts[q + 1], C, l0, len, reverse, a, b, c, vth, vr, \
                     margin, levels);                                                                          \
        break;

int snn_scan_ragged_forward(const float *x, float *s, const int64_t *starts, const int64_t *t_idx, int64_t B,
                            int64_t C, int reverse, float a, float b, float c, float vth, float vr, float margin,
                            int levels, int code, int reset, int nthreads) {
    if (code < 0 || code > 3 || reset < 0 || reset > 1) return -1;
    int64_t nlb = (C + BLK - 1) / BLK;
    /* sequences differ in length: dynamic chunks keep the threads busy */
#pragma omp parallel for schedule(dynamic, 64) num_threads(nthreads)
    for (int64_t qi = 0; qi < B * nlb; ++qi) {
        int64_t q = qi / nlb, l0 = (qi % nlb) * BLK, len = C - l0 < BLK ? C - l0 : BLK;
        switch (code * 2 + reset) {
            RAG_CASE(0, 0) RAG_CASE(0, 1) RAG_CASE(1, 0) RAG_CASE(1, 1)
            RAG_CASE(2, 0) RAG_CASE(2, 1) RAG_CASE(3, 0) RAG_CASE(3, 1)
        }
    }
    return 0;
}

/* Segments (training): sequences without holes stored row by row, x, s, h, gs, gx [N, C], the rows of
 * sequence q are starts[q] .. starts[q+1]-1 in time order (reverse = 1: last row first).  A segment is a
 * dense [T = rows, C] block whose time stride is C (or -C), so forward_block / backward_block run on it
 * unchanged: the same arithmetic as the dense scan, without copying the rows into a [T, B, C] layout.
 * Parameter gradients: one double per segment and lane block, summed in order afterwards (deterministic
 * whatever the thread schedule). */
INL const float *seg_base(const float *p, const int64_t *starts, int64_t q, int64_t C, int reverse) {
    return p + (reverse ? starts[q + 1] - 1 : starts[q]) * C;
}

int snn_scan_segments_forward(const float *x, float *s, float *h, const int64_t *starts, int64_t B, int64_t C,
                              int reverse, float a, float b, float c, float vth, float vr, float margin, int levels,
                              int code, int reset, int nthreads) {
    if (code < 0 || code > 3 || reset < 0 || reset > 1) return -1;
    int64_t nlb = (C + BLK - 1) / BLK, N = reverse ? -C : C; /* N: the time stride FWD_CASE passes on */
    const float *xs = x, *v0 = NULL;
    float *ss = s, *hs = h;
#pragma omp parallel for schedule(dynamic, 64) num_threads(nthreads)
    for (int64_t qi = 0; qi < B * nlb; ++qi) {
        int64_t q = qi / nlb, n0 = (qi % nlb) * BLK, len = C - n0 < BLK ? C - n0 : BLK, T = starts[q + 1] - starts[q];
        if (T <= 0) continue;
        /* the segment's rows under the names FWD_CASE uses */
        const float *x = seg_base(xs, starts, q, C, reverse);
        float *s = (float *)seg_base(ss, starts, q, C, reverse), *h = (float *)seg_base(hs, starts, q, C, reverse);
        switch (code * 2 + reset) {
            FWD_CASE(0, 0) FWD_CASE(0, 1) FWD_CASE(1, 0) FWD_CASE(1, 1)
            FWD_CASE(2, 0) FWD_CASE(2, 1) FWD_CASE(3, 0) FWD_CASE(3, 1)
        }
    }
    return 0;
}

int snn_scan_segments_backward(const float *x, const float *h, const float *gs, float *gx, double *gparams,
                               double *work, const int64_t *starts, int64_t B, int64_t C, int reverse, float a,
                               float b, float vth, float vr, float margin, int levels, int code, int reset,
                               int detach, int sg, float alpha, int nthreads) {
    if (code < 0 || code > 3 || reset < 0 || reset > 1 || detach < 0 || detach > 1 || sg < 0 || sg > 5) return -1;
    int64_t nlb = (C + BLK - 1) / BLK, N = reverse ? -C : C; /* N: the time stride BWD_CASE passes on */
    int key = ((code * 2 + reset) * 2 + detach) * 6 + sg;
    const float *xs = x, *hs = h, *gss = gs, *gh_out = NULL, *v0 = NULL;
    float *gxs = gx, *gv0 = NULL;
#pragma omp parallel for schedule(dynamic, 64) num_threads(nthreads)
    for (int64_t qi = 0; qi < B * nlb; ++qi) {
        int64_t q = qi / nlb, n0 = (qi % nlb) * BLK, len = C - n0 < BLK ? C - n0 : BLK, T = starts[q + 1] - starts[q];
        double *acc = work + 4 * qi;
        acc[0] = acc[1] = acc[2] = acc[3] = 0.0;
        if (T <= 0) continue;
        /* the segment's rows under the names BWD_CASE uses */
        const float *x = seg_base(xs, starts, q, C, reverse), *h = seg_base(hs, starts, q, C, reverse);
        const float *gs = seg_base(gss, starts, q, C, reverse);
        float *gx = (float *)seg_base(gxs, starts, q, C, reverse);
        switch (key) {
            BWD_RES(0) BWD_RES(1) BWD_RES(2) BWD_RES(3)
        }
    }
    double ga = 0.0, gb = 0.0, gth = 0.0, gc = 0.0;
    for (int64_t qi = 0; qi < B * nlb; ++qi) {
        ga += work[4 * qi];
        gb += work[4 * qi + 1];
        gth += work[4 * qi + 2];
        gc += work[4 * qi + 3];
    }
    gparams[0] = ga;
    gparams[1] = gb;
    gparams[2] = gth;
    gparams[3] = gc;
    return 0;
}
