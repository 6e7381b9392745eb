// Helpers shared by the libFuzzer targets in tests/fuzz/. A failed check()
// traps, so libFuzzer reports the input as a crash like any sanitizer error.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/frame.h"

namespace pgmux::fuzz {

inline void check(bool ok) {
  if (!ok) __builtin_trap();
}

inline protocol::ByteView view(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

inline std::string_view text(protocol::ByteView b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

inline bool same(protocol::ByteView a, std::string_view b) { return text(a) == b; }

// Copies a slice of the input into an allocation of exactly its size, so that
// ASan flags a read past the slice's end, which would otherwise land unnoticed
// in the next message of the same input.
inline std::vector<uint8_t> isolate(protocol::ByteView b) { return {b.begin(), b.end()}; }

}  // namespace pgmux::fuzz
