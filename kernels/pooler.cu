// Pooler gather: each sequence's first (CLS) row of the packed hidden states,
// out[b] = x[cu_seqlens[b]]. BertPooler's dense GEMM then reads the [batch, hidden] rows,
// and bias_act adds its bias and tanh.
//
// Launch: grid = batch, block = 128 threads. No shared memory.

#include "common.cuh"

namespace bertrt {

template <typename T>
struct GatherClsArgs {
    const T* x;              // [tokens, width]
    const int* cu_seqlens;   // [batch + 1]
    T* out;                  // [batch, width]
    int batch;
    int width;
};

template <typename T>
__device__ void gather_cls(const GatherClsArgs<T>& a) {
    const int b = blockIdx.x;
    const T* src = a.x + static_cast<size_t>(a.cu_seqlens[b]) * a.width;
    T* dst = a.out + static_cast<size_t>(b) * a.width;
    for (int c = threadIdx.x; c < a.width; c += blockDim.x) dst[c] = src[c];
}

}  // namespace bertrt

BERTRT_ENTRY(gather_cls_f32, bertrt::gather_cls<float>, bertrt::GatherClsArgs<float>)
BERTRT_ENTRY(gather_cls_f16, bertrt::gather_cls<half>, bertrt::GatherClsArgs<half>)
