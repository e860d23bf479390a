// C entry points over csrc/kernels.cu compiled for the host (cuda_host_emulation.h),
// called through ctypes by host_emulation.py.  Pointers are host memory here.
#include "cuda_host_emulation.h"

#include "../csrc/kernels.cu"

#define DJV_EXPORT(T, suffix)                                                                  \
  extern "C" int djv_local_cost_##suffix(const T* x, int64_t ncols, const T* mu, const T* w,   \
                                         int64_t rows, int64_t F, T* out, int64_t ldo) {       \
    return djv::launch_local_cost<T>(x, ncols, mu, w, rows, F, out, ldo, nullptr);             \
  }                                                                                            \
  extern "C" int djv_dtw_##suffix(T* cost, int64_t ldc, const int64_t* offsets, int64_t b0,    \
                                  int64_t nb, int64_t C, int64_t K, int hvd, T* dist,          \
                                  int32_t* paths) {                                            \
    return djv::launch_dtw<T>(cost, ldc, offsets, b0, nb, C, K, hvd != 0, dist, paths,         \
                              nullptr);                                                        \
  }                                                                                            \
  extern "C" int djv_path_cost_##suffix(const T* x, const int64_t* offsets, int64_t B,         \
                                        const T* mu, const T* w, const int32_t* paths,         \
                                        int64_t C, int64_t K, int64_t F, T* partial,           \
                                        T* dist) {                                             \
    return djv::launch_path_cost<T>(x, offsets, B, mu, w, paths, C, K, F, partial, dist,       \
                                    nullptr);                                                  \
  }                                                                                            \
  extern "C" int djv_path_grads_##suffix(const T* x, const int64_t* offsets, int64_t N,        \
                                         int64_t B, const T* mu, const T* w,                   \
                                         const int32_t* paths, const T* grad, int64_t C,       \
                                         int64_t K, int64_t F, T* gmu, T* gtheta, T* gx) {     \
    return djv::launch_path_grads<T>(x, offsets, N, B, mu, w, paths, grad, C, K, F, gmu,       \
                                     gtheta, gx, nullptr);                                     \
  }                                                                                            \
  extern "C" int djv_dba_##suffix(const T* x, const int64_t* offsets, int64_t B,               \
                                  const int32_t* paths, int64_t K, int64_t F, T* sums,         \
                                  T* counts) {                                                 \
    return djv::launch_dba<T>(x, offsets, B, paths, K, F, sums, counts, nullptr);              \
  }

DJV_EXPORT(float, f32)
DJV_EXPORT(double, f64)

// The per-pair steps alone, for checks against the reference on hand-made costs.
extern "C" void djv_dtw_pair_f64(double* A, int64_t ld, int64_t K, int64_t T, int hvd,
                                 int32_t* path) {
  djv::accumulate_pair(A, ld, K, T, hvd != 0);
  djv::backtrack_pair(A, ld, K, T, hvd != 0, path);
}
