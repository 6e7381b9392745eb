#include "proxy/cancel.h"

#include <spdlog/spdlog.h>

#include <cstring>

#include "protocol/messages.h"
#include "proxy/proxy.h"

namespace pgmux::proxy {

CancelConn::CancelConn(Proxy& proxy, uint64_t id, int32_t pid, int32_t secret)
    : proxy_(proxy), id_(id) {
  protocol::Bytes packet;
  protocol::append_cancel_request(packet, pid, secret);
  std::memcpy(packet_.data(), packet.data(), packet_.size());
}

void CancelConn::start(const sockaddr* address) {
  if (uv_tcp_init(proxy_.loop(), &tcp_) != 0) {
    spdlog::critical("cannot create a TCP handle for a cancel request");
    std::abort();
  }
  tcp_.data = this;
  connect_req_.data = this;
  if (uv_tcp_connect(&connect_req_, &tcp_, address, &CancelConn::on_connected) != 0) close();
}

void CancelConn::on_connected(uv_connect_t* req, int status) {
  auto* self = static_cast<CancelConn*>(req->data);
  if (status < 0) {
    if (status != UV_ECANCELED) {
      spdlog::warn("could not connect upstream to forward a cancel request: {}", uv_strerror(status));
    }
    self->close();
    return;
  }
  uv_buf_t buf = uv_buf_init(reinterpret_cast<char*>(self->packet_.data()),
                             static_cast<unsigned>(self->packet_.size()));
  self->write_req_.data = self;
  if (uv_write(&self->write_req_, reinterpret_cast<uv_stream_t*>(&self->tcp_), &buf, 1,
               &CancelConn::on_written) != 0) {
    self->close();
  }
}

void CancelConn::on_written(uv_write_t* req, int /*status*/) {
  // The server closes the connection after reading the request; nothing to
  // wait for (55.2.8).
  static_cast<CancelConn*>(req->data)->close();
}

void CancelConn::close() {
  if (closing_) return;
  closing_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), &CancelConn::on_close);
}

void CancelConn::on_close(uv_handle_t* handle) {
  auto* self = static_cast<CancelConn*>(handle->data);
  self->proxy_.on_cancel_closed(self);
}

}  // namespace pgmux::proxy
