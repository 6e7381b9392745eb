#include "proxy/server_conn.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>

#include "protocol/extended.h"
#include "protocol/frame.h"
#include "protocol/message_type.h"
#include "protocol/messages.h"
#include "protocol/sqlstate.h"
#include "proxy/client_conn.h"
#include "proxy/log.h"
#include "proxy/pool.h"
#include "proxy/relay.h"
#include "proxy/server_login.h"

namespace pgmux::proxy {
namespace be = protocol::be;
namespace sqlstate = protocol::sqlstate;
using protocol::Error;
using protocol::FrameStatus;

ServerConn::ServerConn(ServerHost& host, Pool& pool, uint64_t id)
    : host_(host),
      pool_(pool),
      id_(id),
      stream_(*this, host.blocks()),
      statements_(pool.statements(), host.config().max_prepared_statements),
      link_(*this, pool, host.config(), host.assembly()) {}

ServerConn::~ServerConn() = default;

void ServerConn::start() {
  const config::Upstream& up = pool_.database().upstream;
  tag_ = "S-" + std::to_string(id_) + " " + pool_.name() + "@" + up.endpoint();
  opened_at_ = host_.now();
  if (stream_.init(host_.loop()) != 0) {
    spdlog::critical("{}: cannot create a TCP handle", tag_);
    std::abort();
  }
  state_ = State::kResolving;
  sockaddr_storage address{};
  if (uv_ip4_addr(up.host.c_str(), up.port, reinterpret_cast<sockaddr_in*>(&address)) == 0 ||
      uv_ip6_addr(up.host.c_str(), up.port, reinterpret_cast<sockaddr_in6*>(&address)) == 0) {
    connect_to(reinterpret_cast<const sockaddr*>(&address));
    return;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  resolve_req_.data = this;
  const std::string port = std::to_string(up.port);
  int rc = uv_getaddrinfo(host_.loop(), &resolve_req_, &ServerConn::on_resolved, up.host.c_str(),
                          port.c_str(), &hints);
  if (rc != 0) {
    login_failed(Error{std::string(sqlstate::kUnableToConnect),
                       "could not resolve " + up.host + ": " + uv_strerror(rc)},
                 LoginFailure::kUnreachable);
    return;
  }
  resolve_pending_ = true;
}

void ServerConn::on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* result) {
  auto* self = static_cast<ServerConn*>(req->data);
  self->resolve_pending_ = false;
  if (self->state_ == State::kClosing) {
    uv_freeaddrinfo(result);
    if (self->stream_closed_) self->host_.on_server_freed(self);
    return;
  }
  if (status != 0 || result == nullptr) {
    const std::string& host = self->pool_.database().upstream.host;
    self->login_failed(Error{std::string(sqlstate::kUnableToConnect),
                             "could not resolve " + host + ": " + uv_strerror(status)},
                       LoginFailure::kUnreachable);
  } else {
    self->connect_to(preferred_address(result));
  }
  uv_freeaddrinfo(result);
}

void ServerConn::connect_to(const sockaddr* address) {
  std::memcpy(&peer_, address,
              address->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in));
  state_ = State::kConnecting;
  uv_tcp_nodelay(stream_.tcp(), 1);
  uv_tcp_keepalive(stream_.tcp(), 1, 60);
  connect_req_.data = this;
  int rc = uv_tcp_connect(&connect_req_, stream_.tcp(), address, &ServerConn::on_connected);
  if (rc != 0) {
    login_failed(Error{std::string(sqlstate::kUnableToConnect),
                       "could not connect to " + pool_.database().upstream.endpoint() + ": " +
                           uv_strerror(rc)},
                 LoginFailure::kUnreachable);
  }
}

void ServerConn::on_connected(uv_connect_t* req, int status) {
  auto* self = static_cast<ServerConn*>(req->data);
  if (status == UV_ECANCELED || self->state_ == State::kClosing) return;
  if (status < 0) {
    self->login_failed(Error{std::string(sqlstate::kUnableToConnect),
                             "could not connect to " + self->pool_.database().upstream.endpoint() +
                                 ": " + uv_strerror(status)},
                       LoginFailure::kUnreachable);
    return;
  }
  self->stream_.start_reading();
  Pool& pool = self->pool_;
  self->login_ = std::make_unique<ServerLogin>(pool.database().upstream, pool.name(),
                                               pool.upstream_tls() != nullptr);
  if (pool.asks_for_tls()) {
    // 55.2.10: ask for TLS first; the answer is one unencrypted byte.
    self->state_ = State::kTlsNegotiating;
    protocol::Bytes request;
    self->login_->append_ssl_request(request);
    self->stream_.write_owned(request);
    return;
  }
  self->state_ = State::kLoggingIn;
  self->send_startup();
}

