// Fused softmax-attention for one (sequence, head, 16-query tile) per block:
//   out = softmax(scale * (Q Kᵀ + relative terms) + mask) V
// The score rows of the tile live in shared memory (whole rows: up to 512 keys on an SM
// with 64 KiB of shared memory per block); they never go to global memory, except as the
// attention probabilities when `probs` is given.
//
// Keys: `past` cached positions followed by the sequence's own tokens; K and V are read
// through `kv_layout` (the same layout as Q without a cache, the padded cache
// [batch, heads, capacity, head_dim] with one). Query i sits at position past + i.
// Masking: keys past the sequence's end (from cu_seqlens, so padding never enters the
// softmax), when causal keys after the query, and keys whose `key_mask` entry is 0. A
// query that sees no key at all gets uniform weights over every key, as transformers'
// additive finfo.min mask gives. Relative terms (transformers' relative_key /
// relative_key_query): for query position p and key j, with E the distance table row
// p - j + max_positions - 1, the raw score gains q·E (and k_j·E).
//
// Products: with half storage and head_dim a multiple of 16 (entry points *_hd32, *_hd64)
// both Q Kᵀ and P V run on tensor cores through WMMA (16x16x16 tiles, f32 accumulation;
// probabilities are rounded to half before P V). Every other case (f32 storage, any
// head_dim) takes the SIMT path with the same f32 arithmetic. Softmax is in f32.
//
// Launch: grid = (ceil(max_len / 16), heads, batch), block = 128 threads, dynamic shared
// memory = attention_smem_bytes(max_len, head_dim, sizeof(T)) below (over 48 KiB for
// long rows: the launcher raises cudaFuncAttributeMaxDynamicSharedMemorySize).
// `out` is packed [tokens, heads * head_dim]; `probs` is [batch, heads, max_len,
// past + max_len] with zeros for padding rows and masked keys.

#include "common.cuh"

