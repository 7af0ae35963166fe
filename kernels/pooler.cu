// Pooler: gathers each sequence's first (CLS) row from the packed hidden states, with an
// optional bias and activation: out[b] = act(x[cu_seqlens[b]] + bias).
// BertPooler runs it twice around its dense GEMM: gather only (bias null, act none) to
// make the GEMM's [batch, hidden] input, then bias + tanh on the GEMM's output through
// bias_act. With a GEMM over all tokens, one call (bias, tanh) does both.
//
// Launch: grid = batch, block = 128 threads. No shared memory.

#include "common.cuh"

namespace bertrt {

template <typename T>
struct GatherClsArgs {
    const T* x;              // [tokens, width]
    const int* cu_seqlens;   // [batch + 1]
    const T* bias;           // [width] or null
    T* out;                  // [batch, width]
    int batch;
    int width;
    int act;  // Act code
};

template <typename T>
__device__ void gather_cls(const GatherClsArgs<T>& a) {
    const int b = blockIdx.x;
    const T* src = a.x + static_cast<size_t>(a.cu_seqlens[b]) * a.width;
    T* dst = a.out + static_cast<size_t>(b) * a.width;
    for (int c = threadIdx.x; c < a.width; c += blockDim.x) {
        float v = to_f32(src[c]);
        if (a.bias) v += to_f32(a.bias[c]);
        dst[c] = from_f32<T>(activate(a.act, v));
    }
}

}  // namespace bertrt

BERTRT_ENTRY(gather_cls_f32, bertrt::gather_cls<float>, bertrt::GatherClsArgs<float>)
BERTRT_ENTRY(gather_cls_f16, bertrt::gather_cls<half>, bertrt::GatherClsArgs<half>)
