// Per-(sample, class) alignment steps shared by the CUDA kernels and host code.
//
// Plain C++ marked __host__ __device__ under nvcc, so the very same functions
// run in the kernels and in the host tests (tests/test_kernel_build.py,
// tests/test_align_cuda.py).  Semantics are docs/DESIGN.md section 3 and match
// dejavid/alignment/numba.py line for line:
//
//   A[0,0] = D[0,0];  A[i,j] = D[i,j] + min(A[i-1,j], A[i,j-1] [, A[i-1,j-1] for hvd])
//   backtrack from (K-1, T-1) with the tie rules of docs/DESIGN.md section 3,
//   path[i] = (lo_i, hi_i), the inclusive range of sample steps matched to row i.
#pragma once

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define DJV_HD __host__ __device__ __forceinline__
#else
#define DJV_HD inline
#endif

namespace djv {

DJV_HD float abs_val(float v) { return fabsf(v); }
DJV_HD double abs_val(double v) { return fabs(v); }

// torch.sign: -1, 0 or +1 (sign(0) = 0).
template <typename T>
DJV_HD T sign_val(T v) {
  return static_cast<T>((v > T(0)) - (v < T(0)));
}

template <typename T>
DJV_HD T min_val(T a, T b) { return b < a ? b : a; }

template <typename T>
DJV_HD T max_val(T a, T b) { return a < b ? b : a; }

// Cost of entering a cell from its predecessors; out-of-range ones are +inf.
template <typename T>
DJV_HD T best_predecessor(T up, T left, T diag, bool hvd) {
  T best = min_val(up, left);
  return hvd ? min_val(best, diag) : best;
}

// Cells of a row handled per step of accumulate_pair: all their loads are issued
// before the dependent chain of min/add, so a GPU thread waits for memory once
// per 16 cells instead of once per cell.
constexpr int kRowChunk = 16;

// In place: local cost A [K, T] (row stride ld) -> accumulated cost.
template <typename T>
DJV_HD void accumulate_pair(T* A, int64_t ld, int64_t K, int64_t Tn, bool hvd) {
  for (int64_t j = 1; j < Tn; j += kRowChunk) {  // row 0: running sum
    T d[kRowChunk];
#pragma unroll
    for (int q = 0; q < kRowChunk; ++q) d[q] = j + q < Tn ? A[j + q] : T(0);
    T left = A[j - 1];
#pragma unroll
    for (int q = 0; q < kRowChunk; ++q) {
      if (j + q < Tn) {
        left += d[q];
        A[j + q] = left;
      }
    }
  }
  for (int64_t i = 1; i < K; ++i) {
    T* cur = A + i * ld;
    const T* prev = cur - ld;
    T left = cur[0] + prev[0];  // column 0: only the step from above
    cur[0] = left;
    T diag = prev[0];
    for (int64_t j = 1; j < Tn; j += kRowChunk) {
      T up[kRowChunk], d[kRowChunk];
#pragma unroll
      for (int q = 0; q < kRowChunk; ++q) {
        const bool in = j + q < Tn;
        up[q] = in ? prev[j + q] : T(0);
        d[q] = in ? cur[j + q] : T(0);
      }
#pragma unroll
      for (int q = 0; q < kRowChunk; ++q) {
        if (j + q < Tn) {
          left = d[q] + best_predecessor(up[q], left, diag, hvd);
          cur[j + q] = left;
          diag = up[q];
        }
      }
    }
  }
}

// Path [K, 2] (int32 lo, hi per row) from accumulated cost A [K, T] (row stride ld).
template <typename T>
DJV_HD void backtrack_pair(const T* A, int64_t ld, int64_t K, int64_t Tn, bool hvd,
                           int32_t* path) {
  int64_t i = K - 1;
  int64_t j = Tn - 1;
  path[2 * i + 1] = static_cast<int32_t>(j);
  while (true) {
    path[2 * i] = static_cast<int32_t>(j);  // lowest j seen so far on row i
    if (i == 0 && j == 0) break;
    if (i == 0) {  // top border: only left moves remain
      --j;
      continue;
    }
    if (j == 0) {  // left border: only up moves remain
      --i;
      path[2 * i + 1] = 0;
      continue;
    }
    const T a = A[(i - 1) * ld + j];  // up
    const T b = A[i * ld + j - 1];    // left
    if (hvd) {
      const T g = A[(i - 1) * ld + j - 1];  // diagonal
      if (a < b && a < g) {
        --i;
      } else if (b < g) {
        --j;
        continue;
      } else {
        --i;
        --j;
      }
    } else if (a < b) {
      --i;
    } else {
      --j;
      continue;
    }
    path[2 * i + 1] = static_cast<int32_t>(j);  // entered a new row: its highest j
  }
}

}  // namespace djv
