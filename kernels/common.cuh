// Shared helpers of the bertrt kernels: element conversion, 16-byte vector IO, warp and
// block reductions, activations, and the head layouts of the attention buffers.
//
// Every kernel is a template over its storage type T (float or half); arithmetic and
// accumulation are always f32. Each entry point is one BERTRT_ENTRY line that names the
// template instantiation it runs and takes one argument struct, so the Rust launcher and
// the host test harness pass arguments the same way.

#pragma once

#ifdef BERTRT_HOST
#include "host/cuda_host.h"
#else
#include <cuda_fp16.h>
#include <mma.h>

#define BERTRT_DYNAMIC_SMEM(name)                     \
    extern __shared__ __align__(128) unsigned char bertrt_dynamic_smem_[]; \
    unsigned char* name = bertrt_dynamic_smem_
#define BERTRT_ENTRY(name, impl, Args) \
    extern "C" __global__ void name(Args a) { impl(a); }
#endif

namespace bertrt {

constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;

// ---- element conversion ------------------------------------------------------------

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(half v) { return __half2float(v); }

template <typename T>
struct Convert;
template <>
struct Convert<float> {
    static __device__ __forceinline__ float from(float v) { return v; }
};
template <>
struct Convert<half> {
    static __device__ __forceinline__ half from(float v) { return __float2half_rn(v); }
};
template <typename T>
__device__ __forceinline__ T from_f32(float v) {
    return Convert<T>::from(v);
}

// ---- 16-byte vector IO ---------------------------------------------------------------
//
// A Pack is 16 bytes of T (4 floats or 8 halves) moved with one 128-bit load or store.
// Callers use it only where the address is 16-byte aligned: buffers come from cudaMalloc
// and a row of `width` elements starts aligned when width * sizeof(T) % 16 == 0.

template <typename T>
struct __align__(16) Pack {
    static constexpr int N = 16 / sizeof(T);
    T v[N];
};

template <typename T>
__device__ __forceinline__ Pack<T> load_pack(const T* p) {
    Pack<T> r;
#ifdef BERTRT_HOST
    std::memcpy(&r, p, sizeof(r));
#else
    *reinterpret_cast<uint4*>(&r) = *reinterpret_cast<const uint4*>(p);
#endif
    return r;
}

template <typename T>
__device__ __forceinline__ void store_pack(T* p, const Pack<T>& r) {
#ifdef BERTRT_HOST
    std::memcpy(p, &r, sizeof(r));
#else
    *reinterpret_cast<uint4*>(p) = *reinterpret_cast<const uint4*>(&r);
#endif
}

// Widens a pack to f32; halves go two at a time through half2.
template <typename T>
__device__ __forceinline__ void unpack(const Pack<T>& p, float* out) {
    if constexpr (sizeof(T) == 2) {
        for (int i = 0; i < Pack<T>::N; i += 2) {
            float2 f = __half22float2(__halves2half2(p.v[i], p.v[i + 1]));
            out[i] = f.x;
            out[i + 1] = f.y;
        }
    } else {
        for (int i = 0; i < Pack<T>::N; ++i) out[i] = to_f32(p.v[i]);
    }
}

template <typename T>
__device__ __forceinline__ Pack<T> pack_from(const float* in) {
    Pack<T> p;
    if constexpr (sizeof(T) == 2) {
        for (int i = 0; i < Pack<T>::N; i += 2) {
            half2 h = __floats2half2_rn(in[i], in[i + 1]);
            p.v[i] = h.x;
            p.v[i + 1] = h.y;
        }
    } else {
        for (int i = 0; i < Pack<T>::N; ++i) p.v[i] = from_f32<T>(in[i]);
    }
    return p;
}

// ---- reductions ----------------------------------------------------------------------
//
// All lanes of the warp (all threads of the block) must call these; every caller gets
// the result. Block reductions need blockDim.x to be a multiple of 32 (at most 1024).

__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = kWarp / 2; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int offset = kWarp / 2; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
    return v;
}

__device__ __forceinline__ float block_sum(float v) {
    __shared__ float partial[kWarp];
    const int lane = threadIdx.x % kWarp;
    const int warp = threadIdx.x / kWarp;
    const int warps = (blockDim.x + kWarp - 1) / kWarp;
    v = warp_sum(v);
    __syncthreads();  // the previous call's readers are done with `partial`
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    v = lane < warps ? partial[lane] : 0.0f;
    return warp_sum(v);
}

// ---- activations ---------------------------------------------------------------------
//
// Codes match bertrt::config::Activation, with 0 for none. GELU is BERT's exact erf form;
// GELU_TANH is the approximation of gelu_new / gelu_pytorch_tanh / gelu_fast.

enum Act : int { ACT_NONE = 0, ACT_GELU = 1, ACT_GELU_TANH = 2, ACT_RELU = 3, ACT_SILU = 4, ACT_TANH = 5 };

__device__ __forceinline__ float activate(int act, float x) {
    switch (act) {
        case ACT_GELU:
            return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
        case ACT_GELU_TANH:
            return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
        case ACT_RELU:
            return fmaxf(x, 0.0f);
        case ACT_SILU:
            return x / (1.0f + expf(-x));
        case ACT_TANH:
            return tanhf(x);
        default:
            return x;
    }
}

// ---- head layouts ----------------------------------------------------------------------
//
// Per-head Q, K, V buffers come in two layouts:
//   padded: [batch, heads, max_len, head_dim], rows past a sequence's end are zero;
//   packed: [heads, total_tokens, head_dim], sequence b owning rows cu_seqlens[b]..[b+1].
// Both give row i of head h of sequence b at a fixed offset; the kernels only use this.

struct HeadLayout {
    const int* cu_seqlens;
    int heads, head_dim, max_len, total_tokens, packed;

    __device__ __forceinline__ size_t row(int b, int h, int i) const {
        return packed ? (static_cast<size_t>(h) * total_tokens + cu_seqlens[b] + i) * head_dim
                      : ((static_cast<size_t>(b) * heads + h) * max_len + i) * head_dim;
    }
};

}  // namespace bertrt
