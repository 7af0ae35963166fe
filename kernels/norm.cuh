// The LayerNorm tail shared by the embeddings and layernorm kernels: the row to normalise
// is already in shared memory as f32, `partial` is this thread's sum of its elements.

#pragma once

#include "common.cuh"

namespace bertrt {

// Normalises `row` (width f32 values in shared memory, written by this block before the
// call) with biased variance, two passes over the cached row, and writes
// gamma * (x - mean) / sqrt(var + eps) + beta to `out` as T.
template <typename T>
__device__ __forceinline__ void layernorm_tail(const float* row, int width, float partial, const T* gamma,
                                               const T* beta, float eps, T* out) {
    const float mean = block_sum(partial) / static_cast<float>(width);  // syncs: `row` is complete
    float sq = 0.0f;
    for (int c = threadIdx.x; c < width; c += blockDim.x) {
        const float d = row[c] - mean;
        sq += d * d;
    }
    const float inv = rsqrtf(block_sum(sq) / static_cast<float>(width) + eps);
    constexpr int N = Pack<T>::N;
    if (width % N == 0) {
        for (int c = threadIdx.x * N; c < width; c += blockDim.x * N) {
            float g[N], bt[N], y[N];
            unpack(load_pack(gamma + c), g);
            unpack(load_pack(beta + c), bt);
            for (int e = 0; e < N; ++e) y[e] = (row[c + e] - mean) * inv * g[e] + bt[e];
            store_pack(out + c, pack_from<T>(y));
        }
    } else {
        for (int c = threadIdx.x; c < width; c += blockDim.x)
            out[c] = from_f32<T>((row[c] - mean) * inv * to_f32(gamma[c]) + to_f32(beta[c]));
    }
}

}  // namespace bertrt
