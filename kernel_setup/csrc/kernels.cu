// DejaVid CUDA kernels (docs/DESIGN.md sections 3-4).  Plain CUDA C++, no torch headers.
//
// Forward (free path), per chunk of samples:
//   1. local_cost_kernel: a GEMM-shaped tiled "cdist".  Rows are (class, centroid
//      step) r = c * K + i, columns are the chunk's sample steps n, reduction over
//      F of w * |mu - x|.  A 256-thread block computes a 128 x 64 tile, staging
//      16-feature slices of mu, w and x in shared memory (prefetched into registers
//      one slice ahead); each thread keeps an 8 x 4 register tile.  Accumulation is
//      in the input precision (float32 for float32 inputs).
//   2. dtw_kernel: one thread per (sample, class) pair runs the accumulated-cost
//      recursion in place over its K x T block of the local cost, then backtracks
//      (the same __host__ __device__ code as the host tests, dtw_pair.h).
// Fixed path, gradients and DBA walk the stored paths row by row:
//   3. path_cost_kernel (+ sum_rows_kernel): one block per centroid row (c, i), one
//      warp per sample, lanes over features, warp-shuffle sums; per-row partials are
//      added over i in order.
//   4. param_grads_kernel: one block per centroid row (c, i), each thread owns up to
//      8 features in registers and sums over samples in order into gmu / gtheta
//      [C, K, F] directly, no [B, C, K, F] tensor and no atomics.
//   5. x_grads_kernel: one block per sample step n; each warp finds the rows whose
//      range contains n with a ballot over 32 rows at a time and adds their terms
//      in (class, row) order; again no atomics.
//   6. dba_kernel: like 4, sums of matched sample steps and their counts per row.
// All outputs are therefore bitwise reproducible run to run.

#ifndef DJV_HOST_EMULATION
#include <cuda_runtime.h>
#define DJV_LAUNCH(kernel, grid, block, stream, ...) \
  kernel<<<(grid), (block), 0, static_cast<cudaStream_t>(stream)>>>(__VA_ARGS__)
#endif

#include "dtw_pair.h"
#include "kernels.h"

