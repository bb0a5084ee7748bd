// runtime/model/linear_observer.cc: see linear_observer.h.
#include "runtime/model/linear_observer.h"

namespace eli {
namespace {
thread_local LinearObserver* t_observer = nullptr;
}  // namespace

LinearObserver* linear_observer() { return t_observer; }

ScopedLinearObserver::ScopedLinearObserver(LinearObserver* obs) : prev_(t_observer) { t_observer = obs; }
ScopedLinearObserver::~ScopedLinearObserver() { t_observer = prev_; }

}  // namespace eli
