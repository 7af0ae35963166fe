// Host emulation of the CUDA features the kernels use, so that kernels/*.cu compile as
// plain C++20 (g++ 12) and run on the CPU in tests. Used only when BERTRT_HOST is defined;
// nvcc never sees this file.
//
// Model: a launch runs its blocks one after another. Each CUDA thread of a block is one
// std::thread, and all of them run concurrently, so __syncthreads is a real std::barrier
// across the block and warp shuffles are an exchange through a per-warp buffer between two
// warp barriers. `__shared__` variables become function statics: one object per kernel,
// reused by the next block exactly as a real SM would reuse the memory (its contents are
// not cleared between blocks, and dynamic shared memory starts filled with 0xFF bytes so
// that reading it before writing gives NaN). WMMA fragments hold the whole tile in every
// lane and are computed element by element: correctness, not speed.
//
// The runtime half (launch, kernel registry) lives in the test crate's host_runtime.cpp.

#pragma once

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
using uint3 = dim3;

struct alignas(8) float2 {
    float x, y;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};

using __half = _Float16;
using half = _Float16;
struct alignas(4) __half2 {
    __half x, y;
};
using half2 = __half2;

using std::max;
using std::min;

namespace bertrt_host {

constexpr int kWarpSize = 32;

// __syncthreads and __syncwarp: the standard barrier (a mutex + condition variable one
// measured slower here).
using Barrier = std::barrier<>;

// State of the warp a thread belongs to.
struct Warp {
    Barrier* barrier;
    unsigned char (*slots)[8];  // two banks of one 8-byte exchange slot per lane
    int size;                   // lanes in this warp (the last warp may be partial)
};

// Per-thread view of the launch: the CUDA built-ins and the synchronisation objects.
struct ThreadCtx {
    dim3 thread_idx, block_idx, block_dim, grid_dim;
    int lane = 0;
    Barrier* block_barrier = nullptr;
    Warp warp{};
    int bank = 0;  // exchange bank of this lane's next shuffle
    unsigned char* dynamic_smem = nullptr;
};

inline thread_local ThreadCtx tls;

// Called when a kernel breaks a rule the hardware would punish (a shuffle with a partial
// mask, an unaligned fragment pointer): aborts the test process with a message.
[[noreturn]] void fail(const char* what);

inline void warp_sync() { tls.warp.barrier->arrive_and_wait(); }

// One shuffle: publish, wait for the warp, read. Shuffles alternate between two banks
// of slots, so a single barrier suffices: a lane can only write a bank again after the
// next shuffle's barrier, which every lane reaches after reading that bank.
template <typename T>
T exchange(T v, int src_lane) {
    static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes");
    unsigned char(*bank)[8] = tls.warp.slots + tls.bank * kWarpSize;
    tls.bank ^= 1;
    std::memcpy(bank[tls.lane], &v, sizeof(T));
    warp_sync();
    T r = v;
    if (src_lane >= 0 && src_lane < tls.warp.size) {
        std::memcpy(&r, bank[src_lane], sizeof(T));
    }
    return r;
}

inline void check_mask(unsigned mask) {
    unsigned want = tls.warp.size == 32 ? 0xffffffffu : ((1u << tls.warp.size) - 1u);
    if ((mask & want) != want) {
        fail("warp shuffle with a mask that leaves out lanes of the warp");
    }
}

}  // namespace bertrt_host

#define threadIdx (::bertrt_host::tls.thread_idx)
#define blockIdx (::bertrt_host::tls.block_idx)
#define blockDim (::bertrt_host::tls.block_dim)
#define gridDim (::bertrt_host::tls.grid_dim)
#define warpSize 32

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define __shared__ static
// Dynamic shared memory: `BERTRT_DYNAMIC_SMEM(name)` declares `unsigned char* name`.
#define BERTRT_DYNAMIC_SMEM(name) unsigned char* name = ::bertrt_host::tls.dynamic_smem

