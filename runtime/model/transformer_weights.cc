// runtime/model/transformer_weights.cc: reads, checks, converts and merges the weights of a
// decoder-only transformer (see transformer_weights.h for the layout).
//
// Every tensor's shape is compared with what the ModelSpec implies before anything is copied.
// A matrix whose stored dtype already equals the wanted one (and needs no permutation) stays a
// zero-copy view of the memory-mapped file when it is one tensor or its parts lie back to back in
// the file; with defer_merges its other merges stay lists of such views. Any other matrix is built
// in one pass per row (copied, or converted through a one-row f32 buffer; un-permuted on the fly).
#include "runtime/model/transformer_weights.h"

#include <cstring>
#include <utility>
#include <sstream>

#include "eli/error.h"
#include "kernels/ref/dequant_ref.h"
#include "kernels/ref/float_convert.h"
#include "runtime/core/thread_pool.h"
#include "runtime/device/device.h"
#include "runtime/device/staged_upload.h"
#include "runtime/model/weight_source.h"

namespace eli {
namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

// Converts rows [r0, r1) of a 2-D (or 1-D: one row) tensor to f32.
void rows_to_f32(const TensorInfo& t, int64_t cols, int64_t r0, int64_t r1, float* dst) {
  const DTypeInfo& info = dtype_info(t.dtype);
  const int64_t row_bytes = cols / info.block_elems * info.block_bytes;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* src = t.data + r * row_bytes;
    float* out = dst + (r - r0) * cols;
    switch (t.dtype) {
      case DType::kF32: std::memcpy(out, src, cols * sizeof(float)); break;
      case DType::kF16:
        for (int64_t c = 0; c < cols; ++c) {
          uint16_t h;
          std::memcpy(&h, src + 2 * c, 2);
          out[c] = f16_to_f32(h);
        }
        break;
      case DType::kBF16:
        for (int64_t c = 0; c < cols; ++c) {
          uint16_t h;
          std::memcpy(&h, src + 2 * c, 2);
          out[c] = bf16_to_f32(h);
        }
        break;
      default:
        ELI_CHECK_KIND(kModelLoad, info.is_quantized, t.file, ": tensor ", t.name, " has dtype ", info.name,
                       ", which cannot hold weights");
        dequant_row_ref(t.dtype, src, out, cols);
    }
  }
}

// Undo llama.cpp's Q/K permutation: stored rows of each head are (half, pair) interleaved; HF
// order is (pair, half). Row i of a head in HF order = stored row (i % (hd/2)) * 2 + i / (hd/2).
int64_t permuted_source_row(int64_t r, int64_t hd) {
  const int64_t head = r / hd, i = r % hd, half = hd / 2;
  return head * hd + (i % half) * 2 + i / half;
}

void unpermute_rows(float* w, int64_t rows, int64_t cols, int64_t n_heads) {
  const int64_t hd = rows / n_heads;
  std::vector<float> tmp(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(&tmp[r * cols], w + permuted_source_row(r, hd) * cols, cols * sizeof(float));
  }
  std::memcpy(w, tmp.data(), tmp.size() * sizeof(float));
}

struct Part {
  const TensorInfo* info;
  int64_t rows;
  int64_t permute_heads;  // > 0: un-permute with this many heads
};

// Writes rows [r0, r1) of part `p` in HF order (un-permuted if needed), converted to `want` (f32 or
// bf16), to `dst` (where row r0 goes). One pass: a row in the wanted dtype is copied, any other is
// converted through a one-row f32 buffer.
void part_rows(const Part& p, int64_t cols, DType want, int64_t r0, int64_t r1, uint8_t* dst) {
  const TensorInfo& t = *p.info;
  const DTypeInfo& in = dtype_info(t.dtype);
  const int64_t in_row = cols / in.block_elems * in.block_bytes;
  const int64_t out_row = cols * dtype_info(want).block_bytes;
  if (p.permute_heads == 0 && t.dtype == want) {
    std::memcpy(dst, t.data + r0 * in_row, static_cast<size_t>((r1 - r0) * in_row));
    return;
  }
  const int64_t hd = p.permute_heads > 0 ? p.rows / p.permute_heads : 0;
  std::vector<float> tmp(want == DType::kF32 ? 0 : static_cast<size_t>(cols));
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t src = hd > 0 ? permuted_source_row(r, hd) : r;
    uint8_t* out = dst + (r - r0) * out_row;
    if (t.dtype == want) {
      std::memcpy(out, t.data + src * in_row, static_cast<size_t>(in_row));
    } else if (want == DType::kF32) {
      rows_to_f32(t, cols, src, src + 1, reinterpret_cast<float*>(out));
    } else {
      rows_to_f32(t, cols, src, src + 1, tmp.data());
      uint16_t* o = reinterpret_cast<uint16_t*>(out);
      if (want == DType::kF16) {
        for (int64_t c = 0; c < cols; ++c) o[c] = f32_to_f16(tmp[c]);
      } else {
        for (int64_t c = 0; c < cols; ++c) o[c] = f32_to_bf16(tmp[c]);
      }
    }
  }
}

