// The linear model, logits = x @ w + b (numpy_mnist.models.LinearModel: the book's linear1 with
// K = 1, and softmax regression over the ten digits with K = 10), trained by SGD in two kernels
// per batch:
//
//   linear_rows   one thread per row of the batch:  forward, loss term, d loss / d logits
//   linear_step   one thread per parameter:         gradient, summed over the batch, and SGD step
//
// The derivation (numpy_mnist.layers.linear_backward).  With z[n, k] = sum_j x[n, j] w[j, k] + b[k]:
//
//     d loss / d w[j, k] = sum_n x[n, j] dz[n, k]        i.e.  dw = x.T @ dz     (D, K)
//     d loss / d b[k]    = sum_n dz[n, k]                      db = sum_n dz     (K,)
//
// and SGD (numpy_mnist.optim.SGD) sets p <- p - lr * grad for every parameter.  No gradient for
// the images is needed.  linear_rows reads w and b before linear_step of the same batch changes
// them (the launches are ordered on one stream), and linear_step reads nothing that it writes but
// the one parameter each thread owns.
#include "common.cuh"

// Forward, loss and d loss / d logits for row r of the batch (image perm[start + r]):
//     z[k]     = (sum_j x[j] w[j, k]) + b[k]       the sum first, then + b, as x @ w + b
//     term[r]  = the row's term of the loss sum    (the batch loss is sum_r term[r] / n)
//     dz[r, :] = d loss / d z for the row          (the mean's 1/n included)
//     correct[r] = 1 if the row is predicted right (used by validation)
// x is (N, d) row-major, w is (d, K) row-major, dz is (n, K).
template <typename T, typename Y, int K, int LOSS>
__global__ void linear_rows(const T* __restrict__ x, const Y* __restrict__ y, const int* __restrict__ perm,
                            int start, int n, int d, const T* __restrict__ w, const T* __restrict__ b,
                            T* __restrict__ term, int* __restrict__ correct, T* __restrict__ dz)
{
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= n)
        return;
    const int row = perm[start + r];
    const T* xr = x + (long long)row * d;
    T z[K];
    for (int k = 0; k < K; ++k)
        z[k] = T(0);
    for (int j = 0; j < d; ++j) {
        const T xj = xr[j];
        for (int k = 0; k < K; ++k)
            z[k] = nm_fma(xj, w[j * K + k], z[k]);
    }
    for (int k = 0; k < K; ++k)
        z[k] = z[k] + b[k];
    term[r] = row_loss<T, Y, K, LOSS>(z, y[row], T(n), dz + r * K);
    correct[r] = row_correct<T, Y, K>(z, y[row]);
}

// Gradient and SGD step, one thread per parameter, then the batch loss:
//     thread i < d K            w[j, k] -= lr * sum_r x[perm[start + r], j] dz[r, k]   (i = j K + k)
//     thread d K + k            b[k]    -= lr * sum_r dz[r, k]
//     thread d K + K            losses[batch] = (sum_r term[r]) / n
// Every sum runs over r = 0, 1, ..., n - 1 in that order.  The step is p - (g lr), rounded as
// Python's `p -= grad * lr` rounds it (--fmad=false keeps the product and the difference apart).
template <typename T, int K>
__global__ void linear_step(const T* __restrict__ x, const int* __restrict__ perm, int start, int n, int d,
                            const T* __restrict__ dz, const T* __restrict__ term, T lr,
                            T* __restrict__ w, T* __restrict__ b, T* __restrict__ losses, int batch)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const int n_w = d * K;
    if (i < n_w) {
        const int j = i / K, k = i % K;
        T g = T(0);
        for (int r = 0; r < n; ++r)
            g = nm_fma(x[(long long)perm[start + r] * d + j], dz[r * K + k], g);
        w[i] = w[i] - g * lr;
    } else if (i < n_w + K) {
        const int k = i - n_w;
        T g = T(0);
        for (int r = 0; r < n; ++r)
            g = g + dz[r * K + k];
        b[k] = b[k] - g * lr;
    } else if (i == n_w + K) {
        T total = T(0);
        for (int r = 0; r < n; ++r)
            total = total + term[r];
        losses[batch] = total / T(n);
    }
}
