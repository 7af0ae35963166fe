// Bias + activation + residual + LayerNorm, one row per block:
//   out[r] = LayerNorm(act(x[r] + bias) + residual[r]) * gamma + beta
// bias, residual and the activation are each optional. BertSelfOutput / BertOutput use
// bias + residual (act = none); the MLM transform uses bias + activation (no residual).
// `out` may be `x` or `residual` (the row is read in full before it is written).
//
// Launch: grid = rows, block = any multiple of 32 threads (the launcher gives one 16-byte
// pack of the row to each thread: 32 to 256), dynamic shared memory = width * 4 bytes.

#include "norm.cuh"

namespace bertrt {

template <typename T>
struct LayerNormArgs {
    const T* x;         // [rows, width]
    const T* bias;      // [width] or null
    const T* residual;  // [rows, width] or null
    const T* gamma;     // [width]
    const T* beta;      // [width]
    T* out;             // [rows, width]
    int rows;
    int width;
    int act;  // Act code, applied after the bias and before the residual
    float eps;
};

template <typename T>
__device__ void layernorm(const LayerNormArgs<T>& a) {
    BERTRT_DYNAMIC_SMEM(smem);
    float* row = reinterpret_cast<float*>(smem);
    const size_t base = static_cast<size_t>(blockIdx.x) * a.width;
    const T* x = a.x + base;
    const T* res = a.residual ? a.residual + base : nullptr;
    float partial = 0.0f;
    constexpr int N = Pack<T>::N;
    if (a.width % N == 0) {
        for (int c = threadIdx.x * N; c < a.width; c += blockDim.x * N) {
            float v[N], bias[N], r[N];
            unpack(load_pack(x + c), v);
            if (a.bias) {
                unpack(load_pack(a.bias + c), bias);
            } else {
                for (int e = 0; e < N; ++e) bias[e] = 0.0f;
            }
            if (res) {
                unpack(load_pack(res + c), r);
            } else {
                for (int e = 0; e < N; ++e) r[e] = 0.0f;
            }
            for (int e = 0; e < N; ++e) {
                const float y = activate(a.act, v[e] + bias[e]) + r[e];
                row[c + e] = y;
                partial += y;
            }
        }
    } else {
        for (int c = threadIdx.x; c < a.width; c += blockDim.x) {
            float y = to_f32(x[c]);
            if (a.bias) y += to_f32(a.bias[c]);
            y = activate(a.act, y);
            if (res) y += to_f32(res[c]);
            row[c] = y;
            partial += y;
        }
    }
    layernorm_tail(row, a.width, partial, a.gamma, a.beta, a.eps, a.out + base);
}

}  // namespace bertrt

BERTRT_ENTRY(layernorm_f32, bertrt::layernorm<float>, bertrt::LayerNormArgs<float>)
BERTRT_ENTRY(layernorm_f16, bertrt::layernorm<half>, bertrt::LayerNormArgs<half>)
