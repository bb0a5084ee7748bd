// kernels/cpu/sampling_cpu.cc: Op::kSample on the CPU (semantics: kernels/sample_ops.h; numerics:
// kernels/sample_math.h). Same outputs as the reference (kernels/ref/sampling_ref.cc), bit for bit,
// without its full sorts. Per row:
//  - finiteness and max/argmax in one pass; the log-sum-exp (the reference's order and types) and
//    the top-n by one scan with a small sorted list, when logprobs are wanted;
//  - top-k: a k-heap per chunk of the row, merged (O(vocab + k log k));
//  - top-p without top-k: one pass computes the integer masses of the tokens with s >= the mass
//    cut (the others weigh 0 and come after them in O, so they are never kept), adds them per
//    bucket of s (monotone in the order O) and lists those tokens; only the listed tokens of the
//    bucket where the cumulative mass crosses the target are sorted;
//  - the Gumbel-max draw visits the candidates in any order and skips a token's logs when even the
//    largest noise its random bits allow cannot beat the best key so far (sample_gumbel_bound): on
//    real logits that is nearly every token, so the draw costs about one hash per candidate.
// Parallelism: rows run in parallel on the pool when there are at least as many rows as threads;
// otherwise each row's passes are split into chunks of the vocab that run in parallel. Every
// cross-chunk combination is exact (integer sums, max with the id tie rule, the heap merge), so
// the outputs do not depend on the number of threads or chunks.
// Invariants: no allocation in steady state (per-thread scratch grows once); a row's outputs depend
// on that row's inputs only.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/sample_math.h"
#include "kernels/sample_ops.h"
#include "runtime/core/thread_pool.h"

namespace eli {

namespace {

// top-p without top-k buckets tokens by -s: 32 buckets per unit; tokens past the last regular
// bucket (s < -31.97) have mass 0 (s < kSampleMassCut) and share the last one.
constexpr int kBuckets = 1024;
constexpr float kBucketsPerUnit = 32.0f;
static_assert((kBuckets - 1) / kBucketsPerUnit > -kSampleMassCut, "tokens with mass need regular buckets");
constexpr int32_t kChunkMin = 8192;  // tokens per chunk when a row is split over threads

int bucket_of(float s) {
  const float d = -s * kBucketsPerUnit;
  return d < static_cast<float>(kBuckets - 1) ? static_cast<int>(d) : kBuckets - 1;
}

// What one chunk of a row found.
struct Chunk {
  int32_t begin = 0, end = 0;
  int32_t bad = INT_MAX;        // lowest non-finite index
  float max = -INFINITY;        // max and its lowest id
  int32_t argmax = INT_MAX;
  std::vector<int32_t> ids;       // top-k heap / top-p: tokens with s >= kSampleMassCut
  std::vector<uint16_t> buckets;  // top-p: the bucket of each of ids
  std::vector<uint64_t> bucket_mass;
  uint64_t mass = 0;
  float best_key = -INFINITY;   // the draw's best in this chunk
  int32_t best_id = INT_MAX;
};

struct Scratch {
  std::vector<Chunk> chunks;
  std::vector<int32_t> cand, boundary, top;
  std::vector<uint64_t> bucket_mass;
};

// Runs f(chunk) for every chunk, on the pool when there are several.
template <typename F>
void for_chunks(ThreadPool* pool, std::vector<Chunk>& chunks, int n, F&& f) {
  if (n == 1) {
    f(chunks[0]);
    return;
  }
  parallel_for(pool, n, [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) f(chunks[static_cast<size_t>(c)]);
  });
}

// Folds a chunk's (value, id) maximum into (m, am): larger value, or equal value and lower id.
void fold_max(float v, int32_t id, float& m, int32_t& am) {
  if (id != INT_MAX && (am == INT_MAX || sample_before(v, id, m, am))) {
    m = v;
    am = id;
  }
}

class RowSampler {
 public:
  RowSampler(const SampleArgs& a, int64_t r, ThreadPool* pool, int n_chunks, Scratch& sc)
      : a_(a), r_(r), p_(a.row_slot != nullptr ? a.row_slot[r] : r), pool_(pool), sc_(sc), V_(static_cast<int32_t>(a.vocab)), x_(a.logits + r * a.logits_stride) {
    n_ = n_chunks;
    if (static_cast<int>(sc_.chunks.size()) < n_) sc_.chunks.resize(static_cast<size_t>(n_));
    for (int c = 0; c < n_; ++c) {
      Chunk& ch = sc_.chunks[static_cast<size_t>(c)];
      ch.begin = static_cast<int32_t>(static_cast<int64_t>(V_) * c / n_);
      ch.end = static_cast<int32_t>(static_cast<int64_t>(V_) * (c + 1) / n_);
    }
  }

