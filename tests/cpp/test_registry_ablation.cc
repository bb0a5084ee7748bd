// tests/cpp/test_registry_ablation.cc: OpAblation (kernels/registry.h), the benchmarks' way to run
// the forward without one kind of op: lookups of the ablated ops get a kernel that does nothing,
// others are untouched, and the table is whole again when the ablation ends.
#include <gtest/gtest.h>

#include <vector>

#include "eli/error.h"
#include "kernels/ops.h"
#include "kernels/registry.h"

namespace eli {
namespace {

TEST(KernelRegistry, OpAblationSkipsOnlyItsOpsWhileItLives) {
  const KernelEntry* normal = find_kernel(Op::kNormCast, DeviceKind::kCPU, DType::kF32);
  ASSERT_NE(normal, nullptr);
  std::vector<float> x{1.0f, 2.0f, 3.0f, 4.0f}, w{1.0f, 1.0f, 1.0f, 1.0f}, out(4, -7.0f);
  NormCastArgs a{};
  a.out = out.data();
  a.x = x.data();
  a.weight = w.data();
  a.rows = 1;
  a.hidden = 4;
  a.out_stride = 4;
  a.x_stride = 4;
  a.eps = 1e-6f;
  a.weight_offset = 0.0f;
  a.out_dtype = DType::kF32;
  {
    OpAblation ablate({Op::kNormCast});
    EXPECT_THROW(OpAblation({Op::kGemv}), Error);  // one at a time
    const KernelEntry& e = get_kernel(Op::kNormCast, DeviceKind::kCPU, DType::kF32);
    EXPECT_STREQ(e.variant, "ablated");
    e.fn(&a, ExecContext{});
    EXPECT_EQ(out, std::vector<float>(4, -7.0f));  // nothing written
    EXPECT_EQ(find_kernel(Op::kGemv, DeviceKind::kCPU, DType::kF32), find_kernel(Op::kGemv, DeviceKind::kCPU, DType::kF32));
    EXPECT_STRNE(find_kernel(Op::kGemv, DeviceKind::kCPU, DType::kF32)->variant, "ablated");
  }
  const KernelEntry& back = get_kernel(Op::kNormCast, DeviceKind::kCPU, DType::kF32);
  EXPECT_EQ(&back, normal);
  back.fn(&a, ExecContext{});
  EXPECT_NE(out[0], -7.0f);
}

}  // namespace
}  // namespace eli
