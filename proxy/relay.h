// The forwarding loop both directions share: walk the unparsed bytes of a
// connection's input buffer one message header at a time, and mark whole
// messages (or the fragment of a large one that has arrived) for forwarding.
// The caller's hook decides per header; no byte is copied or allocated.
#pragma once

#include <algorithm>
#include <cstdint>

#include "protocol/frame.h"
#include "proxy/buffer.h"
#include "proxy/stream.h"

namespace pgmux::proxy {

enum class Step {
  kForward,  // Mark this message for forwarding (as much of it as has arrived).
  kHandled,  // The hook marked or consumed the message itself; go on.
  kStop,     // Stop here: wait for more bytes, or the connection changed state.
};

// `message_left` carries the unreceived rest of a message across calls, so a
// 100 MB DataRow streams through a small buffer. `on_header(frame, bytes)` sees
// every header that is complete or invalid (frame.status), with `bytes` the
// unparsed bytes starting at that message.
template <class OnHeader>
void mark_messages(Buffer& in, uint64_t& message_left, uint32_t max_size, OnHeader&& on_header) {
  for (;;) {
    protocol::ByteView bytes = in.unparsed();
    if (bytes.empty()) return;
    if (message_left > 0) {
      const size_t take = static_cast<size_t>(std::min<uint64_t>(message_left, bytes.size()));
      in.mark_parsed(take);
      message_left -= take;
      continue;
    }
    const protocol::Frame frame = protocol::frame_message(bytes, max_size);
    if (frame.status == protocol::FrameStatus::kNeedMore) return;
    switch (on_header(frame, bytes)) {
      case Step::kForward: {
        const size_t take = std::min<size_t>(frame.size, bytes.size());
        in.mark_parsed(take);
        message_left = frame.size - take;
        break;
      }
      case Step::kHandled:
        break;
      case Step::kStop:
        return;
    }
  }
}

// Writes `from`'s decided bytes (its input's pending()) to `to`, in order
// after anything already queued there. True when nothing is left to send;
// false while the write is in flight, and `from` stops reading until its
// StreamEvents::on_lent_write_done(). `sent_bytes` counts what went.
// REQUIRES: !from.lending().
inline bool drain(Stream& from, Stream& to, uint64_t& sent_bytes) {
  Buffer& in = from.input();
  if (in.pending().empty()) return true;
  const size_t size = in.pending().size();
  if (to.write_lent(from)) {
    sent_bytes += size;
    in.mark_sent();
    return true;
  }
  from.stop_reading();
  return false;
}

}  // namespace pgmux::proxy
