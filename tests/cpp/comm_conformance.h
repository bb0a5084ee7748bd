// tests/cpp/comm_conformance.h: the body every Communicator must pass (one rank's part; run it on
// every rank's thread), whatever memory its buffers live in: all_reduce and reduce_scatter of
// f32 / bf16 / f16 (out of place and in place, bit-exact against the f32 sum in rank order, one
// rounding), all_gather and broadcast of any dtype (in place too, every root kind), send/recv in
// both directions of a ring inside group_start/end (recv issued first: needs the group), several
// ordered messages and an empty one between ranks 0 and 1, barrier. Used by tests/cpp/test_comm.cc
// (CPU communicator, host memory) and tests/cpp/test_cuda_peer_comm.cc (GPU ranks).
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "runtime/comm/communicator.h"
#include "runtime/core/float_convert.h"
#include "runtime/device/stream.h"

namespace eli {
namespace comm_conformance {

// One rank's memory and stream. upload / download are complete when they return and ordered after
// everything queued on stream() before them.
class RankIo {
 public:
  virtual ~RankIo() = default;
  virtual void* alloc(size_t bytes) = 0;  // valid while this RankIo lives
  virtual void upload(void* dst, const std::vector<uint8_t>& src) = 0;
  virtual std::vector<uint8_t> download(const void* src, size_t bytes) = 0;
  virtual const Stream& stream() = 0;
};

struct Sizes {
  std::vector<size_t> reduce_counts = {0, 1, 7, 111, 1025, 4099};
  std::vector<size_t> copy_counts = {0, 32, 96, 4096};  // whole Q8_0 blocks
  std::vector<DType> copy_types = {DType::kF32, DType::kBF16, DType::kI32, DType::kU8, DType::kQ8_0};
};

inline std::vector<uint8_t> values(DType dtype, size_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-3.f, 3.f);
  std::vector<uint8_t> out(comm_bytes(count, dtype));
  if (dtype == DType::kF32 || dtype == DType::kBF16 || dtype == DType::kF16) {
    for (size_t i = 0; i < count; ++i) {
      const float v = d(rng);
      if (dtype == DType::kF32) {
        std::memcpy(out.data() + 4 * i, &v, 4);
      } else {
        const uint16_t h = dtype == DType::kBF16 ? f32_to_bf16(v) : f32_to_f16(v);
        std::memcpy(out.data() + 2 * i, &h, 2);
      }
    }
  } else {
    for (uint8_t& b : out) b = static_cast<uint8_t>(rng());
  }
  return out;
}

inline float get(const std::vector<uint8_t>& b, DType dt, size_t i) {
  if (dt == DType::kF32) {
    float v;
    std::memcpy(&v, b.data() + 4 * i, 4);
    return v;
  }
  uint16_t h;
  std::memcpy(&h, b.data() + 2 * i, 2);
  return dt == DType::kBF16 ? bf16_to_f32(h) : f16_to_f32(h);
}

inline void put(std::vector<uint8_t>& b, DType dt, size_t i, float v) {
  if (dt == DType::kF32) {
    std::memcpy(b.data() + 4 * i, &v, 4);
    return;
  }
  const uint16_t h = dt == DType::kBF16 ? f32_to_bf16(v) : f32_to_f16(v);
  std::memcpy(b.data() + 2 * i, &h, 2);
}

// Sum over inputs of elements [offset, offset + count): f32 in rank order from input 0, rounded once.
inline std::vector<uint8_t> reference_sum(const std::vector<std::vector<uint8_t>>& inputs, DType dt, size_t offset,
                                          size_t count) {
  std::vector<uint8_t> out(comm_bytes(count, dt));
  for (size_t i = 0; i < count; ++i) {
    float acc = get(inputs[0], dt, offset + i);
    for (size_t r = 1; r < inputs.size(); ++r) acc += get(inputs[r], dt, offset + i);
    put(out, dt, i, acc);
  }
  return out;
}

inline uint32_t seed_of(int rank, size_t count, DType dt, int salt = 0) {
  return static_cast<uint32_t>(rank * 1000003 + count * 17 + static_cast<int>(dt) * 7919 + salt);
}

inline void* uploaded(RankIo& io, const std::vector<uint8_t>& v, size_t extra_bytes = 0) {
  void* p = io.alloc(v.size() + extra_bytes + 1);
  io.upload(p, v);
  return p;
}

// Rank r's part of the conformance body on the communicator c of n ranks.
inline void run_body(int n, int r, Communicator& c, RankIo& io, const Sizes& sizes = {}) {
  ASSERT_EQ(c.rank(), r);
  ASSERT_EQ(c.world_size(), n);
  const Stream& s = io.stream();
  const std::vector<DType> floats = {DType::kF32, DType::kBF16, DType::kF16};
  for (DType dt : floats) {
    for (size_t count : sizes.reduce_counts) {
      const size_t bytes = comm_bytes(count, dt);
      // all_reduce, out of place and in place.
      std::vector<std::vector<uint8_t>> in;
      for (int q = 0; q < n; ++q) in.push_back(values(dt, count, seed_of(q, count, dt, 1)));
      const std::vector<uint8_t> want = reference_sum(in, dt, 0, count);
      void* send = uploaded(io, in[r]);
      void* recv = io.alloc(bytes + 1);
      c.all_reduce(send, recv, count, dt, ReduceOp::kSum, s);
      EXPECT_EQ(io.download(recv, bytes), want) << "all_reduce n " << n << " rank " << r << " " << dtype_name(dt)
                                                << " count " << count;
      c.all_reduce(send, send, count, dt, ReduceOp::kSum, s);
      EXPECT_EQ(io.download(send, bytes), want) << "all_reduce in place n " << n << " " << dtype_name(dt) << " count "
                                                << count;
      // reduce_scatter: rank r gets slice r of the sum; in place: recv = send + r * count.
      std::vector<std::vector<uint8_t>> big;
      for (int q = 0; q < n; ++q) big.push_back(values(dt, count * n, seed_of(q, count, dt, 2)));
      const std::vector<uint8_t> slice = reference_sum(big, dt, count * r, count);
      void* bsend = uploaded(io, big[r]);
      void* brecv = io.alloc(bytes + 1);
      c.reduce_scatter(bsend, brecv, count, dt, ReduceOp::kSum, s);
      EXPECT_EQ(io.download(brecv, bytes), slice) << "reduce_scatter n " << n << " " << dtype_name(dt) << " count "
                                                  << count;
      uint8_t* slot = static_cast<uint8_t*>(bsend) + bytes * r;
      io.upload(bsend, big[r]);
      c.reduce_scatter(bsend, slot, count, dt, ReduceOp::kSum, s);
      EXPECT_EQ(io.download(slot, bytes), slice) << "reduce_scatter in place n " << n << " " << dtype_name(dt);
    }
  }
  for (DType dt : sizes.copy_types) {
    for (size_t count : sizes.copy_counts) {
      const size_t bytes = comm_bytes(count, dt);
      std::vector<std::vector<uint8_t>> in;
      for (int q = 0; q < n; ++q) in.push_back(values(dt, count, seed_of(q, count, dt, 3)));
      std::vector<uint8_t> all;
      for (int q = 0; q < n; ++q) all.insert(all.end(), in[q].begin(), in[q].end());
      void* send = uploaded(io, in[r]);
      void* gathered = io.alloc(bytes * n + 1);
      c.all_gather(send, gathered, count, dt, s);
      EXPECT_EQ(io.download(gathered, bytes * n), all) << "all_gather n " << n << " " << dtype_name(dt) << " count "
                                                       << count;
      std::vector<uint8_t> mine(bytes * n, 0xEE);  // in place: send = recv + r * count
      std::memcpy(mine.data() + bytes * r, in[r].data(), bytes);
      void* inplace = uploaded(io, mine);
      c.all_gather(static_cast<uint8_t*>(inplace) + bytes * r, inplace, count, dt, s);
      EXPECT_EQ(io.download(inplace, bytes * n), all) << "all_gather in place n " << n << " " << dtype_name(dt);
      for (int root : {0, n - 1}) {
        void* got = io.alloc(bytes + 1);
        c.broadcast(r == root ? send : nullptr, got, count, dt, root, s);
        EXPECT_EQ(io.download(got, bytes), in[root]) << "broadcast n " << n << " root " << root << " "
                                                     << dtype_name(dt) << " count " << count;
        void* same = uploaded(io, in[r]);  // the root in place: send == recv
        c.broadcast(same, same, count, dt, root, s);
        EXPECT_EQ(io.download(same, bytes), in[root]) << "broadcast in place n " << n << " root " << root;
      }
      if (n == 1) continue;
      // A ring both ways inside groups, the recv issued before the send (needs the group).
      const int next = (r + 1) % n, prev = (r + n - 1) % n;
      for (bool forward : {true, false}) {
        const int to = forward ? next : prev, from = forward ? prev : next;
        void* got = io.alloc(bytes + 1);
        c.group_start();
        c.recv(got, count, dt, from, s);
        c.group_start();  // nested
        c.send(send, count, dt, to, s);
        c.group_end();
        c.group_end();
        EXPECT_EQ(io.download(got, bytes), in[from]) << "send/recv n " << n << " rank " << r << " from " << from
                                                     << " " << dtype_name(dt) << " count " << count;
      }
    }
  }
  if (n > 1 && r <= 1) {
    // Several messages between one pair arrive in order; an empty one too.
    std::vector<void*> bufs;
    for (int k = 0; k < 5; ++k) {
      std::vector<uint8_t> v(4);
      const int32_t x = r == 0 ? k : -1;
      std::memcpy(v.data(), &x, 4);
      bufs.push_back(uploaded(io, v));
    }
    for (int k = 0; k < 5; ++k) {
      if (r == 0) c.send(bufs[k], 1, DType::kI32, 1, s);
      else c.recv(bufs[k], 1, DType::kI32, 0, s);
    }
    if (r == 0) c.send(nullptr, 0, DType::kI32, 1, s);
    else c.recv(nullptr, 0, DType::kI32, 0, s);
    for (int k = 0; k < 5; ++k) {
      int32_t x = -2;
      std::memcpy(&x, io.download(bufs[k], 4).data(), 4);
      EXPECT_EQ(x, k) << "ordered message " << k << " on rank " << r;
    }
  }
  c.barrier(s);
  io.download(nullptr, 0);  // waits for the barrier
}

}  // namespace comm_conformance
}  // namespace eli
