// runtime/runner/device_sampler.cc: DeviceSampler (see device_sampler.h): packs the per-row
// parameters and penalty lists into one staging area, uploads it, launches Op::kSample on the
// device's default stream, downloads the compact results and unpacks them. Device-agnostic: the
// kernel comes from the registry and the host staging from the device layer (host_staging.h).
//
// Upload area: the requests' parameter slot table (TableLayout below; sent only when a request got
// a slot since the last launch), then the chunk's rows (InLayout: draw offsets, row -> slot,
// penalty lists, masks; sent every launch).
// Token masks (runtime/runner/step_masks.h) travel with the step's other inputs, in the same single
// upload: a constrained row costs its mask's bytes and no extra copy or synchronisation.
// Result area (ts = the chunk's largest top-logprob count): token, status (i32 x n), logprob (f32 x n),
//   top_ids (i32 x n*ts), top_logprobs (f32 x n*ts).
#include "runtime/runner/device_sampler.h"

#include <algorithm>
#include <cstring>

#include "eli/error.h"
#include "kernels/sample_ops.h"
#include "runtime/device/host_staging.h"
#include "runtime/device/pooled_device.h"

namespace eli {

namespace {

size_t align16(size_t v) { return (v + 15) & ~size_t{15}; }

// Lays arrays out one after another, each 16-byte aligned: take() returns an array's offset.
struct Packer {
  size_t end = 0;
  size_t take(size_t bytes) {
    const size_t here = end;
    end = align16(end + bytes);
    return here;
  }
};

// The parameter slot table, at the start of the upload area (E entries, each array 16-byte aligned):
//   temperature, top_p, min_p, repetition, presence, frequency (f64 x E), seed (u64 x E),
//   top_k, n_logprobs (i32 x E).
struct TableLayout {
  size_t temperature, top_p, min_p, rep, pres, freq, seed, top_k, n_logprobs, total;
};

// A chunk's rows, after the table (offsets from the area's start):
//   offset (u64 x n), row_slot (i32 x n), penalty_offsets (i32 x n+1), penalty_tokens,
//   penalty_counts (i32 x nnz), penalty_bias (f32 x nnz), mask_row (i32 x n), masks (u32 x ...).
struct InLayout {
  size_t offset, row_slot, pen_offsets, pen_tokens, pen_counts, pen_bias, mask_row, masks, total;
};

TableLayout table_layout(int64_t entries) {
  TableLayout L{};
  Packer at;
  const size_t e = static_cast<size_t>(entries);
  L.temperature = at.take(e * 8);
  L.top_p = at.take(e * 8);
  L.min_p = at.take(e * 8);
  L.rep = at.take(e * 8);
  L.pres = at.take(e * 8);
  L.freq = at.take(e * 8);
  L.seed = at.take(e * 8);
  L.top_k = at.take(e * 4);
  L.n_logprobs = at.take(e * 4);
  L.total = at.end;
  return L;
}

InLayout in_layout(size_t table_bytes, int64_t n, int64_t nnz, int64_t mask_words_total) {
  InLayout L{};
  Packer at{table_bytes};
  const size_t un = static_cast<size_t>(n), unnz = static_cast<size_t>(nnz);
  L.offset = at.take(un * 8);
  L.row_slot = at.take(un * 4);
  L.pen_offsets = at.take((un + 1) * 4);
  L.pen_tokens = at.take(unnz * 4);
  L.pen_counts = at.take(unnz * 4);
  L.pen_bias = at.take(unnz * 4);
  L.mask_row = at.take(un * 4);
  L.masks = at.take(static_cast<size_t>(mask_words_total) * 4);
  L.total = at.end;
  return L;
}

struct OutLayout {
  size_t token, status, logprob, top_ids, top_logprobs, total;
};

OutLayout out_layout(int64_t n, int64_t ts) {
  OutLayout L{};
  Packer at;
  const size_t un = static_cast<size_t>(n), uts = static_cast<size_t>(ts);
  L.token = at.take(un * 4);
  L.status = at.take(un * 4);
  L.logprob = at.take(un * 4);
  L.top_ids = at.take(un * uts * 4);
  L.top_logprobs = at.take(un * uts * 4);
  L.total = at.end;
  return L;
}

template <typename T>
T* at_offset(void* base, size_t off) {
  return reinterpret_cast<T*>(static_cast<char*>(base) + off);
}

// The message of the eli::Error the host sampler throws for a non-finite logit.
std::string non_finite_message(int32_t index, float value) {
  try {
    throw_non_finite_logits(index, value);
  } catch (const Error& e) {
    return e.what();
  }
}

}  // namespace

DeviceSampler::DeviceSampler(Device& device, int64_t max_rows, int64_t vocab, int64_t max_penalty_tokens,
                             ThreadPool* pool)
    : device_(device), pool_(pool) {
  ELI_CHECK(max_rows >= 1, "DeviceSampler: max_rows must be >= 1, got ", max_rows);
  ELI_CHECK(vocab >= 1 && vocab <= INT32_MAX, "DeviceSampler: vocab must be in [1, 2^31), got ", vocab);
  ELI_CHECK(max_penalty_tokens >= 0, "DeviceSampler: max_penalty_tokens must be >= 0, got ", max_penalty_tokens);
  const DeviceKind kind = device.id().kind;
  kernel_ = &get_kernel(Op::kSample, kind, DType::kF32);
  stream_ = device.default_stream().native();
  max_rows_ = max_rows;
  vocab_ = vocab;
  max_pen_ = max_penalty_tokens > 0 ? max_penalty_tokens : std::max<int64_t>(vocab, 1024 * max_rows);
  max_pen_ = std::min<int64_t>(std::max<int64_t>(max_pen_, vocab), INT32_MAX);
  mask_words_ = (vocab + 31) / 32;
  n_entries_ = 2 * max_rows_;  // a chunk's rows hold distinct entries; room for as many more
  table_bytes_ = table_layout(n_entries_).total;
  in_bytes_ = in_layout(table_bytes_, max_rows_, max_pen_, max_rows_ * mask_words_).total;
  entries_.assign(static_cast<size_t>(n_entries_), Entry{});
  table_host_.assign(table_bytes_, 0);
  out_bytes_ = out_layout(max_rows_, kSampleMaxTopLogprobs).total;

  for (int i = 0; i < kSlots; ++i) {
    host_in_[i] = create_host_staging(device, in_bytes_);
    host_out_[i] = create_host_staging(device, out_bytes_);
  }
  try {
    d_in_ = device_.allocate(in_bytes_);
    d_out_ = device_.allocate(out_bytes_);
    d_pen_raw_ = static_cast<float*>(device_.allocate(static_cast<size_t>(max_pen_) * sizeof(float)));
    // The results come back in one copy that spans the alignment gaps between the packed arrays,
    // which no kernel writes: zero them once so the copy never reads uninitialised device memory
    // (compute-sanitizer initcheck).
    device_.memset_zero(d_out_, out_bytes_);
  } catch (...) {
    if (d_in_ != nullptr) device_.free(d_in_);
    if (d_out_ != nullptr) device_.free(d_out_);
    throw;
  }
  pen_tokens_.reserve(static_cast<size_t>(max_pen_));
  pen_counts_.reserve(static_cast<size_t>(max_pen_));
  pen_bias_.reserve(static_cast<size_t>(max_pen_));
  pen_offsets_.reserve(static_cast<size_t>(max_rows_) + 1);
}

DeviceSampler::~DeviceSampler() {
  // Queued work may still use the buffers (a failed step): let it finish first.
  try {
    device_.synchronize();
  } catch (...) {
  }
  device_.free(d_pen_raw_);
  device_.free(d_out_);
  device_.free(d_in_);
}

bool DeviceSampler::supports(const SamplingParams& p) { return p.logprobs <= kSampleMaxTopLogprobs; }

void DeviceSampler::sample(float* device_logits, int64_t n_rows, int64_t vocab,
                           const std::vector<const SamplingParams*>& params,
                           const std::vector<SequenceSamplingState*>& states, std::vector<SampleResult>* out,
                           std::vector<std::string>* errors, const std::vector<int64_t>* draw_offsets,
                           const StepMasks* masks) {
  ELI_CHECK(out != nullptr && errors != nullptr, "DeviceSampler::sample: null output");
  ELI_CHECK_KIND(kInternal, pending_.empty(), "DeviceSampler::sample while asynchronous launches are pending");
  ELI_CHECK(draw_offsets == nullptr || static_cast<int64_t>(draw_offsets->size()) == n_rows,
            "DeviceSampler::sample: ", draw_offsets == nullptr ? 0 : draw_offsets->size(), " offsets for ", n_rows, " rows");
  ELI_CHECK(n_rows >= 0, "DeviceSampler::sample: n_rows must be >= 0, got ", n_rows);
  ELI_CHECK(static_cast<int64_t>(params.size()) == n_rows && static_cast<int64_t>(states.size()) == n_rows,
            "DeviceSampler::sample: ", params.size(), " params and ", states.size(), " states for ", n_rows, " rows");
  ELI_CHECK(vocab >= 1 && vocab <= vocab_, "DeviceSampler::sample: vocab ", vocab, " outside [1, ", vocab_, "]");
  out->assign(static_cast<size_t>(n_rows), SampleResult{});
  errors->assign(static_cast<size_t>(n_rows), std::string());
  if (n_rows == 0) return;
  ELI_CHECK(device_logits != nullptr, "DeviceSampler::sample: null logits");
  for (int64_t r = 0; r < n_rows; ++r) {
    ELI_CHECK(params[r] != nullptr && states[r] != nullptr, "DeviceSampler::sample: null params/state of row ", r);
    ELI_CHECK(supports(*params[r]), "DeviceSampler::sample: row ", r, " asks for ", params[r]->logprobs,
              " logprobs; at most ", kSampleMaxTopLogprobs, " on the device");
  }

  ELI_CHECK(masks == nullptr || (static_cast<int64_t>(masks->row.size()) == n_rows && masks->words == mask_words_),
            "DeviceSampler::sample: masks do not match the rows");
  int64_t r0 = 0;
  clear_lists();
  for (int64_t r = 0; r < n_rows; ++r) {
    // The row's penalty list (ids checked; a bad one fails this row only).
    try {
      penalty_list(*params[r], *states[r], vocab, &row_pen_, &row_bias_);
    } catch (const Error& e) {
      (*errors)[static_cast<size_t>(r)] = e.what();
      row_pen_.clear();
      row_bias_.clear();
    }
    const int64_t nnz = static_cast<int64_t>(pen_tokens_.size());
    if (r - r0 == max_rows_ || nnz + static_cast<int64_t>(row_pen_.size()) > max_pen_) {
      run_chunk(device_logits, r0, r, vocab, params, states, draw_offsets, masks, out, errors);
      r0 = r;
      clear_lists();
    }
    append_row_list();
  }
  run_chunk(device_logits, r0, n_rows, vocab, params, states, draw_offsets, masks, out, errors);
}

void DeviceSampler::clear_lists() {
  pen_tokens_.clear();
  pen_counts_.clear();
  pen_bias_.clear();
  pen_offsets_.assign(1, 0);
  any_bias_ = false;
}

void DeviceSampler::append_row_list() {
  for (size_t j = 0; j < row_pen_.size(); ++j) {
    pen_tokens_.push_back(row_pen_[j].first);
    pen_counts_.push_back(row_pen_[j].second);
    const float b = j < row_bias_.size() ? row_bias_[j] : 0.0f;
    pen_bias_.push_back(b);
    any_bias_ = any_bias_ || b != 0.0f;
  }
  pen_offsets_.push_back(static_cast<int32_t>(pen_tokens_.size()));
}

void DeviceSampler::run_chunk(float* device_logits, int64_t r0, int64_t r1, int64_t vocab,
                              const std::vector<const SamplingParams*>& params,
                              const std::vector<SequenceSamplingState*>& states,
                              const std::vector<int64_t>* draw_offsets, const StepMasks* masks,
                              std::vector<SampleResult>* out, std::vector<std::string>* errors) {
  if (r1 <= r0) return;
  Launch l = enqueue_chunk(device_logits, r0, r1, vocab, params, states, draw_offsets, masks);
  finish_chunk(l, r0, out, errors);
}

DeviceSampler::Launch DeviceSampler::enqueue_chunk(float* device_logits, int64_t r0, int64_t r1, int64_t vocab,
                                                   const std::vector<const SamplingParams*>& params,
                                                   const std::vector<SequenceSamplingState*>& states,
                                                   const std::vector<int64_t>* draw_offsets,
                                                   const StepMasks* masks) {
  const int64_t n = r1 - r0;
  const int64_t nnz = static_cast<int64_t>(pen_tokens_.size());
  ELI_CHECK(n >= 1 && n <= max_rows_ && nnz <= max_pen_ && static_cast<int64_t>(pen_offsets_.size()) == n + 1,
            "DeviceSampler: internal chunking error");
  ELI_CHECK_KIND(kInternal, static_cast<int>(pending_.size()) < kSlots, "DeviceSampler: more than ", kSlots,
                 " launches pending");
  Launch l;
  l.slot = next_slot_;
  next_slot_ = (next_slot_ + 1) % kSlots;
  l.n = n;
  l.vocab = vocab;
  int64_t ts = 0;
  l.logprobs.resize(static_cast<size_t>(n));
  for (int64_t r = r0; r < r1; ++r) {
    ts = std::max<int64_t>(ts, std::min<int64_t>(params[r]->logprobs, vocab));
    l.logprobs[static_cast<size_t>(r - r0)] = params[r]->logprobs;
  }
  l.ts = std::min<int64_t>(ts, kSampleMaxTopLogprobs);

  int64_t n_masks = 0;
  if (masks != nullptr) {
    for (int64_t r = r0; r < r1; ++r) n_masks += masks->row[static_cast<size_t>(r)] >= 0 ? 1 : 0;
  }
  const InLayout L = in_layout(table_bytes_, n, nnz, n_masks * mask_words_);
  // The slot's previous copies (its upload precedes its download) must be done before it is
  // refilled; after a collected launch this returns at once, after drop_pending() it may wait.
  host_out_[l.slot]->wait();
  void* h = host_in_[l.slot]->data();
  const bool table_changed = assign_entries(params, states, r0, r1, at_offset<int32_t>(h, L.row_slot));
  for (int64_t i = 0; i < n; ++i) {
    const SequenceSamplingState& st = *states[r0 + i];
    // The draw's index in the request: its outputs so far (given explicitly when some are still
    // in flight). (seed, index) key the draw's random numbers.
    at_offset<uint64_t>(h, L.offset)[i] =
        static_cast<uint64_t>(draw_offsets != nullptr ? (*draw_offsets)[static_cast<size_t>(r0 + i)] : st.n_output());
  }
  // The chunk's masks, packed in row order (mask_row indexes them).
  int32_t k = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t* m = masks != nullptr ? masks->of(static_cast<size_t>(r0 + i)) : nullptr;
    at_offset<int32_t>(h, L.mask_row)[i] = m != nullptr ? k : -1;
    if (m != nullptr) {
      std::memcpy(at_offset<uint32_t>(h, L.masks) + static_cast<size_t>(k) * static_cast<size_t>(mask_words_), m,
                  static_cast<size_t>(mask_words_) * 4);
      ++k;
    }
  }
  std::memcpy(at_offset<int32_t>(h, L.pen_offsets), pen_offsets_.data(), pen_offsets_.size() * 4);
  if (nnz > 0) {
    std::memcpy(at_offset<int32_t>(h, L.pen_tokens), pen_tokens_.data(), static_cast<size_t>(nnz) * 4);
    std::memcpy(at_offset<int32_t>(h, L.pen_counts), pen_counts_.data(), static_cast<size_t>(nnz) * 4);
    std::memcpy(at_offset<float>(h, L.pen_bias), pen_bias_.data(), static_cast<size_t>(nnz) * 4);
  }
  // Ordered on the default stream before the launch; the slot's staging is not reused before the
  // slot's event says its download finished. The table goes too when an entry changed (the
  // device's copy is then replaced in stream order, after every earlier launch read it).
  if (table_changed || !table_on_device_) {
    std::memcpy(h, table_host_.data(), table_bytes_);
    device_.copy_host_to_device(d_in_, h, L.total, stream_);
    table_on_device_ = true;
  } else {
    device_.copy_host_to_device(at_offset<char>(d_in_, table_bytes_), at_offset<char>(h, table_bytes_),
                                L.total - table_bytes_, stream_);
  }

