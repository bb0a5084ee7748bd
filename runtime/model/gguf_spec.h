// runtime/model/gguf_spec.h: GGUF metadata -> ModelSpec, GGUF tensor names -> Hugging Face names,
// and the inverse of llama.cpp's Q/K row permutation.
//
// Invariants: spec_from_gguf reads only `<arch>.*`, `tokenizer.ggml.*` keys, tensor presence and the
// few floats of `rope_freqs.weight` (llama3 RoPE divisors, when present); it
// checks that the required counts are present and positive (kModelLoad otherwise) but leaves the
// full cross-checks to validate_model_spec. Architectures: llama, mistral, qwen2, qwen3, phi3
// (LongRoPE factor tensors), gemma3.
#pragma once

#include <cstdint>
#include <string>

#include "eli/model_spec.h"
#include "runtime/model/gguf.h"

namespace eli {

// Builds the ModelSpec of a GGUF file; throws eli::Error(kModelLoad) for an unsupported
// architecture, a missing required key, or an unsupported rope scaling type.
ModelSpec spec_from_gguf(const GgufFile& f);

// "blk.3.attn_q.weight" -> "model.layers.3.self_attn.q_proj.weight", "token_embd.weight" ->
// "model.embed_tokens.weight", "output.weight" -> "lm_head.weight", ...; "" for unknown names.
std::string hf_name_for_gguf_tensor(const std::string& gguf_name);
// The same for a file of architecture `arch` ("phi3": attn_qkv -> self_attn.qkv_proj, ffn_up ->
// mlp.gate_up_proj; "gemma3": ffn_norm -> pre_feedforward_layernorm, post_attention_norm,
// post_ffw_norm); other architectures: the llama names above.
std::string hf_name_for_gguf_tensor(const std::string& gguf_name, const std::string& arch);

// Undoes llama.cpp's permutation of the rows of Q (n_heads = query heads) or K (n_heads = kv
// heads) weights/biases of llama-arch GGUFs, in place. w: (rows, cols) row-major, rows = n_heads *
// head_dim, head_dim even. The converter stored, within each head, HF row (j * head_dim/2 + i) at
// row (2 * i + j) (interleaved rotary pairs); this puts it back.
void unpermute_llama_qk_rows(float* w, int64_t rows, int64_t cols, int64_t n_heads);

}  // namespace eli
