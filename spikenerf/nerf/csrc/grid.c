/* Trilinear look-up in a dense channels-last voxel grid, forward and backward, float32 on the CPU.
 *
 * Plain C called through ctypes (see ../grid.py), built by spikenerf.snn.fused.build_c_library.
 * Why not F.grid_sample: its CPU backward scatters with atomics over a channels-first grid and takes
 * seconds per million points on a 13-channel 160^3 grid; here a point's 8 corners are C contiguous floats
 * each (channels last), and the backward needs no atomics (see grid_backward).
 *
 * Convention (same as grid_sample with align_corners=True, zeros padding): grid [X, Y, Z, C] holds values
 * at the vertices of the box [lo, hi]; a point's continuous index is u = (p - lo) * scale with
 * scale = (R - 1) / (hi - lo); points outside [0, R - 1] on any axis (or NaN) read 0 and get no gradient.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define INL static inline __attribute__((always_inline))

/* Lower corner (i, j, k) and fractions of a point; 0 when it lies outside the grid. Needs X, Y, Z >= 2. */
INL int locate(const float *p, const float *lo, const float *sc, int X, int Y, int Z, int *ijk, float *f) {
    const int R[3] = {X, Y, Z};
    for (int d = 0; d < 3; ++d) {
        float u = (p[d] - lo[d]) * sc[d];
        if (!(u >= 0.0f && u <= (float)(R[d] - 1))) return 0;
        int i = (int)u;
        if (i > R[d] - 2) i = R[d] - 2;
        ijk[d] = i;
        f[d] = u - (float)i;
    }
    return 1;
}

/* Vertex offsets (in vertices) and weights of the 8 corners, in (dx, dy, dz) bit order. */
INL void corners(const int *ijk, const float *f, int Y, int Z, int64_t *o, float *w) {
    const int64_t sx = (int64_t)Y * Z, sy = Z;
    const int64_t base = (int64_t)ijk[0] * sx + (int64_t)ijk[1] * sy + ijk[2];
    for (int c = 0; c < 8; ++c) {
        const int dx = (c >> 2) & 1, dy = (c >> 1) & 1, dz = c & 1;
        o[c] = base + dx * sx + dy * sy + dz;
        w[c] = (dx ? f[0] : 1.0f - f[0]) * (dy ? f[1] : 1.0f - f[1]) * (dz ? f[2] : 1.0f - f[2]);
    }
}

/* out[n, :] = sum_c w_c grid[o_c, :]   (out [N, C]). */
int grid_forward(const float *grid, const float *xyz, float *out, int64_t N, int X, int Y, int Z, int C,
                 const float *lo, const float *sc, int threads) {
    if (X < 2 || Y < 2 || Z < 2 || C < 1) return 1;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t n = 0; n < N; ++n) {
        float *y = out + n * C;
        int ijk[3];
        float f[3];
        if (!locate(xyz + 3 * n, lo, sc, X, Y, Z, ijk, f)) {
            for (int ch = 0; ch < C; ++ch) y[ch] = 0.0f;
            continue;
        }
        int64_t o[8];
        float w[8];
        corners(ijk, f, Y, Z, o, w);
        for (int ch = 0; ch < C; ++ch) y[ch] = 0.0f;
        for (int c = 0; c < 8; ++c) {
            const float *g = grid + o[c] * C;
            const float wc = w[c];
            for (int ch = 0; ch < C; ++ch) y[ch] += wc * g[ch];
        }
    }
    return 0;
}

/* ggrid[o_c, :] += w_c gout[n, :]   (ggrid [X, Y, Z, C], accumulated into).
 *
 * No atomics: thread t owns the x-slab [x0, x1) of the grid and writes only corners inside it, reading
 * every point (the point loop is cheap next to the scattered writes). Deterministic for a fixed thread
 * count, and each vertex's sum runs in point order.
 */
int grid_backward(const float *gout, const float *xyz, float *ggrid, int64_t N, int X, int Y, int Z, int C,
                  const float *lo, const float *sc, int threads) {
    if (X < 2 || Y < 2 || Z < 2 || C < 1) return 1;
#pragma omp parallel num_threads(threads)
    {
        int t = 0, nt = 1;
#ifdef _OPENMP
        t = omp_get_thread_num();
        nt = omp_get_num_threads();
#endif
        const int x0 = (int)((int64_t)X * t / nt), x1 = (int)((int64_t)X * (t + 1) / nt);
        for (int64_t n = 0; n < N; ++n) {
            int ijk[3];
            float f[3];
            if (!locate(xyz + 3 * n, lo, sc, X, Y, Z, ijk, f)) continue;
            if (ijk[0] + 1 < x0 || ijk[0] >= x1) continue;
            int64_t o[8];
            float w[8];
            corners(ijk, f, Y, Z, o, w);
            const float *g = gout + n * C;
            for (int c = 0; c < 8; ++c) {
                const int xi = ijk[0] + ((c >> 2) & 1);
                if (xi < x0 || xi >= x1) continue;
                float *d = ggrid + o[c] * C;
                const float wc = w[c];
                for (int ch = 0; ch < C; ++ch) d[ch] += wc * g[ch];
            }
        }
    }
    return 0;
}

