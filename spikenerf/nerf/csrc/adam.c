/* DVGO's masked Adam step over one float32 tensor, in place, on the CPU.
 *
 * Plain C called through ctypes (see ../optim.py), built by spikenerf.snn.fused.build_c_library.
 * Why: a training batch touches a few percent of a voxel grid's vertices, so most gradient entries are 0.
 * Adam would still move those entries (its moments keep pushing a vertex long after the batch that saw it)
 * and would read and write all four tensors; here an entry with g == 0 is skipped: its value and both
 * moments stay as they are, and only the gradient is read for it.
 *
 *   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  p -= step_size m / (sqrt(v) + eps)
 *
 * with step_size = lr sqrt(1 - b2^t) / (1 - b1^t) from the caller (t counts every step of the tensor, DVGO).
 */
#include <math.h>
#include <stdint.h>

int masked_adam(float *p, const float *g, float *m, float *v, int64_t n, float b1, float b2, float step_size,
                float eps, int threads) {
    if (n < 0) return 1;
    const float a1 = 1.0f - b1, a2 = 1.0f - b2;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t i = 0; i < n; ++i) {
        const float gi = g[i];
        if (gi == 0.0f) continue;
        const float mi = b1 * m[i] + a1 * gi;
        const float vi = b2 * v[i] + a2 * (gi * gi);
        m[i] = mi;
        v[i] = vi;
        p[i] -= step_size * (mi / (sqrtf(vi) + eps));
    }
    return 0;
}
