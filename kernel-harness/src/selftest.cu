// Kernels that test the host emulation itself (shuffles, barriers, shared memory, atomics,
// WMMA layouts) against values computed independently in Rust. Compiled only by the
// harness; nvcc never sees this file. Their names start with `harness_`.

#include "common.cuh"

namespace selftest {

struct ShuffleArgs {
    int* out;  // [threads, 8]
};

// Each lane publishes 100 * warp + lane and records what eight shuffles return.
__device__ void shuffles(const ShuffleArgs& a) {
    const int tid = threadIdx.x;
    const int v = 100 * (tid / 32) + tid % 32;
    int* o = a.out + tid * 8;
    o[0] = __shfl_xor_sync(0xffffffffu, v, 1);
    o[1] = __shfl_xor_sync(0xffffffffu, v, 16);
    o[2] = __shfl_down_sync(0xffffffffu, v, 3);
    o[3] = __shfl_up_sync(0xffffffffu, v, 2);
    o[4] = __shfl_sync(0xffffffffu, v, 5);
    o[5] = __shfl_sync(0xffffffffu, v, 7, 16);
    o[6] = __shfl_down_sync(0xffffffffu, v, 4, 8);
    o[7] = static_cast<int>(bertrt::warp_sum(static_cast<float>(v)));
}

struct BlockArgs {
    float* out;  // [blocks, threads + 2]
};

// Static shared memory with an atomic sum, dynamic shared memory reversed across threads,
// and block_sum, for each block.
__device__ void block(const BlockArgs& a) {
    __shared__ int total;
    BERTRT_DYNAMIC_SMEM(smem);
    float* buf = reinterpret_cast<float*>(smem);
    const int tid = threadIdx.x;
    const int n = blockDim.x;
    if (tid == 0) total = 0;
    __syncthreads();
    atomicAdd(&total, tid + static_cast<int>(blockIdx.x));
    buf[tid] = static_cast<float>(tid * 3 + blockIdx.x);
    __syncthreads();
    float* o = a.out + blockIdx.x * (n + 2);
    o[tid] = buf[n - 1 - tid];
    const float s = bertrt::block_sum(static_cast<float>(tid));
    if (tid == 0) {
        o[n] = static_cast<float>(total);
        o[n + 1] = s;
    }
}

struct WmmaArgs {
    const half* a;   // [16, 16] row-major
    const half* b;   // [16, 16] row-major
    float* c_row;    // [16, 16]: a * b, b loaded row-major, stored row-major
    float* c_col;    // [16, 16]: a * bᵀ (b read as col-major), stored col-major
};

__device__ void wmma_layouts(const WmmaArgs& args) {
    using namespace nvcuda;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, half, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, half, wmma::row_major> fb;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, half, wmma::col_major> fbt;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::load_matrix_sync(fa, args.a, 16);
    wmma::load_matrix_sync(fb, args.b, 16);
    wmma::load_matrix_sync(fbt, args.b, 16);
    wmma::fill_fragment(acc, 0.0f);
    wmma::mma_sync(acc, fa, fb, acc);
    wmma::store_matrix_sync(args.c_row, acc, 16, wmma::mem_row_major);
    wmma::fill_fragment(acc, 1.0f);
    wmma::mma_sync(acc, fa, fbt, acc);
    wmma::store_matrix_sync(args.c_col, acc, 16, wmma::mem_col_major);
}

}  // namespace selftest

BERTRT_ENTRY(harness_shuffles, selftest::shuffles, selftest::ShuffleArgs)
BERTRT_ENTRY(harness_block, selftest::block, selftest::BlockArgs)
BERTRT_ENTRY(harness_wmma, selftest::wmma_layouts, selftest::WmmaArgs)