/* Second pass of a marcher: sample n of ray r (distance t, lattice index s) into the [R, Smax] outputs. */
INL void emit(int64_t r, int32_t n, int Smax, float t, int32_t s, float *t_out, int32_t *s_out, uint8_t *valid_out) {
    if (t_out == NULL || n >= Smax) return;
    t_out[r * Smax + n] = t;
    s_out[r * Smax + n] = s;
    valid_out[r * Smax + n] = 1;
}

/* Slab test: entry and exit distance of the ray o + t d with the box [lo, hi] (exit <= entry: a miss). */
INL void ray_box(const float *o, const float *d, const float *lo, const float *hi, float *t_in, float *t_ex) {
    float near = -INFINITY, far = INFINITY;
    for (int a = 0; a < 3; ++a) {
        const float dd = fabsf(d[a]) < 1e-9f ? 1e-9f : d[a];
        const float inv = 1.0f / dd;
        const float t0 = (lo[a] - o[a]) * inv, t1 = (hi[a] - o[a]) * inv;
        const float tmin = t0 < t1 ? t0 : t1, tmax = t0 > t1 ? t0 : t1;
        if (tmin > near) near = tmin;
        if (tmax < far) far = tmax;
    }
    *t_in = near;
    *t_ex = far;
}

/* Occupancy look-ups of the marchers. The cache [X, Y, Z] is cut into blocks of SKIP^3 vertices and stored
 * block by block (occupancy_blocks: "bricks", SKIP^3 bytes each, x, y, z inside), so the samples of a ray
 * read a few neighbouring cache lines instead of one line per sample (a 160^3 cache is 4 MB, past L2).
 * blk[b] = 1 when a vertex of block b or of the one-vertex shell around it is set; blk = 0 answers "unset"
 * without touching the bricks.
 *
 * Empty-space skipping, exact: when a sample's nearest vertex lies in a block with blk = 0, the marcher jumps
 * to the first lattice step at or past the ray's exit from the block's cells (the points whose continuous
 * index u rounds into the block). Every step it jumps over has its u inside those cells up to float error
 * (~1e-4 vertex), far below the half vertex the shell allows, so it rounds to an unset vertex: the kept
 * samples are those of the step-by-step loop, bit for bit. */
#define SKIP 8
#define BRICK (SKIP * SKIP * SKIP)

INL int64_t block_of(const int *iv, const int *nb) {
    return ((int64_t)(iv[0] / SKIP) * nb[1] + iv[1] / SKIP) * nb[2] + iv[2] / SKIP;
}

INL int64_t in_brick(const int *iv) { return (iv[0] % SKIP * SKIP + iv[1] % SKIP) * SKIP + iv[2] % SKIP; }

/* Whether vertex iv is set; *empty_block = 1 when its whole block (and shell) is unset, the marchers' cue to skip. */
INL int vertex_set(const uint8_t *bricks, const uint8_t *blk, const int *iv, const int *nb, int *empty_block) {
    const int64_t bi = block_of(iv, nb);
    *empty_block = !blk[bi];
    return !*empty_block && bricks[bi * BRICK + in_brick(iv)];
}

int occupancy_blocks(const uint8_t *occ, int X, int Y, int Z, uint8_t *blk, uint8_t *bricks) {
    const int nb[3] = {(X + SKIP - 1) / SKIP, (Y + SKIP - 1) / SKIP, (Z + SKIP - 1) / SKIP};
    const int64_t nblk = (int64_t)nb[0] * nb[1] * nb[2];
    memset(blk, 0, (size_t)nblk);
    memset(bricks, 0, (size_t)(nblk * BRICK));
    for (int x = 0; x < X; ++x)
        for (int y = 0; y < Y; ++y)
            for (int z = 0; z < Z; ++z) {
                if (!occ[((int64_t)x * Y + y) * Z + z]) continue;
                const int v[3] = {x, y, z};
                bricks[block_of(v, nb) * BRICK + in_brick(v)] = 1;
                int b0[3], b1[3]; /* blocks whose vertices + shell [SKIP b - 1, SKIP b + SKIP] hold v */
                for (int a = 0; a < 3; ++a) {
                    b0[a] = v[a] >= 1 ? (v[a] - 1) / SKIP : 0;
                    b1[a] = (v[a] + 1) / SKIP < nb[a] ? (v[a] + 1) / SKIP : nb[a] - 1;
                }
                for (int i = b0[0]; i <= b1[0]; ++i)
                    for (int j = b0[1]; j <= b1[1]; ++j)
                        for (int k = b0[2]; k <= b1[2]; ++k) blk[((int64_t)i * nb[1] + j) * nb[2] + k] = 1;
            }
    return 0;
}