  const OutLayout O = out_layout(n, l.ts);
  l.out_total = O.total;
  SampleArgs a{};
  a.token = at_offset<int32_t>(d_out_, O.token);
  a.status = at_offset<int32_t>(d_out_, O.status);
  a.logprob = at_offset<float>(d_out_, O.logprob);
  a.top_ids = l.ts > 0 ? at_offset<int32_t>(d_out_, O.top_ids) : nullptr;
  a.top_logprobs = l.ts > 0 ? at_offset<float>(d_out_, O.top_logprobs) : nullptr;
  a.logits = device_logits + r0 * vocab;
  a.penalty_raw = d_pen_raw_;
  const TableLayout T = table_layout(n_entries_);
  a.row_slot = at_offset<int32_t>(d_in_, L.row_slot);
  a.temperature = at_offset<double>(d_in_, T.temperature);
  a.top_k = at_offset<int32_t>(d_in_, T.top_k);
  a.top_p = at_offset<double>(d_in_, T.top_p);
  a.min_p = at_offset<double>(d_in_, T.min_p);
  a.repetition_penalty = at_offset<double>(d_in_, T.rep);
  a.presence_penalty = at_offset<double>(d_in_, T.pres);
  a.frequency_penalty = at_offset<double>(d_in_, T.freq);
  a.seed = at_offset<uint64_t>(d_in_, T.seed);
  a.offset = at_offset<uint64_t>(d_in_, L.offset);
  a.n_logprobs = at_offset<int32_t>(d_in_, T.n_logprobs);
  a.penalty_offsets = at_offset<int32_t>(d_in_, L.pen_offsets);
  a.penalty_tokens = at_offset<int32_t>(d_in_, L.pen_tokens);
  a.penalty_counts = at_offset<int32_t>(d_in_, L.pen_counts);
  a.penalty_bias = any_bias_ ? at_offset<float>(d_in_, L.pen_bias) : nullptr;
  a.allow_mask = n_masks > 0 ? at_offset<uint32_t>(d_in_, L.masks) : nullptr;
  a.mask_row = at_offset<int32_t>(d_in_, L.mask_row);
  a.mask_words = mask_words_;
  a.n_rows = n;
  a.vocab = vocab;
  a.logits_stride = vocab;
  a.top_stride = l.ts;
  ExecContext ctx;
  ctx.stream = stream_;
  ctx.pool = pool_;
  kernel_->fn(&a, ctx);
  // Asynchronous on a CUDA device (pinned staging, the device's stream); a plain copy elsewhere.
  device_.copy_device_to_host(host_out_[l.slot]->data(), d_out_, O.total, stream_);
  host_out_[l.slot]->record(stream_);
  return l;
}