  void run() {
    const int64_t ts = a_.top_stride;
    for (int64_t j = 0; j < ts; ++j) {
      a_.top_ids[r_ * ts + j] = -1;
      a_.top_logprobs[r_ * ts + j] = 0.0f;
    }
    a_.logprob[r_] = 0.0f;

    // 1. Finiteness and the raw max.
    const float* x = x_;
    for_chunks(pool_, sc_.chunks, n_, [x](Chunk& ch) {
      // A branch-free pass (max, and whether anything is non-finite: v - v is 0 only for finite
      // v), then the first index of the max (the lowest id) or of a non-finite value.
      float m = x[ch.begin];
      bool finite = true;
      for (int32_t i = ch.begin; i < ch.end; ++i) {
        const float v = x[i];
        finite &= (v - v == 0.0f);
        m = v > m ? v : m;
      }
      ch.bad = INT_MAX;
      ch.max = m;
      ch.argmax = INT_MAX;
      if (!finite) {
        for (int32_t i = ch.begin; i < ch.end; ++i) {
          if (!std::isfinite(x[i])) {
            ch.bad = i;
            return;
          }
        }
      }
      for (int32_t i = ch.begin; i < ch.end; ++i) {
        if (x[i] == m) {
          ch.argmax = i;
          break;
        }
      }
    });
    int32_t bad = INT_MAX;
    float m = -INFINITY;
    int32_t am = INT_MAX;
    for (int c = 0; c < n_; ++c) {
      const Chunk& ch = sc_.chunks[static_cast<size_t>(c)];
      bad = std::min(bad, ch.bad);
      fold_max(ch.max, ch.argmax, m, am);
    }
    if (bad != INT_MAX) {
      a_.status[r_] = kSampleNonFinite;
      a_.token[r_] = bad;
      a_.logprob[r_] = x_[bad];
      return;
    }

    // 2. Raw log-sum-exp (the reference's order and types) and the top-n.
    const int n_lp = a_.n_logprobs[p_];
    double lse = 0.0;
    if (n_lp >= 0) lse = logprobs(m, n_lp);

    // 3. Penalties and logit bias in place (raw values saved), 3b. the token mask, then the max
    // of the penalised row.
    const double rep = a_.repetition_penalty[p_], pres = a_.presence_penalty[p_], freq = a_.frequency_penalty[p_];
    const bool pen_active = sample_penalties_active(rep, pres, freq);
    int32_t pb = 0, pe = 0;
    if (a_.penalty_offsets != nullptr && (pen_active || a_.penalty_bias != nullptr)) {
      pb = a_.penalty_offsets[r_];
      pe = a_.penalty_offsets[r_ + 1];
    }
    const uint32_t* mask =
        a_.allow_mask != nullptr && a_.mask_row[r_] >= 0 ? a_.allow_mask + static_cast<int64_t>(a_.mask_row[r_]) * a_.mask_words
                                                         : nullptr;
    int32_t best = am;
    if (pe > pb || mask != nullptr) {
      for (int32_t j = pb; j < pe; ++j) {
        const int32_t t = a_.penalty_tokens[j];
        if (t < 0 || t >= V_) continue;  // the caller checks ids; never write out of the row
        a_.penalty_raw[j] = x_[t];
        x_[t] = sample_bias_and_penalize(x_[t], a_.penalty_bias != nullptr ? a_.penalty_bias[j] : 0.0f,
                                         a_.penalty_counts[j], pen_active, rep, pres, freq);
      }
      float* xw = x_;
      for_chunks(pool_, sc_.chunks, n_, [xw, mask](Chunk& ch) {
        if (mask != nullptr) {
          for (int32_t i = ch.begin; i < ch.end; ++i) {
            if (!sample_mask_allows(mask, i)) xw[i] = -INFINITY;
          }
        }
        float m = xw[ch.begin];
        for (int32_t i = ch.begin; i < ch.end; ++i) m = xw[i] > m ? xw[i] : m;
        ch.max = m;
        ch.argmax = INT_MAX;
        for (int32_t i = ch.begin; i < ch.end; ++i) {
          if (xw[i] == m) {
            ch.argmax = i;
            break;
          }
        }
      });
      float pm = -INFINITY;
      best = INT_MAX;
      for (int c = 0; c < n_; ++c) fold_max(sc_.chunks[static_cast<size_t>(c)].max, sc_.chunks[static_cast<size_t>(c)].argmax, pm, best);
      if (pm == -INFINITY) {  // the mask left no token (penalties and biases stay finite)
        a_.status[r_] = kSampleMaskedOut;
        a_.token[r_] = -1;
        return;
      }
    }

    // 4./5. Greedy, or the filters and the draw.
    int32_t token = best;
    const double temperature = a_.temperature[p_];
    const int32_t k = a_.top_k[p_];
    if (!(temperature < kSampleGreedyTemperatureEps || k == 1)) {
      zmax_ = x_[best];
      inv_t_ = sample_inv_temperature(temperature);
      const bool listed = select_candidates(k, a_.top_p[p_]);
      token = draw(best, listed, a_.min_p[p_], sample_row_key(a_.seed[p_], a_.offset[r_]));
    }

    // 6. Outputs.
    a_.token[r_] = token;
    a_.status[r_] = kSampleOk;
    if (n_lp >= 0) {
      float raw = x_[token];
      for (int32_t j = pb; j < pe; ++j) {
        if (a_.penalty_tokens[j] == token) raw = a_.penalty_raw[j];
      }
      a_.logprob[r_] = static_cast<float>(static_cast<double>(raw) - lse);
    }
  }

