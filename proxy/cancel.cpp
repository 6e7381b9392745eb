#include "proxy/cancel.h"

#include <spdlog/spdlog.h>

#include <cstdlib>

#include "protocol/messages.h"

namespace pgmux::proxy {

CancelConn::CancelConn(CancelHost& owner, uint64_t id, int32_t pid, int32_t secret,
                       const TlsContext* tls, std::string host, bool sni)
    : owner_(owner),
      id_(id),
      pid_(pid),
      secret_(secret),
      tls_(tls),
      host_(std::move(host)),
      sni_(sni),
      stream_(*this, owner.blocks()) {}

void CancelConn::start(const sockaddr* address) {
  started_at_ = owner_.now();
  if (stream_.init(owner_.loop()) != 0) {
    spdlog::critical("cannot create a TCP handle for a cancel request");
    std::abort();
  }
  connect_req_.data = this;
  if (uv_tcp_connect(&connect_req_, stream_.tcp(), address, &CancelConn::on_connected) != 0) {
    stream_.close();
  }
}

void CancelConn::on_connected(uv_connect_t* req, int status) {
  auto* self = static_cast<CancelConn*>(req->data);
  if (status < 0) {
    if (status != UV_ECANCELED) {
      spdlog::warn("could not connect upstream to forward a cancel request: {}",
                   uv_strerror(status));
    }
    self->stream_.close();
    return;
  }
  if (self->tls_ == nullptr) {
    self->send_cancel();
    return;
  }
  protocol::Bytes request;
  protocol::append_ssl_request(request);
  self->stream_.write_owned(request);
  self->awaiting_tls_answer_ = true;
  self->stream_.start_reading();
}

void CancelConn::on_readable(Stream& /*stream*/) {
  if (!awaiting_tls_answer_) return;
  Buffer& in = stream_.input();
  if (in.unparsed().empty()) return;
  const char answer = static_cast<char>(in.unparsed()[0]);
  in.consume(1);
  awaiting_tls_answer_ = false;
  if (answer == 'S' && in.unparsed().empty()) {
    stream_.start_tls(*tls_, host_, sni_);
  } else {
    spdlog::warn("the upstream refused TLS for a cancel request; not sent");
    stream_.close();
  }
}

void CancelConn::on_tls_ready(Stream& /*stream*/) { send_cancel(); }

void CancelConn::time_out(uint64_t limit_ms) {
  if (stream_.closing()) return;
  spdlog::info("a cancel request to the upstream did not go out within {} ms; dropped", limit_ms);
  stream_.close();
}

void CancelConn::send_cancel() {
  protocol::Bytes packet;
  protocol::append_cancel_request(packet, pid_, secret_);
  stream_.write_owned(packet);
  // The server closes the connection after reading the request (55.2.8).
  stream_.close_after_writes();
}

void CancelConn::on_eof(Stream& /*stream*/, int status) {
  if (status == UV_EPROTO) {
    spdlog::warn("TLS failed on a cancel request: {}", stream_.tls_error());
  }
  stream_.close();
}

void CancelConn::on_closed(Stream& /*stream*/) { owner_.on_cancel_freed(this); }

}  // namespace pgmux::proxy
