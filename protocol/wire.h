// Internal to protocol/: the big-endian writing helpers every builder uses,
// and the 08P01 error every inspector returns for malformed input.
#pragma once

#include <cassert>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "protocol/messages.h"
#include "protocol/result.h"
#include "protocol/sqlstate.h"

namespace pgmux::protocol::wire {

inline void put_u32(Bytes& out, uint32_t v) {
  out.push_back(static_cast<char>((v >> 24) & 0xFF));
  out.push_back(static_cast<char>((v >> 16) & 0xFF));
  out.push_back(static_cast<char>((v >> 8) & 0xFF));
  out.push_back(static_cast<char>(v & 0xFF));
}

inline void put_i32(Bytes& out, int32_t v) { put_u32(out, static_cast<uint32_t>(v)); }

inline void put_u16(Bytes& out, uint16_t v) {
  out.push_back(static_cast<char>((v >> 8) & 0xFF));
  out.push_back(static_cast<char>(v & 0xFF));
}

// REQUIRES: `s` holds no NUL; the wire format could not carry it.
inline void put_cstring(Bytes& out, std::string_view s) {
  assert(s.find('\0') == std::string_view::npos);
  out.append(s);
  out.push_back('\0');
}

// Overwrites the Int32 at `at` with the number of bytes from `at` to the end.
inline void patch_length(Bytes& out, size_t at) {
  assert(out.size() - at <= std::numeric_limits<uint32_t>::max());
  const auto length = static_cast<uint32_t>(out.size() - at);
  for (int i = 0; i < 4; ++i) {
    out[at + static_cast<size_t>(i)] = static_cast<char>((length >> (24 - 8 * i)) & 0xFF);
  }
}

// Writes the type byte and a placeholder length; returns where the length is.
inline size_t begin_message(Bytes& out, char type) {
  out.push_back(type);
  const size_t at = out.size();
  put_u32(out, 0);
  return at;
}

inline Error malformed(std::string_view what, std::string_view why) {
  std::string message = "malformed ";
  message.append(what).append(": ").append(why);
  return make_error(std::string(sqlstate::kProtocolViolation), std::move(message));
}

}  // namespace pgmux::protocol::wire
