#include "proxy/client_conn.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <optional>

#include "protocol/frame.h"
#include "protocol/message_type.h"
#include "protocol/messages.h"
#include "protocol/sqlstate.h"
#include "proxy/admin.h"
#include "proxy/log.h"
#include "proxy/pool.h"
#include "proxy/relay.h"
#include "proxy/server_conn.h"

namespace pgmux::proxy {
namespace fe = protocol::fe;
namespace sqlstate = protocol::sqlstate;
using protocol::FrameStatus;

ClientConn::ClientConn(ClientHost& host, uint64_t id, uint32_t slot)
    : host_(host), id_(id), slot_(slot), stream_(*this, host.blocks()) {
  if (stream_.init(host_.loop()) != 0) {
    spdlog::critical("C-{}: cannot create a TCP handle", id_);
    std::abort();
  }
}

ClientConn::~ClientConn() = default;

std::string_view ClientConn::database_name() const {
  const size_t space = tag_.find(' ');
  const size_t slash = tag_.find('/', space);
  if (space == std::string::npos || slash == std::string::npos) return {};
  return std::string_view(tag_).substr(space + 1, slash - space - 1);
}

std::string_view ClientConn::user_name() const {
  const size_t slash = tag_.find('/', tag_.find(' '));
  const size_t at = tag_.rfind('@');  // A user name may hold an '@'; an address does not.
  if (slash == std::string::npos || at == std::string::npos || at < slash) return {};
  return std::string_view(tag_).substr(slash + 1, at - slash - 1);
}

std::string_view ClientConn::peer_name() const {
  const size_t at = tag_.rfind('@');
  if (at != std::string::npos) return std::string_view(tag_).substr(at + 1);
  const size_t space = tag_.find(' ');
  return space == std::string::npos ? std::string_view() : std::string_view(tag_).substr(space + 1);
}

void ClientConn::start() {
  connected_at_ = host_.now();
  sockaddr_storage address{};
  int length = sizeof address;
  const bool known =
      uv_tcp_getpeername(stream_.tcp(), reinterpret_cast<sockaddr*>(&address), &length) == 0;
  login_ = std::make_unique<Login>(host_, host_.now(),
                                   known ? reinterpret_cast<const sockaddr*>(&address) : nullptr);
  tag_ = "C-" + std::to_string(id_) + " " + login_->peer();
  uv_tcp_nodelay(stream_.tcp(), 1);
  stream_.start_reading();
}

void ClientConn::on_readable(Stream& /*stream*/) { process(); }

void ClientConn::process() {
  switch (state_) {
    case State::kStartup:
    case State::kAuthenticating:
      process_login();
      break;
    case State::kIdle:
      process_idle();
      break;
    case State::kActive:
      server_->link().on_client_readable();
      break;
    case State::kAdmin:
      admin_->on_readable();
      break;
    case State::kWaitingForServer:
      // More of a pipeline while waiting stays in the buffer until a server
      // is attached. Reading goes on while there is room, so that a client
      // that gives up (Terminate, then EOF: libpq's PQfinish) is seen to go
      // and leaves the queue at once; a full buffer stops reading by itself
      // (Stream's backpressure) until attach() resumes it.
      break;
    default:
      break;
  }
}

void ClientConn::process_login() {
  protocol::Bytes out;
  for (;;) {
    const LoginOutcome outcome = login_->feed(stream_.input(), out);
    // The startup packet is complete: the startup deadline no longer applies.
    if (login_->startup_complete() && static_cast<StartupLink*>(this)->linked()) {
      host_.starting().remove(this);
    }
    if (pool_ == nullptr && login_->pool() != nullptr) {
      pool_ = login_->pool();
      tag_ = "C-" + std::to_string(id_) + " " + pool_->name() + "/" + login_->user() + "@" +
             login_->peer();
    }
    if (login_->authenticating()) state_ = State::kAuthenticating;
    // What the Login answered goes out before anything it decided.
    if (!out.empty()) {
      stream_.write_owned(out);
      out.clear();
    }
    switch (outcome.next) {
      case LoginNext::kNeedMore:
        return;
      case LoginNext::kStartTls:
        stream_.start_tls(host_.client_tls_context());
        continue;
      case LoginNext::kCancel:
        host_.forward_cancel(outcome.cancel_pid, outcome.cancel_secret);
        close("cancel request forwarded");
        return;
      case LoginNext::kWelcome:
        finish_login();
        return;
      case LoginNext::kAdmin:
        start_admin(login_->admin_role());
        return;
      case LoginNext::kFail:
        if (outcome.fault == LoginFault::kAddressRefused) {
          spdlog::warn("{}: refused: address not in allowed_cidrs", tag_);
        }
        fail(outcome.error.sqlstate, outcome.error.message, outcome.hint);
        return;
      case LoginNext::kFailAfterDelay:
        authentication_failed(outcome.fault);
        return;
    }
  }
}

void ClientConn::authentication_failed(LoginFault fault) {
  const uint64_t failures = host_.count_auth_failure();
  // The reason is for the operator only; the client hears the same words
  // for an unknown user and a wrong password.
  spdlog::warn("{}: password authentication failed ({}); {} failures since start", tag_,
               to_string(fault), failures);
  state_ = State::kAuthFailed;
  stream_.stop_reading();
  if (static_cast<LoginLink*>(this)->linked()) host_.logging_in().remove(this);
  host_.auth_failed().push_back(this);
}

void ClientConn::report_auth_failure() {
  const protocol::Error error = login_->delayed_failure();
  fail(error.sqlstate, error.message);
}

void ClientConn::finish_login() {
  host_.logging_in().remove(this);
  host_.register_cancel_key(this);
  state_ = State::kWaitingForWelcome;
  spdlog::debug("{}: logged in", tag_);
  pool_->request_welcome(this);
  // Reading pauses only while the welcome waits for the first server's
  // parameters: stopping and restarting it for a welcome given at once
  // would cost two epoll_ctl calls per login.
  if (state_ == State::kWaitingForWelcome) stream_.stop_reading();
}

void ClientConn::start_admin(AdminRole role) {
  host_.logging_in().remove(this);
  host_.register_cancel_key(this);
  tag_ = "C-" + std::to_string(id_) + " pgbouncer/" + login_->user() + "@" + login_->peer();
  login_.reset();
  spdlog::info("{}: logged in to the admin console", tag_);
  state_ = State::kAdmin;
  admin_ = host_.open_admin(*this, role);
  admin_->start();
}

void ClientConn::welcome(const ParameterList& params) {
  // The startup packet's settings become this client's session.
  std::vector<std::string> warnings;
  login_->take_settings(*pool_, overrides_, warnings);
  login_.reset();  // Logged in: the login state goes.
  for (const std::string& warning : warnings) spdlog::warn("{}: {}", tag_, warning);
  protocol::Bytes out;
  size_t size = 64;  // AuthenticationOk, BackendKeyData, ReadyForQuery.
  for (const auto& [name, value] : params) size += 7 + name.size() + value.size();
  out.reserve(size);
  protocol::append_authentication_ok(out);
  for (const auto& [name, value] : params) {
    const ParamValue* mine = overrides_.find_unnormalised(name);
    protocol::append_parameter_status(out, name, mine != nullptr ? mine->value : value);
  }
  protocol::append_backend_key_data(out, cancel_pid_, cancel_secret_);
  protocol::append_ready_for_query(out, protocol::tx::kIdle);
  stream_.write_owned(out);
  state_ = State::kIdle;
  pool_->on_client_joined();
  stream_.start_reading();
  process_idle();
}

void ClientConn::process_idle() {
  // Draining: a transaction boundary is where a client's session ends (its
  // server has just been released, or it has none).
  if (pool_->draining_clients()) {
    fail(sqlstate::kAdminShutdown, kAdminShutdownMessage);
    return;
  }
  Buffer& in = stream_.input();
  while (state_ == State::kIdle) {
    protocol::ByteView bytes = in.unparsed();
    if (bytes.empty()) return;
    if (discard_left_ > 0) {
      const size_t take = std::min<uint64_t>(discard_left_, bytes.size());
      in.consume(take);
      discard_left_ -= take;
      if (discard_left_ == 0 && discard_ends_request_) finish_discard();
      continue;
    }
    protocol::Frame frame = protocol::frame_message(bytes, host_.config().max_message_size);
    if (frame.status == FrameStatus::kNeedMore) return;
    if (frame.status == FrameStatus::kInvalid) {
      fail(sqlstate::kProtocolViolation, "invalid message length from the client");
      return;
    }
    if (discarding_) {
      discard_ends_request_ =
          frame.type == fe::kQuery || frame.type == fe::kSync || frame.type == fe::kFunctionCall;
      const size_t take = std::min<size_t>(frame.size, bytes.size());
      in.consume(take);
      discard_left_ = frame.size - take;
      if (discard_left_ == 0 && discard_ends_request_) finish_discard();
      continue;
    }
    if (frame.type == fe::kTerminate) {
      close("Terminate");
      return;
    }
    if (frame.type == fe::kCopyData || frame.type == fe::kCopyDone || frame.type == fe::kCopyFail ||
        frame.type == fe::kFlush) {
      // COPY data (or its end) after the server ended the COPY, or a Flush
      // with nothing to flush: PostgreSQL drops these outside a COPY, and so
      // does pgmux, without taking a server for them.
      const size_t take = std::min<size_t>(frame.size, bytes.size());
      in.consume(take);
      discard_left_ = frame.size - take;
      discard_ends_request_ = false;
      continue;
    }
    // Preparing a known statement needs no server (below); anything else
    // is the first message of a transaction: wait for a server.
    if ((frame.type == fe::kParse || frame.type == fe::kClose) && answer_without_server()) continue;
    // Reading goes on while the client waits (stopping and starting it
    // costs system calls on every transaction), until it sends more.
    state_ = State::kWaitingForServer;  // Until acquire attaches a server.
    pool_->acquire(this);
    return;
  }
}

void ClientConn::finish_discard() {
  discarding_ = false;
  discard_ends_request_ = false;
  protocol::Bytes out;
  protocol::append_ready_for_query(out, protocol::tx::kIdle);
  stream_.write_owned(out);
}

void ClientConn::attach(PooledServer* pooled) {
  // Every pooled server is a ServerConn; its attach began the Link.
  server_ = static_cast<ServerConn*>(pooled);
  state_ = State::kActive;
  stream_.start_reading();
  server_->link().on_client_readable();
}

void ClientConn::on_lent_write_done(Stream& /*lender*/) {
  stream_.input().mark_sent();
  if (state_ == State::kActive) server_->link().on_client_write_done();
}

ClientStatements* ClientConn::statements(bool create) {
  if (!statements_ && create) statements_ = std::make_unique<ClientStatements>(pool_->statements());
  return statements_.get();
}

void ClientConn::on_server_released() {
  server_ = nullptr;
  state_ = State::kIdle;
  stream_.start_reading();
  process_idle();
}

void ClientConn::fail_request(std::string_view code, std::string_view message,
                              std::string_view hint) {
  protocol::Bytes out;
  protocol::append_error_response(out, "ERROR", code, message, {}, hint);
  stream_.write_owned(out);
  discarding_ = true;
  state_ = State::kIdle;
  stream_.start_reading();
  process_idle();
}

void ClientConn::fail(std::string_view code, std::string_view message, std::string_view hint) {
  if (state_ == State::kClosing) return;
  if (stream_.tls_handshaking()) {
    // After 'S' the client expects a TLS record; there is no session to
    // encrypt a FATAL with yet, and plaintext would only read as a broken
    // record.
    spdlog::info("{}: closing during the TLS handshake: {}", tag_, message);
    shut(false);
    return;
  }
  spdlog::info("{}: closing with FATAL {}: {}", tag_, code, message);
  protocol::Bytes out;
  protocol::append_error_response(out, "FATAL", code, message, {}, hint);
  stream_.write_owned(out);
  shut(true);
}

void ClientConn::on_server_lost() {
  server_ = nullptr;
  fail(sqlstate::kConnectionFailure, "pgmux lost its connection to the server",
       "the transaction, if any, was rolled back by the server; reconnect and retry");
}

void ClientConn::on_eof(Stream& /*stream*/, int status) {
  // A client may leave whenever it likes; leaving in the middle of a
  // request or a transaction is worth an info line (its server may have to
  // go), leaving between them is not.
  const bool mid_request = state_ == State::kActive || state_ == State::kWaitingForServer;
  const char* how =
      status == UV_EOF ? "the client closed the connection" : "the client's connection failed: ";
  if (mid_request) {
    spdlog::info(
        "{}: closing: {}{} {}", tag_, how, status == UV_EOF ? "" : uv_strerror(status),
        state_ == State::kActive ? "while it held a server" : "while it waited for a server");
  } else {
    spdlog::debug("{}: closing: {}{}", tag_, how, status == UV_EOF ? "" : uv_strerror(status));
  }
  shut(false);
}

void ClientConn::close(std::string_view reason) {
  if (state_ == State::kClosing) return;
  spdlog::debug("{}: closing: {}", tag_, reason);
  shut(false);
}

void ClientConn::shut(bool after_writes) {
  if (state_ == State::kClosing) return;
  const State state_before = state_;
  state_ = State::kClosing;
  if (static_cast<StartupLink*>(this)->linked()) host_.starting().remove(this);
  if (static_cast<LoginLink*>(this)->linked()) {
    if (state_before == State::kAuthFailed) {
      host_.auth_failed().remove(this);
    } else {
      host_.logging_in().remove(this);
    }
  }
  // The pool list the client is on, not its state (already kClosing), says
  // what to unlink it from.
  if (pool_ != nullptr && pool_list != PoolList::kNone) pool_->forget(this);
  if (state_before == State::kIdle || state_before == State::kWaitingForServer ||
      state_before == State::kActive) {
    pool_->on_client_left();
  }
  if (server_ != nullptr) {
    ServerConn* server = server_;
    server_ = nullptr;
    server->link().on_client_departed();
  }
  if (admin_) admin_->detach();
  if (after_writes) {
    stream_.close_after_writes();
  } else {
    stream_.close();
  }
}

void ClientConn::on_closed(Stream& /*stream*/) {
  // The stream closes itself when a write fails (the client went away):
  // unlink from the pool's lists and let the server go before being freed.
  if (state_ != State::kClosing) {
    spdlog::info("{}: closing: writing to the client failed", tag_);
    shut(false);
  }
  host_.on_client_freed(this);
}

}  // namespace pgmux::proxy
