#include "proxy/probe.h"

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <cstring>

#include "proxy/log.h"

namespace pgmux::proxy {

Probe::Probe(ProbeEvents& events, uint64_t id, std::string host, uint16_t port)
    : events_(events), id_(id), host_(std::move(host)), port_(port) {}

bool Probe::start(uv_loop_t* loop) {
  loop_ = loop;
  sockaddr_storage address{};
  if (uv_ip4_addr(host_.c_str(), port_, reinterpret_cast<sockaddr_in*>(&address)) == 0 ||
      uv_ip6_addr(host_.c_str(), port_, reinterpret_cast<sockaddr_in6*>(&address)) == 0) {
    connect_to(reinterpret_cast<const sockaddr*>(&address));
    return true;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  resolve_req_.data = this;
  const std::string port = std::to_string(port_);
  const int rc =
      uv_getaddrinfo(loop, &resolve_req_, &Probe::on_resolved, host_.c_str(), port.c_str(), &hints);
  if (rc != 0) {
    spdlog::debug("probe of {}:{}: could not resolve: {}", host_, port_, uv_strerror(rc));
    return false;
  }
  resolving_ = true;
  return true;
}

void Probe::on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* result) {
  auto* self = static_cast<Probe*>(req->data);
  self->resolving_ = false;
  if (self->closing_) {
    uv_freeaddrinfo(result);
    if (!self->reported_) {
      self->reported_ = true;
      self->events_.on_probe_done(*self, false);
    }
    self->maybe_closed();
    return;
  }
  if (status != 0 || result == nullptr) {
    spdlog::debug("probe of {}:{}: could not resolve: {}", self->host_, self->port_,
                  uv_strerror(status));
    uv_freeaddrinfo(result);
    self->finish(false);
    return;
  }
  self->connect_to(preferred_address(result));
  uv_freeaddrinfo(result);
}

void Probe::connect_to(const sockaddr* address) {
  if (uv_tcp_init(loop_, &tcp_) != 0) {
    spdlog::critical("cannot create a TCP handle for a probe");
    std::abort();
  }
  tcp_open_ = true;
  tcp_.data = this;
  connect_req_.data = this;
  const int rc = uv_tcp_connect(&connect_req_, &tcp_, address, &Probe::on_connected);
  if (rc != 0) {
    // Reported from the close callback, never from inside start().
    spdlog::debug("probe of {}:{}: {}", host_, port_, uv_strerror(rc));
    closing_ = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), &Probe::on_tcp_closed);
  }
}

void Probe::on_connected(uv_connect_t* req, int status) {
  auto* self = static_cast<Probe*>(req->data);
  if (status == UV_ECANCELED || self->closing_) return;
  if (status < 0) {
    spdlog::debug("probe of {}:{}: {}", self->host_, self->port_, uv_strerror(status));
  }
  self->finish(status == 0);
}

void Probe::finish(bool connected) {
  if (!reported_) {
    reported_ = true;
    events_.on_probe_done(*this, connected);
  }
  if (closing_) return;
  closing_ = true;
  if (tcp_open_) {
    // A connect still in flight gets UV_ECANCELED before the close callback.
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), &Probe::on_tcp_closed);
    return;
  }
  maybe_closed();
}

void Probe::cancel() {
  if (closing_) return;
  if (resolving_) {
    // The failure is reported when the resolve request comes back.
    closing_ = true;
    uv_cancel(reinterpret_cast<uv_req_t*>(&resolve_req_));
    return;
  }
  finish(false);
}

void Probe::on_tcp_closed(uv_handle_t* handle) {
  auto* self = static_cast<Probe*>(handle->data);
  self->tcp_open_ = false;
  if (!self->reported_) {
    self->reported_ = true;
    self->events_.on_probe_done(*self, false);
  }
  self->maybe_closed();
}

void Probe::maybe_closed() {
  if (!resolving_ && !tcp_open_) events_.on_probe_closed(*this);
}

}  // namespace pgmux::proxy
