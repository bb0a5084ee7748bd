// runtime/parallel/parallel_config.h: the engine options of parallelism (tensor_parallel_size,
// pipeline_parallel_size, devices) checked against the model and the machine, before any weight
// is read.
//
// Rules (each violation is kInvalidArgument naming the numbers):
//   devices       "cuda:0,1,2,3", "cuda:0,cuda:1" (bare numbers take the previous kind) or "cpu"
//                 (every rank a thread of the CPU, listed once); a listed GPU set has exactly
//                 tp x pp entries, one per rank; a GPU may repeat (ranks sharing it: for checking
//                 sharding on one GPU, joined by eli's peer communicator instead of NCCL); its kind
//                 agrees with `device` unless device is "auto".
//   CUDA ranks    without a list, ranks take cuda:0 .. cuda:(tp pp - 1): more ranks than visible
//                 devices is an error; on a named single device (cuda:N) only one rank.
// The model's own rules (heads, GQA groups, layers per stage) are check_shardable (shard_plan.h),
// once the checkpoint's config is read.
#pragma once

#include <string>
#include <vector>

#include "eli/device.h"
#include "eli/engine.h"

namespace eli {

struct ParallelPlan {
  int tp = 1, pp = 1;
  std::vector<DeviceId> devices;  // one per world rank (rank = stage * tp + tp rank)
  int world() const { return tp * pp; }
};

// `device`: the engine's resolved device ("auto" already resolved; see the rule above for the
// option as written, config.device). Reads no file: call it before creating devices.
ParallelPlan plan_parallel(const EngineConfig& config, DeviceId device);
// The devices list parsed (empty string: empty list).
std::vector<DeviceId> parse_device_list(const std::string& devices);

}  // namespace eli
