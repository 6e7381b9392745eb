// Forwards one CancelRequest to an upstream over a new connection
// (PostgreSQL docs 55.2.8): connect, send the 16 bytes, close.
#pragma once

#include <uv.h>

#include <array>
#include <cstdint>

namespace pgmux::proxy {

class Proxy;

class CancelConn {
 public:
  CancelConn(Proxy& proxy, uint64_t id, int32_t pid, int32_t secret);
  CancelConn(const CancelConn&) = delete;
  CancelConn& operator=(const CancelConn&) = delete;

  uint64_t id() const { return id_; }
  // REQUIRES: called once. Failure is logged; the object then closes.
  void start(const sockaddr* address);

 private:
  static void on_connected(uv_connect_t* req, int status);
  static void on_written(uv_write_t* req, int status);
  static void on_close(uv_handle_t* handle);
  void close();

  Proxy& proxy_;
  uint64_t id_;
  uv_tcp_t tcp_{};
  uv_connect_t connect_req_{};
  uv_write_t write_req_{};
  std::array<uint8_t, 16> packet_{};
  bool closing_ = false;
};

}  // namespace pgmux::proxy
