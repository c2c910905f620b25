// The book's simple_net (numpy_mnist.models.MLP): Linear(d, H) -> ReLU -> Linear(H, K), with
// K = 1 for the 3s and 7s and K = 10 for the digits, trained by SGD in three kernels per batch:
//
//   mlp_hidden   one thread per (row, hidden unit):  pre-activation h = x @ w1 + b1
//   mlp_rows     one thread per row:                 relu, logits, loss term, dz, and dh
//   mlp_step     one thread per parameter:           gradients summed over the batch, SGD step
//
// The derivation (numpy_mnist.models.MLP, numpy_mnist.layers).  With h = x @ w1 + b1, a = relu(h),
// z = a @ w2 + b2, and dz = d loss / d z from the loss:
//
//     dw2 = a.T @ dz          db2 = sum_n dz
//     da  = dz @ w2.T         dh  = da * [h > 0]       (relu's derivative, 0 at h = 0 as PyTorch)
//     dw1 = x.T @ dh          db1 = sum_n dh
//
// and SGD sets p <- p - lr * grad.  The order of reads and writes: da needs w2 as it was before
// this batch's step, so mlp_rows (which reads w2) finishes before mlp_step (which writes it)
// starts; mlp_step reads only x, h, dz and dh, never a parameter other than the one each thread
// owns; the next batch's mlp_hidden reads the new w1 and b1.
#include "common.cuh"

// Pre-activations of the batch, thread i = r H + u for row r and hidden unit u:
//     pre[r, u] = (sum_j x[perm[start + r], j] w1[j, u]) + b1[u]
// x is (N, d), w1 is (d, H), pre is (n, H), all row-major.
template <typename T>
__global__ void mlp_hidden(const T* __restrict__ x, const int* __restrict__ perm, int start, int n, int d,
                           int hidden, const T* __restrict__ w1, const T* __restrict__ b1, T* __restrict__ pre)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * hidden)
        return;
    const int r = i / hidden, u = i % hidden;
    const T* xr = x + (long long)perm[start + r] * d;
    T acc = T(0);
    for (int j = 0; j < d; ++j)
        acc = nm_fma(xr[j], w1[j * hidden + u], acc);
    pre[i] = acc + b1[u];
}

// Row r of the batch, from its pre-activations:
//     a[u]       = relu(pre[r, u])
//     z[k]       = (sum_u a[u] w2[u, k]) + b2[k]
//     term[r], dz[r, :], correct[r]     as in linear_rows
//     dh[r, u]   = pre[r, u] > 0 ? sum_k dz[r, k] w2[u, k] : 0       (da = dz @ w2.T, then relu')
template <typename T, typename Y, int K, int LOSS>
__global__ void mlp_rows(const Y* __restrict__ y, const int* __restrict__ perm, int start, int n, int hidden,
                         const T* __restrict__ pre, const T* __restrict__ w2, const T* __restrict__ b2,
                         T* __restrict__ term, int* __restrict__ correct, T* __restrict__ dz,
                         T* __restrict__ dh)
{
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= n)
        return;
    const int row = perm[start + r];
    const T* pr = pre + (long long)r * hidden;
    T z[K];
    for (int k = 0; k < K; ++k)
        z[k] = T(0);
    for (int u = 0; u < hidden; ++u) {
        const T a = nm_relu(pr[u]);
        for (int k = 0; k < K; ++k)
            z[k] = nm_fma(a, w2[u * K + k], z[k]);
    }
    for (int k = 0; k < K; ++k)
        z[k] = z[k] + b2[k];
    T* dzr = dz + (long long)r * K;
    term[r] = row_loss<T, Y, K, LOSS>(z, y[row], T(n), dzr);
    correct[r] = row_correct<T, Y, K>(z, y[row]);
    T* dhr = dh + (long long)r * hidden;
    for (int u = 0; u < hidden; ++u) {
        T da = T(0);
        for (int k = 0; k < K; ++k)
            da = nm_fma(dzr[k], w2[u * K + k], da);
        dhr[u] = pr[u] > T(0) ? da : T(0);
    }
}

// Gradients and SGD steps, one thread per parameter, then the batch loss.  With H hidden units:
//     i < d H                  w1[j, u] -= lr * sum_r x[perm[start + r], j] dh[r, u]   (i = j H + u)
//     next H threads           b1[u]    -= lr * sum_r dh[r, u]
//     next H K threads         w2[u, k] -= lr * sum_r relu(pre[r, u]) dz[r, k]        (u K + k)
//     next K threads           b2[k]    -= lr * sum_r dz[r, k]
//     the last thread          losses[batch] = (sum_r term[r]) / n
// Every sum runs over r = 0, 1, ..., n - 1 in that order; the step is p - (g lr), as in Python.
template <typename T, int K>
__global__ void mlp_step(const T* __restrict__ x, const int* __restrict__ perm, int start, int n, int d,
                         int hidden, const T* __restrict__ pre, const T* __restrict__ dz,
                         const T* __restrict__ dh, const T* __restrict__ term, T lr,
                         T* __restrict__ w1, T* __restrict__ b1, T* __restrict__ w2, T* __restrict__ b2,
                         T* __restrict__ losses, int batch)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < d * hidden) {
        const int j = i / hidden, u = i % hidden;
        T g = T(0);
        for (int r = 0; r < n; ++r)
            g = nm_fma(x[(long long)perm[start + r] * d + j], dh[(long long)r * hidden + u], g);
        w1[i] = w1[i] - g * lr;
        return;
    }
    i -= d * hidden;
    if (i < hidden) {
        T g = T(0);
        for (int r = 0; r < n; ++r)
            g = g + dh[(long long)r * hidden + i];
        b1[i] = b1[i] - g * lr;
        return;
    }
    i -= hidden;
    if (i < hidden * K) {
        const int u = i / K, k = i % K;
        T g = T(0);
        for (int r = 0; r < n; ++r)
            g = nm_fma(nm_relu(pre[(long long)r * hidden + u]), dz[r * K + k], g);
        w2[i] = w2[i] - g * lr;
        return;
    }
    i -= hidden * K;
    if (i < K) {
        T g = T(0);
        for (int r = 0; r < n; ++r)
            g = g + dz[r * K + i];
        b2[i] = b2[i] - g * lr;
        return;
    }
    if (i == K) {
        T total = T(0);
        for (int r = 0; r < n; ++r)
            total = total + term[r];
        losses[batch] = total / T(n);
    }
}
