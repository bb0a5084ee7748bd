// tests/cpp/cuda_emu.h: a tiny CPU emulator of the CUDA built-ins one block-per-row kernel uses, so
// that its device code can be tested on a machine without a GPU (tests/cpp/test_sampling_emu.cc).
//
// Each CUDA thread of a block is a fiber (ucontext) on the calling thread; blocks run one after the
// other. A fiber runs until it reaches a barrier (__syncthreads, or a warp collective: shuffles and
// ballots synchronise the 32 lanes of their warp), then the next runnable fiber runs; the order is
// shuffled by a seed each round, so a missing barrier shows up as a wrong result. `__shared__`
// becomes `static` (blocks never overlap). Atomics are plain operations (fibers never preempt).
// Errors it reports as exceptions: a barrier that not every live thread of the block (or warp)
// reaches, threads that exit while others wait, and deadlock.
//
// Include this header before the kernel source, in exactly one translation unit, and compile that
// source into its own namespace (the real kernel's host stub has the same name).
#pragma once

#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace cuda_emu {

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};

}  // namespace cuda_emu

inline cuda_emu::Dim3 threadIdx, blockIdx, blockDim, gridDim;

struct alignas(16) float4 {
  float x, y, z, w;
};

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

using std::isfinite;

namespace cuda_emu {

struct Fiber {
  ucontext_t ctx;
  std::unique_ptr<char[]> stack;
  bool done = false;
  bool at_block = false;
  bool at_warp = false;
};

struct Block {
  std::vector<Fiber> fibers;
  ucontext_t main_ctx;
  int cur = -1;
  int block_waiting = 0;
  int warp_waiting[32] = {};
  uint64_t xchg[1024] = {};
  std::function<void()> body;
  std::exception_ptr error;
};

inline Block*& current_block() {
  static Block* b = nullptr;
  return b;
}

inline void yield_to_scheduler() {
  Block* b = current_block();
  swapcontext(&b->fibers[static_cast<size_t>(b->cur)].ctx, &b->main_ctx);
}

inline void block_barrier() {
  Block* b = current_block();
  b->fibers[static_cast<size_t>(b->cur)].at_block = true;
  ++b->block_waiting;
  yield_to_scheduler();
}

inline void warp_barrier() {
  Block* b = current_block();
  b->fibers[static_cast<size_t>(b->cur)].at_warp = true;
  ++b->warp_waiting[b->cur >> 5];
  yield_to_scheduler();
}

inline void fiber_entry() {
  Block* b = current_block();
  try {
    b->body();
  } catch (...) {
    if (!b->error) b->error = std::current_exception();
  }
  b->fibers[static_cast<size_t>(b->cur)].done = true;
  // Returning resumes uc_link (the scheduler).
}

// Runs body() as every thread of one block of n_threads (a multiple of 32, <= 1024).
inline void run_block(unsigned n_threads, const std::function<void()>& body, std::mt19937& order_rng,
                      size_t stack_bytes = 128 * 1024) {
  if (n_threads == 0 || n_threads > 1024 || n_threads % 32 != 0) throw std::runtime_error("emu: bad block size");
  Block blk;
  blk.body = body;
  blk.fibers.resize(n_threads);
  current_block() = &blk;
  for (unsigned t = 0; t < n_threads; ++t) {
    Fiber& f = blk.fibers[t];
    f.stack.reset(new char[stack_bytes]);
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack.get();
    f.ctx.uc_stack.ss_size = stack_bytes;
    f.ctx.uc_link = &blk.main_ctx;
    makecontext(&f.ctx, fiber_entry, 0);
  }
  std::vector<unsigned> order(n_threads);
  for (unsigned t = 0; t < n_threads; ++t) order[t] = t;
  const unsigned n_warps = n_threads / 32;
  for (;;) {
    std::shuffle(order.begin(), order.end(), order_rng);
    bool ran = false;
    for (unsigned t : order) {
      Fiber& f = blk.fibers[t];
      if (f.done || f.at_block || f.at_warp) continue;
      blk.cur = static_cast<int>(t);
      threadIdx.x = t;
      swapcontext(&blk.main_ctx, &f.ctx);
      ran = true;
    }
    if (blk.error) {
      current_block() = nullptr;
      std::rethrow_exception(blk.error);
    }
    int live = 0, done = 0;
    for (const Fiber& f : blk.fibers) (f.done ? done : live) += 1;
    if (live == 0) break;
    bool released = false;
    // Warp collectives: all 32 lanes of the warp must be there.
    for (unsigned w = 0; w < n_warps; ++w) {
      int lanes_live = 0, lanes_block = 0;
      for (unsigned l = 0; l < 32; ++l) {
        const Fiber& f = blk.fibers[w * 32 + l];
        lanes_live += !f.done;
        lanes_block += f.at_block;
      }
      if (blk.warp_waiting[w] == 0) continue;
      if (blk.warp_waiting[w] == 32) {
        for (unsigned l = 0; l < 32; ++l) blk.fibers[w * 32 + l].at_warp = false;
        blk.warp_waiting[w] = 0;
        released = true;
      } else if (blk.warp_waiting[w] + lanes_block + (32 - lanes_live) == 32) {
        current_block() = nullptr;
        throw std::runtime_error("emu: warp " + std::to_string(w) +
                                 " diverged: some lanes at a warp collective, others at __syncthreads or exited");
      }
    }
    if (blk.block_waiting > 0 && blk.block_waiting + done == static_cast<int>(n_threads)) {
      if (done > 0) {
        current_block() = nullptr;
        throw std::runtime_error("emu: __syncthreads reached while " + std::to_string(done) + " threads had exited");
      }
      for (Fiber& f : blk.fibers) f.at_block = false;
      blk.block_waiting = 0;
      released = true;
    }
    if (!ran && !released) {
      current_block() = nullptr;
      throw std::runtime_error("emu: deadlock (a barrier not reached by every thread)");
    }
  }
  current_block() = nullptr;
}

// Launches kernel(args...) on a 1-D grid; blocks run in order.
template <typename F>
void launch(unsigned grid, unsigned block, uint32_t order_seed, F&& call) {
  std::mt19937 rng(order_seed);
  gridDim.x = grid;
  blockDim.x = block;
  for (unsigned b = 0; b < grid; ++b) {
    blockIdx.x = b;
    run_block(block, std::function<void()>(call), rng);
  }
}

template <typename T>
inline uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8, "emu: shuffle of a type wider than 8 bytes");
  uint64_t u = 0;
  std::memcpy(&u, &v, sizeof(T));
  return u;
}
template <typename T>
inline T from_bits(uint64_t u) {
  T v;
  std::memcpy(&v, &u, sizeof(T));
  return v;
}

