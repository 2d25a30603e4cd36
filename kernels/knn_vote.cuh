// Launcher for the kNN vote over rows of cosine similarities (raw pointers and sizes only; no Tensor).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace moco::kernels {

// The largest k that knn_vote takes (one block's shared list of neighbours).
constexpr int kKnnMaxK = 1024;

// For each of `rows` query rows of sims (rows, B): the k most similar bank entries (ties by lower index), each
// voting exp(sim / t) for its class bank_labels[j] (B, in [0, classes)), summed in double in the order of the
// CPU's sort (similarity descending, index ascending); pred[r] is the class with the most votes (the first of
// equal ones). votes: device workspace of rows * classes doubles. 1 <= k <= min(B, kKnnMaxK).
// CPU reference: the vote of moco::knn_top1 (src/eval/knn.cpp).
void knn_vote(int64_t rows, int64_t bank, int k, int classes, double t, const float* sims, const int* bank_labels,
              double* votes, int* pred, cudaStream_t stream);

}  // namespace moco::kernels
