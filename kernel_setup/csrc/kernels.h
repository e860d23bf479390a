// Host launchers of the DejaVid CUDA kernels (defined in kernels.cu).
//
// Plain C++ with raw pointers and no CUDA or torch types, so that binding.cpp
// compiles without CUDA headers and kernels.cu without torch headers.  Every
// pointer is device memory, every array is C-contiguous; shapes follow
// dejavid/alignment/ref.py:
//
//   x        [N, F]         samples concatenated in time
//   offsets  [B + 1] int64  sample b is x[offsets[b] : offsets[b + 1]]
//   mu, w    [C, K, F]      centroids and weights w = exp(theta)
//   paths    [B, C, K, 2]   int32 inclusive (lo, hi) sample steps per centroid row
//
// T is float or double.  ``stream`` is a cudaStream_t.  Each launcher returns
// the cudaError_t of the launch (0 = success); error_string() turns it into text.
#pragma once

#include <stdint.h>

namespace djv {

// Largest C * K the local-cost grid can cover (65535 row tiles of 128 rows).
constexpr int64_t kMaxCostRows = 65535LL * 128;

// out[r, n] = sum_f w[r, f] * |mu[r, f] - x[n, f]|  for r < rows (= C * K), n < ncols;
// out has row stride ldo.  x [ncols, F].
template <typename T>
int launch_local_cost(const T* x, int64_t ncols, const T* mu, const T* w, int64_t rows,
                      int64_t F, T* out, int64_t ldo, void* stream);

// Samples b0 .. b0 + nb - 1: accumulated cost in place over the local cost
// cost [C * K, ldc] (column 0 = first step of sample b0), then
// dist[b, c] = A[K-1, T_b-1] (dist is [B, C]) and paths[b, c] by backtracking.
template <typename T>
int launch_dtw(T* cost, int64_t ldc, const int64_t* offsets, int64_t b0, int64_t nb,
               int64_t C, int64_t K, bool hvd, T* dist, int32_t* paths, void* stream);

// dist [B, C] along given paths; partial [B, C, K] is scratch (per-row sums).
template <typename T>
int launch_path_cost(const T* x, const int64_t* offsets, int64_t B, const T* mu, const T* w,
                     const int32_t* paths, int64_t C, int64_t K, int64_t F, T* partial,
                     T* dist, void* stream);

// Gradients of sum_{b,c} grad[b, c] * d_c(x_b) along fixed paths (docs/DESIGN.md section 4):
// gmu, gtheta [C, K, F] and, when gx is not null, gx [N, F].  Every element of the
// outputs is written (no zero-fill needed); no atomics, so results are deterministic.
template <typename T>
int launch_path_grads(const T* x, const int64_t* offsets, int64_t N, int64_t B, const T* mu,
                      const T* w, const int32_t* paths, const T* grad, int64_t C, int64_t K,
                      int64_t F, T* gmu, T* gtheta, T* gx, void* stream);

// DBA sums for one centroid: paths [B, 1, K, 2] -> sums [K, F], counts [K].
template <typename T>
int launch_dba(const T* x, const int64_t* offsets, int64_t B, const int32_t* paths, int64_t K,
               int64_t F, T* sums, T* counts, void* stream);

const char* error_string(int code);

}  // namespace djv