void ServerConn::process_tls_answer() {
  Buffer& in = stream_.input();
  protocol::ByteView bytes = in.unparsed();
  if (bytes.empty()) return;
  const char answer = static_cast<char>(bytes[0]);
  in.consume(1);
  protocol::Bytes out;
  const ServerLoginOutcome outcome = login_->handle_tls_answer(answer, !in.unparsed().empty(), out);
  switch (outcome.next) {
    case ServerLoginNext::kStartTls: {
      const config::Upstream& up = pool_.database().upstream;
      state_ = State::kTlsHandshake;
      stream_.start_tls(*pool_.upstream_tls(), up.host, up.sslsni);
      return;
    }
    case ServerLoginNext::kContinue:  // 'N', and plaintext is fine: the StartupMessage.
      state_ = State::kLoggingIn;
      stream_.write_owned(out);
      return;
    case ServerLoginNext::kFailed:
      login_failed(outcome.error, outcome.kind);
      return;
    case ServerLoginNext::kLoggedIn:
    case ServerLoginNext::kRetryWithTls:
      break;
  }
  assert(false && "not an answer to an SSLRequest");
}

void ServerConn::on_tls_ready(Stream& /*stream*/) {
  if (state_ != State::kTlsHandshake) return;
  state_ = State::kLoggingIn;
  send_startup();
}

void ServerConn::send_startup() {
  protocol::Bytes out;
  login_->append_startup(out);
  stream_.write_owned(out);
}

void ServerConn::on_readable(Stream& /*stream*/) {
  switch (state_) {
    case State::kTlsNegotiating:
      process_tls_answer();
      break;
    case State::kLoggingIn:
      process_login();
      break;
    case State::kInPool:
      // Where in the pool the server is, the Pool's list says.
      switch (pool_list) {
        case PoolList::kIdle:
          process_idle();
          break;
        case PoolList::kChecking:
          if (surveying) {
            process_survey();
          } else {
            process_check();
          }
          break;
        case PoolList::kActive:
          link_.on_server_readable();
          break;
        default:
          break;
      }
      break;
    default:
      break;
  }
}

void ServerConn::process_login() {
  Buffer& in = stream_.input();
  const uint32_t max = host_.config().max_message_size;
  while (state_ == State::kLoggingIn) {
    protocol::ByteView bytes = in.unparsed();
    protocol::Frame frame = protocol::frame_message(bytes, max);
    if (frame.status == FrameStatus::kInvalid ||
        (frame.status == FrameStatus::kComplete && frame.size > in.capacity())) {
      login_failed(Error{std::string(sqlstate::kProtocolViolation),
                         "invalid or oversized message from the server during login"},
                   LoginFailure::kRejected);
      return;
    }
    if (!frame.whole_in(bytes)) return;
    protocol::ByteView message = bytes.first(frame.size);
    in.consume(frame.size);
    if (!handle_login_message(frame.type, message)) return;
  }
  if (state_ == State::kInPool) on_readable(stream_);
}

bool ServerConn::handle_login_message(char type, protocol::ByteView message) {
  protocol::Bytes out;
  const ServerLoginOutcome outcome = login_->handle_message(type, message, out);
  switch (outcome.next) {
    case ServerLoginNext::kContinue:
      if (!out.empty()) stream_.write_owned(out);
      return true;
    case ServerLoginNext::kLoggedIn:
      on_logged_in();
      return false;
    case ServerLoginNext::kFailed:
      login_failed(outcome.error, outcome.kind);
      return false;
    case ServerLoginNext::kRetryWithTls:
      // The pool remembers, so this server's replacement, which it opens at
      // once as this one closes, and every later one ask for TLS first;
      // waiting clients are not told.
      spdlog::info(
          "{}: the upstream refused a plaintext login ({} {}); trying TLS "
          "(sslmode=allow)",
          tag_, outcome.error.sqlstate, outcome.error.message);
      pool_.on_plaintext_refused();
      close("plaintext login refused under sslmode=allow");
      return false;
    case ServerLoginNext::kStartTls:
      break;
  }
  assert(false && "StartTls is only an answer to an SSLRequest");
  return false;
}

