// Framing of PostgreSQL v3 messages (PostgreSQL docs, 55.2 "Message Flow" and
// 55.7 "Message Formats"). Sans-I/O: these functions look at bytes the caller
// owns and never allocate or copy.
//
// Two shapes exist on the wire:
//  - startup-type packets (StartupMessage, SSLRequest, GSSENCRequest,
//    CancelRequest): Int32 length (including itself), then the body;
//  - typed messages: Byte1 type, Int32 length (including itself, not the
//    type byte), then the body.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace pgmux::protocol {

using ByteView = std::span<const uint8_t>;

enum class FrameStatus {
  kComplete,  // The header is valid; `size` is the whole message's size.
  kNeedMore,  // Not enough bytes yet to decide. Not an error.
  kInvalid,   // The header can never be valid (length too small or too large).
};

struct Frame {
  FrameStatus status = FrameStatus::kNeedMore;
  char type = 0;      // Typed messages only; 0 for startup packets.
  uint32_t size = 0;  // Total bytes of the message including the header. Valid when kComplete.

  // True when `buf` (starting at this message) holds the whole message.
  bool whole_in(ByteView buf) const {
    return status == FrameStatus::kComplete && buf.size() >= size;
  }
};

inline constexpr size_t kMessageHeaderSize = 5;
inline constexpr size_t kStartupHeaderSize = 4;
// PostgreSQL's own limit for a startup packet (MAX_STARTUP_PACKET_LENGTH).
inline constexpr uint32_t kMaxStartupPacketSize = 10000;

// Frames a startup-type packet at the front of `buf`. A length below 8 or
// above `max_size` is kInvalid.
Frame frame_startup(ByteView buf, uint32_t max_size = kMaxStartupPacketSize);

// Frames a typed message at the front of `buf`. A length field below 4, or a
// total size above `max_size`, is kInvalid. kComplete means the 5-byte header
// is present and valid; check whole_in() for the body.
Frame frame_message(ByteView buf, uint32_t max_size);

// Big-endian helpers. REQUIRES: p points at 2 or 4 readable bytes.
inline uint32_t read_u32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}
inline uint16_t read_u16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }

}  // namespace pgmux::protocol