class Loader {
 public:
  Loader(const ModelSpec& spec, std::shared_ptr<WeightSource> src,
         const std::function<std::string(const std::string&)>& name_of, const WeightLoadOptions& opt)
      : spec_(spec), src_(std::move(src)), name_of_(name_of), opt_(opt) {}

  const TensorInfo* find(const std::string& hf) const {
    std::string n = name_of_(hf);
    return n.empty() ? nullptr : src_->find(n);
  }
  const TensorInfo& need(const std::string& hf) const {
    const TensorInfo* t = find(hf);
    if (t == nullptr) {
      std::string n = name_of_(hf);
      ELI_THROW(kModelLoad, src_->path(), ": required tensor ", hf,
                (n != hf && !n.empty() ? " (" + n + " in this file)" : std::string()), " is missing");
    }
    return *t;
  }
  void check_shape(const TensorInfo& t, std::vector<int64_t> want) const {
    ELI_CHECK_KIND(kModelLoad, t.shape == want, t.file, ": tensor ", t.name, " has shape ", shape_str(t.shape),
                   " but the model config implies ", shape_str(want));
  }

  std::vector<float> vec(const std::string& hf, int64_t n, bool required = true) {
    const TensorInfo* t = required ? &need(hf) : find(hf);
    if (t == nullptr) return {};
    check_shape(*t, {n});
    std::vector<float> out(static_cast<size_t>(n));
    rows_to_f32(*t, n, 0, 1, out.data());
    count_ += n;
    return out;
  }

  WeightMatrix matrix(const std::vector<Part>& parts, int64_t cols) {
    int64_t rows = 0;
    for (const Part& p : parts) {
      check_shape(*p.info, {p.rows, cols});
      rows += p.rows;
    }
    count_ += static_cast<uint64_t>(rows) * cols;
    const DType want = opt_.matrix_dtype;
    const int64_t elem = dtype_info(want).block_bytes;
    const int64_t row_bytes = cols * elem;
    int64_t shape[2] = {rows, cols};
    // A part that is already what the forward pass wants, in place.
    auto as_is = [&](const Part& p) {
      return p.permute_heads == 0 && p.info->dtype == want && reinterpret_cast<uintptr_t>(p.info->data) % elem == 0;
    };
    bool all_as_is = true, adjacent = true;
    for (size_t i = 0; i < parts.size(); ++i) {
      all_as_is = all_as_is && as_is(parts[i]);
      if (i > 0) {
        const Part& prev = parts[i - 1];
        adjacent = adjacent && parts[i].info->file == prev.info->file &&
                   parts[i].info->data == prev.info->data + prev.rows * row_bytes;
      }
    }
    if (all_as_is) {
      // One part, or parts stored back to back in the file: a zero-copy view (the source stays
      // alive through the owner). Otherwise, for a device load, the merge is left to the upload.
      TensorView v = make_view(const_cast<uint8_t*>(parts[0].info->data), want, DeviceId{}, 2, shape);
      WeightMatrix m{Tensor(v, std::static_pointer_cast<void>(src_)), {}};
      if (!adjacent && opt_.defer_merges) {
        for (const Part& p : parts) m.parts.push_back(WeightPart{p.info->data, p.rows});
        return m;
      }
      if (adjacent) return m;
    }
    WeightMatrix m{Tensor::host(want, {rows, cols}), {}};
    uint8_t* dst = m.t.ptr<uint8_t>();
    for (const Part& p : parts) {
      parallel_for(opt_.pool, p.rows, [&](int64_t a, int64_t b) { part_rows(p, cols, want, a, b, dst + a * row_bytes); }, 16);
      dst += p.rows * row_bytes;
    }
    return m;
  }

  uint64_t count() const { return count_; }

 private:
  const ModelSpec& spec_;
  std::shared_ptr<WeightSource> src_;
  const std::function<std::string(const std::string&)>& name_of_;
  const WeightLoadOptions& opt_;
  uint64_t count_ = 0;
};

}  // namespace

