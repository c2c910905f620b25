// The book's simple_net (numpy_mnist.models.MLP): Linear(d, H) -> ReLU -> Linear(H, K), with
// K = 1 for the 3s and 7s and K = 10 for the digits, trained by SGD in three kernels per batch:
//
//   mlp_hidden   MLP_ROWS rows x MLP_UNITS units per block:   pre-activation h = x @ w1 + b1
//   mlp_rows     MLP_ROWS rows per block:                     relu, logits, loss term, dz, and dh
//   mlp_step     MLP_COLS pixels x MLP_UNITS units per block: gradients summed over the batch, SGD step
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

// Pre-activations of the batch, for row r and hidden unit u:
//     pre[r, u] = (sum_j x[perm[start + r], j] w1[j, u]) + b1[u]      the sum in j = 0, 1, ..., then + b1
// x is (N, d), w1 is (d, H), pre is (n, H), all row-major.
//
// Grid: ceil(n / MLP_ROWS) x ceil(H / MLP_UNITS) blocks (the unit blocks of a row block adjacent) of
// MLP_THREADS = MLP_ROWS x MLP_UNITS threads; thread t owns pre[r0 + t / MLP_UNITS, u0 + t % MLP_UNITS].
// The block walks the pixels in tiles of NM_TILE<T> (1 KiB of each image row), copying its rows'
// images and the tile of w1 into shared memory (consecutive threads, consecutive addresses), then
// each owner adds the tile's terms.
template <typename T>
__global__ void __launch_bounds__(MLP_THREADS)
mlp_hidden(const T* __restrict__ x, const int* __restrict__ perm, int start, int n, int d, int hidden,
           const T* __restrict__ w1, const T* __restrict__ b1, T* __restrict__ pre)
{
    __shared__ int rows[MLP_ROWS];
    __shared__ T xs[MLP_ROWS][NM_TILE<T>];
    __shared__ T ws[NM_TILE<T>][MLP_UNITS + 1];  // + 1: see the padding rule in common.cuh
    const int tid = threadIdx.x;
    const int unit_blocks = nm_ceil_div(hidden, MLP_UNITS);
    const int r0 = (blockIdx.x / unit_blocks) * MLP_ROWS, u0 = (blockIdx.x % unit_blocks) * MLP_UNITS;
    const int height = nm_min(MLP_ROWS, n - r0), units = nm_min(MLP_UNITS, hidden - u0);
    const int mr = tid / MLP_UNITS, mu = tid % MLP_UNITS;  // this thread's output, if it has one
    const bool owner = mr < height && mu < units;
    block_copy(rows, perm, start + r0, height);
    __syncthreads();
    T acc = T(0);
    for (int j0 = 0; j0 < d; j0 += NM_TILE<T>) {
        const int width = nm_min(NM_TILE<T>, d - j0);
        stage_images(xs, x, rows, height, d, j0, width, NM_TILE<T>);
        for (int i = tid; i < width * MLP_UNITS; i += blockDim.x) {
            const int j = i / MLP_UNITS, u = i % MLP_UNITS;
            if (u < units)
                ws[j][u] = w1[(long long)(j0 + j) * hidden + u0 + u];
        }
        __syncthreads();
        if (owner)
            for (int j = 0; j < width; ++j)
                acc = nm_fma(xs[mr][j], ws[j][mu], acc);
        __syncthreads();
    }
    if (owner)
        pre[(long long)(r0 + mr) * hidden + u0 + mu] = acc + b1[u0 + mu];
}

