// python/src/token_constraint_py.h: a Python object as the engine's TokenConstraint
// (include/eli/token_constraint.h): the bridge that lets eli.structured (llguidance) constrain
// decoding. The object has fill_mask(ptr: int, vocab: int) (writes (vocab + 31) // 32 uint32 words
// at ptr), accept(token: int) -> bool and is_finished() -> bool.
//
// GIL: the engine calls from its stepping thread with the GIL released (Engine.step and every
// AsyncEngine call release it); each method takes the GIL for the Python call and gives it back.
// A Python exception becomes an eli::Error carrying its type and message: the engine ends that
// request only. Destruction drops the reference under the GIL (or leaks it once the interpreter
// is finalising, when no Python code may run).
#pragma once

#include <nanobind/nanobind.h>

#include <memory>

#include "eli/token_constraint.h"

namespace eli {

// The TokenConstraint wrapping `obj`; none for None.
std::shared_ptr<TokenConstraint> constraint_from_py(nanobind::handle obj);
// The Python object behind a constraint made by constraint_from_py (None otherwise).
nanobind::object constraint_to_py(const std::shared_ptr<TokenConstraint>& c);

}  // namespace eli
