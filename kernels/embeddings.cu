// Embeddings: out[t] = LayerNorm(word[ids[t]] + token_type[type_ids[t]] + position[positions[t]])
// for every token t of the packed batch, gather, sum and normalisation in one kernel.
//
// Launch: grid = tokens, block = any multiple of 32 threads (the launcher gives one
// 16-byte pack of the row to each thread: 32 to 256), dynamic shared memory = hidden * 4
// bytes (the summed row in f32).

#include "norm.cuh"

namespace bertrt {

template <typename T>
struct EmbeddingsArgs {
    const int* ids;        // [tokens]
    const int* type_ids;   // [tokens]
    const int* positions;  // [tokens] position ids (past + index in the sequence)
    const T* word;         // [vocab, hidden]
    const T* position;     // [max_positions, hidden]; null for relative position types
    const T* token_type;   // [type_vocab, hidden]
    const T* gamma;        // [hidden]
    const T* beta;         // [hidden]
    T* out;                // [tokens, hidden]
    int tokens;
    int hidden;
    float eps;
};

template <typename T>
__device__ void embeddings(const EmbeddingsArgs<T>& a) {
    BERTRT_DYNAMIC_SMEM(smem);
    float* row = reinterpret_cast<float*>(smem);
    const int t = blockIdx.x;
    const int H = a.hidden;
    const T* word = a.word + static_cast<size_t>(a.ids[t]) * H;
    const T* type = a.token_type + static_cast<size_t>(a.type_ids[t]) * H;
    const T* pos = a.position ? a.position + static_cast<size_t>(a.positions[t]) * H : nullptr;
    float partial = 0.0f;
    constexpr int N = Pack<T>::N;
    if (H % N == 0) {
        for (int c = threadIdx.x * N; c < H; c += blockDim.x * N) {
            float w[N], ty[N], p[N];
            unpack(load_pack(word + c), w);
            unpack(load_pack(type + c), ty);
            if (pos) {
                unpack(load_pack(pos + c), p);
            } else {
                for (int e = 0; e < N; ++e) p[e] = 0.0f;
            }
            for (int e = 0; e < N; ++e) {
                const float v = w[e] + ty[e] + p[e];
                row[c + e] = v;
                partial += v;
            }
        }
    } else {
        for (int c = threadIdx.x; c < H; c += blockDim.x) {
            float v = to_f32(word[c]) + to_f32(type[c]);
            if (pos) v += to_f32(pos[c]);
            row[c] = v;
            partial += v;
        }
    }
    layernorm_tail(row, H, partial, a.gamma, a.beta, a.eps, a.out + static_cast<size_t>(t) * H);
}

}  // namespace bertrt

BERTRT_ENTRY(embeddings_f32, bertrt::embeddings<float>, bertrt::EmbeddingsArgs<float>)
BERTRT_ENTRY(embeddings_f16, bertrt::embeddings<half>, bertrt::EmbeddingsArgs<half>)
