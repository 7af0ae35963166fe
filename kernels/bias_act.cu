// Bias + activation over a row-major [rows, n] buffer: out = act(x + bias).
// The GEMM epilogue of the intermediate (feed-forward) layer and of the pooler dense.
// `out` may be `x`.
//
// Launch: block = 256 threads, grid = min(ceil(rows * n / (256 * 16 / sizeof(T))), 1024)
// blocks; a grid-stride loop covers the rest. No shared memory.

#include "common.cuh"

namespace bertrt {

template <typename T>
struct BiasActArgs {
    const T* x;     // [rows, n]
    const T* bias;  // [n] or null
    T* out;         // [rows, n]
    int rows;
    int n;
    int act;  // Act code
};

template <typename T>
__device__ void bias_act(const BiasActArgs<T>& a) {
    const size_t total = static_cast<size_t>(a.rows) * a.n;
    const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
    const size_t first = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    constexpr int N = Pack<T>::N;
    if (a.n % N == 0) {
        for (size_t p = first; p * N < total; p += stride) {
            const size_t i = p * N;
            const int col = static_cast<int>(i % a.n);
            float v[N], bias[N];
            unpack(load_pack(a.x + i), v);
            if (a.bias) {
                unpack(load_pack(a.bias + col), bias);
            } else {
                for (int e = 0; e < N; ++e) bias[e] = 0.0f;
            }
            for (int e = 0; e < N; ++e) v[e] = activate(a.act, v[e] + bias[e]);
            store_pack(a.out + i, pack_from<T>(v));
        }
    } else {
        for (size_t i = first; i < total; i += stride) {
            float v = to_f32(a.x[i]);
            if (a.bias) v += to_f32(a.bias[i % a.n]);
            a.out[i] = from_f32<T>(activate(a.act, v));
        }
    }
}

}  // namespace bertrt

BERTRT_ENTRY(bias_act_f32, bertrt::bias_act<float>, bertrt::BiasActArgs<float>)
BERTRT_ENTRY(bias_act_f16, bertrt::bias_act<half>, bertrt::BiasActArgs<half>)
