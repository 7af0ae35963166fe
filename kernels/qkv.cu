// QKV epilogue: adds the fused [3 * hidden] bias to the packed [tokens, 3 * hidden] output
// of the QKV GEMM and splits it into per-head Q, K and V buffers, in the padded
// [batch, heads, max_len, head_dim] layout (padding rows written as zeros) or the packed
// [heads, tokens, head_dim] one (see HeadLayout in common.cuh). K and V go through their
// own layout at a row offset: the same as Q's at offset 0 without a key/value cache, the
// padded cache [batch, heads, capacity, head_dim] at offset `past` with one (appending
// this step's keys and values).
//
// Launch: grid = (max_len, batch), block = 128 threads. No shared memory.

#include "common.cuh"

namespace bertrt {

template <typename T>
struct QkvSplitArgs {
    const T* qkv;   // [tokens, 3 * hidden]: Q | K | V, heads contiguous inside each
    const T* bias;  // [3 * hidden] or null
    T* q;
    T* k;
    T* v;
    HeadLayout layout;     // of q
    HeadLayout kv_layout;  // of k and v
    int kv_offset;         // row of token 0 in k and v (the cache's length)
};

// Copies this thread's columns of one token row, STEP elements at a time (a whole pack,
// which never straddles two heads when head_dim is a multiple of it, or one element).
template <int STEP, typename T>
__device__ __forceinline__ void qkv_split_row(const QkvSplitArgs<T>& a, int b, int i, bool valid) {
    const HeadLayout& L = a.layout;
    const int hidden = L.heads * L.head_dim;
    const int width = 3 * hidden;
    const T* src = a.qkv + static_cast<size_t>(L.cu_seqlens[b] + i) * width;
    for (int c = threadIdx.x * STEP; c < width; c += blockDim.x * STEP) {
        const int which = c / hidden;
        const int h = (c % hidden) / L.head_dim;
        const int d = c % L.head_dim;
        T* out = which == 0 ? a.q + L.row(b, h, i) + d
                            : (which == 1 ? a.k : a.v) + a.kv_layout.row(b, h, a.kv_offset + i) + d;
        if constexpr (STEP == 1) {
            float v = 0.0f;
            if (valid) v = to_f32(src[c]) + (a.bias ? to_f32(a.bias[c]) : 0.0f);
            *out = from_f32<T>(v);
        } else {
            float v[STEP], bias[STEP];
            for (int e = 0; e < STEP; ++e) v[e] = bias[e] = 0.0f;
            if (valid) {
                unpack(load_pack(src + c), v);
                if (a.bias) unpack(load_pack(a.bias + c), bias);
            }
            for (int e = 0; e < STEP; ++e) v[e] += bias[e];
            store_pack(out, pack_from<T>(v));
        }
    }
}

template <typename T>
__device__ void qkv_split(const QkvSplitArgs<T>& a) {
    const HeadLayout& L = a.layout;
    const int i = blockIdx.x;
    const int b = blockIdx.y;
    const int len = L.cu_seqlens[b + 1] - L.cu_seqlens[b];
    if (i >= len && L.packed) return;
    if (L.head_dim % Pack<T>::N == 0) {
        qkv_split_row<Pack<T>::N>(a, b, i, i < len);
    } else {
        qkv_split_row<1>(a, b, i, i < len);
    }
}

}  // namespace bertrt

BERTRT_ENTRY(qkv_split_f32, bertrt::qkv_split<float>, bertrt::QkvSplitArgs<float>)
BERTRT_ENTRY(qkv_split_f16, bertrt::qkv_split<half>, bertrt::QkvSplitArgs<half>)
