// numpy-mnist's fused kernels: what every kernel file shares.
//
// Rules every kernel here keeps (they are what make the results reproducible and checkable):
//
//  * Every output element (one row's logits, one parameter's gradient) is summed by ONE thread, in
//    plain loops in a fixed order.  No two threads write the same element and there are no atomics,
//    so every sum is taken in the same order on every run, and two runs are bitwise identical.
//  * The threads of a block cooperate only to move data: they copy tiles of the operands (image
//    rows, weights, perm, dz, dh) from global memory into __shared__ arrays in coalesced loads
//    (consecutive threads read consecutive addresses), meet at __syncthreads(), and then each thread
//    sums its own outputs from the tile.  Staging changes where an operand is read from, never which
//    operands are added or in what order: the results are those of one thread per output looping
//    over global memory, bit for bit.  Every __syncthreads() is reached by every thread of the block
//    (no thread returns before a barrier: threads without an output of their own still load).
//    No warp shuffles.
//  * A shared tile that a thread walks down a column (one element per row) has its rows padded by one
//    element.  On the GPU it costs nothing (consecutive threads still hit consecutive banks); on the
//    CPU build it keeps a column's elements out of the few cache sets that a power-of-two row stride
//    maps them all to (which made the CPU build twice as slow).
//  * The same source compiles as plain C++ (the tests' host_shim.h, included before it), where a
//    block's threads run as fibers on one CPU thread and meet at the same barriers: that is how the
//    tests check the arithmetic on a machine without a GPU, and also with the threads run backwards.
//  * T is float or double, the dtype of the parameters: every value is computed in T, as the
//    array path computes it.  The sources are compiled with --fmad=false, so the compiler never
//    fuses a multiply and an add behind the reader's back; the dot products call fma() where a
//    fused multiply-add is meant (it rounds once, and is what BLAS uses too).  (CuPy adds
//    -ftz=true to every kernel it compiles, its own included: a float32 result below 1.2e-38
//    becomes 0, far below the last bit of any parameter or loss.)
//  * Row r of a batch is image perm[start + r]: the batch order lives in a device buffer that is
//    refilled before every epoch, so one captured CUDA graph serves every shuffle.
//  * No cuBLAS, no library call of any kind: CuPy refuses cuBLAS while a stream captures a graph.
//
// Template arguments of the kernels (CuPy names an instantiation by them, e.g.
// "linear_rows<float, float, 1, 0>"):
//   T     float or double
//   Y     the targets' type: T for the binary losses (targets 0 or 1), long long for class labels
//   K     logits per row: 1 for the binary losses, the number of classes for cross-entropy
//   LOSS  MNIST_LOSS (0), BCE (1) or SOFTMAX_CE (2)
#pragma once

#define NM_DEVICE __device__ __forceinline__

constexpr int MNIST_LOSS = 0;
constexpr int BCE = 1;
constexpr int SOFTMAX_CE = 2;

// The launch geometry: tile sizes the kernels are written for, which the trainer's grids and blocks
// follow (numpy_mnist.fused.source reads these lines; one value per line, as written here).
constexpr int NM_TILE_BYTES = 1024;    // bytes of an image row per staged tile of the forward kernels
constexpr int LINEAR_ROWS = 8;         // batch rows per block of linear_rows
constexpr int LINEAR_COLS = 32;        // pixels per block of linear_step
constexpr int LINEAR_ROW_TILE = 64;    // batch rows per staged tile of linear_step
constexpr int MLP_ROWS = 8;            // batch rows per block of mlp_hidden and mlp_rows
constexpr int MLP_UNITS = 32;          // hidden units per block of mlp_hidden and mlp_step
constexpr int MLP_COLS = 8;            // pixels per block of mlp_step
constexpr int MLP_ROW_TILE = 128;      // batch rows per staged tile of mlp_step
constexpr int MLP_THREADS = 256;       // threads per block of the mlp kernels: MLP_ROWS x MLP_UNITS

static_assert(MLP_ROWS * MLP_UNITS == MLP_THREADS && MLP_COLS * MLP_UNITS == MLP_THREADS,
              "a block of mlp_hidden or of mlp_step has one thread per output of its tile");

// Pixels per staged tile of the forward kernels: 256 floats or 128 doubles.
template <typename T>
constexpr int NM_TILE = NM_TILE_BYTES / int(sizeof(T));

NM_DEVICE int nm_min(int a, int b) { return a < b ? a : b; }
NM_DEVICE int nm_ceil_div(int a, int b) { return (a + b - 1) / b; }