/* The distance t + dt at which a ray at continuous index u (moving du per unit t) leaves the cells of the block
 * of its nearest vertex iv, as a lattice step: the first s with t0 + step * s at or past it (capped at S). */
INL int skip_to(const float *u, const float *du, const int *iv, float t, float t0, float step, int S) {
    float dt = INFINITY;
    for (int a = 0; a < 3; ++a) {
        const float b0 = (float)(iv[a] / SKIP * SKIP) - 0.5f, b1 = b0 + (float)SKIP;
        const float e = du[a] > 0.0f ? (b1 - u[a]) / du[a] : (du[a] < 0.0f ? (b0 - u[a]) / du[a] : INFINITY);
        if (e < dt) dt = e;
    }
    const float k = ceilf((t + dt - t0) / step);
    return k < (float)S ? (int)k : S;
}

/* Ray marching through the scene box with an optional occupancy cache, keeping only the samples that
 * can matter: for ray r the uniform samples t_s = near_r + step * s (s = 0 .. S-1) with t_s < far_r, whose
 * nearest occupancy vertex is set. The arithmetic (float32, same operation order) is that of the torch
 * path in ../model.py, so both keep exactly the same samples.
 *
 * counts[r] = number of kept samples. When t_out is not NULL, also writes each ray's kept samples packed
 * from column 0 of a [R, Smax] layout: t_out (distance), s_out (original sample index s), valid_out (1);
 * columns past counts[r] are left untouched (the caller zero-fills them).
 */
int march(const float *o, const float *d, int64_t R, const float *lo, const float *hi, float step, float near_plane,
          int S, const uint8_t *occ, const uint8_t *blk, int skip, int X, int Y, int Z, int32_t *counts,
          int Smax, float *t_out, int32_t *s_out, uint8_t *valid_out, int threads) {
    const float ext[3] = {hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]};
    const int res[3] = {X, Y, Z};
    const int nb[3] = {(X + SKIP - 1) / SKIP, (Y + SKIP - 1) / SKIP, (Z + SKIP - 1) / SKIP};
#pragma omp parallel for schedule(dynamic, 64) num_threads(threads)
    for (int64_t r = 0; r < R; ++r) {
        const float *orr = o + 3 * r, *dr = d + 3 * r;
        float near, far;
        ray_box(orr, dr, lo, hi, &near, &far);
        if (near < near_plane) near = near_plane;
        int32_t n = 0;
        float du[3];
        for (int a = 0; a < 3; ++a) du[a] = dr[a] / ext[a] * (float)(res[a] - 1);
        if (far > near) {
            for (int s = 0; s < S; ++s) {
                const float t = near + step * (float)s;
                if (!(t < far)) break;
                if (occ != NULL) {
                    float u[3];
                    int iv[3];
                    for (int a = 0; a < 3; ++a) {
                        const float x = orr[a] + dr[a] * t;
                        u[a] = (x - lo[a]) / ext[a] * (float)(res[a] - 1);
                        const float v = nearbyintf(u[a]);
                        iv[a] = v < 0.0f ? 0 : (v > (float)(res[a] - 1) ? res[a] - 1 : (int)v);
                    }
                    int empty;
                    if (!vertex_set(occ, blk, iv, nb, &empty)) {
                        if (skip && empty) {
                            const int next = skip_to(u, du, iv, t, near, step, S);
                            if (next > s + 1) s = next - 1; /* the steps between are empty */
                        }
                        continue;
                    }
                }
                emit(r, n++, Smax, t, s, t_out, s_out, valid_out);
            }
        }
        counts[r] = n;
    }
    return 0;
}

/* Contracted space (../contraction.py): the inner box [lo, hi] (centre c, half size h) stays as it is, and a
 * box-normalized point u = (x - c) / h with n = |u|_inf > 1 maps to (1 + b - b / n) u / n, so all of space
 * fits in |u|_inf < 1 + b. Nearest vertex of that point in an occupancy cache over the contracted box. */