 private:
  float s_of(int32_t t) const { return sample_scaled(x_[t], zmax_, inv_t_); }
  bool better(int32_t p, int32_t q) const { return sample_before(x_[p], p, x_[q], q); }

  // The lse of the raw row and the top-n logprobs; returns the lse.
  double logprobs(float m, int n_lp) {
    const int64_t ts = a_.top_stride;
    double sum = 0.0;
    for (int32_t i = 0; i < V_; ++i) sum += std::exp(x_[i] - m);
    const double lse = static_cast<double>(m) + std::log(sum);
    const int64_t n_top = std::min<int64_t>(std::min<int64_t>(n_lp, V_), ts);
    if (n_top > 0) {
      // Ids scanned in ascending order, inserted only when strictly better than the last kept one.
      std::vector<int32_t>& top = sc_.top;
      top.clear();
      const float* x = x_;
      for (int32_t i = 0; i < V_; ++i) {
        const float v = x[i];
        if (static_cast<int64_t>(top.size()) == n_top && !(v > x[top.back()])) continue;
        auto pos = std::upper_bound(top.begin(), top.end(), v, [x](float val, int32_t id) { return val > x[id]; });
        top.insert(pos, i);
        if (static_cast<int64_t>(top.size()) > n_top) top.pop_back();
      }
      for (int64_t j = 0; j < n_top; ++j) {
        const int32_t id = top[static_cast<size_t>(j)];
        a_.top_ids[r_ * ts + j] = id;
        a_.top_logprobs[r_ * ts + j] = static_cast<float>(static_cast<double>(x_[id]) - lse);
      }
    }
    return lse;
  }