// One name per math function for both precisions: expf for float, exp for double, and so on.
NM_DEVICE float nm_exp(float x) { return expf(x); }
NM_DEVICE double nm_exp(double x) { return exp(x); }
NM_DEVICE float nm_log(float x) { return logf(x); }
NM_DEVICE double nm_log(double x) { return log(x); }
NM_DEVICE float nm_log1p(float x) { return log1pf(x); }
NM_DEVICE double nm_log1p(double x) { return log1p(x); }
NM_DEVICE float nm_fabs(float x) { return fabsf(x); }
NM_DEVICE double nm_fabs(double x) { return fabs(x); }
NM_DEVICE float nm_fma(float a, float b, float c) { return fmaf(a, b, c); }
NM_DEVICE double nm_fma(double a, double b, double c) { return fma(a, b, c); }

// sum_r v[r * stride + c] over r = 0, 1, ..., n - 1 in that order: column c of an (n, stride) array
// (a bias gradient: column k of dz, or column u of dh), or with stride 1 and c = 0 the batch's loss total.
template <typename T>
NM_DEVICE T column_sum(const T* __restrict__ v, int n, long long stride, int c)
{
    T total = T(0);
    for (int r = 0; r < n; ++r)
        total = total + v[r * stride + c];
    return total;
}

// ---- staging: every thread of the block copies its share, consecutive threads at consecutive addresses ----

// dst[i] = src[from + i] for i < count: a run of consecutive elements (of perm, of rows of dz, w or w2).
template <typename T>
NM_DEVICE void block_copy(T* dst, const T* __restrict__ src, long long from, int count)
{
    for (int i = threadIdx.x; i < count; i += blockDim.x)
        dst[i] = src[from + i];
}

// xs[r][j] = x[rows[r] * d + j0 + j] for r < height and j < width: pixels j0 ... j0 + width - 1 of the
// images rows[0 ... height - 1] of x (N, d), into a tile of `cols` columns (cols <= C, a row may be padded).
template <typename T, int R, int C>
NM_DEVICE void stage_images(T (&xs)[R][C], const T* __restrict__ x, const int* rows, int height, int d, int j0,
                            int width, int cols)
{
    for (int i = threadIdx.x; i < height * cols; i += blockDim.x) {
        const int r = i / cols, j = i % cols;
        if (j < width)
            xs[r][j] = x[(long long)rows[r] * d + j0 + j];
    }
}

// relu(h) = max(h, 0), as numpy_mnist.layers.relu (xp.maximum: a NaN stays NaN).
template <typename T>
NM_DEVICE T nm_relu(T h) { return h < T(0) ? T(0) : h; }

// The logistic function sigma(x) = 1 / (1 + exp(-x)) without overflow (numpy_mnist.layers.sigmoid).
// With e = exp(-|x|), which lies in (0, 1]:
//     sigma(x) = 1 / (1 + e)      for x >= 0
//     sigma(x) = e / (1 + e)      for x <  0   (multiply top and bottom by exp(x))
template <typename T>
NM_DEVICE T nm_sigmoid(T x)
{
    const T e = nm_exp(-nm_fabs(x));
    const T r = T(1) / (T(1) + e);
    return x >= T(0) ? r : e * r;
}

// ---- the losses, one row at a time ----------------------------------------------------------------
//
// Each returns the row's term of the loss sum and writes d loss / d z for the row's logits.  The
// batch loss is (sum of the n terms) / n, taken by the parameter kernel; the 1/n of the mean is
// already inside each dz, exactly where the Python backward puts it.

// mnist_loss (numpy_mnist.losses.mnist_loss and mnist_loss_backward), one logit z, target t of 0 or 1.
// The book's where(t == 1, 1 - p, p) with p = sigma(z); since 1 - sigma(z) = sigma(-z), with the
// sign s = 1 - 2 t (-1 for a 3, +1 for a 7):
//     loss      = (1 / M) sum sigma(s z)                   M = number of logits = n here
//     d loss/dz = s sigma'(s z) / M,  sigma'(u) = sigma(u) sigma(-u) = e / (1 + e)^2
// With u = s z, e = exp(-|u|) and r = 1 / (1 + e): sigma(u) = r if u >= 0 else e r, and
// sigma'(u) = e r r, so one exponential serves the value and the gradient.  For targets 0 and 1
// (the only ones the fused trainer accepts) s z is exactly the reference's where(t == 1, -z, z) and
// s sigma'(z) exactly its where(t == 1, -sigma'(z), sigma'(z)): every operation is the Python one,
// on the same operands, in the same order.
template <typename T>
NM_DEVICE T mnist_loss_row(T z, T t, T m, T* dz)
{
    const T s = T(1) - T(2) * t;
    const T u = s * z;
    const T e = nm_exp(-nm_fabs(u));
    const T r = T(1) / (T(1) + e);
    const T er = e * r;
    dz[0] = s * (er * r) / m;
    return u >= T(0) ? r : er;
}

