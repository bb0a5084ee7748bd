// runtime/runner/offload_map.cc: see offload_map.h.
#include "runtime/runner/offload_map.h"

#include <cctype>

#include "eli/error.h"

namespace eli {

namespace {

constexpr size_t kMaxDigits = 9;  // layer indices below 10^9: no overflow, and far beyond any model

std::string trim(const std::string& s) {
  size_t a = 0, b = s.size();
  while (a < b && std::isspace(static_cast<unsigned char>(s[a])) != 0) ++a;
  while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1])) != 0) --b;
  return s.substr(a, b - a);
}

// A non-negative decimal layer index; false for anything else (signs, spaces inside, too long).
bool parse_index(const std::string& s, int64_t* out) {
  if (s.empty() || s.size() > kMaxDigits) return false;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *out = v;
  return true;
}

bool parse_tier(std::string s, MemoryTier* out) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (s == "gpu") *out = MemoryTier::kDevice;
  else if (s == "host") *out = MemoryTier::kHost;
  else if (s == "disk") *out = MemoryTier::kMappedFile;
  else return false;
  return true;
}

const char* tier_word(MemoryTier t) {
  switch (t) {
    case MemoryTier::kDevice: return "gpu";
    case MemoryTier::kHost: return "host";
    case MemoryTier::kMappedFile: return "disk";
  }
  return "?";
}

}  // namespace

std::vector<OffloadMapEntry> parse_offload_map(const std::string& text) {
  std::vector<OffloadMapEntry> out;
  if (trim(text).empty()) return out;
  constexpr const char* kSyntax = " (expected entries RANGE:TIER separated by commas, RANGE as 5, 0-7 or 24-, "
                                  "TIER gpu, host or disk; e.g. \"0-7:gpu,8-23:host,24-:disk\")";
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    const std::string raw = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    const std::string entry = trim(raw);
    ELI_CHECK_ARG(!entry.empty(), "offload_map \"", text, "\": empty entry", kSyntax);
    const size_t colon = entry.find(':');
    ELI_CHECK_ARG(colon != std::string::npos, "offload_map entry \"", entry, "\" has no tier", kSyntax);
    OffloadMapEntry e;
    e.text = entry;
    const std::string range = trim(entry.substr(0, colon));
    const std::string tier = trim(entry.substr(colon + 1));
    ELI_CHECK_ARG(parse_tier(tier, &e.tier), "offload_map entry \"", entry, "\": unknown tier \"", tier,
                  "\" (gpu, host or disk)");
    const size_t dash = range.find('-');
    bool ok = false;
    if (dash == std::string::npos) {
      ok = parse_index(range, &e.first);
      e.last = e.first;
    } else {
      ok = parse_index(trim(range.substr(0, dash)), &e.first);
      const std::string end = trim(range.substr(dash + 1));
      if (ok && !end.empty()) {
        ok = parse_index(end, &e.last);
        ELI_CHECK_ARG(!ok || e.last >= e.first, "offload_map entry \"", entry, "\": the range ends before it starts");
      }
    }
    ELI_CHECK_ARG(ok, "offload_map entry \"", entry, "\": bad layer range \"", range, "\"", kSyntax);
    out.push_back(e);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

std::map<int64_t, MemoryTier> resolve_offload_map(const std::vector<OffloadMapEntry>& entries, int64_t first_layer,
                                                  int64_t n_layers) {
  std::map<int64_t, std::pair<MemoryTier, const OffloadMapEntry*>> named;
  const int64_t end = first_layer + n_layers;  // one past the last layer
  for (const OffloadMapEntry& e : entries) {
    const int64_t last = e.last < 0 ? end - 1 : e.last;
    ELI_CHECK_ARG(e.first >= first_layer && e.first < end && last < end, "offload_map entry \"", e.text,
                  "\": the model's layers are ", first_layer, "-", end - 1);
    for (int64_t l = e.first; l <= last; ++l) {
      auto [it, fresh] = named.emplace(l, std::make_pair(e.tier, &e));
      ELI_CHECK_ARG(fresh || it->second.first == e.tier, "offload_map entries \"", it->second.second->text,
                    "\" and \"", e.text, "\" put layer ", l, " in two tiers (", tier_word(it->second.first), ", ",
                    tier_word(e.tier), ")");
    }
  }
  std::map<int64_t, MemoryTier> out;
  for (const auto& [l, t] : named) {
    if (t.first != MemoryTier::kDevice) out[l] = t.first;
  }
  return out;
}

}  // namespace eli