namespace djv {

// ----------------------------------------------------------------------------- local cost

constexpr int LC_BM = 128;      // rows (class, centroid step) per block
constexpr int LC_BN = 64;       // columns (sample steps) per block
constexpr int LC_BK = 16;       // features per shared-memory slice
constexpr int LC_TM = 8;        // rows per thread
constexpr int LC_TN = 4;        // columns per thread
constexpr int LC_THREADS = (LC_BM / LC_TM) * (LC_BN / LC_TN);  // 256
constexpr int LC_PAD = 4;       // keeps 16-byte alignment of rows, spreads banks
constexpr int LC_A_PER = LC_BM * LC_BK / LC_THREADS;  // mu (and w) elements each thread stages
constexpr int LC_X_PER = LC_BN * LC_BK / LC_THREADS;  // x elements each thread stages
constexpr int LC_LOAD_STRIDE = LC_THREADS / LC_BK;     // rows between a thread's staged elements
static_assert(LC_THREADS == 256, "tile shape");
static_assert(LC_THREADS % LC_BK == 0, "staging layout");

template <typename T>
__global__ void __launch_bounds__(LC_THREADS)
local_cost_kernel(const T* __restrict__ x, int64_t ncols, const T* __restrict__ mu,
                  const T* __restrict__ w, int64_t rows, int64_t F, T* __restrict__ out,
                  int64_t ldo) {
  __shared__ __align__(16) T s_mu[LC_BK][LC_BM + LC_PAD];
  __shared__ __align__(16) T s_w[LC_BK][LC_BM + LC_PAD];
  __shared__ __align__(16) T s_x[LC_BK][LC_BN + LC_PAD];

  const int tid = threadIdx.x;
  const int tx = tid % (LC_BN / LC_TN);  // column group
  const int ty = tid / (LC_BN / LC_TN);  // row group
  const int lk = tid % LC_BK;            // staging: feature within the slice
  const int lr = tid / LC_BK;            // staging: first row / column
  const int64_t col0 = static_cast<int64_t>(blockIdx.x) * LC_BN;
  const int64_t row0 = static_cast<int64_t>(blockIdx.y) * LC_BM;

  T r_mu[LC_A_PER], r_w[LC_A_PER], r_x[LC_X_PER];
  // Out-of-range rows, columns and features stage zeros: a zero weight adds nothing.
  auto stage = [&](int64_t k0) {
    const int64_t f = k0 + lk;
    const bool f_ok = f < F;
#pragma unroll
    for (int q = 0; q < LC_A_PER; ++q) {
      const int64_t r = row0 + lr + q * LC_LOAD_STRIDE;
      const bool ok = f_ok && r < rows;
      r_mu[q] = ok ? mu[r * F + f] : T(0);
      r_w[q] = ok ? w[r * F + f] : T(0);
    }
#pragma unroll
    for (int q = 0; q < LC_X_PER; ++q) {
      const int64_t n = col0 + lr + q * LC_LOAD_STRIDE;
      r_x[q] = (f_ok && n < ncols) ? x[n * F + f] : T(0);
    }
  };
  auto publish = [&]() {
#pragma unroll
    for (int q = 0; q < LC_A_PER; ++q) {
      s_mu[lk][lr + q * LC_LOAD_STRIDE] = r_mu[q];
      s_w[lk][lr + q * LC_LOAD_STRIDE] = r_w[q];
    }
#pragma unroll
    for (int q = 0; q < LC_X_PER; ++q) s_x[lk][lr + q * LC_LOAD_STRIDE] = r_x[q];
  };

  T acc[LC_TM][LC_TN];
#pragma unroll
  for (int m = 0; m < LC_TM; ++m)
#pragma unroll
    for (int n = 0; n < LC_TN; ++n) acc[m][n] = T(0);

  const int64_t nslices = (F + LC_BK - 1) / LC_BK;
  stage(0);
  publish();
  __syncthreads();
  for (int64_t s = 0; s < nslices; ++s) {
    const bool more = s + 1 < nslices;  // uniform over the block
    if (more) stage((s + 1) * LC_BK);   // global loads in flight during the math
#pragma unroll
    for (int k = 0; k < LC_BK; ++k) {
      T a_mu[LC_TM], a_w[LC_TM], b_x[LC_TN];
#pragma unroll
      for (int m = 0; m < LC_TM; ++m) {
        a_mu[m] = s_mu[k][ty * LC_TM + m];
        a_w[m] = s_w[k][ty * LC_TM + m];
      }
#pragma unroll
      for (int n = 0; n < LC_TN; ++n) b_x[n] = s_x[k][tx * LC_TN + n];
#pragma unroll
      for (int m = 0; m < LC_TM; ++m)
#pragma unroll
        for (int n = 0; n < LC_TN; ++n) acc[m][n] += a_w[m] * abs_val(a_mu[m] - b_x[n]);
    }
    __syncthreads();
    if (more) {
      publish();
      __syncthreads();
    }
  }

#pragma unroll
  for (int m = 0; m < LC_TM; ++m) {
    const int64_t r = row0 + ty * LC_TM + m;
    if (r >= rows) continue;
#pragma unroll
    for (int n = 0; n < LC_TN; ++n) {
      const int64_t c = col0 + tx * LC_TN + n;
      if (c < ncols) out[r * ldo + c] = acc[m][n];
    }
  }
}

template <typename T>
int launch_local_cost(const T* x, int64_t ncols, const T* mu, const T* w, int64_t rows,
                      int64_t F, T* out, int64_t ldo, void* stream) {
  const dim3 grid(static_cast<unsigned>((ncols + LC_BN - 1) / LC_BN),
                  static_cast<unsigned>((rows + LC_BM - 1) / LC_BM));
  DJV_LAUNCH(local_cost_kernel<T>, grid, dim3(LC_THREADS), stream, x, ncols, mu, w, rows, F,
             out, ldo);
  return static_cast<int>(cudaGetLastError());
}

// ----------------------------------------------------------------------------- DP + backtrack

// No __launch_bounds__: with it ptxas trades registers for occupancy and spills
// the 16-cell chunks of accumulate_pair; this kernel is latency-bound per thread.
constexpr int DTW_THREADS = 128;

template <typename T>
__global__ void dtw_kernel(T* __restrict__ cost, int64_t ldc,
                           const int64_t* __restrict__ offsets, int64_t b0, int64_t nb,
                           int64_t C, int64_t K, bool hvd, T* __restrict__ dist,
                           int32_t* __restrict__ paths) {
  const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= nb * C) return;
  // Class-major: neighbouring threads share a class and read neighbouring columns.
  const int64_t c = p / nb;
  const int64_t b = b0 + p % nb;
  const int64_t t0 = offsets[b] - offsets[b0];
  const int64_t Tn = offsets[b + 1] - offsets[b];
  T* A = cost + c * K * ldc + t0;
  accumulate_pair(A, ldc, K, Tn, hvd);
  dist[b * C + c] = A[(K - 1) * ldc + Tn - 1];
  backtrack_pair(A, ldc, K, Tn, hvd, paths + (b * C + c) * K * 2);
}

