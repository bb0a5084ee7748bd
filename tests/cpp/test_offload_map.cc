// tests/cpp/test_offload_map.cc: the explicit per-layer placement map of weight offloading
// (runtime/runner/offload_map.h, option offload_map) and the plan it gives
// (runtime/runner/offload_plan.h): the grammar and its errors (each naming the offending text),
// resolution against a model's layers (open ranges, out of range, conflicting tiers), and plans of
// a real tiny model with offloaded layers anywhere (first, middle, alternating), the host budget
// enforced per layer, and the placement text.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "eli/error.h"
#include "runtime/core/thread_pool.h"
#include "runtime/model/model.h"
#include "runtime/model/model_files.h"
#include "runtime/model/weight_reader.h"
#include "runtime/runner/offload_map.h"
#include "runtime/runner/offload_plan.h"
#include "tests/cpp/device_backend_checks.h"

namespace eli {
namespace {

using backend_checks::kind_of;
constexpr MemoryTier kGpu = MemoryTier::kDevice, kHost = MemoryTier::kHost, kDisk = MemoryTier::kMappedFile;

TEST(OffloadMap, ParsesTheGrammar) {
  EXPECT_TRUE(parse_offload_map("").empty());
  EXPECT_TRUE(parse_offload_map("   ").empty());
  const auto e = parse_offload_map("0-7:gpu, 8-23:host ,24-:disk,5 : HOST");
  ASSERT_EQ(e.size(), 4u);
  EXPECT_EQ(e[0].first, 0);
  EXPECT_EQ(e[0].last, 7);
  EXPECT_EQ(e[0].tier, kGpu);
  EXPECT_EQ(e[1].first, 8);
  EXPECT_EQ(e[1].last, 23);
  EXPECT_EQ(e[1].tier, kHost);
  EXPECT_EQ(e[1].text, "8-23:host");
  EXPECT_EQ(e[2].first, 24);
  EXPECT_EQ(e[2].last, -1);  // open
  EXPECT_EQ(e[2].tier, kDisk);
  EXPECT_EQ(e[3].first, 5);
  EXPECT_EQ(e[3].last, 5);
  EXPECT_EQ(e[3].tier, kHost);
}

TEST(OffloadMap, BadMapsNameTheOffendingText) {
  struct Bad {
    const char* map;
    const char* quoted;  // what the message must quote
  };
  const Bad bad[] = {
      {"0-3:ssd", "ssd"},             // unknown tier
      {"0-3", "0-3"},                 // no tier
      {"0-3:", "0-3:"},               // empty tier
      {":host", ":host"},             // no range
      {"a-3:host", "a-3"},            // not a number
      {"-3:host", "-3"},              // no start
      {"3-1:host", "3-1:host"},       // backwards
      {"1-2-3:host", "1-2-3"},        // two dashes
      {"0:host,,1:disk", "0:host,,1:disk"},  // empty entry
      {"0:host,", "0:host,"},         // trailing comma
      {"1:host:disk", "host:disk"},   // two tiers
      {"+1:host", "+1"},              // sign
      {"1234567890:host", "1234567890"},  // absurd index
      {"garbage", "garbage"},
  };
  for (const Bad& b : bad) {
    std::string msg;
    EXPECT_EQ(kind_of([&] { parse_offload_map(b.map); }, &msg), ErrorKind::kInvalidArgument) << b.map;
    EXPECT_NE(msg.find(b.quoted), std::string::npos) << b.map << ": " << msg;
    EXPECT_NE(msg.find("offload_map"), std::string::npos) << msg;
  }
}

TEST(OffloadMap, ResolvesAgainstTheModelsLayers) {
  auto r = resolve_offload_map(parse_offload_map("0-1:gpu,2:host,4-:disk"), 0, 6);
  EXPECT_EQ(r, (std::map<int64_t, MemoryTier>{{2, kHost}, {4, kDisk}, {5, kDisk}}));  // 3 unnamed: gpu
  // The same tier twice is fine; two tiers for one layer are not.
  r = resolve_offload_map(parse_offload_map("0-3:host,2-5:host"), 0, 6);
  EXPECT_EQ(r.size(), 6u);
  std::string msg;
  EXPECT_EQ(kind_of([&] { resolve_offload_map(parse_offload_map("0-3:host,3-:disk"), 0, 6); }, &msg),
            ErrorKind::kInvalidArgument);
  EXPECT_NE(msg.find("0-3:host"), std::string::npos) << msg;
  EXPECT_NE(msg.find("3-:disk"), std::string::npos) << msg;
  EXPECT_NE(msg.find("layer 3"), std::string::npos) << msg;
  // Out of range: a start, an end, or an open range starting past the last layer.
  for (const char* m : {"6:host", "2-6:host", "6-:disk", "0-999999999:host"}) {
    EXPECT_EQ(kind_of([&] { resolve_offload_map(parse_offload_map(m), 0, 6); }, &msg), ErrorKind::kInvalidArgument)
        << m;
    EXPECT_NE(msg.find(m), std::string::npos) << msg;
    EXPECT_NE(msg.find("0-5"), std::string::npos) << msg;
  }
  // Everything on the GPU: nothing offloaded.
  EXPECT_TRUE(resolve_offload_map(parse_offload_map("0-:gpu"), 0, 6).empty());
}

std::unique_ptr<Model> load_gemma3(ThreadPool* pool) {
  const ModelFiles f = open_model_files(std::string(ELI_TEST_DATA_DIR) + "/models/gemma3");
  ModelLoadOptions opt;
  opt.compute_dtype = DType::kF32;
  opt.device = DeviceKind::kCPU;
  opt.defer_merges = true;
  opt.pool = pool;
  return create_model(f.spec, WeightReader(f.weights, f.name_of), opt);
}

OffloadRequest map_request(const std::string& map, uint64_t host_budget) {
  OffloadRequest r;
  r.map = parse_offload_map(map);
  r.explicit_map = true;
  r.host_budget = host_budget;
  return r;
}

TEST(OffloadPlan, ExplicitMapPlacesAnyLayers) {
  ThreadPool pool(1);
  const std::unique_ptr<Model> m = load_gemma3(&pool);
  const WeightStore& store = m->weights();
  const auto layers = store.layer_image_bytes();
  ASSERT_EQ(layers.size(), 6u);
  const uint64_t per_layer = layers.at(0);
  uint64_t total = 0;
  for (const auto& [l, b] : layers) total += b;

  // Alternating host / disk with resident layers between them.
  OffloadPlan p = plan_offload(store, map_request("0:host,2:disk,3:host,5:disk", uint64_t{1} << 40));
  EXPECT_EQ(p.tier_of_layer, (std::map<int64_t, MemoryTier>{{0, kHost}, {2, kDisk}, {3, kHost}, {5, kDisk}}));
  EXPECT_EQ(p.host_bytes, layers.at(0) + layers.at(3));
  EXPECT_EQ(p.disk_bytes, layers.at(2) + layers.at(5));
  EXPECT_EQ(p.resident_bytes, store.placed_bytes() - p.host_bytes - p.disk_bytes);
  EXPECT_EQ(p.ring_depth, 2);
  EXPECT_EQ(p.slot_bytes, per_layer);
  const std::string text = p.describe("cuda:0");
  EXPECT_NE(text.find("layers 0 in pinned host memory, layers 1 on cuda:0, layers 2 read from the model file, "
                      "layers 3 in pinned host memory, layers 4 on cuda:0, layers 5 read from the model file"),
            std::string::npos)
      << text;

  // The first layers only; one layer: a ring of one slot.
  p = plan_offload(store, map_request("0-1:host", uint64_t{1} << 40));
  EXPECT_EQ(p.tier_of_layer.size(), 2u);
  EXPECT_EQ(p.host_bytes, layers.at(0) + layers.at(1));
  p = plan_offload(store, map_request("3:disk", uint64_t{1} << 40));
  EXPECT_EQ(p.ring_depth, 1);
  EXPECT_EQ(p.disk_bytes, layers.at(3));
  // Everything on the GPU: inactive, as without a map.
  p = plan_offload(store, map_request("0-:gpu", uint64_t{1} << 40));
  EXPECT_FALSE(p.active());
  EXPECT_EQ(p.resident_bytes, store.placed_bytes());
  // Every layer from the file with no host memory (f32 checkpoint held as f32: all in the file).
  p = plan_offload(store, map_request("0-:disk", 0));
  EXPECT_EQ(p.disk_bytes, total);
  EXPECT_EQ(p.host_bytes, 0u);
}

TEST(OffloadPlan, HostLayerBeyondTheHostBudgetIsOutOfMemory) {
  ThreadPool pool(1);
  const std::unique_ptr<Model> m = load_gemma3(&pool);
  const WeightStore& store = m->weights();
  const uint64_t per_layer = store.layer_image_bytes().at(0);
  // Room for one layer: the second host layer (4) fails, naming it; an explicit map never moves a
  // host layer to the disk on its own.
  std::string msg;
  EXPECT_EQ(kind_of([&] { plan_offload(store, map_request("1:host,4:host", per_layer + 100)); }, &msg),
            ErrorKind::kOutOfMemory);
  EXPECT_NE(msg.find("layer 4"), std::string::npos) << msg;
  EXPECT_NE(msg.find("offload_map"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cpu_memory_bytes"), std::string::npos) << msg;
  // With the same budget, one host layer and the rest on disk fit.
  const OffloadPlan p = plan_offload(store, map_request("1:host,2-:disk", per_layer + 100));
  EXPECT_EQ(p.host_bytes, per_layer);
  EXPECT_EQ(p.tier_of_layer.size(), 5u);
  // A map out of the model's range is the caller's error.
  EXPECT_EQ(kind_of([&] { plan_offload(store, map_request("2-9:host", uint64_t{1} << 40)); }, &msg),
            ErrorKind::kInvalidArgument);
  EXPECT_NE(msg.find("2-9:host"), std::string::npos) << msg;
}

}  // namespace
}  // namespace eli
