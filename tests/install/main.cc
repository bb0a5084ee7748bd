// tests/install/main.cc: the smallest C++ embedding of eli: load a model, generate greedily,
// print the token ids. Usage: demo MODEL_PATH
#include <cstdio>
#include "eli/engine.h"
int main(int argc, char** argv) {
  eli::EngineConfig c;
  c.model = argv[1];
  c.num_kv_blocks = 64;
  eli::Engine e(c);
  eli::SamplingParams p;
  p.max_tokens = 5;
  p.temperature = 0;
  e.add_request({1, 2, 3}, p);
  while (e.has_unfinished()) for (auto& o : e.step()) std::printf("%d ", o.token);
  std::printf("\n");
}