template <typename T>
int launch_dtw(T* cost, int64_t ldc, const int64_t* offsets, int64_t b0, int64_t nb, int64_t C,
               int64_t K, bool hvd, T* dist, int32_t* paths, void* stream) {
  const int64_t pairs = nb * C;
  const dim3 grid(static_cast<unsigned>((pairs + DTW_THREADS - 1) / DTW_THREADS));
  DJV_LAUNCH(dtw_kernel<T>, grid, dim3(DTW_THREADS), stream, cost, ldc, offsets, b0, nb, C, K,
             hvd, dist, paths);
  return static_cast<int>(cudaGetLastError());
}

// ----------------------------------------------------------------------------- path walks

constexpr int ROW_SLOTS = 8;       // features per thread held in registers
constexpr int ROW_MAX_THREADS = 256;
constexpr unsigned FULL_MASK = 0xffffffffu;

// Threads for a row kernel: enough for F features in ROW_SLOTS passes, whole warps.
inline int row_threads(int64_t F) {
  int64_t t = (F + ROW_SLOTS - 1) / ROW_SLOTS;
  t = (t + 31) / 32 * 32;
  return static_cast<int>(min_val<int64_t>(max_val<int64_t>(t, 32), ROW_MAX_THREADS));
}

// Row range of sample b on one path row, clipped to the sample (defensive: the
// Python op rejects out-of-range paths before launching).
struct Span {
  int64_t start;  // x row of the first matched step
  int64_t lo, hi;
};

__device__ __forceinline__ Span path_span(const int64_t* offsets, const int32_t* row_path,
                                          int64_t b) {
  const int64_t t0 = offsets[b];
  const int64_t Tn = offsets[b + 1] - t0;
  Span s;
  s.lo = max_val<int64_t>(row_path[0], 0);
  s.hi = min_val<int64_t>(row_path[1], Tn - 1);
  s.start = t0;
  return s;
}

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(FULL_MASK, v, off);
  return v;
}

constexpr int PC_THREADS = 256;

template <typename T>
__global__ void __launch_bounds__(PC_THREADS)
path_cost_kernel(const T* __restrict__ x, const int64_t* __restrict__ offsets, int64_t B,
                 const T* __restrict__ mu, const T* __restrict__ w,
                 const int32_t* __restrict__ paths, int64_t C, int64_t K, int64_t F,
                 T* __restrict__ partial) {
  const int64_t row = blockIdx.x;  // c * K + i
  const int64_t c = row / K;
  const int64_t i = row % K;
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int nwarps = blockDim.x / 32;
  const T* mu_r = mu + row * F;
  const T* w_r = w + row * F;
  for (int64_t b = warp; b < B; b += nwarps) {  // uniform within a warp
    const Span s = path_span(offsets, paths + ((b * C + c) * K + i) * 2, b);
    T acc = T(0);
    for (int64_t f = lane; f < F; f += 32) {
      const T m = mu_r[f];
      T sum_abs = T(0);
      for (int64_t j = s.lo; j <= s.hi; ++j) sum_abs += abs_val(m - x[(s.start + j) * F + f]);
      acc += w_r[f] * sum_abs;
    }
    acc = warp_sum(acc);
    if (lane == 0) partial[(b * C + c) * K + i] = acc;
  }
}

template <typename T>
__global__ void sum_rows_kernel(const T* __restrict__ partial, int64_t pairs, int64_t K,
                                T* __restrict__ dist) {
  const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= pairs) return;
  T acc = T(0);
  for (int64_t i = 0; i < K; ++i) acc += partial[p * K + i];
  dist[p] = acc;
}

template <typename T>
int launch_path_cost(const T* x, const int64_t* offsets, int64_t B, const T* mu, const T* w,
                     const int32_t* paths, int64_t C, int64_t K, int64_t F, T* partial,
                     T* dist, void* stream) {
  DJV_LAUNCH(path_cost_kernel<T>, dim3(static_cast<unsigned>(C * K)), dim3(PC_THREADS), stream,
             x, offsets, B, mu, w, paths, C, K, F, partial);
  int err = static_cast<int>(cudaGetLastError());
  if (err != 0) return err;
  const int64_t pairs = B * C;
  DJV_LAUNCH(sum_rows_kernel<T>, dim3(static_cast<unsigned>((pairs + 255) / 256)), dim3(256),
             stream, partial, pairs, K, dist);
  return static_cast<int>(cudaGetLastError());
}