  // The candidates of a non-greedy row (top-k, then top-p) in sc_.cand; false: every id.
  bool select_candidates(int32_t k, double top_p) {
    std::vector<int32_t>& cand = sc_.cand;
    cand.clear();
    if (k > 1 && k < V_) {
      // A k-heap per chunk (front: the worst kept id); on real logits almost every id fails the
      // first comparison. The union of the chunks' k best holds the row's k best.
      const float* x = x_;
      for_chunks(pool_, sc_.chunks, n_, [x, k](Chunk& ch) {
        auto cmp = [x](int32_t p, int32_t q) { return sample_before(x[p], p, x[q], q); };
        std::vector<int32_t>& heap = ch.ids;
        heap.clear();
        int32_t t = ch.begin;
        for (; t < ch.end && static_cast<int32_t>(heap.size()) < k; ++t) {
          heap.push_back(t);
          std::push_heap(heap.begin(), heap.end(), cmp);
        }
        // Ids come in ascending order, so t beats the worst kept id iff its logit is larger.
        float worst = heap.empty() ? INFINITY : x[heap.front()];
        for (; t < ch.end; ++t) {
          if (!(x[t] > worst)) continue;
          std::pop_heap(heap.begin(), heap.end(), cmp);
          heap.back() = t;
          std::push_heap(heap.begin(), heap.end(), cmp);
          worst = x[heap.front()];
        }
      });
      for (int c = 0; c < n_; ++c) {
        const auto& ids = sc_.chunks[static_cast<size_t>(c)].ids;
        cand.insert(cand.end(), ids.begin(), ids.end());
      }
      auto cmp = [this](int32_t p, int32_t q) { return better(p, q); };
      std::partial_sort(cand.begin(), cand.begin() + k, cand.end(), cmp);  // best first: the order O
      cand.resize(static_cast<size_t>(k));
      if (top_p < 1.0) {
        uint64_t total = 0;
        for (int32_t t : cand) total += sample_mass(s_of(t));
        const uint64_t target = sample_top_p_target(total, top_p);
        uint64_t cum = 0;
        for (size_t i = 0; i < cand.size(); ++i) {
          cum += sample_mass(s_of(cand[i]));
          if (cum >= target) {
            cand.resize(i + 1);
            break;
          }
        }
      }
      return true;
    }
    if (top_p >= 1.0) return false;

    // Every token of a lower bucket comes before every token of a higher one in O, so whole
    // buckets are kept while the mass stays below the target; only the crossing bucket is sorted.
    // Tokens below the mass cut weigh 0 and come after every token above it: the crossing token
    // (which has mass) is above it, so they are never kept and need no second look.
    const float* x = x_;
    const float zmax = zmax_, inv_t = inv_t_;
    for_chunks(pool_, sc_.chunks, n_, [x, zmax, inv_t](Chunk& ch) {
      ch.bucket_mass.assign(kBuckets, 0);
      ch.ids.clear();
      ch.buckets.clear();
      uint64_t total = 0;
      for (int32_t t = ch.begin; t < ch.end; ++t) {
        const float s = sample_scaled(x[t], zmax, inv_t);
        if (!(s >= kSampleMassCut)) continue;
        const uint64_t w = sample_mass(s);
        const int b = bucket_of(s);
        ch.ids.push_back(t);
        ch.buckets.push_back(static_cast<uint16_t>(b));
        ch.bucket_mass[static_cast<size_t>(b)] += w;
        total += w;
      }
      ch.mass = total;
    });
    sc_.bucket_mass.assign(kBuckets, 0);
    uint64_t total = 0;
    for (int c = 0; c < n_; ++c) {
      const Chunk& ch = sc_.chunks[static_cast<size_t>(c)];
      for (int b = 0; b < kBuckets; ++b) sc_.bucket_mass[static_cast<size_t>(b)] += ch.bucket_mass[static_cast<size_t>(b)];
      total += ch.mass;
    }
    const uint64_t target = sample_top_p_target(total, top_p);
    int crossing = kBuckets - 1;
    uint64_t cum = 0;
    for (int b = 0; b < kBuckets; ++b) {
      if (cum + sc_.bucket_mass[static_cast<size_t>(b)] >= target) {
        crossing = b;
        break;
      }
      cum += sc_.bucket_mass[static_cast<size_t>(b)];
    }
    std::vector<int32_t>& boundary = sc_.boundary;
    boundary.clear();
    for (int c = 0; c < n_; ++c) {
      const Chunk& ch = sc_.chunks[static_cast<size_t>(c)];
      for (size_t i = 0; i < ch.ids.size(); ++i) {
        if (ch.buckets[i] < crossing) {
          cand.push_back(ch.ids[i]);
        } else if (ch.buckets[i] == crossing) {
          boundary.push_back(ch.ids[i]);
        }
      }
    }
    std::sort(boundary.begin(), boundary.end(), [this](int32_t p, int32_t q) { return better(p, q); });
    for (int32_t t : boundary) {  // cum < target here: the crossing token is in this bucket
      cand.push_back(t);
      cum += sample_mass(s_of(t));
      if (cum >= target) break;
    }
    return true;
  }

