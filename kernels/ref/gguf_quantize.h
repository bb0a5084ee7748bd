// kernels/ref/gguf_quantize.h: f32 rows -> GGUF block bytes for Q8_0, Q4_0, Q5_0, Q5_1, Q2_K, Q3_K,
// Q4_K, Q5_K, Q6_K, IQ4_NL and IQ4_XS (the writers of eli's GGUF requantizer,
// python/eli/quantize/gguf_requant.py; Q5_0 / Q5_1 / IQ4_NL are llama.cpp's fallbacks for Q4_K / Q5_K /
// IQ4_XS rows that are not a multiple of 256).
//
// Invariants: the bytes follow the block layouts kernels/ref/dequant_ref.cc decodes (and llama.cpp /
// gguf-py with it); n is a multiple of the type's block size (32 or 256); every input value must be
// finite and the block scales must fit in fp16, else eli::Error(kInvalidArgument) naming the column
// (and, for the matrix form, the row) — nothing is written past the failing row's own bytes.
// Q8_0 rounding is fully specified (d = amax / 127, q = roundf(x / d) with the f32 d) and equals
// llama.cpp's / gguf-py's output byte for byte. The other types search their scales (search = true):
// Q4_0, Q5_0, Q3_K and Q6_K a symmetric weighted least-squares fit over candidate grids, Q5_1 / Q2_K /
// Q4_K / Q5_K a scale and offset per (sub-)block by weighted least squares over candidate grids,
// IQ4_NL / IQ4_XS a weighted least-squares scale per 32 values over trial scales against the
// non-linear grid kIq4Values (gguf_quantize_iq4.cc; IQ4_XS also searches its super-block scale); then
// the sub-block scales are quantized to the super-block's 4 / 6 / 8-bit codes (Q2_K / Q3_K: the
// super-block scales and each sub-block's code searched by the block's weighted error as stored) and
// every value is rounded to its nearest level under the stored (fp16-rounded) scales. search = false
// gives plain max-abs (min/max) scaling through the same packing: the baseline the tests compare the
// search against.
// Importance matrix: col_weights (null, or one finite weight >= 0 per column, e.g. the mean of x_j^2
// over calibration rows) multiplies the per-value weights of every fit and search (not Q8_0's, which
// has none), so columns whose inputs are large are reproduced more closely, as llama.cpp's imatrix.
#pragma once

#include <cstdint>

#include "eli/dtype.h"

namespace eli {

class ThreadPool;

// Whether quantize_row_gguf writes this dtype (Q8_0, Q4_0, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,
// IQ4_NL, IQ4_XS).
bool gguf_quantize_supported(DType dtype);

// Quantizes x[0, n) into n / block_elems blocks of `dtype` at out.
// col_weights: null or n importance weights (see above).
void quantize_row_gguf(DType dtype, const float* x, int64_t n, void* out, bool search = true,
                       const float* col_weights = nullptr);

// Quantizes a row-major (rows, cols) f32 matrix, row r to out + r * row_bytes (row_bytes =
// cols / block_elems * block_bytes), rows spread over `pool` (null: this thread). Errors name the row.
// col_weights: null or `cols` importance weights shared by every row.
void quantize_matrix_gguf(DType dtype, const float* x, int64_t rows, int64_t cols, void* out, ThreadPool* pool,
                          bool search = true, const float* col_weights = nullptr);

}  // namespace eli