bool DeviceSampler::assign_entries(const std::vector<const SamplingParams*>& params,
                                   const std::vector<SequenceSamplingState*>& states, int64_t r0, int64_t r1,
                                   int32_t* row_slot) {
  const uint64_t tick = ++tick_;  // this chunk's rows are marked with it: none of them is evicted
  const TableLayout T = table_layout(n_entries_);
  void* t = table_host_.data();
  bool changed = false;
  for (int64_t r = r0; r < r1; ++r) {
    const uint64_t key = states[r]->key();
    auto it = entry_of_.find(key);
    int32_t e = 0;
    if (it != entry_of_.end()) {
      e = it->second;
    } else {
      // A free entry, else the one used longest ago outside this chunk (n_entries_ >= 2 x rows).
      int32_t victim = -1;
      for (int32_t j = 0; j < static_cast<int32_t>(n_entries_); ++j) {
        const Entry& c = entries_[static_cast<size_t>(j)];
        if (c.last_use == tick) continue;
        if (victim < 0 || c.key == 0 || c.last_use < entries_[static_cast<size_t>(victim)].last_use) victim = j;
        if (c.key == 0) break;
      }
      ELI_CHECK_KIND(kInternal, victim >= 0, "DeviceSampler: no free parameter slot for a chunk of ", r1 - r0, " rows");
      e = victim;
      Entry& v = entries_[static_cast<size_t>(e)];
      if (v.key != 0) entry_of_.erase(v.key);
      v.key = key;
      entry_of_[key] = e;
      const SamplingParams& p = *params[r];
      at_offset<double>(t, T.temperature)[e] = p.temperature;
      at_offset<double>(t, T.top_p)[e] = p.top_p;
      at_offset<double>(t, T.min_p)[e] = p.min_p;
      at_offset<double>(t, T.rep)[e] = p.repetition_penalty;
      at_offset<double>(t, T.pres)[e] = p.presence_penalty;
      at_offset<double>(t, T.freq)[e] = p.frequency_penalty;
      at_offset<uint64_t>(t, T.seed)[e] = states[r]->seed();
      // top_k against the sampler's vocab (a row's vocab never exceeds it): the kernels treat
      // k >= their vocab as off either way.
      at_offset<int32_t>(t, T.top_k)[e] =
          p.top_k == 1 ? 1 : (p.top_k <= 0 || p.top_k >= vocab_ ? 0 : static_cast<int32_t>(p.top_k));
      at_offset<int32_t>(t, T.n_logprobs)[e] = p.logprobs;
      changed = true;
    }
    entries_[static_cast<size_t>(e)].last_use = tick;
    row_slot[r - r0] = e;
  }
  return changed;
}