void ServerConn::on_logged_in() {
  state_ = State::kInPool;
  params_ = login_->take_parameters();
  backend_pid_ = login_->backend_pid();
  backend_secret_ = login_->backend_secret();
  login_.reset();
  const uint64_t now = host_.now();
  idle_since_ = now;
  // Spread recycling: each server lives 90-100 % of server_lifetime.
  const uint64_t lifetime = static_cast<uint64_t>(host_.config().server_lifetime.count());
  expires_at_ = now + lifetime - (lifetime > 10 ? host_.rng()() % (lifetime / 10) : 0);
  spdlog::debug("{}: logged in (backend pid {})", tag_, backend_pid_);
  pool_.on_server_ready(this);
}

void ServerConn::login_failed(const Error& error, LoginFailure kind) {
  if (state_ == State::kClosing) return;
  pool_.on_server_login_failed(this, error, kind);
  close(kind == LoginFailure::kNoCapacity ? "no capacity upstream" : "login failed");
}

bool ServerConn::next_whole_frame(protocol::ByteView& bytes, protocol::Frame& frame,
                                  const char* why_invalid) {
  Buffer& in = stream_.input();
  bytes = in.unparsed();
  frame = protocol::frame_message(bytes, host_.config().max_message_size);
  if (frame.status == FrameStatus::kInvalid ||
      (frame.status == FrameStatus::kComplete && frame.size > in.capacity())) {
    close(why_invalid);
    return false;
  }
  return frame.whole_in(bytes);
}

void ServerConn::process_idle() {
  // An idle server may still send NoticeResponse, ParameterStatus or
  // NotificationResponse (55.2.7); nobody wants them. An ErrorResponse here
  // is FATAL (the backend is going away).
  Buffer& in = stream_.input();
  while (state_ == State::kInPool && pool_list == PoolList::kIdle) {
    protocol::ByteView bytes;
    protocol::Frame frame;
    if (!next_whole_frame(bytes, frame, "invalid message from an idle server")) return;
    if (frame.type == be::kErrorResponse) {
      auto fields = protocol::parse_error_response(bytes.first(frame.size));
      spdlog::info("{}: idle server reported {}: closing it", tag_,
                   fields ? std::string(fields->message) : std::string("an error"));
      close("error on an idle server");
      return;
    }
    if (frame.type != be::kNoticeResponse && frame.type != be::kParameterStatus &&
        frame.type != be::kNotificationResponse) {
      close("unexpected message from an idle server");
      return;
    }
    in.consume(frame.size);
  }
}