inline void __syncthreads() { ::bertrt_host::tls.block_barrier->arrive_and_wait(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
    ::bertrt_host::check_mask(mask);
    ::bertrt_host::warp_sync();
}

template <typename T>
T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    ::bertrt_host::check_mask(mask);
    int lane = ::bertrt_host::tls.lane;
    return ::bertrt_host::exchange(v, (lane & ~(width - 1)) + (src & (width - 1)));
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    ::bertrt_host::check_mask(mask);
    int lane = ::bertrt_host::tls.lane;
    int src = lane ^ lane_mask;
    if ((src & ~(width - 1)) != (lane & ~(width - 1))) src = lane;
    return ::bertrt_host::exchange(v, src);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    ::bertrt_host::check_mask(mask);
    int lane = ::bertrt_host::tls.lane;
    int src = lane + static_cast<int>(delta);
    if ((src & ~(width - 1)) != (lane & ~(width - 1))) src = lane;
    return ::bertrt_host::exchange(v, src);
}
template <typename T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    ::bertrt_host::check_mask(mask);
    int lane = ::bertrt_host::tls.lane;
    int src = lane - static_cast<int>(delta);
    if (src < (lane & ~(width - 1))) src = lane;
    return ::bertrt_host::exchange(v, src);
}

// Atomics on global or shared memory.
template <typename T>
T atomicAdd(T* p, T v) {
    return std::atomic_ref<T>(*p).fetch_add(v);
}
template <typename T>
T atomicMax(T* p, T v) {
    std::atomic_ref<T> a(*p);
    T old = a.load();
    while (old < v && !a.compare_exchange_weak(old, v)) {
    }
    return old;
}
template <typename T>
T atomicExch(T* p, T v) {
    return std::atomic_ref<T>(*p).exchange(v);
}
template <typename T>
T atomicCAS(T* p, T expected, T desired) {
    std::atomic_ref<T>(*p).compare_exchange_strong(expected, desired);
    return expected;
}

template <typename T>
T __ldg(const T* p) {
    return *p;
}

// Math intrinsics with their ordinary-precision meaning.
inline float __expf(float x) { return std::exp(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }

// cuda_fp16.h conversions (round to nearest even, as the _rn intrinsics do).
inline float __half2float(__half h) { return static_cast<float>(h); }
inline __half __float2half(float f) { return static_cast<__half>(f); }
inline __half __float2half_rn(float f) { return static_cast<__half>(f); }
inline float2 __half22float2(__half2 h) { return float2{static_cast<float>(h.x), static_cast<float>(h.y)}; }
inline __half2 __floats2half2_rn(float a, float b) { return __half2{static_cast<__half>(a), static_cast<__half>(b)}; }
inline __half2 __halves2half2(__half a, __half b) { return __half2{a, b}; }
inline float __low2float(__half2 h) { return static_cast<float>(h.x); }
inline float __high2float(__half2 h) { return static_cast<float>(h.y); }

// The WMMA fragment API (mma.h), element by element. Every lane holds the whole tile;
// stores are done by lane 0 alone, so a kernel that reads a stored tile from other lanes
// without a __syncwarp between sees a race, as it would on the GPU.
namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K>
struct tile_shape;
template <int M, int N, int K>
struct tile_shape<matrix_a, M, N, K> {
    static constexpr int rows = M, cols = K;
};
template <int M, int N, int K>
struct tile_shape<matrix_b, M, N, K> {
    static constexpr int rows = K, cols = N;
};
template <int M, int N, int K>
struct tile_shape<accumulator, M, N, K> {
    static constexpr int rows = M, cols = N;
};

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
    static constexpr int rows = tile_shape<Use, M, N, K>::rows;
    static constexpr int cols = tile_shape<Use, M, N, K>::cols;
    static constexpr int num_elements = rows * cols;
    T x[num_elements];  // the logical tile, row-major
};

