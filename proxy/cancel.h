// Forwards one CancelRequest to an upstream over a new connection
// (PostgreSQL docs 55.2.8): connect, TLS first when the server connection it
// cancels uses TLS, send the 16 bytes, close. The Proxy gives up on one that
// has not finished by server_connect_timeout (time_out), so an upstream that
// never answers cannot keep it, or the loop, alive.
#pragma once

#include <uv.h>

#include <cstdint>
#include <string>

#include "proxy/list.h"
#include "proxy/stream.h"

namespace pgmux::proxy {

class CancelConn;
class TlsContext;

// What a CancelConn needs of the process it runs in. The Proxy implements it.
class CancelHost {
 public:
  virtual uv_loop_t* loop() = 0;
  virtual BlockPool& blocks() = 0;
  virtual uint64_t now() const = 0;
  // The cancel's handle has closed: the host frees it.
  virtual void on_cancel_freed(CancelConn* cancel) = 0;

 protected:
  ~CancelHost() = default;
};

class CancelConn final : public CancelLink, private StreamEvents {
 public:
  // `tls` may be nullptr (plaintext); `host` names the server for TLS, and
  // `sni` says whether it is sent as SNI (the URL's sslsni).
  CancelConn(CancelHost& owner, uint64_t id, int32_t pid, int32_t secret, const TlsContext* tls,
             std::string host, bool sni);
  CancelConn(const CancelConn&) = delete;
  CancelConn& operator=(const CancelConn&) = delete;

  uint64_t id() const { return id_; }
  uint64_t started_at() const { return started_at_; }
  // REQUIRES: called once. Failure is logged; the object then closes.
  void start(const sockaddr* address);
  // The request did not go out within `limit_ms`: logged, closed.
  void time_out(uint64_t limit_ms);
  // Idempotent; the Proxy frees the object in on_cancel_freed.
  void close() { stream_.close(); }

 private:
  static void on_connected(uv_connect_t* req, int status);
  void send_cancel();

  // StreamEvents
  void on_readable(Stream& stream) override;
  void on_eof(Stream& stream, int status) override;
  void on_lent_write_done(Stream& /*lender*/) override {}
  void on_closed(Stream& stream) override;
  void on_tls_ready(Stream& stream) override;

  CancelHost& owner_;
  uint64_t id_;
  int32_t pid_;
  int32_t secret_;
  const TlsContext* tls_;
  std::string host_;
  bool sni_;
  uint64_t started_at_ = 0;
  Stream stream_;
  uv_connect_t connect_req_{};
  bool awaiting_tls_answer_ = false;
};

}  // namespace pgmux::proxy