// Rows r0 ... r0 + MLP_ROWS - 1 of the batch, from their pre-activations:
//     a[u]       = relu(pre[r, u])
//     z[k]       = (sum_u a[u] w2[u, k]) + b2[k]       the sum in u = 0, 1, ..., then + b2
//     term[r], dz[r, :], correct[r]     as in linear_rows
//     dh[r, u]   = pre[r, u] > 0 ? sum_k dz[r, k] w2[u, k] : 0       (da = dz @ w2.T, then relu':
//                  0 at pre = 0, as PyTorch takes it)
//
// Blocks of MLP_THREADS threads.  Thread t < MLP_ROWS * K owns z[r0 + t / K, t % K]; the block walks
// the hidden units in tiles of MLP_UNITS, copying relu(pre) of its rows and the rows of w2 into shared
// memory.  Then one thread per row takes the loss and puts its dz in shared memory, and every thread
// copies some of the block's dz out and takes some of its dh, each in the order of its memory.
template <typename T, typename Y, int K, int LOSS>
__global__ void __launch_bounds__(MLP_THREADS)
mlp_rows(const Y* __restrict__ y, const int* __restrict__ perm, int start, int n, int hidden,
         const T* __restrict__ pre, const T* __restrict__ w2, const T* __restrict__ b2, T* __restrict__ term,
         int* __restrict__ correct, T* __restrict__ dz, T* __restrict__ dh)
{
    __shared__ T as[MLP_ROWS][MLP_UNITS];
    __shared__ T w2s[MLP_UNITS * K];
    __shared__ T zs[MLP_ROWS * K];
    __shared__ T dzs[MLP_ROWS * K];
    const int tid = threadIdx.x;
    const int r0 = blockIdx.x * MLP_ROWS, height = nm_min(MLP_ROWS, n - r0);
    const int mr = tid / K, mk = tid % K;  // this thread's logit, if mr < height
    const bool owner = mr < height;
    const T* pr = pre + (long long)r0 * hidden;  // the block's rows of pre, one run of memory
    T acc = T(0);
    for (int u0 = 0; u0 < hidden; u0 += MLP_UNITS) {
        const int units = nm_min(MLP_UNITS, hidden - u0);
        for (int i = tid; i < height * MLP_UNITS; i += blockDim.x) {
            const int r = i / MLP_UNITS, u = i % MLP_UNITS;
            if (u < units)
                as[r][u] = nm_relu(pr[(long long)r * hidden + u0 + u]);
        }
        block_copy(w2s, w2, (long long)u0 * K, units * K);
        __syncthreads();
        if (owner)
            for (int u = 0; u < units; ++u)
                acc = nm_fma(as[mr][u], w2s[u * K + mk], acc);
        __syncthreads();
    }
    // + b2, then each row's loss term, correct, and its dz into dzs (finish_rows, common.cuh): copied to
    // dz, and read by the dh below
    finish_rows<T, Y, K, LOSS>(owner, acc, b2, y, perm + start + r0, r0, height, n, zs, term, correct, dzs);
    __syncthreads();
    block_copy(dz + (long long)r0 * K, dzs, 0, height * K);
    T* dhr = dh + (long long)r0 * hidden;
    for (int i = tid; i < height * hidden; i += blockDim.x) {
        const int r = i / hidden, u = i % hidden;
        T da = T(0);
        for (int k = 0; k < K; ++k)
            da = nm_fma(dzs[r * K + k], w2[u * K + k], da);
        dhr[i] = pr[i] > T(0) ? da : T(0);
    }
}

// The outputs of mlp_step other than w1, output i of:  b1 (H), w2 (H K), b2 (K), the loss (1).
// Each is one thread's sum over the batch, read straight from global memory: consecutive threads
// read consecutive addresses of dh and dz (and of pre, K threads sharing each value).
template <typename T, int K>
NM_DEVICE void mlp_step_rest(int i, int n, int hidden, const T* __restrict__ pre, const T* __restrict__ dz,
                             const T* __restrict__ dh, const T* __restrict__ term, T lr, T* __restrict__ b1,
                             T* __restrict__ w2, T* __restrict__ b2, T* __restrict__ losses, int batch)
{
    const int w2_at = hidden, b2_at = w2_at + hidden * K, loss_at = b2_at + K;  // where each output starts
    if (i < w2_at) {
        b1[i] = b1[i] - column_sum(dh, n, hidden, i) * lr;
    } else if (i < b2_at) {
        const int j = i - w2_at, u = j / K, k = j % K;
        T g = T(0);
        for (int r = 0; r < n; ++r)
            g = nm_fma(nm_relu(pre[(long long)r * hidden + u]), dz[r * K + k], g);
        w2[j] = w2[j] - g * lr;
    } else if (i < loss_at) {
        const int k = i - b2_at;
        b2[k] = b2[k] - column_sum(dz, n, K, k) * lr;
    } else if (i == loss_at) {
        losses[batch] = column_sum(term, n, 1, 0) / T(n);
    }
}