inline void check_aligned(const void* p, unsigned ldm, std::size_t elem) {
    if (reinterpret_cast<std::uintptr_t>(p) % 32 != 0) {
        ::bertrt_host::fail("wmma pointer is not 256-bit aligned");
    }
    if ((ldm * elem) % 16 != 0) {
        ::bertrt_host::fail("wmma leading dimension is not a multiple of 16 bytes");
    }
}

template <typename Use, int M, int N, int K, typename T, typename Layout>
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, T v) {
    for (auto& e : f.x) e = v;
}

template <typename Use, int M, int N, int K, typename T, typename Layout>
void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const T* p, unsigned ldm) {
    using F = fragment<Use, M, N, K, T, Layout>;
    check_aligned(p, ldm, sizeof(T));
    constexpr bool col = std::is_same_v<Layout, col_major>;
    for (int r = 0; r < F::rows; ++r)
        for (int c = 0; c < F::cols; ++c)
            f.x[r * F::cols + c] = col ? p[c * ldm + r] : p[r * ldm + c];
}

template <int M, int N, int K, typename T>
void load_matrix_sync(fragment<accumulator, M, N, K, T>& f, const T* p, unsigned ldm, layout_t l) {
    check_aligned(p, ldm, sizeof(T));
    for (int r = 0; r < M; ++r)
        for (int c = 0; c < N; ++c)
            f.x[r * N + c] = l == mem_col_major ? p[c * ldm + r] : p[r * ldm + c];
}

template <int M, int N, int K, typename T>
void store_matrix_sync(T* p, const fragment<accumulator, M, N, K, T>& f, unsigned ldm, layout_t l) {
    check_aligned(p, ldm, sizeof(T));
    if (::bertrt_host::tls.lane != 0) return;
    for (int r = 0; r < M; ++r)
        for (int c = 0; c < N; ++c) (l == mem_col_major ? p[c * ldm + r] : p[r * ldm + c]) = f.x[r * N + c];
}

// d = a * b + c, products and sums in f32 as the tensor cores accumulate.
template <int M, int N, int K, typename TA, typename LA, typename LB, typename TC>
void mma_sync(fragment<accumulator, M, N, K, TC>& d, const fragment<matrix_a, M, N, K, TA, LA>& a,
              const fragment<matrix_b, M, N, K, TA, LB>& b, const fragment<accumulator, M, N, K, TC>& c) {
    float fa[M * K], fbt[N * K];  // b transposed, so both operands are read along k
    for (int i = 0; i < M * K; ++i) fa[i] = static_cast<float>(a.x[i]);
    for (int k = 0; k < K; ++k)
        for (int n = 0; n < N; ++n) fbt[n * K + k] = static_cast<float>(b.x[k * N + n]);
    TC out[M * N];
    for (int m = 0; m < M; ++m)
        for (int n = 0; n < N; ++n) {
            float acc = static_cast<float>(c.x[m * N + n]);
            for (int k = 0; k < K; ++k) acc += fa[m * K + k] * fbt[n * K + k];
            out[m * N + n] = static_cast<TC>(acc);
        }
    std::memcpy(d.x, out, sizeof(out));
}

}  // namespace wmma
}  // namespace nvcuda

// Entry points: each `BERTRT_ENTRY` registers its thunk so the test runtime can launch it
// by name and report which kernels exist.
namespace bertrt_host {
using Thunk = void (*)(const void* args);
struct Registrar {
    Registrar(const char* name, Thunk thunk, std::size_t args_size);
};
}  // namespace bertrt_host

#define BERTRT_ENTRY(name, impl, Args)                                                        \
    extern "C" void name(Args a) { impl(a); }                                                 \
    static void name##_thunk(const void* p) { name(*static_cast<const Args*>(p)); }           \
    static ::bertrt_host::Registrar name##_registrar(#name, name##_thunk, sizeof(Args));