TransformerWeights load_transformer_weights(const ModelSpec& spec, std::shared_ptr<WeightSource> source,
                                            const std::function<std::string(const std::string&)>& name_of,
                                            const WeightLoadOptions& options) {
  ELI_CHECK(options.matrix_dtype == DType::kF32 || options.matrix_dtype == DType::kBF16 ||
                options.matrix_dtype == DType::kF16,
            "weights can be placed as float32, bfloat16 or float16, not ", dtype_name(options.matrix_dtype));
  const int64_t H = spec.hidden_size, I = spec.intermediate_size, V = spec.vocab_size, hd = spec.head_dim;
  const int64_t nh = spec.n_heads, nkv = spec.n_kv_heads;
  Loader ld(spec, source, name_of, options);
  TransformerWeights w;
  w.matrix_dtype = options.matrix_dtype;
  w.source = source;

  const TensorInfo& embed = ld.need("model.embed_tokens.weight");
  w.embed = ld.matrix({{&embed, V, 0}}, H);
  const TensorInfo* head = ld.find("lm_head.weight");
  if (spec.tie_word_embeddings || head == nullptr) {
    w.lm_head = w.embed;  // tied (or a checkpoint that omits the head: the HF default is to tie)
  } else {
    w.lm_head = ld.matrix({{head, V, 0}}, H);
  }
  w.final_norm = ld.vec("model.norm.weight", H);

  const int64_t perm_q = options.gguf_llama_permuted ? nh : 0;
  const int64_t perm_k = options.gguf_llama_permuted ? nkv : 0;
  w.layers.resize(static_cast<size_t>(spec.n_layers));
  for (int64_t l = 0; l < spec.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LayerWeights& L = w.layers[static_cast<size_t>(l)];
    L.qkv = ld.matrix({{&ld.need(p + "self_attn.q_proj.weight"), nh * hd, perm_q},
                       {&ld.need(p + "self_attn.k_proj.weight"), nkv * hd, perm_k},
                       {&ld.need(p + "self_attn.v_proj.weight"), nkv * hd, 0}},
                      H);
    if (spec.attention_bias) {
      std::vector<float> q = ld.vec(p + "self_attn.q_proj.bias", nh * hd);
      std::vector<float> k = ld.vec(p + "self_attn.k_proj.bias", nkv * hd);
      std::vector<float> v = ld.vec(p + "self_attn.v_proj.bias", nkv * hd);
      if (options.gguf_llama_permuted) {
        unpermute_rows(q.data(), nh * hd, 1, nh);
        unpermute_rows(k.data(), nkv * hd, 1, nkv);
      }
      L.qkv_bias = q;
      L.qkv_bias.insert(L.qkv_bias.end(), k.begin(), k.end());
      L.qkv_bias.insert(L.qkv_bias.end(), v.begin(), v.end());
    }
    L.o = ld.matrix({{&ld.need(p + "self_attn.o_proj.weight"), H, 0}}, nh * hd);
    if (spec.attention_out_bias) L.o_bias = ld.vec(p + "self_attn.o_proj.bias", H);
    if (spec.qk_norm) {
      L.q_norm = ld.vec(p + "self_attn.q_norm.weight", hd);
      L.k_norm = ld.vec(p + "self_attn.k_norm.weight", hd);
    }
    L.attn_norm = ld.vec(p + "input_layernorm.weight", H);
    L.mlp_norm = ld.vec(p + "post_attention_layernorm.weight", H);
    L.gate_up = ld.matrix({{&ld.need(p + "mlp.gate_proj.weight"), I, 0}, {&ld.need(p + "mlp.up_proj.weight"), I, 0}}, H);
    L.down = ld.matrix({{&ld.need(p + "mlp.down_proj.weight"), H, 0}}, I);
    if (spec.mlp_bias) {
      L.gate_up_bias = ld.vec(p + "mlp.gate_proj.bias", I);
      std::vector<float> up = ld.vec(p + "mlp.up_proj.bias", I);
      L.gate_up_bias.insert(L.gate_up_bias.end(), up.begin(), up.end());
      L.down_bias = ld.vec(p + "mlp.down_proj.bias", H);
    }
  }
  w.n_params = ld.count();
  return w;
}

namespace {

const float* vec_ptr(const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); }

