#include "proxy/http.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "proxy/listen_socket.h"

namespace pgmux::proxy {

namespace {

// The end of the head: the blank line after the headers, or npos.
size_t head_end(std::string_view input) {
  for (size_t i = 0; i < input.size(); ++i) {
    if (input[i] != '\n') continue;
    if (i + 1 < input.size() && input[i + 1] == '\n') return i + 2;
    if (i + 2 < input.size() && input[i + 1] == '\r' && input[i + 2] == '\n') return i + 3;
  }
  return std::string_view::npos;
}

bool is_token(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '-' || c == '_';
  });
}

const char* reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 431:
      return "Request Header Fields Too Large";
    case 503:
      return "Service Unavailable";
    default:
      return "Internal Server Error";
  }
}

}  // namespace

HeadStatus parse_request_head(std::string_view input, RequestHead& head, size_t limit) {
  // A request line may be followed by "\r\n\r\n" or, leniently, "\n\n"; the
  // line itself is complete once its own line end arrived.
  const size_t end = head_end(input);
  if (end == std::string_view::npos) {
    return input.size() >= limit ? HeadStatus::kTooLarge : HeadStatus::kIncomplete;
  }
  if (end > limit) return HeadStatus::kTooLarge;
  std::string_view line = input.substr(0, input.find('\n'));
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  const size_t first = line.find(' ');
  if (first == std::string_view::npos) return HeadStatus::kMalformed;
  const size_t second = line.find(' ', first + 1);
  if (second == std::string_view::npos) return HeadStatus::kMalformed;
  const std::string_view method = line.substr(0, first);
  const std::string_view target = line.substr(first + 1, second - first - 1);
  const std::string_view version = line.substr(second + 1);
  if (!is_token(method) || target.empty() || target[0] != '/' ||
      (version != "HTTP/1.1" && version != "HTTP/1.0")) {
    return HeadStatus::kMalformed;
  }
  head.method = method;
  head.path = target.substr(0, target.find('?'));
  return HeadStatus::kComplete;
}

std::string format_response(const HttpReply& reply) {
  std::string out = "HTTP/1.1 " + std::to_string(reply.status) + " " + reason_phrase(reply.status) +
                    "\r\nContent-Type: " + reply.content_type +
                    "\r\nContent-Length: " + std::to_string(reply.body.size()) +
                    "\r\nCache-Control: no-store\r\nConnection: close\r\n";
  if (reply.status == 405) out += "Allow: GET\r\n";
  out += "\r\n";
  out += reply.body;
  return out;
}

// One scrape: its socket, the request head read so far, and the response
// while libuv writes it. Freed by the server in the handle's close callback.
struct HttpServer::Connection {
  HttpServer* server = nullptr;
  uv_tcp_t tcp{};
  uv_write_t write_req{};
  uv_shutdown_t shutdown_req{};
  std::array<char, kMaxRequestHead> head{};
  size_t used = 0;
  std::string response;
  uint64_t deadline = 0;
  bool responded = false;  // Everything read after the response is discarded.
  bool closing = false;
};

HttpServer::HttpServer(uv_loop_t* loop, HttpHandler& handler, Limits limits)
    : loop_(loop), handler_(handler), limits_(limits) {}

HttpServer::~HttpServer() = default;

int HttpServer::listen(const sockaddr* address, bool reuseport) {
  uv_tcp_init(loop_, &listener_);
  listener_.data = this;
  listening_ = true;
  int rc = bind_listener(&listener_, address, reuseport);
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 64, &on_connection);
  if (rc == 0) port_ = bound_port(&listener_);
  return rc;
}

void HttpServer::close() {
  if (closed_) return;
  closed_ = true;
  if (listening_) uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
  for (auto& connection : connections_) close_connection(*connection);
}

void HttpServer::tick(uint64_t now) {
  for (auto& connection : connections_) {
    if (!connection->closing && now >= connection->deadline) close_connection(*connection);
  }
}

size_t HttpServer::open_connections() const {
  return static_cast<size_t>(std::count_if(connections_.begin(), connections_.end(),
                                           [](const auto& c) { return !c->closing; }));
}

void HttpServer::on_connection(uv_stream_t* listener, int status) {
  auto* self = static_cast<HttpServer*>(listener->data);
  if (status < 0) {
    spdlog::warn("metrics: accept failed: {}", uv_strerror(status));
    return;
  }
  self->accept();
}

