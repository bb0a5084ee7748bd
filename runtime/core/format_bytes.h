// runtime/core/format_bytes.h: how memory figures appear in messages and logs ("512 B", "1.5 KiB",
// "12.3 MiB", "71.23 GiB"; binary units).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace eli {

inline std::string format_bytes(uint64_t bytes) {
  char buf[64];
  const double x = static_cast<double>(bytes);
  if (bytes >= (uint64_t{1} << 30)) {
    std::snprintf(buf, sizeof(buf), "%.2f GiB", x / static_cast<double>(uint64_t{1} << 30));
  } else if (bytes >= (uint64_t{1} << 20)) {
    std::snprintf(buf, sizeof(buf), "%.1f MiB", x / static_cast<double>(uint64_t{1} << 20));
  } else if (bytes >= 1024) {
    std::snprintf(buf, sizeof(buf), "%.1f KiB", x / 1024.0);
  } else {
    std::snprintf(buf, sizeof(buf), "%llu B", static_cast<unsigned long long>(bytes));
  }
  return buf;
}

}  // namespace eli