// bce, binary cross-entropy on a logit (numpy_mnist.losses.binary_cross_entropy and its _backward).
//     loss = -(1/M) sum [t log sigma(z) + (1 - t) log(1 - sigma(z))]
//          =  (1/M) sum [softplus(z) - t z],   softplus(z) = max(z, 0) + log1p(exp(-|z|))
//     d loss / d z = (sigma(z) - t) / M        (softplus' = sigma, and d(t z)/dz = t)
// e = exp(-|z|) is shared by the softplus and the stable sigmoid.
template <typename T>
NM_DEVICE T bce_row(T z, T t, T m, T* dz)
{
    const T e = nm_exp(-nm_fabs(z));
    const T softplus = nm_relu(z) + nm_log1p(e);
    const T r = T(1) / (T(1) + e);
    dz[0] = ((z >= T(0) ? r : e * r) - t) / m;
    return softplus - t * z;
}

// Softmax cross-entropy of one row of K logits against the label y
// (numpy_mnist.losses.softmax_cross_entropy and its _backward).  With p = softmax(z):
//     loss      = -(1/N) sum_n log p_{n, y_n} = (1/N) sum_n [logsumexp(z_n) - z_{n, y_n}]
//     d loss/dz = (p - onehot(y)) / N
// because d logsumexp(z) / d z_j = p_j and d z_y / d z_j = [j == y].  Computed with the row's
// maximum shifted out, s = z - max_k z_k, e = exp(s), S = sum_k e_k:
//     log p = s - log S            p = e / S
// so no exp overflows and no log sees 0.  A label outside [0, K) picks no class: NaN, as in Python.
template <typename T, int K>
NM_DEVICE T softmax_ce_row(const T (&z)[K], long long y, T n, T* dz)
{
    T zmax = z[0];
    for (int k = 1; k < K; ++k)
        zmax = z[k] > zmax ? z[k] : zmax;
    T e[K];
    T total = T(0);
    for (int k = 0; k < K; ++k) {
        e[k] = nm_exp(z[k] - zmax);
        total = total + e[k];
    }
    const T log_total = nm_log(total);
    for (int k = 0; k < K; ++k)
        dz[k] = (e[k] / total - (k == y ? T(1) : T(0))) / n;
    if (y < 0 || y >= K)
        return T(0) / T(0);  // NaN: the training loop reports it
    return -((z[y] - zmax) - log_total);
}

// The row's loss term and dz, for the loss chosen by LOSS.
template <typename T, typename Y, int K, int LOSS>
NM_DEVICE T row_loss(const T (&z)[K], Y y, T n, T* dz)
{
    if constexpr (LOSS == MNIST_LOSS) {
        static_assert(K == 1, "mnist_loss takes one logit per row");
        return mnist_loss_row<T>(z[0], y, n, dz);
    } else if constexpr (LOSS == BCE) {
        static_assert(K == 1, "bce takes one logit per row");
        return bce_row<T>(z[0], y, n, dz);
    } else {
        static_assert(LOSS == SOFTMAX_CE && K >= 2, "cross-entropy takes K >= 2 logits per row");
        return softmax_ce_row<T, K>(z, y, n, dz);
    }
}

// 1 if the row is predicted right, else 0 (numpy_mnist.metrics.correct_count).  One logit: the
// book's sigmoid(z) > 0.5 against t == 1.  K logits: the first largest logit against the label.
template <typename T, typename Y, int K>
NM_DEVICE int row_correct(const T (&z)[K], Y y)
{
    if constexpr (K == 1) {
        return (nm_sigmoid(z[0]) > T(0.5)) == (y == Y(1));
    } else {
        int best = 0;
        for (int k = 1; k < K; ++k)
            best = z[k] > z[best] ? k : best;
        return best == y;
    }
}

// The tail of a row kernel (linear_rows, mlp_rows), reached by every thread of the block (it meets a
// barrier).  Thread t < height * K owns the logit z[t / K, t % K] of the block's rows r0 ...
// r0 + height - 1 and holds its sum `acc` without the bias:
//     zs[t]        = acc + b[t % K]            the block's logits, in shared memory
// then thread t < height takes row r = r0 + t, image rows[t]:
//     term[r]      = the row's term of the loss sum
//     dz_rows[t K + k] = d loss / d z[r, k]    (the block's rows of dz, wherever the kernel keeps them)
//     correct[r]   = 1 if the row is predicted right
template <typename T, typename Y, int K, int LOSS>
NM_DEVICE void finish_rows(bool owner, T acc, const T* __restrict__ b, const Y* __restrict__ y, const int* rows,
                           int r0, int height, int n, T* zs, T* __restrict__ term, int* __restrict__ correct,
                           T* dz_rows)
{
    const int tid = threadIdx.x;
    if (owner)
        zs[tid] = acc + b[tid % K];
    __syncthreads();
    if (tid < height) {
        const int r = r0 + tid, row = rows[tid];
        T z[K];
        for (int k = 0; k < K; ++k)
            z[k] = zs[tid * K + k];
        term[r] = row_loss<T, Y, K, LOSS>(z, y[row], T(n), dz_rows + tid * K);
        correct[r] = row_correct<T, Y, K>(z, y[row]);
    }
}