bool ServerConn::seems_alive() {
  if (stream_.closing()) return false;
  uv_os_fd_t fd;
  if (uv_fileno(reinterpret_cast<const uv_handle_t*>(stream_.tcp()), &fd) != 0) return false;
  char byte;
  const ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

void ServerConn::start_check() {
  checking_since_ = host_.now();
  scratch_.clear();
  protocol::append_sync(scratch_);
  stream_.write_owned(scratch_);
}

void ServerConn::start_survey() {
  checking_since_ = host_.now();
  survey_.reset();
  survey_error_.clear();
  scratch_.clear();
  protocol::append_query(scratch_, kBudgetSurveySql);
  stream_.write_owned(scratch_);
}

void ServerConn::process_survey() {
  // RowDescription, one DataRow, CommandComplete, ReadyForQuery 'I'; or an
  // ErrorResponse (no permission, say) then ReadyForQuery 'I': the server
  // is still fit for clients either way. Anything else closes it.
  Buffer& in = stream_.input();
  while (state_ == State::kInPool && pool_list == PoolList::kChecking && surveying) {
    protocol::ByteView bytes;
    protocol::Frame frame;
    if (!next_whole_frame(bytes, frame, "invalid answer to the budget survey")) return;
    const protocol::ByteView message = bytes.first(frame.size);
    switch (frame.type) {
      case be::kRowDescription:
      case be::kCommandComplete:
      case be::kNoticeResponse:
      case be::kParameterStatus:
        break;
      case be::kDataRow: {
        auto row = protocol::parse_data_row(message);
        if (row) survey_ = parse_budget_survey(*row);
        if (!survey_) survey_error_ = "an answer that is not four integers";
        break;
      }
      case be::kErrorResponse: {
        auto fields = protocol::parse_error_response(message);
        survey_error_ = fields ? std::string(fields->sqlstate) + " " + std::string(fields->message)
                               : "an error";
        break;
      }
      case be::kReadyForQuery: {
        auto status = protocol::parse_ready_for_query(message);
        in.consume(frame.size);
        if (!status || *status != protocol::tx::kIdle) {
          close("the budget survey left the server inside a transaction");
          return;
        }
        idle_since_ = host_.now();
        if (survey_ && survey_error_.empty()) {
          pool_.on_survey(this, *survey_);
        } else {
          pool_.on_survey_failed(this, survey_error_.empty() ? "no row" : survey_error_);
        }
        return;
      }
      default:
        close("unexpected answer to the budget survey");
        return;
    }
    in.consume(frame.size);
  }
}

void ServerConn::process_check() {
  // The answer to the Sync is ReadyForQuery 'I'; a NOTICE or ParameterStatus
  // may come first. Anything else (a FATAL: the backend is going away)
  // means the server is not fit for a client.
  Buffer& in = stream_.input();
  while (state_ == State::kInPool && pool_list == PoolList::kChecking) {
    protocol::ByteView bytes;
    protocol::Frame frame;
    if (!next_whole_frame(bytes, frame, "invalid answer to the idle check")) return;
    if (frame.type == be::kReadyForQuery) {
      auto status = protocol::parse_ready_for_query(bytes.first(frame.size));
      in.consume(frame.size);
      if (!status || *status != protocol::tx::kIdle) {
        close("the idle check found the server inside a transaction");
        return;
      }
      idle_since_ = host_.now();
      spdlog::debug("{}: idle check passed", tag_);
      pool_.on_server_checked(this);
      return;
    }
    if (frame.type != be::kNoticeResponse && frame.type != be::kParameterStatus) {
      close(frame.type == be::kErrorResponse
                ? "the idle check got an error (the backend is going away)"
                : "unexpected answer to the idle check");
      return;
    }
    in.consume(frame.size);
  }
}

void ServerConn::attach(PooledClient* client) {
  link_.begin(*static_cast<ClientConn*>(client));  // Every pooled client is a ClientConn.
}

PooledClient* ServerConn::pooled_client() const { return static_cast<ClientConn*>(link_.client()); }

void ServerConn::detach() {
  link_.end();
  idle_since_ = host_.now();
}

void ServerConn::on_lent_write_done(Stream& /*lender*/) {
  stream_.input().mark_sent();
  if (link_.active()) link_.on_server_write_done();
}

void ServerConn::release() { pool_.release(this); }

void ServerConn::on_eof(Stream& /*stream*/, int status) {
  const bool serving = state_ == State::kInPool && pool_list != PoolList::kChecking;
  if (status == UV_EPROTO && !stream_.tls_error().empty() && !serving) {
    login_failed(Error{std::string(sqlstate::kConnectionFailure),
                       "TLS with the upstream " + pool_.database().upstream.endpoint() +
                           " failed: " + stream_.tls_error()},
                 LoginFailure::kRejected);
    return;
  }
  if (state_ == State::kLoggingIn || state_ == State::kConnecting ||
      state_ == State::kTlsNegotiating || state_ == State::kTlsHandshake) {
    login_failed(Error{std::string(sqlstate::kConnectionFailure),
                       std::string("the upstream closed the connection during login: ") +
                           uv_strerror(status)},
                 LoginFailure::kUnreachable);
    return;
  }
  close("the upstream closed the connection");
}

void ServerConn::close(const char* reason) {
  if (state_ == State::kClosing) return;
  const State previous = state_;
  state_ = State::kClosing;
  spdlog::info("{}: closing: {}", tag_, reason);
  (void)previous;
  link_.on_server_closing();
  pool_.on_server_closing(this);
  if (resolve_pending_) uv_cancel(reinterpret_cast<uv_req_t*>(&resolve_req_));
  stream_.close();
}

void ServerConn::on_closed(Stream& /*stream*/) {
  // The stream closes itself when a write fails (the upstream reset the
  // connection, a restart): the pool and the client must hear of it before
  // this object is freed, or they would keep pointers to it.
  if (state_ != State::kClosing) close("writing to the server failed");
  stream_closed_ = true;
  if (!resolve_pending_) host_.on_server_freed(this);
}

}  // namespace pgmux::proxy
