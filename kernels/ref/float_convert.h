// kernels/ref/float_convert.h: forwards to runtime/core/float_convert.h, where the scalar f32 <->
// f16 / bf16 conversions live now (the device layer's CPU communicator uses them too, and may not
// include a kernels header). Kept so that existing includes compile.
#pragma once

#include "runtime/core/float_convert.h"
