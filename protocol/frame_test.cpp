#include "protocol/frame.h"

#include <doctest/doctest.h>

#include <vector>

#include "protocol/messages.h"

namespace pgmux::protocol {
namespace {

ByteView view(const Bytes& b) { return {reinterpret_cast<const uint8_t*>(b.data()), b.size()}; }
ByteView view(const std::vector<uint8_t>& b) { return {b.data(), b.size()}; }

constexpr uint32_t kMax = 1 << 20;

TEST_CASE("frame_message needs five bytes before deciding") {
  const std::vector<uint8_t> empty;
  CHECK(frame_message(view(empty), kMax).status == FrameStatus::kNeedMore);
  const std::vector<uint8_t> four = {'Z', 0, 0, 0};
  CHECK(frame_message(view(four), kMax).status == FrameStatus::kNeedMore);
}

TEST_CASE("frame_message reads type and size from the header alone") {
  const std::vector<uint8_t> header = {'D', 0, 0, 0, 10};
  const Frame f = frame_message(view(header), kMax);
  CHECK(f.status == FrameStatus::kComplete);
  CHECK(f.type == 'D');
  CHECK(f.size == 11);
  CHECK_FALSE(f.whole_in(view(header)));
}

TEST_CASE("frame_message rejects impossible lengths") {
  SUBCASE("length field below 4") {
    for (uint8_t len = 0; len < 4; ++len) {
      const std::vector<uint8_t> h = {'Q', 0, 0, 0, len};
      CHECK(frame_message(view(h), kMax).status == FrameStatus::kInvalid);
    }
  }
  SUBCASE("length field of exactly 4 is a header-only message") {
    const std::vector<uint8_t> h = {'S', 0, 0, 0, 4};
    const Frame f = frame_message(view(h), kMax);
    CHECK(f.status == FrameStatus::kComplete);
    CHECK(f.size == 5);
    CHECK(f.whole_in(view(h)));
  }
  SUBCASE("total above max_size") {
    const std::vector<uint8_t> at_max = {'D', 0, 0, 0, 99};  // total 100
    CHECK(frame_message(view(at_max), 100).status == FrameStatus::kComplete);
    const std::vector<uint8_t> over = {'D', 0, 0, 0, 100};  // total 101
    CHECK(frame_message(view(over), 100).status == FrameStatus::kInvalid);
  }
  SUBCASE("largest length field does not overflow") {
    const std::vector<uint8_t> h = {'D', 0xFF, 0xFF, 0xFF, 0xFF};
    CHECK(frame_message(view(h), 0xFFFFFFFFu).status == FrameStatus::kInvalid);
    const std::vector<uint8_t> h2 = {'D', 0xFF, 0xFF, 0xFF, 0xFE};
    const Frame f = frame_message(view(h2), 0xFFFFFFFFu);
    CHECK(f.status == FrameStatus::kComplete);
    CHECK(f.size == 0xFFFFFFFFu);
  }
}

TEST_CASE("frame_startup checks the length field") {
  const std::vector<uint8_t> three = {0, 0, 0};
  CHECK(frame_startup(view(three)).status == FrameStatus::kNeedMore);
  const std::vector<uint8_t> seven = {0, 0, 0, 7};
  CHECK(frame_startup(view(seven)).status == FrameStatus::kInvalid);
  const std::vector<uint8_t> eight = {0, 0, 0, 8};
  CHECK(frame_startup(view(eight)).status == FrameStatus::kComplete);
  const std::vector<uint8_t> at_max = {0, 0, 0x27, 0x10};  // 10000
  CHECK(frame_startup(view(at_max)).status == FrameStatus::kComplete);
  const std::vector<uint8_t> over = {0, 0, 0x27, 0x11};  // 10001
  CHECK(frame_startup(view(over)).status == FrameStatus::kInvalid);
  CHECK(frame_startup(view(at_max), 9999).status == FrameStatus::kInvalid);
  const std::vector<uint8_t> huge = {0xFF, 0xFF, 0xFF, 0xFF};
  CHECK(frame_startup(view(huge)).status == FrameStatus::kInvalid);
}

TEST_CASE("frame_startup fed one byte at a time") {
  Bytes packet;
  append_startup_message(packet, {{"user", "alice"}, {"database", "app"}});
  for (size_t n = 0; n <= packet.size(); ++n) {
    const ByteView prefix = view(packet).first(n);
    const Frame f = frame_startup(prefix);
    if (n < kStartupHeaderSize) {
      CHECK(f.status == FrameStatus::kNeedMore);
    } else {
      REQUIRE(f.status == FrameStatus::kComplete);
      CHECK(f.type == 0);
      CHECK(f.size == packet.size());
      CHECK(f.whole_in(prefix) == (n == packet.size()));
    }
  }
}

TEST_CASE("frame_message fed one byte at a time") {
  Bytes msg;
  append_query(msg, "SELECT 1");
  for (size_t n = 0; n <= msg.size(); ++n) {
    const ByteView prefix = view(msg).first(n);
    const Frame f = frame_message(prefix, kMax);
    if (n < kMessageHeaderSize) {
      CHECK(f.status == FrameStatus::kNeedMore);
    } else {
      REQUIRE(f.status == FrameStatus::kComplete);
      CHECK(f.type == 'Q');
      CHECK(f.size == msg.size());
      CHECK(f.whole_in(prefix) == (n == msg.size()));
    }
  }
}

TEST_CASE("two messages back to back in one buffer") {
  Bytes buf;
  append_parameter_status(buf, "TimeZone", "UTC");
  const size_t first_size = buf.size();
  append_ready_for_query(buf, 'I');

  ByteView rest = view(buf);
  const Frame first = frame_message(rest, kMax);
  REQUIRE(first.whole_in(rest));
  CHECK(first.type == 'S');
  CHECK(first.size == first_size);
  auto status = parse_parameter_status(rest.first(first.size));
  REQUIRE(status.ok());
  CHECK(status->value == "UTC");

  rest = rest.subspan(first.size);
  const Frame second = frame_message(rest, kMax);
  REQUIRE(second.whole_in(rest));
  CHECK(second.type == 'Z');
  CHECK(second.size == rest.size());
  auto rfq = parse_ready_for_query(rest.first(second.size));
  REQUIRE(rfq.ok());
  CHECK(*rfq == 'I');
}

}  // namespace
}  // namespace pgmux::protocol