void DeviceSampler::finish_chunk(const Launch& l, int64_t r0, std::vector<SampleResult>* out,
                                 std::vector<std::string>* errors) {
  host_out_[l.slot]->wait();
  const OutLayout O = out_layout(l.n, l.ts);
  const void* ho = host_out_[l.slot]->data();
  auto i32 = [&](size_t off, int64_t i) { return at_offset<const int32_t>(const_cast<void*>(ho), off)[i]; };
  auto f32 = [&](size_t off, int64_t i) { return at_offset<const float>(const_cast<void*>(ho), off)[i]; };
  for (int64_t i = 0; i < l.n; ++i) {
    const size_t r = static_cast<size_t>(r0 + i);
    if (!(*errors)[r].empty()) continue;
    const int32_t token = i32(O.token, i);
    const float lp = f32(O.logprob, i);
    if (i32(O.status, i) == kSampleMaskedOut) {
      (*errors)[r] = "structured output: the token mask allows no token";
      continue;
    }
    if (i32(O.status, i) != kSampleOk) {
      (*errors)[r] = non_finite_message(token, lp);
      continue;
    }
    SampleResult& res = (*out)[r];
    res.token = token;
    const int32_t want = l.logprobs[static_cast<size_t>(i)];
    if (want >= 0) {
      res.logprob = lp;
      const int64_t n_top = std::min<int64_t>(std::min<int64_t>(want, l.vocab), l.ts);
      res.top_logprobs.reserve(static_cast<size_t>(n_top));
      for (int64_t j = 0; j < n_top; ++j) {
        res.top_logprobs.emplace_back(i32(O.top_ids, i * l.ts + j), f32(O.top_logprobs, i * l.ts + j));
      }
    }
  }
}

