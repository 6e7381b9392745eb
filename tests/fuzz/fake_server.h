// A scripted PostgreSQL backend for the session fuzzer: a listener on
// 127.0.0.1:0 on the proxy's loop, and one Backend per connection pgmux
// opens. It logs in with trust (AuthenticationOk, the usual ParameterStatus
// set, BackendKeyData, ReadyForQuery), then answers as PostgreSQL would: the
// simple and extended protocols with named statements and portals, errors
// that skip to Sync (55.2.3), transaction status, COPY in and out, and
// ParameterStatus for SET/RESET of reported parameters.
//
// What a statement does is read from its SQL, so the fuzzer steers the
// server with words it can find:
//   ERR       ERROR 42601 where the statement runs (Execute or Query)
//   BADPARSE  ERROR at Parse;  BADBIND  ERROR at Bind
//   FATAL     FATAL 57P01, then the connection closes (mid-transaction)
//   DIE       the connection closes with no message
//   BYE       the connection closes after the next ReadyForQuery (idle)
//   ROWS      RowDescription and two DataRows;  BIG  one 20 KB DataRow
//   NOTICE    a NoticeResponse;  NOTIFY  a NotificationResponse
//   COPY ... FROM STDIN / TO STDOUT,  BEGIN/COMMIT/ROLLBACK,  SET/RESET
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tests/fuzz/fake_peer.h"

namespace pgmux::fuzz {

// The key every fake backend sends; pgmux must never show it to a client.
inline constexpr int32_t kServerSecret = 0x5EC2E7;

class FakeServer final : public PeerEvents {
 public:
  enum class LoginMode : uint8_t {
    kOk,            // Every login succeeds.
    kFirstRefused,  // The first login gets FATAL 53300 (no capacity): pgmux backs off.
    kRejected,      // Every login gets FATAL 28P01: pgmux fails its waiting clients.
    kFirstClosed,   // The first connection closes during login.
  };

  FakeServer(uv_loop_t* loop, LoginMode login, size_t chunk, uint64_t& progress);
  ~FakeServer();
  FakeServer(const FakeServer&) = delete;
  FakeServer& operator=(const FakeServer&) = delete;

  // Listens on 127.0.0.1:0; returns the port, 0 on failure.
  uint16_t start();
  // Writes queued output; returns the bytes written.
  size_t pump();

  // Fuzz-driven events on every open backend.
  void close_all(bool reset);
  void notice_all();
  void parameter_status_all();
  void terminate_all();  // FATAL 57P01 (admin shutdown), then close.

  // Backends pgmux holds open (logged in or logging in); cancel connections
  // are not counted.
  size_t open_backends() const;
  size_t cancel_requests() const { return cancel_requests_; }

  // Closes the listener and every connection.
  void stop();
  // Every handle's close callback ran.
  bool closed() const;

 private:
  struct Backend;
  void on_peer_data(Peer& peer) override;
  void on_peer_eof(Peer& peer) override;
  static void on_connection(uv_stream_t* listener, int status);
  static void on_listener_closed(uv_handle_t* handle);

  void process(Backend& b);
  // One whole startup packet; false when the backend closed.
  bool process_startup(Backend& b, std::span<const uint8_t> packet);
  // Handles one whole message; false when the backend closed.
  bool handle(Backend& b, char type, std::string_view body);
  // Runs one SQL statement; false on an error (or a closed backend).
  bool run(Backend& b, std::string_view sql, bool extended);
  bool run_query(Backend& b, std::string_view sql);
  void error(Backend& b, std::string_view code, std::string_view message, bool extended);
  void ready(Backend& b);
  void set_param(Backend& b, const std::string& name, std::string_view value);

  uv_loop_t* loop_;
  LoginMode login_;
  size_t chunk_;
  uint64_t& progress_;
  uv_tcp_t listener_{};
  bool listener_open_ = false;
  bool listener_closed_ = true;
  std::vector<std::unique_ptr<Backend>> backends_;
  size_t logins_ = 0;
  size_t cancel_requests_ = 0;
};

}  // namespace pgmux::fuzz