template <typename T>
inline T shuffle_from(T v, int src_lane) {
  Block* b = current_block();
  const int t = b->cur, base = t & ~31;
  b->xchg[t] = to_bits(v);
  warp_barrier();
  const T r = from_bits<T>(b->xchg[base + src_lane]);
  warp_barrier();
  return r;
}

}  // namespace cuda_emu

inline void __syncthreads() { cuda_emu::block_barrier(); }

template <typename T>
inline T __shfl_xor_sync(unsigned, T v, int lane_mask) {
  return cuda_emu::shuffle_from(v, static_cast<int>(threadIdx.x & 31u) ^ lane_mask);
}
template <typename T>
inline T __shfl_up_sync(unsigned, T v, unsigned delta) {
  const int lane = static_cast<int>(threadIdx.x & 31u);
  return cuda_emu::shuffle_from(v, lane >= static_cast<int>(delta) ? lane - static_cast<int>(delta) : lane);
}
template <typename T>
inline T __shfl_sync(unsigned, T v, int src_lane) {
  return cuda_emu::shuffle_from(v, src_lane & 31);
}
inline unsigned __ballot_sync(unsigned, bool pred) {
  cuda_emu::Block* b = cuda_emu::current_block();
  const int t = b->cur, base = t & ~31;
  b->xchg[t] = pred ? 1u : 0u;
  cuda_emu::warp_barrier();
  unsigned m = 0;
  for (int l = 0; l < 32; ++l) m |= (b->xchg[base + l] ? 1u : 0u) << l;
  cuda_emu::warp_barrier();
  return m;
}

inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __ffs(int v) { return __builtin_ffs(v); }
inline int __clz(int v) { return v == 0 ? 32 : __builtin_clz(static_cast<unsigned>(v)); }
inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline unsigned atomicAdd(unsigned* p, unsigned v) {
  const unsigned old = *p;
  *p = old + v;
  return old;
}
inline int atomicAdd(int* p, int v) {
  const int old = *p;
  *p = old + v;
  return old;
}
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
  const unsigned long long old = *p;
  *p = old + v;
  return old;
}
inline float atomicAdd(float* p, float v) {
  const float old = *p;
  *p = old + v;
  return old;
}