void HttpServer::accept() {
  // Accepted even when over the limit, so that the kernel's queue empties;
  // the extra connection is closed at once.
  const bool over = open_connections() >= limits_.max_connections;
  auto owned = std::make_unique<Connection>();
  Connection& connection = *owned;
  connection.server = this;
  connection.deadline = uv_now(loop_) + limits_.deadline_ms;
  uv_tcp_init(loop_, &connection.tcp);
  connection.tcp.data = &connection;
  connections_.push_back(std::move(owned));
  auto* stream = reinterpret_cast<uv_stream_t*>(&connection.tcp);
  if (uv_accept(reinterpret_cast<uv_stream_t*>(&listener_), stream) != 0 || over) {
    if (over) spdlog::debug("metrics: {} scrapes open: connection closed", open_connections());
    close_connection(connection);
    return;
  }
  uv_read_start(stream, &on_alloc, &on_read);
}

void HttpServer::on_alloc(uv_handle_t* handle, size_t /*suggested*/, uv_buf_t* buf) {
  auto* connection = static_cast<Connection*>(handle->data);
  // After the response, reads only drain the socket (so that closing it does
  // not reset the connection under the response): the buffer is reused.
  if (connection->responded) connection->used = 0;
  *buf = uv_buf_init(connection->head.data() + connection->used,
                     static_cast<unsigned>(connection->head.size() - connection->used));
}

void HttpServer::on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* /*buf*/) {
  auto* connection = static_cast<Connection*>(stream->data);
  if (nread == 0) return;
  if (nread < 0) {
    // EOF or an error: nothing more to read, and either the response is out
    // (the peer closed after reading it) or it never will be.
    connection->server->close_connection(*connection);
    return;
  }
  if (connection->responded) return;
  connection->used += static_cast<size_t>(nread);
  connection->server->on_request(*connection);
}

void HttpServer::on_request(Connection& connection) {
  RequestHead head;
  const std::string_view input(connection.head.data(), connection.used);
  switch (parse_request_head(input, head, connection.head.size())) {
    case HeadStatus::kIncomplete:
      return;
    case HeadStatus::kTooLarge:
      respond(connection, HttpReply{431, "text/plain; charset=utf-8", "request head too large\n"});
      return;
    case HeadStatus::kMalformed:
      respond(connection, HttpReply{400, "text/plain; charset=utf-8", "bad request\n"});
      return;
    case HeadStatus::kComplete:
      break;
  }
  if (head.method != "GET") {
    respond(connection, HttpReply{405, "text/plain; charset=utf-8", "only GET is served\n"});
    return;
  }
  respond(connection, handler_.handle_get(head.path));
}

void HttpServer::respond(Connection& connection, const HttpReply& reply) {
  connection.responded = true;
  connection.response = format_response(reply);
  auto* stream = reinterpret_cast<uv_stream_t*>(&connection.tcp);
  const uv_buf_t buf =
      uv_buf_init(connection.response.data(), static_cast<unsigned>(connection.response.size()));
  connection.write_req.data = &connection;
  if (uv_write(&connection.write_req, stream, &buf, 1, &on_written) != 0) {
    close_connection(connection);
    return;
  }
  // The FIN follows the response; the connection closes when the peer's EOF
  // arrives or at the deadline.
  connection.shutdown_req.data = &connection;
  if (uv_shutdown(&connection.shutdown_req, stream, &on_shutdown) != 0) {
    close_connection(connection);
  }
}

void HttpServer::on_written(uv_write_t* req, int status) {
  auto* connection = static_cast<Connection*>(req->data);
  if (status < 0 && status != UV_ECANCELED) connection->server->close_connection(*connection);
}

void HttpServer::on_shutdown(uv_shutdown_t* req, int status) {
  auto* connection = static_cast<Connection*>(req->data);
  if (status < 0 && status != UV_ECANCELED) connection->server->close_connection(*connection);
}

void HttpServer::close_connection(Connection& connection) {
  if (connection.closing) return;
  connection.closing = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&connection.tcp), &on_closed);
}

void HttpServer::on_closed(uv_handle_t* handle) {
  auto* connection = static_cast<Connection*>(handle->data);
  connection->server->free_connection(connection);
}

void HttpServer::free_connection(Connection* connection) {
  auto it = std::find_if(connections_.begin(), connections_.end(),
                         [connection](const auto& c) { return c.get() == connection; });
  if (it != connections_.end()) connections_.erase(it);
}

}  // namespace pgmux::proxy