template <typename T>
__global__ void __launch_bounds__(ROW_MAX_THREADS)
param_grads_kernel(const T* __restrict__ x, const int64_t* __restrict__ offsets, int64_t B,
                   const T* __restrict__ mu, const T* __restrict__ w,
                   const int32_t* __restrict__ paths, const T* __restrict__ grad, int64_t C,
                   int64_t K, int64_t F, T* __restrict__ gmu, T* __restrict__ gtheta) {
  const int64_t row = blockIdx.x;  // c * K + i
  const int64_t c = row / K;
  const int64_t i = row % K;
  const int64_t nt = blockDim.x;
  for (int64_t f0 = 0; f0 < F; f0 += nt * ROW_SLOTS) {
    T m[ROW_SLOTS], sum_abs[ROW_SLOTS], sum_sign[ROW_SLOTS];
#pragma unroll
    for (int q = 0; q < ROW_SLOTS; ++q) {
      const int64_t f = f0 + q * nt + threadIdx.x;
      m[q] = f < F ? mu[row * F + f] : T(0);
      sum_abs[q] = T(0);
      sum_sign[q] = T(0);
    }
    for (int64_t b = 0; b < B; ++b) {  // samples in order: deterministic sums
      const T g = grad[b * C + c];
      const Span s = path_span(offsets, paths + ((b * C + c) * K + i) * 2, b);
      for (int64_t j = s.lo; j <= s.hi; ++j) {
        const T* xr = x + (s.start + j) * F;
#pragma unroll
        for (int q = 0; q < ROW_SLOTS; ++q) {
          const int64_t f = f0 + q * nt + threadIdx.x;
          if (f < F) {
            const T d = m[q] - xr[f];
            sum_abs[q] += g * abs_val(d);
            sum_sign[q] += g * sign_val(d);
          }
        }
      }
    }
#pragma unroll
    for (int q = 0; q < ROW_SLOTS; ++q) {
      const int64_t f = f0 + q * nt + threadIdx.x;
      if (f < F) {
        const T wv = w[row * F + f];
        gtheta[row * F + f] = wv * sum_abs[q];  // d/dtheta = w * sum |mu - x|
        gmu[row * F + f] = wv * sum_sign[q];    // d/dmu = w * sum sign(mu - x)
      }
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(ROW_MAX_THREADS)
x_grads_kernel(const T* __restrict__ x, const int64_t* __restrict__ offsets, int64_t B,
               const T* __restrict__ mu, const T* __restrict__ w,
               const int32_t* __restrict__ paths, const T* __restrict__ grad, int64_t C,
               int64_t K, int64_t F, T* __restrict__ gx) {
  const int64_t n = blockIdx.x;  // x row
  // Sample b holding row n: the last b with offsets[b] <= n.
  int64_t lo_b = 0, hi_b = B - 1;
  while (lo_b < hi_b) {
    const int64_t mid = (lo_b + hi_b + 1) / 2;
    if (offsets[mid] <= n) lo_b = mid;
    else hi_b = mid - 1;
  }
  const int64_t b = lo_b;
  const int64_t j = n - offsets[b];
  const int lane = threadIdx.x % 32;
  const int64_t nt = blockDim.x;
  for (int64_t f0 = 0; f0 < F; f0 += nt * ROW_SLOTS) {
    T xv[ROW_SLOTS], acc[ROW_SLOTS];
#pragma unroll
    for (int q = 0; q < ROW_SLOTS; ++q) {
      const int64_t f = f0 + q * nt + threadIdx.x;
      xv[q] = f < F ? x[n * F + f] : T(0);
      acc[q] = T(0);
    }
    for (int64_t c = 0; c < C; ++c) {
      const T g = grad[b * C + c];
      const int32_t* pp = paths + (b * C + c) * K * 2;
      for (int64_t i0 = 0; i0 < K; i0 += 32) {
        const int64_t i = i0 + lane;
        const bool hit = i < K && pp[2 * i] <= j && j <= pp[2 * i + 1];
        unsigned mask = __ballot_sync(FULL_MASK, hit);  // same value in every lane
        while (mask != 0u) {
          const int64_t ii = i0 + __ffs(static_cast<int>(mask)) - 1;  // rows in order
          mask &= mask - 1u;
          const T* mu_r = mu + (c * K + ii) * F;
          const T* w_r = w + (c * K + ii) * F;
#pragma unroll
          for (int q = 0; q < ROW_SLOTS; ++q) {
            const int64_t f = f0 + q * nt + threadIdx.x;
            if (f < F) acc[q] += g * w_r[f] * sign_val(xv[q] - mu_r[f]);
          }
        }
      }
    }
#pragma unroll
    for (int q = 0; q < ROW_SLOTS; ++q) {
      const int64_t f = f0 + q * nt + threadIdx.x;
      if (f < F) gx[n * F + f] = acc[q];
    }
  }
}

template <typename T>
int launch_path_grads(const T* x, const int64_t* offsets, int64_t N, int64_t B, const T* mu,
                      const T* w, const int32_t* paths, const T* grad, int64_t C, int64_t K,
                      int64_t F, T* gmu, T* gtheta, T* gx, void* stream) {
  const int threads = row_threads(F);
  DJV_LAUNCH(param_grads_kernel<T>, dim3(static_cast<unsigned>(C * K)), dim3(threads), stream,
             x, offsets, B, mu, w, paths, grad, C, K, F, gmu, gtheta);
  int err = static_cast<int>(cudaGetLastError());
  if (err != 0 || gx == nullptr) return err;
  DJV_LAUNCH(x_grads_kernel<T>, dim3(static_cast<unsigned>(N)), dim3(threads), stream, x,
             offsets, B, mu, w, paths, grad, C, K, F, gx);
  return static_cast<int>(cudaGetLastError());
}

template <typename T>
__global__ void __launch_bounds__(ROW_MAX_THREADS)
dba_kernel(const T* __restrict__ x, const int64_t* __restrict__ offsets, int64_t B,
           const int32_t* __restrict__ paths, int64_t K, int64_t F, T* __restrict__ sums,
           T* __restrict__ counts) {
  const int64_t i = blockIdx.x;
  const int64_t nt = blockDim.x;
  for (int64_t f0 = 0; f0 < F; f0 += nt * ROW_SLOTS) {
    T acc[ROW_SLOTS];
#pragma unroll
    for (int q = 0; q < ROW_SLOTS; ++q) acc[q] = T(0);
    int64_t matched = 0;
    for (int64_t b = 0; b < B; ++b) {
      const Span s = path_span(offsets, paths + (b * K + i) * 2, b);
      matched += s.hi >= s.lo ? s.hi - s.lo + 1 : 0;
      for (int64_t j = s.lo; j <= s.hi; ++j) {
        const T* xr = x + (s.start + j) * F;
#pragma unroll
        for (int q = 0; q < ROW_SLOTS; ++q) {
          const int64_t f = f0 + q * nt + threadIdx.x;
          if (f < F) acc[q] += xr[f];
        }
      }
    }
#pragma unroll
    for (int q = 0; q < ROW_SLOTS; ++q) {
      const int64_t f = f0 + q * nt + threadIdx.x;
      if (f < F) sums[i * F + f] = acc[q];
    }
    if (f0 == 0 && threadIdx.x == 0) counts[i] = static_cast<T>(matched);
  }
}

template <typename T>
int launch_dba(const T* x, const int64_t* offsets, int64_t B, const int32_t* paths, int64_t K,
               int64_t F, T* sums, T* counts, void* stream) {
  DJV_LAUNCH(dba_kernel<T>, dim3(static_cast<unsigned>(K)), dim3(row_threads(F)), stream, x,
             offsets, B, paths, K, F, sums, counts);
  return static_cast<int>(cudaGetLastError());
}

const char* error_string(int code) {
  return cudaGetErrorString(static_cast<cudaError_t>(code));
}

// ----------------------------------------------------------------------------- instantiations

#define DJV_INSTANTIATE(T)                                                                    \
  template int launch_local_cost<T>(const T*, int64_t, const T*, const T*, int64_t, int64_t,  \
                                    T*, int64_t, void*);                                      \
  template int launch_dtw<T>(T*, int64_t, const int64_t*, int64_t, int64_t, int64_t, int64_t, \
                             bool, T*, int32_t*, void*);                                      \
  template int launch_path_cost<T>(const T*, const int64_t*, int64_t, const T*, const T*,     \
                                   const int32_t*, int64_t, int64_t, int64_t, T*, T*, void*); \
  template int launch_path_grads<T>(const T*, const int64_t*, int64_t, int64_t, const T*,     \
                                    const T*, const int32_t*, const T*, int64_t, int64_t,     \
                                    int64_t, T*, T*, T*, void*);                              \
  template int launch_dba<T>(const T*, const int64_t*, int64_t, const int32_t*, int64_t,      \
                             int64_t, T*, T*, void*);

DJV_INSTANTIATE(float)
DJV_INSTANTIATE(double)
#undef DJV_INSTANTIATE

}  // namespace djv
