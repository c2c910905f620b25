// Validation's totals in a fixed order (numpy_mnist.learner.validate_epoch): the row kernels
// (linear_rows, mlp_rows) run over every validation row and leave term[r] and correct[r]; these
// two kernels add them up, in chunks and then the chunks' sums, always in the same order:
//
//   sum_chunks   thread c adds rows c * chunk ... (c + 1) * chunk - 1, in order
//   sum_parts    one thread adds the chunk sums in order: out[0] = sum of the loss terms,
//                out[1] = the number of rows predicted right (exact in T up to 2^24 rows)
//
// valid_loss = out[0] / N and accuracy = out[1] / N, every row counted once.
#include "common.cuh"

template <typename T>
__global__ void sum_chunks(const T* __restrict__ term, const int* __restrict__ correct, int n, int chunk,
                           T* __restrict__ part_term, int* __restrict__ part_correct)
{
    const int c = blockIdx.x * blockDim.x + threadIdx.x, first = c * chunk;  // the chunk, and its first row
    if (first >= n)
        return;
    const int last = first + chunk < n ? first + chunk : n;
    T total = T(0);
    int right = 0;
    for (int r = first; r < last; ++r) {
        total = total + term[r];
        right += correct[r];
    }
    part_term[c] = total;
    part_correct[c] = right;
}

template <typename T>
__global__ void sum_parts(const T* __restrict__ part_term, const int* __restrict__ part_correct, int parts,
                          T* __restrict__ out)
{
    if (blockIdx.x * blockDim.x + threadIdx.x != 0)
        return;
    T total = T(0);
    int right = 0;
    for (int c = 0; c < parts; ++c) {
        total = total + part_term[c];
        right += part_correct[c];
    }
    out[0] = total;
    out[1] = T(right);
}
