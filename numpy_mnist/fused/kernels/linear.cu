// The linear model, logits = x @ w + b (numpy_mnist.models.LinearModel: the book's linear1 with
// K = 1, and softmax regression over the ten digits with K = 10), trained by SGD in two kernels
// per batch:
//
//   linear_rows   LINEAR_ROWS rows per block:      forward, loss term, d loss / d logits
//   linear_step   LINEAR_COLS pixels per block:    gradient, summed over the batch, and SGD step
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

// Forward, loss and d loss / d logits for the rows r0 ... r0 + LINEAR_ROWS - 1 of the batch, where
// row r is image perm[start + r]:
//     z[r, k]    = (sum_j x[j] w[j, k]) + b[k]     the sum first, in j = 0, 1, ..., then + b
//     term[r]    = the row's term of the loss sum  (the batch loss is sum_r term[r] / n)
//     dz[r, :]   = d loss / d z for the row        (the mean's 1/n included)
//     correct[r] = 1 if the row is predicted right (used by validation)
// x is (N, d) row-major, w is (d, K) row-major, dz is (n, K).
//
// Block of at least LINEAR_ROWS * K threads (rounded up to a warp): thread t owns z[r0 + t / K,
// t % K].  The block walks the pixels in tiles of NM_TILE<T> (1 KiB of each image row): all its
// threads copy the tile of its rows' images and of w into shared memory (each image row a run of
// consecutive addresses), then each owner adds the tile's terms to its sum.  Last, one thread per
// row takes the loss.
template <typename T, typename Y, int K, int LOSS>
__global__ void linear_rows(const T* __restrict__ x, const Y* __restrict__ y, const int* __restrict__ perm,
                            int start, int n, int d, const T* __restrict__ w, const T* __restrict__ b,
                            T* __restrict__ term, int* __restrict__ correct, T* __restrict__ dz)
{
    __shared__ int rows[LINEAR_ROWS];
    __shared__ T xs[LINEAR_ROWS][NM_TILE<T>];
    __shared__ T ws[NM_TILE<T> * K];
    __shared__ T zs[LINEAR_ROWS * K];
    const int tid = threadIdx.x;
    const int r0 = blockIdx.x * LINEAR_ROWS, height = nm_min(LINEAR_ROWS, n - r0);
    const int mr = tid / K, mk = tid % K;  // this thread's output, if mr < height
    const bool owner = mr < height;
    block_copy(rows, perm, start + r0, height);
    __syncthreads();
    T acc = T(0);
    for (int j0 = 0; j0 < d; j0 += NM_TILE<T>) {
        const int width = nm_min(NM_TILE<T>, d - j0);
        stage_images(xs, x, rows, height, d, j0, width, NM_TILE<T>);
        block_copy(ws, w, (long long)j0 * K, width * K);
        __syncthreads();
        if (owner)
            for (int j = 0; j < width; ++j)
                acc = nm_fma(xs[mr][j], ws[j * K + mk], acc);
        __syncthreads();
    }
    // + b, then each row's loss term, correct, and its dz straight into dz (finish_rows, common.cuh)
    finish_rows<T, Y, K, LOSS>(owner, acc, b, y, rows, r0, height, n, zs, term, correct, dz + (long long)r0 * K);
}

// Gradient and SGD step, one thread per parameter, then the batch loss:
//     w[j, k] -= lr * sum_r x[perm[start + r], j] dz[r, k]
//     b[k]    -= lr * sum_r dz[r, k]
//     losses[batch] = (sum_r term[r]) / n
// Every sum runs over r = 0, 1, ..., n - 1 in that order.  The step is p - (g lr), rounded as
// Python's `p -= grad * lr` rounds it (--fmad=false keeps the product and the difference apart).
//
// Grid: ceil(d / LINEAR_COLS) blocks of LINEAR_COLS * K threads, thread t of block c owning
// w[c LINEAR_COLS + t / K, t % K], then one more block for b and the loss.  A block walks the
// batch in tiles of LINEAR_ROW_TILE rows: its threads copy the tile's perm, dz rows and image
// columns (LINEAR_COLS consecutive pixels of each row) into shared memory, so each of them is
// read from global memory once per block.  perm is double-buffered: the next tile's rows are
// fetched while this tile is summed.
template <typename T, int K>
__global__ void linear_step(const T* __restrict__ x, const int* __restrict__ perm, int start, int n, int d,
                            const T* __restrict__ dz, const T* __restrict__ term, T lr,
                            T* __restrict__ w, T* __restrict__ b, T* __restrict__ losses, int batch)
{
    __shared__ int rows[2][LINEAR_ROW_TILE];
    __shared__ T xs[LINEAR_ROW_TILE][LINEAR_COLS + 1];  // + 1: the padding rule in common.cuh
    __shared__ T dzs[LINEAR_ROW_TILE * K];
    const int tid = threadIdx.x;
    if ((int)blockIdx.x == nm_ceil_div(d, LINEAR_COLS)) {  // the last block: biases and loss
        if (tid < K)
            b[tid] = b[tid] - column_sum(dz, n, K, tid) * lr;
        else if (tid == K)
            losses[batch] = column_sum(term, n, 1, 0) / T(n);
        return;
    }
    const int j0 = blockIdx.x * LINEAR_COLS, width = nm_min(LINEAR_COLS, d - j0);
    const int mj = tid / K, mk = tid % K;  // this thread's parameter w[j0 + mj, mk], if mj < width
    const bool owner = mj < width;
    block_copy(rows[0], perm, start, nm_min(LINEAR_ROW_TILE, n));
    __syncthreads();
    T g = T(0);
    for (int r0 = 0, buf = 0; r0 < n; r0 += LINEAR_ROW_TILE, buf ^= 1) {
        const int height = nm_min(LINEAR_ROW_TILE, n - r0);
        stage_images(xs, x, rows[buf], height, d, j0, width, LINEAR_COLS);
        block_copy(dzs, dz, (long long)r0 * K, height * K);
        __syncthreads();
        const int next = r0 + LINEAR_ROW_TILE;  // the next tile's rows, fetched while this one is summed
        block_copy(rows[buf ^ 1], perm, start + next, nm_min(LINEAR_ROW_TILE, n - next));
        if (owner)
            for (int r = 0; r < height; ++r)
                g = nm_fma(xs[r][mj], dzs[r * K + mk], g);
        __syncthreads();
    }
    if (owner) {
        const int i = j0 * K + tid;
        w[i] = w[i] - g * lr;
    }
}