namespace bertrt {

constexpr int kQTile = 16;

template <typename T>
struct AttentionArgs {
    const T* q;
    const T* k;
    const T* v;
    const T* rel_table;    // [2 * max_positions - 1, head_dim], or null
    T* out;                // [tokens, heads * head_dim]
    T* probs;              // [batch, heads, max_len, past + max_len], or null
    const unsigned char* key_mask;  // [batch, mask_stride], 1 = may attend; or null
    HeadLayout layout;     // of q (and of k and v without a cache)
    HeadLayout kv_layout;  // of k and v: `layout`, or the padded cache (max_len = capacity)
    int causal;            // 1: query i sees keys 0..=past + i
    int rel_kind;          // 1: relative_key, 2: relative_key_query (with rel_table)
    int max_positions;     // rows of the distance table are 2 * max_positions - 1
    float scale;           // 1 / sqrt(head_dim)
    int mask_stride;       // past + max_len
    int past;              // cached keys before this step's tokens (0 without a cache)
};

__host__ __device__ constexpr int round16(int n) { return (n + 15) / 16 * 16; }

// Shared memory of one block, for rows of `keys` = past + max_len keys: scores [16, lpad] f32, probabilities [16, lpad] T, the Q tile
// [16, head_dim] T, a [16, head_dim] T staging tile per warp, the output tile
// [16, head_dim] f32. Every region size is a multiple of 32 bytes, as WMMA needs.
__host__ __device__ constexpr size_t attention_smem_bytes(int keys, int head_dim, int elem, int warps = 4) {
    const size_t lpad = round16(keys);
    return kQTile * lpad * (4 + elem) + kQTile * static_cast<size_t>(head_dim) * (elem * (1 + warps) + 4);
}

template <typename T>
__device__ __forceinline__ float dot_row(const T* a, const T* b, int n) {
    float s = 0.0f;
    for (int c = 0; c < n; ++c) s += to_f32(a[c]) * to_f32(b[c]);
    return s;
}

template <typename T, int HD>
__device__ void attention(const AttentionArgs<T>& a) {
    constexpr bool kWmma = sizeof(T) == 2 && HD > 0 && HD % 16 == 0;
    const HeadLayout& L = a.layout;
    const HeadLayout& KV = a.kv_layout;
    const int hd = HD > 0 ? HD : L.head_dim;
    const int b = blockIdx.z;
    const int h = blockIdx.y;
    const int q0 = blockIdx.x * kQTile;
    const int len = L.cu_seqlens[b + 1] - L.cu_seqlens[b];
    const int stride = a.past + L.max_len;  // keys of the longest sequence: a probs row
    const int lpad = round16(stride);
    const int tid = threadIdx.x;
    const int lane = tid % kWarp;
    const int warp = tid / kWarp;
    const int warps = blockDim.x / kWarp;
    const size_t probs_rows = (static_cast<size_t>(b) * L.heads + h) * L.max_len;

    if (q0 >= len) {  // a tile of padding rows: only their (zero) probabilities
        if (a.probs) {
            const int rows = min(kQTile, L.max_len - q0);
            T* p = a.probs + (probs_rows + q0) * stride;
            for (int e = tid; e < rows * stride; e += blockDim.x) p[e] = from_f32<T>(0.0f);
        }
        return;
    }
    const int rows = min(kQTile, len - q0);
    const int keys = a.past + len;
    // Keys any row here may see (all of them when a fully masked row may need them).
    const int nkeys = a.causal && !a.key_mask ? min(keys, a.past + q0 + kQTile) : keys;
    const int kpad = round16(nkeys);

    BERTRT_DYNAMIC_SMEM(smem);
    float* scores = reinterpret_cast<float*>(smem);
    T* ps = reinterpret_cast<T*>(scores + kQTile * lpad);
    T* qs = ps + kQTile * lpad;
    T* stage = qs + kQTile * hd + warp * kQTile * hd;  // this warp's staging tile
    float* os = reinterpret_cast<float*>(qs + kQTile * hd + warps * kQTile * hd);

    // 1. The Q tile, zero past the sequence's end.
    for (int e = tid; e < kQTile * hd; e += blockDim.x) {
        const int r = e / hd, c = e % hd;
        qs[e] = r < rows ? a.q[L.row(b, h, q0 + r) + c] : from_f32<T>(0.0f);
    }
    __syncthreads();

    // 2. Raw scores Q Kᵀ for keys 0..kpad.
    if constexpr (kWmma) {
        using namespace nvcuda;
        for (int ch = warp; ch < kpad / 16; ch += warps) {
            for (int e = lane; e < 16 * HD; e += kWarp) {
                const int j = ch * 16 + e / HD;
                stage[e] = j < nkeys ? a.k[KV.row(b, h, j) + e % HD] : from_f32<T>(0.0f);
            }
            __syncwarp();
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
            for (int kk = 0; kk < HD; kk += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, half, wmma::row_major> fq;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, half, wmma::col_major> fk;
                wmma::load_matrix_sync(fq, qs + kk, HD);
                wmma::load_matrix_sync(fk, stage + kk, HD);
                wmma::mma_sync(acc, fq, fk, acc);
            }
            wmma::store_matrix_sync(scores + ch * 16, acc, lpad, wmma::mem_row_major);
            __syncwarp();  // the stage is refilled next round
        }
    } else {
        for (int e = tid; e < kQTile * kpad; e += blockDim.x) {
            const int r = e / kpad, j = e % kpad;
            float s = 0.0f;
            if (r < rows && j < nkeys) s = dot_row(qs + r * hd, a.k + KV.row(b, h, j), hd);
            scores[r * lpad + j] = s;
        }
    }
    __syncthreads();

    // 3. Relative terms, scale, mask and softmax: one warp per row.
    for (int r = warp; r < kQTile; r += warps) {
        float* srow = scores + r * lpad;
        T* prow = ps + r * lpad;
        if (r >= rows) {  // padding query row: no probabilities, no output
            for (int j = lane; j < kpad; j += kWarp) prow[j] = from_f32<T>(0.0f);
            if (a.probs && q0 + r < L.max_len) {
                T* g = a.probs + (probs_rows + q0 + r) * stride;
                for (int j = lane; j < stride; j += kWarp) g[j] = from_f32<T>(0.0f);
            }
            continue;
        }
        const int i = q0 + r;
        const int visible = a.causal ? min(nkeys, a.past + i + 1) : nkeys;
        const unsigned char* keep = a.key_mask ? a.key_mask + static_cast<size_t>(b) * a.mask_stride : nullptr;
        float mx = -INFINITY;
        for (int j = lane; j < kpad; j += kWarp) {
            float s = -INFINITY;
            if (j < visible && (!keep || keep[j])) {
                s = srow[j];
                if (a.rel_table) {
                    const T* e = a.rel_table + static_cast<size_t>(a.past + i - j + a.max_positions - 1) * hd;
                    s += dot_row(qs + r * hd, e, hd);
                    if (a.rel_kind == 2) s += dot_row(a.k + KV.row(b, h, j), e, hd);
                }
                s *= a.scale;
            }
            srow[j] = s;
            mx = fmaxf(mx, s);
        }
        mx = warp_max(mx);
        const bool none = mx == -INFINITY;  // every key masked: uniform over all keys
        float sum = 0.0f;
        for (int j = lane; j < kpad; j += kWarp) {
            const float e = none ? (j < keys ? 1.0f : 0.0f) : srow[j] == -INFINITY ? 0.0f : __expf(srow[j] - mx);
            srow[j] = e;
            sum += e;
        }
        const float inv = 1.0f / warp_sum(sum);
        for (int j = lane; j < kpad; j += kWarp) prow[j] = from_f32<T>(srow[j] * inv);
        if (a.probs) {
            T* g = a.probs + (probs_rows + i) * stride;
            for (int j = lane; j < stride; j += kWarp) g[j] = from_f32<T>(j < kpad ? srow[j] * inv : 0.0f);
        }
    }
    __syncthreads();

    // 4. The output tile P V.
    if constexpr (kWmma) {
        using namespace nvcuda;
        for (int n = warp; n < HD / 16; n += warps) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
            for (int ch = 0; ch < kpad / 16; ++ch) {
                for (int e = lane; e < 256; e += kWarp) {
                    const int j = ch * 16 + e / 16;
                    stage[e] = j < nkeys ? a.v[KV.row(b, h, j) + n * 16 + e % 16] : from_f32<T>(0.0f);
                }
                __syncwarp();
                wmma::fragment<wmma::matrix_a, 16, 16, 16, half, wmma::row_major> fp;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, half, wmma::row_major> fv;
                wmma::load_matrix_sync(fp, ps + ch * 16, lpad);
                wmma::load_matrix_sync(fv, stage, 16);
                wmma::mma_sync(acc, fp, fv, acc);
                __syncwarp();
            }
            wmma::store_matrix_sync(os + n * 16, acc, HD, wmma::mem_row_major);
        }
    } else {
        for (int e = tid; e < kQTile * hd; e += blockDim.x) {
            const int r = e / hd, c = e % hd;
            float s = 0.0f;
            if (r < rows) {
                for (int j = 0; j < nkeys; ++j) s += to_f32(ps[r * lpad + j]) * to_f32(a.v[KV.row(b, h, j) + c]);
            }
            os[e] = s;
        }
    }
    __syncthreads();

    // 5. Context rows into the packed [tokens, heads * head_dim] output.
    const size_t width = static_cast<size_t>(L.heads) * hd;
    for (int e = tid; e < rows * hd; e += blockDim.x) {
        const int r = e / hd, c = e % hd;
        a.out[(L.cu_seqlens[b] + q0 + r) * width + h * hd + c] = from_f32<T>(os[e]);
    }
}

}  // namespace bertrt

BERTRT_ENTRY(attention_f32, (bertrt::attention<float, 0>), bertrt::AttentionArgs<float>)
BERTRT_ENTRY(attention_f16, (bertrt::attention<half, 0>), bertrt::AttentionArgs<half>)
BERTRT_ENTRY(attention_f16_hd32, (bertrt::attention<half, 32>), bertrt::AttentionArgs<half>)
BERTRT_ENTRY(attention_f16_hd64, (bertrt::attention<half, 64>), bertrt::AttentionArgs<half>)
