// A probe of an upstream that is down: resolve its host, open a TCP
// connection and close it at once. No byte is sent, so PostgreSQL logs
// nothing and no backend starts. It tells its owner once whether the
// connect succeeded, then closes; the owner frees it in on_probe_closed.
#pragma once

#include <uv.h>

#include <cstdint>
#include <string>

namespace pgmux::proxy {

class Probe;

class ProbeEvents {
 public:
  // Exactly once per started probe, from a libuv callback or cancel().
  virtual void on_probe_done(Probe& probe, bool connected) = 0;
  // Every handle and request is finished: the owner may free the probe.
  virtual void on_probe_closed(Probe& probe) = 0;

 protected:
  ~ProbeEvents() = default;
};

class Probe {
 public:
  Probe(ProbeEvents& events, uint64_t id, std::string host, uint16_t port);
  Probe(const Probe&) = delete;
  Probe& operator=(const Probe&) = delete;

  uint64_t id() const { return id_; }

  // Starts resolving and connecting. False when it could not start: then
  // nothing was reported, nothing is open, and the owner may free it at once.
  // REQUIRES: called once.
  bool start(uv_loop_t* loop);
  // Gives up (timeout, shutdown): reports a failure unless already
  // reported, then closes. Idempotent.
  void cancel();

 private:
  static void on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* result);
  static void on_connected(uv_connect_t* req, int status);
  static void on_tcp_closed(uv_handle_t* handle);
  void connect_to(const sockaddr* address);
  // Reports the result once, then closes what is open.
  void finish(bool connected);
  // Tells the owner it may free the probe once nothing is pending.
  void maybe_closed();

  ProbeEvents& events_;
  uint64_t id_;
  std::string host_;
  uint16_t port_;
  uv_loop_t* loop_ = nullptr;
  uv_getaddrinfo_t resolve_req_{};
  uv_connect_t connect_req_{};
  uv_tcp_t tcp_{};
  bool resolving_ = false;  // resolve_req_ is with libuv.
  bool tcp_open_ = false;   // tcp_ is initialised and its close callback has not run.
  bool closing_ = false;
  bool reported_ = false;
};

}  // namespace pgmux::proxy