  // The Gumbel-max draw over the candidates (sc_.cand if listed, else every id).
  int32_t draw(int32_t best, bool listed, double min_p, uint64_t key) {
    // The best token survives every filter: its key is every chunk's starting point.
    const float start = sample_gumbel_key(s_of(best), key, best);
    const int32_t n_cand = listed ? static_cast<int32_t>(sc_.cand.size()) : V_;
    const int n = n_cand >= 2 * kChunkMin ? std::min(n_, n_cand / kChunkMin) : 1;
    if (static_cast<int>(sc_.chunks.size()) < n) sc_.chunks.resize(static_cast<size_t>(n));
    for (int c = 0; c < n; ++c) {
      Chunk& ch = sc_.chunks[static_cast<size_t>(c)];
      ch.begin = static_cast<int32_t>(static_cast<int64_t>(n_cand) * c / n);
      ch.end = static_cast<int32_t>(static_cast<int64_t>(n_cand) * (c + 1) / n);
    }
    const int32_t* ids = listed ? sc_.cand.data() : nullptr;
    const float* x = x_;
    const float zmax = zmax_, inv_t = inv_t_;
    for_chunks(pool_, sc_.chunks, n, [&](Chunk& ch) {
      float best_key = start;
      int32_t best_id = best;
      for (int32_t i = ch.begin; i < ch.end; ++i) {
        const int32_t t = ids != nullptr ? ids[i] : i;
        const float s = sample_scaled(x[t], zmax, inv_t);
        if (sample_fadd(s, kSampleGumbelMax) < best_key) continue;
        const uint64_t bits = sample_token_bits(key, t);
        if (sample_fadd(s, sample_gumbel_bound(bits)) < best_key) continue;
        if (min_p > 0.0 && !sample_min_p_keeps(s, min_p)) continue;
        const float g = sample_fadd(s, sample_gumbel(bits));
        if (sample_before(g, t, best_key, best_id)) {
          best_key = g;
          best_id = t;
        }
      }
      ch.best_key = best_key;
      ch.best_id = best_id;
    });
    float best_key = start;
    int32_t best_id = best;
    for (int c = 0; c < n; ++c) {
      const Chunk& ch = sc_.chunks[static_cast<size_t>(c)];
      if (sample_before(ch.best_key, ch.best_id, best_key, best_id)) {
        best_key = ch.best_key;
        best_id = ch.best_id;
      }
    }
    return best_id;
  }

  const SampleArgs& a_;
  const int64_t r_;
  const int64_t p_;  // the entry of the request's parameters (SampleArgs::row_slot)
  ThreadPool* pool_;
  Scratch& sc_;
  const int32_t V_;
  float* x_;
  int n_ = 1;
  float zmax_ = 0.0f, inv_t_ = 1.0f;
};

Scratch& thread_scratch() {
  thread_local Scratch sc;
  return sc;
}

}  // namespace

void sample_cpu(const void* args, const ExecContext& ctx) {
  const SampleArgs& a = *static_cast<const SampleArgs*>(args);
  check_sample_args(a);
  ThreadPool* pool = ctx.pool;
  const int threads = pool != nullptr ? pool->n_threads() : 1;
  if (a.n_rows >= threads || a.vocab < 2 * kChunkMin) {
    // Rows in parallel, each in one pass per step.
    parallel_for(pool, a.n_rows, [&a](int64_t begin, int64_t end) {
      Scratch& sc = thread_scratch();
      for (int64_t r = begin; r < end; ++r) RowSampler(a, r, nullptr, 1, sc).run();
    });
    return;
  }
  // Fewer rows than threads: one row at a time, its passes split over the threads.
  const int n_chunks = std::max(1, std::min<int>(threads, static_cast<int>(a.vocab / kChunkMin)));
  Scratch& sc = thread_scratch();
  for (int64_t r = 0; r < a.n_rows; ++r) RowSampler(a, r, pool, n_chunks, sc).run();
}

}  // namespace eli
