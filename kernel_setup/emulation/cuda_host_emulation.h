// Runs the subset of CUDA that csrc/kernels.cu uses on the host, for tests on
// machines without a GPU.  Not part of the extension build.
//
// A launch runs its blocks one after another; the threads of a block are real
// host threads, so __syncthreads() is a barrier over them, warp vote and
// shuffle are barriers over the warp's 32 threads, and __shared__ arrays are
// function-local statics (one block runs at a time).  The kernels' indexing,
// tiling edges, barriers and warp collectives therefore execute as written;
// only timing and the memory model differ from a GPU.
#pragma once

#define DJV_HOST_EMULATION 1

#include <atomic>
#include <barrier>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

typedef int cudaError_t;
constexpr cudaError_t cudaSuccess = 0;
constexpr cudaError_t cudaErrorInvalidConfiguration = 9;

namespace djv_emu {

struct Block {
  explicit Block(unsigned n)
      : nthreads(n), all(n), vote(n, 0), word(n, 0) {
    for (unsigned w = 0; w < n / 32; ++w) warps.emplace_back(std::make_unique<std::barrier<>>(32));
  }
  unsigned nthreads;
  std::barrier<> all;
  std::vector<std::unique_ptr<std::barrier<>>> warps;
  std::vector<int> vote;
  std::vector<uint64_t> word;
};

inline thread_local dim3 tl_thread;
inline thread_local dim3 tl_block;
inline dim3 g_block_dim;
inline dim3 g_grid_dim;
inline Block* g_sync = nullptr;
inline cudaError_t g_last_error = cudaSuccess;

inline void check_full(unsigned mask) {
  if (mask != 0xffffffffu) std::abort();  // the kernels only use whole-warp collectives
}

inline unsigned ballot(unsigned mask, bool pred) {
  check_full(mask);
  const unsigned t = tl_thread.x, base = t / 32 * 32;
  g_sync->vote[t] = pred ? 1 : 0;
  g_sync->warps[t / 32]->arrive_and_wait();
  unsigned r = 0;
  for (unsigned l = 0; l < 32; ++l)
    if (g_sync->vote[base + l]) r |= 1u << l;
  g_sync->warps[t / 32]->arrive_and_wait();  // nobody overwrites a vote before all have read
  return r;
}

template <typename T>
T shfl_xor(unsigned mask, T v, int lane_mask) {
  static_assert(sizeof(T) <= sizeof(uint64_t), "shuffle of a wide type");
  check_full(mask);
  const unsigned t = tl_thread.x, base = t / 32 * 32;
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  g_sync->word[t] = bits;
  g_sync->warps[t / 32]->arrive_and_wait();
  bits = g_sync->word[base + ((t - base) ^ static_cast<unsigned>(lane_mask))];
  g_sync->warps[t / 32]->arrive_and_wait();
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}

// Runs kernel(args...) over the grid; blocks in order, threads of a block concurrently.
template <typename Kernel, typename... Args>
void launch(Kernel kernel, dim3 grid, dim3 block, Args... args) {
  const unsigned n = block.x;
  if (block.y != 1 || block.z != 1 || n == 0 || n % 32 != 0 || n > 1024 ||
      grid.x == 0 || grid.y == 0 || grid.z == 0) {
    g_last_error = cudaErrorInvalidConfiguration;
    return;
  }
  Block sync(n);
  g_sync = &sync;
  g_block_dim = block;
  g_grid_dim = grid;
  std::barrier<> start(n + 1), done(n + 1);
  std::atomic<bool> quit{false};
  dim3 current;
  std::vector<std::thread> threads;
  threads.reserve(n);
  for (unsigned t = 0; t < n; ++t) {
    threads.emplace_back([&, t] {
      tl_thread = dim3(t);
      while (true) {
        start.arrive_and_wait();
        if (quit.load()) return;
        tl_block = current;
        kernel(args...);
        done.arrive_and_wait();
      }
    });
  }
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        current = dim3(x, y, z);
        start.arrive_and_wait();
        done.arrive_and_wait();
      }
  quit.store(true);
  start.arrive_and_wait();
  for (auto& th : threads) th.join();
  g_sync = nullptr;
}

}  // namespace djv_emu

#define threadIdx (djv_emu::tl_thread)
#define blockIdx (djv_emu::tl_block)
#define blockDim (djv_emu::g_block_dim)
#define gridDim (djv_emu::g_grid_dim)

inline void __syncthreads() { djv_emu::g_sync->all.arrive_and_wait(); }
inline unsigned __ballot_sync(unsigned mask, int pred) { return djv_emu::ballot(mask, pred != 0); }
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask) { return djv_emu::shfl_xor(mask, v, lane_mask); }
inline int __ffs(int v) { return __builtin_ffs(v); }

inline cudaError_t cudaGetLastError() {
  const cudaError_t e = djv_emu::g_last_error;
  djv_emu::g_last_error = cudaSuccess;
  return e;
}
inline const char* cudaGetErrorString(cudaError_t e) {
  return e == cudaSuccess ? "no error" : "invalid configuration (host emulation)";
}

#define DJV_LAUNCH(kernel, grid, block, stream, ...) \
  ((void)(stream), djv_emu::launch(kernel, grid, block, __VA_ARGS__))
