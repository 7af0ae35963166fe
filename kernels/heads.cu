// Head epilogues.
//
// qa_split: the [tokens, 2] question-answering logits (plus their bias) split into padded
// start and end logits [batch, max_len]; positions past a sequence's end get `fill`.
// Launch: grid = batch, block = 128 threads.
//
// label_probs: per row of [rows, labels] logits, adds the bias and applies none (0),
// softmax (1) or sigmoid (2), writing f32. One warp per row.
// Launch: grid = ceil(rows / 4), block = 128 threads.

#include "common.cuh"

namespace bertrt {

template <typename T>
struct QaSplitArgs {
    const T* logits;        // [tokens, 2]
    const T* bias;          // [2] or null
    const int* cu_seqlens;  // [batch + 1]
    T* start;               // [batch, max_len]
    T* end;                 // [batch, max_len]
    int max_len;
    float fill;
};

template <typename T>
__device__ void qa_split(const QaSplitArgs<T>& a) {
    const int b = blockIdx.x;
    const int first = a.cu_seqlens[b];
    const int len = a.cu_seqlens[b + 1] - first;
    const float bs = a.bias ? to_f32(a.bias[0]) : 0.0f;
    const float be = a.bias ? to_f32(a.bias[1]) : 0.0f;
    for (int i = threadIdx.x; i < a.max_len; i += blockDim.x) {
        float s = a.fill, e = a.fill;
        if (i < len) {
            const T* row = a.logits + static_cast<size_t>(first + i) * 2;
            s = to_f32(row[0]) + bs;
            e = to_f32(row[1]) + be;
        }
        a.start[static_cast<size_t>(b) * a.max_len + i] = from_f32<T>(s);
        a.end[static_cast<size_t>(b) * a.max_len + i] = from_f32<T>(e);
    }
}

enum LabelMode : int { LABELS_RAW = 0, LABELS_SOFTMAX = 1, LABELS_SIGMOID = 2 };

template <typename T>
struct LabelProbsArgs {
    const T* x;     // [rows, labels]
    const T* bias;  // [labels] or null
    float* out;     // [rows, labels]
    int rows;
    int labels;
    int mode;  // LabelMode
};

template <typename T>
__device__ void label_probs(const LabelProbsArgs<T>& a) {
    const int lane = threadIdx.x % kWarp;
    const int row = blockIdx.x * (blockDim.x / kWarp) + threadIdx.x / kWarp;
    if (row >= a.rows) return;  // whole warps leave; there is no block barrier below
    const T* x = a.x + static_cast<size_t>(row) * a.labels;
    float* out = a.out + static_cast<size_t>(row) * a.labels;
    auto logit = [&](int j) { return to_f32(x[j]) + (a.bias ? to_f32(a.bias[j]) : 0.0f); };
    if (a.mode == LABELS_SOFTMAX) {
        float mx = -INFINITY;
        for (int j = lane; j < a.labels; j += kWarp) mx = fmaxf(mx, logit(j));
        mx = warp_max(mx);
        float sum = 0.0f;
        for (int j = lane; j < a.labels; j += kWarp) sum += expf(logit(j) - mx);
        const float inv = 1.0f / warp_sum(sum);
        for (int j = lane; j < a.labels; j += kWarp) out[j] = expf(logit(j) - mx) * inv;
    } else {
        for (int j = lane; j < a.labels; j += kWarp) {
            const float v = logit(j);
            out[j] = a.mode == LABELS_SIGMOID ? 1.0f / (1.0f + expf(-v)) : v;
        }
    }
}

}  // namespace bertrt

BERTRT_ENTRY(qa_split_f32, bertrt::qa_split<float>, bertrt::QaSplitArgs<float>)
BERTRT_ENTRY(qa_split_f16, bertrt::qa_split<half>, bertrt::QaSplitArgs<half>)
BERTRT_ENTRY(label_probs_f32, bertrt::label_probs<float>, bertrt::LabelProbsArgs<float>)
BERTRT_ENTRY(label_probs_f16, bertrt::label_probs<half>, bertrt::LabelProbsArgs<half>)
