// runtime/model/transformer_weights.cc: reads, checks, converts and merges the weights of a
// decoder-only transformer (see transformer_weights.h for the layout).
//
// Every tensor's shape is compared with what the ModelSpec implies before anything is copied.
// A matrix whose stored dtype already equals the wanted one (and needs no merge or permutation)
// stays a zero-copy view of the memory-mapped file.
#include "runtime/model/transformer_weights.h"

#include <cstring>
#include <utility>
#include <sstream>

#include "eli/error.h"
#include "kernels/ref/dequant_ref.h"
#include "kernels/ref/float_convert.h"
#include "runtime/core/thread_pool.h"
#include "runtime/device/device.h"
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
void unpermute_rows(float* w, int64_t rows, int64_t cols, int64_t n_heads) {
  const int64_t hd = rows / n_heads, half = hd / 2;
  std::vector<float> tmp(static_cast<size_t>(hd * cols));
  for (int64_t h = 0; h < n_heads; ++h) {
    float* head = w + h * hd * cols;
    for (int64_t i = 0; i < hd; ++i) {
      int64_t src = (i % half) * 2 + i / half;
      std::memcpy(&tmp[i * cols], head + src * cols, cols * sizeof(float));
    }
    std::memcpy(head, tmp.data(), tmp.size() * sizeof(float));
  }
}

struct Part {
  const TensorInfo* info;
  int64_t rows;
  int64_t permute_heads;  // > 0: un-permute with this many heads
};

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
    const size_t elem = dtype_info(want).block_bytes;
    if (parts.size() == 1 && parts[0].permute_heads == 0 && parts[0].info->dtype == want &&
        reinterpret_cast<uintptr_t>(parts[0].info->data) % elem == 0) {
      // Zero-copy: a view of the mapped file; the source stays alive through the owner.
      int64_t shape[2] = {rows, cols};
      TensorView v = make_view(const_cast<uint8_t*>(parts[0].info->data), want, DeviceId{}, 2, shape);
      return WeightMatrix{Tensor(v, std::static_pointer_cast<void>(src_))};
    }
    WeightMatrix m{Tensor::host(want, {rows, cols})};
    int64_t row0 = 0;
    for (const Part& p : parts) {
      std::vector<float> tmp(static_cast<size_t>(p.rows * cols));
      parallel_for(opt_.pool, p.rows, [&](int64_t a, int64_t b) { rows_to_f32(*p.info, cols, a, b, &tmp[a * cols]); }, 16);
      if (p.permute_heads > 0) unpermute_rows(tmp.data(), p.rows, cols, p.permute_heads);
      if (want == DType::kF32) {
        std::memcpy(m.t.ptr<float>() + row0 * cols, tmp.data(), tmp.size() * sizeof(float));
      } else {
        uint16_t* dst = m.t.ptr<uint16_t>() + row0 * cols;
        parallel_for(opt_.pool, static_cast<int64_t>(tmp.size()), [&](int64_t a, int64_t b) {
          for (int64_t i = a; i < b; ++i) dst[i] = f32_to_bf16(tmp[i]);
        }, 1 << 16);
      }
      row0 += p.rows;
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
  ELI_CHECK(options.matrix_dtype == DType::kF32 || options.matrix_dtype == DType::kBF16,
            "weights can be placed as float32 or bfloat16 on this backend, not ", dtype_name(options.matrix_dtype));
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

// Copies host data to `device`, remembering the copy (and which host pointer it came from, so that
// an aliased matrix such as a tied lm_head is uploaded once).
class Uploader {
 public:
  Uploader(Device& device, void* stream, PlacedWeights& out) : device_(device), stream_(stream), out_(out) {}
  const void* matrix(const WeightMatrix& m) {
    if (m.data() == nullptr) return nullptr;
    for (const auto& [host, dev] : done_) {
      if (host == m.data()) return dev;
    }
    Tensor t = Tensor::empty(device_, m.dtype(), {m.rows(), m.cols()});
    device_.copy_host_to_device(t.ptr<void>(), m.data(), t.nbytes(), stream_);
    return keep(m.data(), std::move(t));
  }
  const float* vec(const std::vector<float>& v) {
    if (v.empty()) return nullptr;
    Tensor t = Tensor::empty(device_, DType::kF32, {static_cast<int64_t>(v.size())});
    device_.copy_host_to_device(t.ptr<void>(), v.data(), t.nbytes(), stream_);
    return static_cast<const float*>(keep(v.data(), std::move(t)));
  }

 private:
  const void* keep(const void* host, Tensor t) {
    const void* dev = t.ptr<void>();
    out_.device_bytes += t.nbytes();
    out_.storage.push_back(std::move(t));
    done_.emplace_back(host, dev);
    return dev;
  }
  Device& device_;
  void* stream_;
  PlacedWeights& out_;
  std::vector<std::pair<const void*, const void*>> done_;
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
  place_all(w, p, [](const WeightMatrix& m) { return m.data(); }, vec_ptr);
  return p;
}

PlacedWeights upload_weights(const TransformerWeights& w, Device& device, void* stream) {
  PlacedWeights p;
  Uploader up(device, stream, p);
  place_all(w, p, [&](const WeightMatrix& m) { return up.matrix(m); },
            [&](const std::vector<float>& v) { return up.vec(v); });
  if (stream == nullptr) device.synchronize();
  return p;
}

}  // namespace eli