bool DeviceSampler::can_launch_async(const std::vector<const SamplingParams*>& params) const {
  if (static_cast<int64_t>(params.size()) > max_rows_ || static_cast<int>(pending_.size()) >= kSlots) return false;
  int64_t nnz = 0;
  for (const SamplingParams* p : params) {
    if (p == nullptr || !supports(*p) || p->repetition_penalty != 1.0 || p->presence_penalty != 0.0 ||
        p->frequency_penalty != 0.0) {
      return false;
    }
    nnz += static_cast<int64_t>(p->logit_bias.size());  // the lists hold the biases only
  }
  return nnz <= max_pen_;
}

void DeviceSampler::launch_async(float* device_logits, int64_t n_rows, int64_t vocab,
                                 const std::vector<const SamplingParams*>& params,
                                 const std::vector<SequenceSamplingState*>& states,
                                 const std::vector<int64_t>& draw_offsets, const StepMasks* masks) {
  ELI_CHECK(n_rows >= 1 && static_cast<int64_t>(params.size()) == n_rows &&
                static_cast<int64_t>(states.size()) == n_rows && static_cast<int64_t>(draw_offsets.size()) == n_rows,
            "DeviceSampler::launch_async: ", params.size(), " params, ", states.size(), " states and ",
            draw_offsets.size(), " offsets for ", n_rows, " rows");
  ELI_CHECK(vocab >= 1 && vocab <= vocab_, "DeviceSampler::launch_async: vocab ", vocab, " outside [1, ", vocab_, "]");
  ELI_CHECK(device_logits != nullptr, "DeviceSampler::launch_async: null logits");
  ELI_CHECK_KIND(kInternal, can_launch_async(params), "DeviceSampler::launch_async: these rows need sample()");
  ELI_CHECK(masks == nullptr || (static_cast<int64_t>(masks->row.size()) == n_rows && masks->words == mask_words_),
            "DeviceSampler::launch_async: masks do not match the rows");
  // No penalties: the lists hold the logit biases only (they do not depend on the outputs in flight).
  clear_lists();
  for (int64_t r = 0; r < n_rows; ++r) {
    penalty_list(*params[r], *states[r], vocab, &row_pen_, &row_bias_);
    append_row_list();
  }
  pending_.push_back(enqueue_chunk(device_logits, 0, n_rows, vocab, params, states, &draw_offsets, masks));
}

void DeviceSampler::collect(std::vector<SampleResult>* out, std::vector<std::string>* errors) {
  ELI_CHECK(out != nullptr && errors != nullptr, "DeviceSampler::collect: null output");
  ELI_CHECK_KIND(kInternal, !pending_.empty(), "DeviceSampler::collect: nothing was launched");
  const Launch l = std::move(pending_.front());
  pending_.pop_front();
  out->assign(static_cast<size_t>(l.n), SampleResult{});
  errors->assign(static_cast<size_t>(l.n), std::string());
  finish_chunk(l, 0, out, errors);
}

void DeviceSampler::drop_pending() { pending_.clear(); }

}  // namespace eli
