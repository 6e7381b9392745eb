#include "protocol/frame.h"

namespace pgmux::protocol {

namespace {

// The smallest startup-type packet is an SSLRequest: Int32 length, Int32 code.
constexpr uint32_t kMinStartupPacketSize = 8;
// A typed message's length field counts itself, so it is at least 4.
constexpr uint32_t kMinMessageLength = 4;

}  // namespace

Frame frame_startup(ByteView buf, uint32_t max_size) {
  Frame frame;
  if (buf.size() < kStartupHeaderSize) return frame;  // kNeedMore
  const uint32_t length = read_u32(buf.data());
  if (length < kMinStartupPacketSize || length > max_size) {
    frame.status = FrameStatus::kInvalid;
    return frame;
  }
  frame.status = FrameStatus::kComplete;
  frame.size = length;
  return frame;
}

Frame frame_message(ByteView buf, uint32_t max_size) {
  Frame frame;
  if (buf.size() < kMessageHeaderSize) return frame;  // kNeedMore
  frame.type = static_cast<char>(buf[0]);
  const uint32_t length = read_u32(buf.data() + 1);
  // Compare in 64 bits: length + 1 overflows uint32_t for a hostile 0xFFFFFFFF.
  const uint64_t total = uint64_t{length} + 1;
  if (length < kMinMessageLength || total > max_size) {
    frame.status = FrameStatus::kInvalid;
    return frame;
  }
  frame.status = FrameStatus::kComplete;
  frame.size = static_cast<uint32_t>(total);
  return frame;
}

}  // namespace pgmux::protocol
