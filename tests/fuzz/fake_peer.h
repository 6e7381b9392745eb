// One end of a loopback TCP connection that the session fuzzer plays: a
// fake client of pgmux or a fake PostgreSQL backend behind it. Everything
// runs on the proxy's own loop, so a whole session is one thread and nothing
// leaves the process.
//
// Output is queued and written by pump(), at most `chunk` bytes a call, so
// the peer on the other side sees messages split at fuzz-chosen points. A
// Peer is heap-allocated and owned by its harness; it may be freed once
// closed() is true (libuv's close callback ran).
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace pgmux::fuzz {

class Peer;

class PeerEvents {
 public:
  virtual void on_peer_data(Peer& peer) = 0;  // New bytes in peer.input().
  virtual void on_peer_eof(Peer& peer) = 0;   // The other side closed (or reset).

 protected:
  ~PeerEvents() = default;
};

class Peer {
 public:
  // `progress` is bumped on every event, so the driver can tell a quiet loop.
  Peer(uv_loop_t* loop, PeerEvents& events, size_t chunk, uint64_t& progress);
  ~Peer();
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;

  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp_); }
  // Client role: connects to 127.0.0.1:port; output waits for the connect.
  void connect(uint16_t port);
  // Server role: after uv_accept into stream().
  void accepted();

  void send(std::string_view bytes) { out_.append(bytes); }
  // Writes queued output (at most `chunk` bytes, 0: all); returns how many
  // bytes the kernel took.
  size_t pump();
  bool has_output() const { return !out_.empty(); }

  std::string& input() { return in_; }
  bool connected() const { return connected_; }
  bool eof() const { return eof_; }
  // `reset`: RST instead of FIN (SO_LINGER 0), so no TIME_WAIT is left.
  void close(bool reset);
  bool closing() const { return closing_; }
  bool closed() const { return closed_; }

  void* owner = nullptr;  // For the harness.
  int index = 0;          // For the harness.

 private:
  static void on_alloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void on_connect(uv_connect_t* req, int status);
  static void on_close(uv_handle_t* handle);
  void start_reading();

  PeerEvents& events_;
  size_t chunk_;
  uint64_t& progress_;
  uv_tcp_t tcp_{};
  uv_connect_t connect_req_{};
  std::string out_;
  std::string in_;
  size_t splits_ = 0;  // Chunked writes so far; past a bound the rest goes at once.
  bool connected_ = false;
  bool eof_ = false;
  bool closing_ = false;
  bool closed_ = false;
};

}  // namespace pgmux::fuzz
