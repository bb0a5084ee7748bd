// kernels/ref/attention_ref.cc: reference causal paged Attention over a ragged batch
// (see ref_kernels.h for the masking rule). Softmax in double with max subtraction. An int8 / fp8
// cache is read as stored value * its row's scale (kernels/ref/kv_quant.h), in double.
#include <algorithm>
#include <cmath>
#include <vector>

#include "eli/error.h"
#include "kernels/ref/kv_quant.h"
#include "kernels/ref/ref_kernels.h"

namespace eli {

namespace {

void attention_ref_impl(const AttentionArgs& a, DType cache);

}  // namespace

void attention_ref(const void* args, const ExecContext&) {
  attention_ref_impl(*static_cast<const AttentionArgs*>(args), DType::kF32);
}
void attention_ref_bf16(const void* args, const ExecContext&) {
  attention_ref_impl(*static_cast<const AttentionArgs*>(args), DType::kBF16);
}
void attention_ref_f16(const void* args, const ExecContext&) {
  attention_ref_impl(*static_cast<const AttentionArgs*>(args), DType::kF16);
}
void attention_ref_i8(const void* args, const ExecContext&) {
  attention_ref_impl(*static_cast<const AttentionArgs*>(args), DType::kI8);
}
void attention_ref_fp8(const void* args, const ExecContext&) {
  attention_ref_impl(*static_cast<const AttentionArgs*>(args), DType::kF8E4M3);
}

namespace {

void attention_ref_impl(const AttentionArgs& a, DType cache) {
  ELI_CHECK(a.n_kv_heads > 0 && a.n_heads % a.n_kv_heads == 0, "attention: n_heads ", a.n_heads,
            " not a multiple of n_kv_heads ", a.n_kv_heads);
  ELI_CHECK(a.block_size > 0 && a.head_dim > 0, "attention: bad block_size/head_dim");
  const bool quant = kv_dtype_quantized(cache);
  ELI_CHECK(!quant || (a.k_scale != nullptr && a.v_scale != nullptr), "attention: a ", dtype_name(cache),
            " KV cache needs k_scale and v_scale");
  const int64_t group = a.n_heads / a.n_kv_heads;
  const int64_t hd = a.head_dim;
  // Element d of the cache row starting at element r0 (= (slot * nkv + kv head) * hd).
  auto load = [&](const void* c, const float* sc, int64_t r0, int64_t d) -> double {
    if (!quant) return ref_load(c, cache, r0 + d);
    return static_cast<double>(kv_load_unscaled(static_cast<const uint8_t*>(c) + r0, cache, d)) * sc[r0 / hd];
  };
  std::vector<double> scores, acc(hd);
  for (int64_t s = 0; s < a.n_seqs; ++s) {
    const int32_t* blocks = a.block_tables + s * a.max_blocks_per_seq;
    for (int64_t t = a.cu_seqlens[s]; t < a.cu_seqlens[s + 1]; ++t) {
      int64_t lo, hi;
      attention_kv_range(a.positions[t], a.context_lens[s], a.max_blocks_per_seq * a.block_size,
                         a.sliding_window, &lo, &hi);
      for (int64_t h = 0; h < a.n_heads; ++h) {
        const int64_t q0 = t * a.q_stride + h * hd, o0 = t * a.out_stride + h * hd;
        const int64_t kvh = h / group;
        auto kv_offset = [&](int64_t j) {
          const int64_t slot = static_cast<int64_t>(blocks[j / a.block_size]) * a.block_size + j % a.block_size;
          return (slot * a.n_kv_heads + kvh) * hd;
        };
        if (hi < lo) {
          for (int64_t d = 0; d < hd; ++d) ref_store(a.out, a.out_dtype, o0 + d, 0.0f);
          continue;
        }
        scores.assign(hi - lo + 1, 0.0);
        double mx = -INFINITY;
        for (int64_t j = lo; j <= hi; ++j) {
          const int64_t k0 = kv_offset(j);
          double dot = 0.0;
          for (int64_t d = 0; d < hd; ++d) {
            dot += static_cast<double>(ref_load(a.q, a.q_dtype, q0 + d)) * load(a.k_cache, a.k_scale, k0, d);
          }
          scores[j - lo] = dot * a.scale;
          if (scores[j - lo] > mx) mx = scores[j - lo];
        }
        double sum = 0.0;
        for (double& sc : scores) {
          sc = std::exp(sc - mx);
          sum += sc;
        }
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t j = lo; j <= hi; ++j) {
          const int64_t v0 = kv_offset(j);
          const double p = scores[j - lo] / sum;
          for (int64_t d = 0; d < hd; ++d) acc[d] += p * load(a.v_cache, a.v_scale, v0, d);
        }
        for (int64_t d = 0; d < hd; ++d) ref_store(a.out, a.out_dtype, o0 + d, static_cast<float>(acc[d]));
      }
    }
  }
}

}  // namespace

}  // namespace eli
