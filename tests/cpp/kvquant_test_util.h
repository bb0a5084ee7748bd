// tests/cpp/kvquant_test_util.h: shared pieces of the compressed-KV tests (CPU:
// test_kernels_attention_kvquant.cc, CUDA: test_cuda_attention_kvquant.cc): ragged paged batches
// over shuffled blocks, a cache filled with the reference quantizer (kernels/ref/kv_quant.h) with
// its dequantized f32 twin, and AttentionArgs for them.
#pragma once

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "kernel_test_util.h"
#include "kernels/ref/kv_quant.h"

namespace eli::kvqtest {

inline constexpr DType kQuantDtypes[] = {DType::kI8, DType::kF8E4M3};

struct SeqSpec {
  int32_t context_len, n_new;
};

// A ragged batch over a paged cache whose blocks are handed out in shuffled order.
struct Paged {
  int64_t bs, n_blocks, max_blocks = 0;
  std::vector<int32_t> cu{0}, positions, context_lens, tables, slots;
  Paged(const std::vector<SeqSpec>& seqs, int64_t block_size, std::mt19937& rng) : bs(block_size) {
    int64_t total = 0;
    for (const SeqSpec& s : seqs) {
      max_blocks = std::max<int64_t>(max_blocks, (s.context_len + bs - 1) / bs + 1);
      total += (s.context_len + bs - 1) / bs;
    }
    n_blocks = total + 2;
    std::vector<int32_t> ids(static_cast<size_t>(n_blocks));
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    size_t next = 0;
    tables.assign(seqs.size() * static_cast<size_t>(max_blocks), -1);
    for (size_t s = 0; s < seqs.size(); ++s) {
      for (int64_t b = 0; b < (seqs[s].context_len + bs - 1) / bs; ++b) tables[s * max_blocks + b] = ids[next++];
      context_lens.push_back(seqs[s].context_len);
      for (int32_t i = 0; i < seqs[s].n_new; ++i) {
        const int32_t p = seqs[s].context_len - seqs[s].n_new + i;
        positions.push_back(p);
        slots.push_back(tables[s * max_blocks + p / bs] * static_cast<int32_t>(bs) + p % bs);
      }
      cu.push_back(static_cast<int32_t>(positions.size()));
    }
  }
  int64_t n_tokens() const { return static_cast<int64_t>(positions.size()); }
  int64_t n_seqs() const { return static_cast<int64_t>(context_lens.size()); }
};

// A quantized cache filled from random f32 rows with the reference quantizer.
struct QuantCache {
  std::vector<uint8_t> k, v;
  std::vector<float> ks, vs;       // scales (rows)
  std::vector<float> kdeq, vdeq;   // the dequantized values, f32
  QuantCache(int64_t rows, int64_t hd, DType dt, std::mt19937& rng) {
    k.resize(static_cast<size_t>(rows * hd));
    v.resize(k.size());
    ks.resize(static_cast<size_t>(rows));
    vs.resize(ks.size());
    kdeq.resize(k.size());
    vdeq.resize(k.size());
    for (int64_t r = 0; r < rows; ++r) {
      // Rows of different magnitudes (one outlier-heavy), so scales differ from row to row.
      const float mag = r % 5 == 0 ? 4.0f : 1.0f;
      std::vector<float> kr = ktest::rand_vec(rng, static_cast<size_t>(hd), -mag, mag), vr = ktest::rand_vec(rng, static_cast<size_t>(hd));
      ks[r] = kv_quantize_row(kr.data(), hd, dt, k.data() + r * hd);
      vs[r] = kv_quantize_row(vr.data(), hd, dt, v.data() + r * hd);
      for (int64_t d = 0; d < hd; ++d) {
        kdeq[r * hd + d] = kv_load_unscaled(k.data() + r * hd, dt, d) * ks[r];
        vdeq[r * hd + d] = kv_load_unscaled(v.data() + r * hd, dt, d) * vs[r];
      }
    }
  }
};

struct Heads {
  int64_t nh, nkv;
};

inline const std::vector<SeqSpec> kSeqs = {{1, 1}, {17, 17}, {40, 1}, {33, 5}, {70, 23}};

inline AttentionArgs attention_args(const Paged& b, Heads hs, int64_t hd, int64_t window, int64_t qs, int64_t os,
                             float* out, const float* q) {
  AttentionArgs a{};
  a.out = out;
  a.q = q;
  a.cu_seqlens = b.cu.data();
  a.positions = b.positions.data();
  a.context_lens = b.context_lens.data();
  a.block_tables = b.tables.data();
  a.n_seqs = b.n_seqs();
  a.n_heads = hs.nh;
  a.n_kv_heads = hs.nkv;
  a.head_dim = hd;
  a.block_size = b.bs;
  a.max_blocks_per_seq = b.max_blocks;
  a.q_stride = qs;
  a.out_stride = os;
  a.sliding_window = window;
  a.scale = 1.0f / std::sqrt(static_cast<float>(hd));
  return a;
}

}  // namespace eli::kvqtest
