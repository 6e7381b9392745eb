// A client speaking the wire protocol by hand (trust auth), to send what
// libpq cannot: a Close of a statement, malformed messages, half a request.
#pragma once

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "protocol/frame.h"
#include "protocol/messages.h"
#include "tests/pg_fixture.h"

namespace pgmux::testing {

class RawClient {
 public:
  explicit RawClient(uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    timeval tv{10, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    protocol::Bytes startup;
    protocol::append_startup_message(startup, {{"user", kScramUser}, {"database", "app"}});
    REQUIRE(round_trip(startup).back() == 'Z');
  }
  ~RawClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  // Sends `bytes`; returns the types of the messages that come back, up to
  // and including ReadyForQuery. `sqlstate` gets the first error's code.
  std::string round_trip(const protocol::Bytes& bytes, std::string* sqlstate = nullptr) {
    REQUIRE(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(bytes.size()));
    std::string types;
    for (;;) {
      protocol::ByteView view(reinterpret_cast<const uint8_t*>(in_.data()), in_.size());
      protocol::Frame frame = protocol::frame_message(view, 1 << 20);
      if (frame.status == protocol::FrameStatus::kComplete && frame.whole_in(view)) {
        if (frame.type == 'E' && sqlstate != nullptr && sqlstate->empty()) {
          auto fields = protocol::parse_error_response(view.first(frame.size));
          if (fields) *sqlstate = std::string(fields->sqlstate);
        }
        types += frame.type;
        in_.erase(0, frame.size);
        if (frame.type == 'Z') return types;
        continue;
      }
      char chunk[4096];
      const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      REQUIRE(n > 0);
      in_.append(chunk, static_cast<size_t>(n));
    }
  }

  // Sends `bytes` and reads to EOF; returns the types of what came back and
  // the first error's SQLSTATE in `sqlstate`.
  std::string until_closed(const protocol::Bytes& bytes, std::string* sqlstate) {
    REQUIRE(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(bytes.size()));
    char chunk[4096];
    ssize_t n;
    while ((n = ::recv(fd_, chunk, sizeof chunk, 0)) > 0) in_.append(chunk, static_cast<size_t>(n));
    CHECK(n == 0);  // Closed, not timed out.
    std::string types;
    protocol::ByteView view(reinterpret_cast<const uint8_t*>(in_.data()), in_.size());
    while (!view.empty()) {
      protocol::Frame frame = protocol::frame_message(view, 1 << 20);
      if (frame.status != protocol::FrameStatus::kComplete || !frame.whole_in(view)) break;
      if (frame.type == 'E' && sqlstate->empty()) {
        auto fields = protocol::parse_error_response(view.first(frame.size));
        if (fields) *sqlstate = std::string(fields->sqlstate);
      }
      types += frame.type;
      view = view.subspan(frame.size);
    }
    return types;
  }

  // Sends `bytes` and returns at once.
  void send_only(const protocol::Bytes& bytes) {
    REQUIRE(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(bytes.size()));
  }
  // Reads at least `count` bytes (whatever they are); false on EOF.
  bool read_at_least(size_t count) {
    size_t got = 0;
    char chunk[65536];
    while (got < count) {
      const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n <= 0) return false;
      got += static_cast<size_t>(n);
    }
    return true;
  }
  // Closes with a reset (SO_LINGER 0), as a killed process's kernel may.
  void reset() {
    linger hard{1, 0};
    setsockopt(fd_, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
    ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
  std::string in_;
};

}  // namespace pgmux::testing
