// A tiny HTTP/1.1 server for /metrics, /healthz and /readyz, on the loop.
//
// Sans-I/O parts: parse_request_head() reads a request line out of the bytes
// received so far (views into them, no allocation) and format_response()
// builds a whole response. HttpServer puts them on sockets: GET only, one
// request per connection (Connection: close), the request head bounded by
// kMaxRequestHead (431 beyond), at most Limits::max_connections at a time
// (extra ones are closed at accept), and every connection closed at its
// deadline whatever it is doing. The response is produced in one go by the
// HttpHandler and written asynchronously as owned bytes, so a scraper that
// does not read holds one bounded buffer until its deadline and never delays
// the loop.
#pragma once

#include <uv.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace pgmux::proxy {

inline constexpr size_t kMaxRequestHead = 8192;

enum class HeadStatus {
  kIncomplete,  // No blank line yet: read more.
  kComplete,
  kTooLarge,   // No blank line within the limit: 431.
  kMalformed,  // Not an HTTP/1.x request line: 400.
};

struct RequestHead {
  std::string_view method;
  std::string_view path;  // The target without its query string.
};

// Parses the head at the start of `input` (request line, headers, blank
// line; bare LF line ends are accepted). On kComplete, `head` views `input`.
HeadStatus parse_request_head(std::string_view input, RequestHead& head,
                              size_t limit = kMaxRequestHead);

struct HttpReply {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// "HTTP/1.1 <status> <reason>", Content-Type, Content-Length, Connection:
// close (and Allow: GET for 405), then the body.
std::string format_response(const HttpReply& reply);

class HttpHandler {
 public:
  // A GET of `path`. Runs on the loop; must not block.
  virtual HttpReply handle_get(std::string_view path) = 0;

 protected:
  ~HttpHandler() = default;
};

class HttpServer {
 public:
  struct Limits {
    size_t max_connections = 8;
    uint64_t deadline_ms = 5000;  // From accept to the last byte out.
  };

  // `loop` and `handler` must outlive the server.
  HttpServer(uv_loop_t* loop, HttpHandler& handler, Limits limits);
  // REQUIRES: close() was called and the loop has run since (every
  // connection's close callback has freed it), or listen() was never called.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and listens. Returns 0 or a libuv error code.
  int listen(const sockaddr* address, bool reuseport);
  uint16_t port() const { return port_; }
  // Closes connections past their deadline. `now` is uv_now() (ms).
  void tick(uint64_t now);
  // Closes the listener and every connection. Idempotent.
  void close();
  size_t connection_count() const { return connections_.size(); }

 private:
  struct Connection;
  static void on_connection(uv_stream_t* listener, int status);
  static void on_alloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void on_written(uv_write_t* req, int status);
  static void on_shutdown(uv_shutdown_t* req, int status);
  static void on_closed(uv_handle_t* handle);
  void accept();
  void on_request(Connection& connection);
  void respond(Connection& connection, const HttpReply& reply);
  void close_connection(Connection& connection);
  void free_connection(Connection* connection);
  size_t open_connections() const;

  uv_loop_t* loop_;
  HttpHandler& handler_;
  Limits limits_;
  uv_tcp_t listener_{};
  bool listening_ = false;
  bool closed_ = false;
  uint16_t port_ = 0;
  std::vector<std::unique_ptr<Connection>> connections_;
};

}  // namespace pgmux::proxy
