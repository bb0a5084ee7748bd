// python/src/token_constraint_py.cc: PyTokenConstraint (see token_constraint_py.h).
#include "python/src/token_constraint_py.h"

#include <Python.h>
#include <nanobind/stl/string.h>

#include <cstdint>
#include <string>
#include <utility>

#include "eli/error.h"

namespace nb = nanobind;

namespace eli {
namespace {

class PyTokenConstraint final : public TokenConstraint {
 public:
  // Called with the GIL held (from the SamplingParams.constraint setter).
  explicit PyTokenConstraint(nb::object obj) : obj_(std::move(obj)) {
    nb::handle type = obj_.type();
    if (nb::hasattr(type, "fill_masks_batch")) batch_key_ = type.ptr();  // the type outlives its objects
  }
  ~PyTokenConstraint() override {
    if (!Py_IsInitialized()) {
      obj_.release();  // the interpreter is gone: nothing may be called, not even a decref
      return;
    }
    nb::gil_scoped_acquire gil;
    obj_ = nb::object();
  }

  void fill_mask(uint32_t* bitmask, int64_t vocab) override {
    nb::gil_scoped_acquire gil;
    try {
      obj_.attr("fill_mask")(reinterpret_cast<uintptr_t>(bitmask), vocab);
    } catch (nb::python_error& e) {
      rethrow("fill_mask", e);
    }
  }
  bool accept(int32_t token) override {
    nb::gil_scoped_acquire gil;
    try {
      return nb::cast<bool>(obj_.attr("accept")(token));
    } catch (nb::python_error& e) {
      rethrow("accept", e);
    } catch (const nb::cast_error&) {
      ELI_THROW(kInvalidArgument, "token constraint: accept() must return a bool");
    }
  }
  bool is_finished() override {
    nb::gil_scoped_acquire gil;
    try {
      return nb::cast<bool>(obj_.attr("is_finished")());
    } catch (nb::python_error& e) {
      rethrow("is_finished", e);
    } catch (const nb::cast_error&) {
      ELI_THROW(kInvalidArgument, "token constraint: is_finished() must return a bool");
    }
  }
  bool rollback(int64_t n) override {
    nb::gil_scoped_acquire gil;
    try {
      if (!nb::hasattr(obj_, "rollback")) return false;
      return nb::cast<bool>(obj_.attr("rollback")(n));
    } catch (nb::python_error& e) {
      rethrow("rollback", e);
    } catch (const nb::cast_error&) {
      ELI_THROW(kInvalidArgument, "token constraint: rollback() must return a bool");
    }
  }

  const void* batch_key() const override { return batch_key_; }
  // type(obj).fill_masks_batch(objects, indices, masks_ptr, words, vocab) -> one error string per
  // object ("" for none), under one GIL acquisition.
  void fill_masks(TokenConstraint* const* group, const int32_t* index, size_t n, uint32_t* masks, int64_t words,
                  int64_t vocab, std::string* errors) override {
    nb::gil_scoped_acquire gil;
    try {
      nb::list objs, idx;
      for (size_t i = 0; i < n; ++i) {
        auto* p = dynamic_cast<PyTokenConstraint*>(group[i]);
        ELI_CHECK(p != nullptr && p->batch_key_ == batch_key_, "token constraint batch of mixed types");
        objs.append(p->obj_);
        idx.append(index[i]);
      }
      nb::object res = nb::handle(static_cast<PyObject*>(const_cast<void*>(batch_key_)))
                           .attr("fill_masks_batch")(objs, idx, reinterpret_cast<uintptr_t>(masks), words, vocab);
      nb::list errs = nb::cast<nb::list>(res);
      ELI_CHECK_ARG(errs.size() == n, "token constraint: fill_masks_batch() returned ", errs.size(), " errors for ",
                    n, " constraints");
      for (size_t i = 0; i < n; ++i) errors[i] = nb::cast<std::string>(errs[i]);
    } catch (nb::python_error& e) {
      rethrow("fill_masks_batch", e);
    } catch (const nb::cast_error&) {
      ELI_THROW(kInvalidArgument, "token constraint: fill_masks_batch() must return a list of strings");
    }
  }

  const nb::object& object() const { return obj_; }

 private:
  // Called with the GIL held: the Python error as an eli::Error (the engine fails the request).
  [[noreturn]] static void rethrow(const char* method, nb::python_error& e) {
    std::string msg;
    try {
      msg = nb::cast<std::string>(nb::str(e.type().attr("__name__"))) + ": " +
            nb::cast<std::string>(nb::str(e.value()));
    } catch (...) {
      msg = e.what();
    }
    ELI_THROW(kInvalidArgument, "token constraint ", method, "() raised ", msg);
  }

  nb::object obj_;
  const void* batch_key_ = nullptr;
};

}  // namespace

std::shared_ptr<TokenConstraint> constraint_from_py(nb::handle obj) {
  if (obj.is_none()) return nullptr;
  for (const char* name : {"fill_mask", "accept", "is_finished"}) {
    if (!nb::hasattr(obj, name)) {
      ELI_THROW(kInvalidArgument, "a token constraint needs fill_mask(), accept() and is_finished(); ",
                "this object has no ", name, "()");
    }
  }
  return std::make_shared<PyTokenConstraint>(nb::borrow<nb::object>(obj));
}

nb::object constraint_to_py(const std::shared_ptr<TokenConstraint>& c) {
  if (const auto* p = dynamic_cast<const PyTokenConstraint*>(c.get())) return p->object();
  return nb::none();
}

}  // namespace eli