// Gradients and SGD steps, one thread per parameter, then the batch loss.  With H hidden units:
//     w1[j, u] -= lr * sum_r x[perm[start + r], j] dh[r, u]
//     b1[u]    -= lr * sum_r dh[r, u]
//     w2[u, k] -= lr * sum_r relu(pre[r, u]) dz[r, k]
//     b2[k]    -= lr * sum_r dz[r, k]
//     losses[batch] = (sum_r term[r]) / n
// Every sum runs over r = 0, 1, ..., n - 1 in that order; the step is p - (g lr), as in Python.
//
// Grid: ceil(d / MLP_COLS) x ceil(H / MLP_UNITS) blocks for w1, of MLP_THREADS = MLP_COLS x
// MLP_UNITS threads, thread t owning w1[j0 + t / MLP_UNITS, u0 + t % MLP_UNITS]; then enough blocks
// for the H + H K + K + 1 other outputs, one thread each.  A w1 block walks the batch in tiles of
// MLP_ROW_TILE rows, copying the tile's perm, image columns (MLP_COLS consecutive pixels of each row)
// and dh columns (MLP_UNITS consecutive units of each row) into shared memory: each is read from
// global memory once per block.  perm is double-buffered, fetched while the tile before is summed.
template <typename T, int K>
__global__ void __launch_bounds__(MLP_THREADS)
mlp_step(const T* __restrict__ x, const int* __restrict__ perm, int start, int n, int d, int hidden,
         const T* __restrict__ pre, const T* __restrict__ dz, const T* __restrict__ dh, const T* __restrict__ term,
         T lr, T* __restrict__ w1, T* __restrict__ b1, T* __restrict__ w2, T* __restrict__ b2,
         T* __restrict__ losses, int batch)
{
    __shared__ int rows[2][MLP_ROW_TILE];
    __shared__ T xs[MLP_ROW_TILE][MLP_COLS + 1];  // + 1: the padding rule in common.cuh
    __shared__ T dhs[MLP_ROW_TILE][MLP_UNITS + 1];
    const int tid = threadIdx.x;
    const int unit_blocks = nm_ceil_div(hidden, MLP_UNITS), w1_blocks = nm_ceil_div(d, MLP_COLS) * unit_blocks;
    if ((int)blockIdx.x >= w1_blocks) {
        mlp_step_rest<T, K>((blockIdx.x - w1_blocks) * blockDim.x + tid, n, hidden, pre, dz, dh, term, lr,
                            b1, w2, b2, losses, batch);
        return;
    }
    const int j0 = (blockIdx.x / unit_blocks) * MLP_COLS, u0 = (blockIdx.x % unit_blocks) * MLP_UNITS;
    const int width = nm_min(MLP_COLS, d - j0), units = nm_min(MLP_UNITS, hidden - u0);
    const int mj = tid / MLP_UNITS, mu = tid % MLP_UNITS;  // this thread's parameter, if it has one
    const bool owner = mj < width && mu < units;
    block_copy(rows[0], perm, start, nm_min(MLP_ROW_TILE, n));
    __syncthreads();
    T g = T(0);
    for (int r0 = 0, buf = 0; r0 < n; r0 += MLP_ROW_TILE, buf ^= 1) {
        const int height = nm_min(MLP_ROW_TILE, n - r0);
        stage_images(xs, x, rows[buf], height, d, j0, width, MLP_COLS);
        for (int i = tid; i < height * MLP_UNITS; i += blockDim.x) {
            const int r = i / MLP_UNITS, u = i % MLP_UNITS;
            if (u < units)
                dhs[r][u] = dh[(long long)(r0 + r) * hidden + u0 + u];
        }
        __syncthreads();
        const int next = r0 + MLP_ROW_TILE;  // the next tile's rows, fetched while this one is summed
        block_copy(rows[buf ^ 1], perm, start + next, nm_min(MLP_ROW_TILE, n - next));
        if (owner)
            for (int r = 0; r < height; ++r)
                g = nm_fma(xs[r][mj], dhs[r][mu], g);
        __syncthreads();
    }
    if (owner) {
        const long long i = (long long)(j0 + mj) * hidden + u0 + mu;
        w1[i] = w1[i] - g * lr;
    }
}