INL void contracted_vertex(const float *x, const float *c, const float *h, float b, const int *res, float *w,
                           int *iv) {
    float u[3], n = 0.0f;
    for (int a = 0; a < 3; ++a) {
        u[a] = (x[a] - c[a]) / h[a];
        const float m = fabsf(u[a]);
        if (m > n) n = m;
    }
    const float sc = n > 1.0f ? (1.0f + b - b / n) / n : 1.0f;
    for (int a = 0; a < 3; ++a) {
        w[a] = (u[a] * sc + (1.0f + b)) / (2.0f * (1.0f + b)) * (float)(res[a] - 1);
        const float v = nearbyintf(w[a]);
        iv[a] = v < 0.0f ? 0 : (v > (float)(res[a] - 1) ? res[a] - 1 : (int)v);
    }
}

/* Ray marching in the contracted space, same outputs as march(): inner samples t = t0 + step * s while
 * t < t_exit of the inner box (t0 = max(t_entry, near_plane), s < Si), then outer samples t_e / (1 - k q),
 * k < So (t_e = t_exit, or near_plane when the ray misses the inner box); the lattice index of an outer
 * sample is (inner samples of the ray) + k. The torch reference is contraction.contracted_lattice. */
int march_contracted(const float *o, const float *d, int64_t R, const float *lo, const float *hi, float b,
                     float step, float near_plane, int Si, int So, float q, const uint8_t *occ, const uint8_t *blk,
                     int skip, int X, int Y, int Z, int32_t *counts, int Smax, float *t_out, int32_t *s_out,
                     uint8_t *valid_out, int threads) {
    const float c[3] = {(lo[0] + hi[0]) * 0.5f, (lo[1] + hi[1]) * 0.5f, (lo[2] + hi[2]) * 0.5f};
    const float h[3] = {(hi[0] - lo[0]) * 0.5f, (hi[1] - lo[1]) * 0.5f, (hi[2] - lo[2]) * 0.5f};
    const int res[3] = {X, Y, Z};
    const int nb[3] = {(X + SKIP - 1) / SKIP, (Y + SKIP - 1) / SKIP, (Z + SKIP - 1) / SKIP};
#pragma omp parallel for schedule(dynamic, 64) num_threads(threads)
    for (int64_t r = 0; r < R; ++r) {
        const float *orr = o + 3 * r, *dr = d + 3 * r;
        float t_in, t_ex;
        ray_box(orr, dr, lo, hi, &t_in, &t_ex);
        const int hit = t_ex > t_in;
        const float t0 = t_in > near_plane ? t_in : near_plane;
        int32_t n = 0, n_in = 0;
        float dw[3]; /* inside the inner box the contracted index is linear in t */
        for (int a = 0; a < 3; ++a) dw[a] = dr[a] / h[a] / (2.0f * (1.0f + b)) * (float)(res[a] - 1);
        for (int s = 0; s < Si; ++s) {
            const float t = t0 + step * (float)s;
            if (!(hit && t < t_ex)) break;
            ++n_in;
            if (occ != NULL) {
                const float x[3] = {orr[0] + dr[0] * t, orr[1] + dr[1] * t, orr[2] + dr[2] * t};
                float w[3];
                int iv[3];
                contracted_vertex(x, c, h, b, res, w, iv);
                int empty;
                if (!vertex_set(occ, blk, iv, nb, &empty)) {
                    if (skip && empty) {
                        const int next = skip_to(w, dw, iv, t, t0, step, Si);
                        int out = 0; /* the jumped steps still count as inner lattice steps while t < t_ex */
                        for (int s2 = s + 1; s2 < next; ++s2) {
                            if (!(t0 + step * (float)s2 < t_ex)) { out = 1; break; }
                            ++n_in;
                        }
                        if (out) break;
                        if (next > s + 1) s = next - 1;
                    }
                    continue;
                }
            }
            emit(r, n++, Smax, t, s, t_out, s_out, valid_out);
        }
        const float te = (hit && t_ex > near_plane) ? t_ex : near_plane;
        for (int k = 0; k < So; ++k) {
            const float t = te / (1.0f - (float)k * q);
            if (occ != NULL) {
                const float x[3] = {orr[0] + dr[0] * t, orr[1] + dr[1] * t, orr[2] + dr[2] * t};
                float w[3];
                int iv[3];
                contracted_vertex(x, c, h, b, res, w, iv);
                int empty;
                if (!vertex_set(occ, blk, iv, nb, &empty)) continue;
            }
            emit(r, n++, Smax, t, n_in + k, t_out, s_out, valid_out);
        }
        counts[r] = n;
    }
    return 0;
}