// Allocates the device copy of every weight, remembering which host pointer it came from (so an
// aliased matrix such as a tied lm_head is uploaded once), and collects the copies as pieces for
// one staged upload: a deferred matrix gives one piece per part, at its row offset.
class Uploader {
 public:
  Uploader(Device& device, PlacedWeights& out) : device_(device), out_(out) {}
  const void* matrix(const WeightMatrix& m) {
    if (m.data() == nullptr) return nullptr;
    for (const auto& [host, dev] : done_) {
      if (host == m.data()) return dev;
    }
    Tensor t = Tensor::empty(device_, m.dtype(), {m.rows(), m.cols()});
    if (!m.deferred()) {
      pieces_.push_back(UploadPiece{t.ptr<void>(), m.data(), t.nbytes()});
    } else {
      uint8_t* dst = t.ptr<uint8_t>();
      int64_t rows = 0;
      for (const WeightPart& p : m.parts) {
        const uint64_t bytes = static_cast<uint64_t>(p.rows) * m.row_bytes();
        pieces_.push_back(UploadPiece{dst, p.data, bytes});
        dst += bytes;
        rows += p.rows;
      }
      ELI_CHECK(rows == m.rows(), "deferred matrix of ", m.rows(), " rows has parts of ", rows, " rows");
    }
    return keep(m.data(), std::move(t));
  }
  const float* vec(const std::vector<float>& v) {
    if (v.empty()) return nullptr;
    Tensor t = Tensor::empty(device_, DType::kF32, {static_cast<int64_t>(v.size())});
    pieces_.push_back(UploadPiece{t.ptr<void>(), v.data(), t.nbytes()});
    return static_cast<const float*>(keep(v.data(), std::move(t)));
  }
  void copy_all(ThreadPool* pool, void* stream) { upload_pieces(device_, pool, pieces_, stream); }

 private:
  const void* keep(const void* host, Tensor t) {
    const void* dev = t.ptr<void>();
    out_.device_bytes += t.nbytes();
    out_.storage.push_back(std::move(t));
    done_.emplace_back(host, dev);
    return dev;
  }
  Device& device_;
  PlacedWeights& out_;
  std::vector<std::pair<const void*, const void*>> done_;
  std::vector<UploadPiece> pieces_;
};

}  // namespace

// Walks every weight of `w` once, filling `p` with what `matrix` / `vec` return for it.
template <typename PlaceMatrix, typename PlaceVec>
void place_all(const TransformerWeights& w, PlacedWeights& p, PlaceMatrix matrix, PlaceVec vec) {
  p.matrix_dtype = w.matrix_dtype;
  p.embed = matrix(w.embed);
  p.lm_head = matrix(w.lm_head);
  p.final_norm = vec(w.final_norm);
  for (const LayerWeights& L : w.layers) {
    PlacedLayer q;
    q.qkv = matrix(L.qkv);
    q.o = matrix(L.o);
    q.gate_up = matrix(L.gate_up);
    q.down = matrix(L.down);
    q.qkv_bias = vec(L.qkv_bias);
    q.o_bias = vec(L.o_bias);
    q.gate_up_bias = vec(L.gate_up_bias);
    q.down_bias = vec(L.down_bias);
    q.q_norm = vec(L.q_norm);
    q.k_norm = vec(L.k_norm);
    q.attn_norm = vec(L.attn_norm);
    q.mlp_norm = vec(L.mlp_norm);
    p.layers.push_back(q);
  }
}

PlacedWeights place_on_host(const TransformerWeights& w) {
  PlacedWeights p;
  place_all(w, p, [](const WeightMatrix& m) {
    ELI_CHECK(!m.deferred(), "a matrix loaded with deferred merges cannot be used on the host");
    return m.data();
  }, vec_ptr);
  return p;
}

PlacedWeights upload_weights(const TransformerWeights& w, Device& device, void* stream, ThreadPool* pool) {
  PlacedWeights p;
  Uploader up(device, p);
  place_all(w, p, [&](const WeightMatrix& m) { return up.matrix(m); },
            [&](const std::vector<float>& v) { return up.vec(v); });
  up.copy_all(pool, stream);
  return p;
}

Tensor WeightMatrix::contiguous_host() const {
  Tensor out = Tensor::host(dtype(), {rows(), cols()});
  if (!deferred()) {
    if (t.nbytes() > 0) std::memcpy(out.ptr<void>(), data(), t.nbytes());
    return out;
  }
  uint8_t* dst = out.ptr<uint8_t>();
  for (const WeightPart& p : parts) {
    const uint64_t bytes = static_cast<uint64_t>(p.rows) * row_bytes();
    std::memcpy(dst, p.data, bytes);
    dst += bytes;
  }
  return out;
}

}  // namespace eli
