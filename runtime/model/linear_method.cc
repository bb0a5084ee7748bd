// runtime/model/linear_method.cc: the registry of LinearMethods and the per-tensor choice.
#include "runtime/model/linear_method.h"

#include "eli/error.h"
#include "runtime/model/linear_wq.h"
#include "runtime/model/weight_reader.h"

namespace eli {

int64_t LinearSpec::rows() const {
  int64_t n = 0;
  for (const LinearPart& p : parts) n += p.rows;
  return n;
}

const std::vector<const LinearMethod*>& linear_methods() {
  // Most specific first: native quantized methods go before the fallbacks they replace.
  static const std::vector<const LinearMethod*> kMethods = {
      &awq_linear_method(),
      &gptq_linear_method(),
      &compressed_linear_method(),
      &fp8_online_linear_method(),
      &dense_linear_method(),
      &gguf_native_linear_method(),
      &gguf_dequant_linear_method(),
  };
  return kMethods;
}

const LinearMethod& select_linear_method(const LinearSpec& spec, const WeightReader& reader, DeviceKind device) {
  for (const LinearMethod* m : linear_methods()) {
    if (m->accepts(spec, reader, device)) return *m;
  }
  const DType dt = reader.stored_dtype(spec);
  ELI_THROW(kUnsupported, spec.name, ": no linear method for weights stored as ", dtype_name(dt), " on ",
            device == DeviceKind::kCUDA ? "cuda" : "cpu");
}

LinearWeight load_linear(const LinearSpec& spec, const WeightReader& reader, const LinearLoadContext& ctx) {
  const LinearMethod& m = select_linear_method(spec, reader, ctx.device);
  LinearWeight w = m.load(spec, reader, ctx);
  w.method = &m;
  m.repack(w, ctx);
  return w;
}

}  // namespace eli
