"""eli.quantize: weight quantization of model files (GGUF requantization: gguf_requant)."""
