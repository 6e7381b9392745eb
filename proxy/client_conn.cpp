#include "proxy/client_conn.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>

#include "protocol/frame.h"
#include "protocol/messages.h"
#include "protocol/sqlstate.h"
#include "proxy/log.h"
#include "proxy/pool.h"
#include "proxy/proxy.h"
#include "proxy/relay.h"
#include "proxy/server_conn.h"

namespace pgmux::proxy {
namespace sqlstate = protocol::sqlstate;
using protocol::FrameStatus;

ClientConn::ClientConn(Proxy& proxy, uint64_t id)
    : proxy_(proxy), id_(id), stream_(*this, proxy.blocks()) {
  if (stream_.init(proxy_.loop()) != 0) {
    spdlog::critical("C-{}: cannot create a TCP handle", id_);
    std::abort();
  }
}

void ClientConn::start() {
  accepted_at_ = proxy_.now();
  sockaddr_storage address{};
  int length = sizeof address;
  if (uv_tcp_getpeername(stream_.tcp(), reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    peer_ = format_address(reinterpret_cast<const sockaddr*>(&address));
  }
  tag_ = "C-" + std::to_string(id_) + " " + peer_;
  uv_tcp_nodelay(stream_.tcp(), 1);
  stream_.start_reading();
}

void ClientConn::on_readable(Stream& /*stream*/) { process(); }

void ClientConn::process() {
  switch (state_) {
    case State::kStartup:
      process_startup();
      break;
    case State::kIdle:
      process_idle();
      break;
    case State::kActive:
      process_active();
      break;
    default:
      break;
  }
}

void ClientConn::process_startup() {
  Buffer& in = stream_.input();
  while (state_ == State::kStartup) {
    protocol::ByteView bytes = in.unparsed();
    protocol::Frame frame = protocol::frame_startup(bytes);
    if (frame.status == FrameStatus::kNeedMore) return;
    if (frame.status == FrameStatus::kInvalid) {
      fail(sqlstate::kProtocolViolation, "invalid length of startup packet");
      return;
    }
    if (!frame.whole_in(bytes)) return;
    auto packet = protocol::parse_startup_packet(bytes.first(frame.size));
    if (!packet) {
      const std::string code =
          packet.error().sqlstate.empty() ? std::string(sqlstate::kProtocolViolation)
                                          : packet.error().sqlstate;
      fail(code, packet.error().message);
      return;
    }
    switch (packet->kind) {
      case protocol::StartupKind::kSslRequest:
      case protocol::StartupKind::kGssEncRequest:
        // No TLS or GSS encryption yet: 'N' tells the client to go on in
        // plaintext (55.2.10).
        in.consume(frame.size);
        stream_.write_owned(std::string("N"));
        continue;
      case protocol::StartupKind::kCancelRequest:
        in.consume(frame.size);
        proxy_.forward_cancel(packet->cancel_pid, packet->cancel_secret);
        close();
        return;
      case protocol::StartupKind::kStartup:
        break;
    }
    if (packet->user.empty()) {
      fail(sqlstate::kInvalidAuthorization, "no PostgreSQL user name specified in startup packet");
      return;
    }
    // The views point into the buffer: use them before consuming.
    const std::string user(packet->user);
    const std::string database(packet->database);
    in.consume(frame.size);
    start_session(user, database);
    return;
  }
}

void ClientConn::start_session(std::string_view user, std::string_view database) {
  Pool* pool = proxy_.find_pool(database);
  if (pool == nullptr) {
    std::string served;
    for (const config::Database& db : proxy_.config().databases) {
      served += (served.empty() ? "" : ", ") + db.name;
    }
    fail(sqlstate::kInvalidCatalogName,
         "database \"" + std::string(database) + "\" does not exist in pgmux",
         "pgmux serves: " + served);
    return;
  }
  const std::string& upstream_user = pool->database().upstream.user;
  if (user != upstream_user) {
    fail(sqlstate::kInvalidAuthorization,
         "user \"" + std::string(user) + "\" may not use database \"" + std::string(database) +
             "\" through pgmux",
         "connect as \"" + upstream_user + "\", the user pgmux logs in as");
    return;
  }
  proxy_.logging_in().remove(this);
  pool_ = pool;
  tag_ = "C-" + std::to_string(id_) + " " + std::string(database) + "/" + std::string(user) + "@" +
         peer_;
  proxy_.register_cancel_key(this);
  state_ = State::kWaitingForWelcome;
  stream_.stop_reading();
  spdlog::debug("{}: logged in", tag_);
  pool_->request_welcome(this);
}

void ClientConn::welcome(const std::vector<std::pair<std::string, std::string>>& params) {
  protocol::Bytes out;
  protocol::append_authentication_ok(out);
  for (const auto& [name, value] : params) protocol::append_parameter_status(out, name, value);
  protocol::append_backend_key_data(out, cancel_pid_, cancel_secret_);
  protocol::append_ready_for_query(out, 'I');
  stream_.write_owned(out);
  state_ = State::kIdle;
  stream_.start_reading();
  process_idle();
}

void ClientConn::process_idle() {
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
    protocol::Frame frame = protocol::frame_message(bytes, proxy_.config().max_message_size);
    if (frame.status == FrameStatus::kNeedMore) return;
    if (frame.status == FrameStatus::kInvalid) {
      fail(sqlstate::kProtocolViolation, "invalid message length from the client");
      return;
    }
    if (discarding_) {
      discard_ends_request_ = frame.type == 'Q' || frame.type == 'S' || frame.type == 'F';
      const size_t take = std::min<size_t>(frame.size, bytes.size());
      in.consume(take);
      discard_left_ = frame.size - take;
      if (discard_left_ == 0 && discard_ends_request_) finish_discard();
      continue;
    }
    if (frame.type == 'X') {
      close();
      return;
    }
    // The first message of a transaction: wait for a server.
    stream_.stop_reading();
    pool_->acquire(this);
    return;
  }
}

void ClientConn::finish_discard() {
  discarding_ = false;
  discard_ends_request_ = false;
  protocol::Bytes out;
  protocol::append_ready_for_query(out, 'I');
  stream_.write_owned(out);
}

void ClientConn::attach(ServerConn* server) {
  server_ = server;
  state_ = State::kActive;
  message_left_ = 0;
  stream_.start_reading();
  process_active();
}

void ClientConn::process_active() {
  if (stream_.lending()) return;  // Resumed in on_lent_write_done.
  mark_messages(stream_.input(), message_left_, proxy_.config().max_message_size,
                [this](const protocol::Frame& frame, protocol::ByteView /*bytes*/) {
                  if (frame.status == FrameStatus::kInvalid) {
                    fail(sqlstate::kProtocolViolation, "invalid message length from the client");
                    return Step::kStop;
                  }
                  if (frame.type == 'X') {
                    // Terminate is for pgmux, not for a shared server. Anything
                    // decided but unsent stays unsent; the server then counts as
                    // dirty and is closed rather than reused.
                    close();
                    return Step::kStop;
                  }
                  server_->note_client_message(frame.type);
                  return Step::kForward;
                });
  if (state_ == State::kActive) flush_to_server();
}

void ClientConn::flush_to_server() {
  Buffer& in = stream_.input();
  if (in.pending().empty()) return;
  if (server_->stream().write_lent(stream_)) {
    in.mark_sent();
  } else {
    stream_.stop_reading();  // Backpressure: resume in on_lent_write_done.
  }
}

void ClientConn::on_lent_write_done(Stream& /*lender*/) {
  stream_.input().mark_sent();
  if (state_ == State::kActive) {
    stream_.start_reading();
    process_active();
  }
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

void ClientConn::on_eof(Stream& /*stream*/, int /*status*/) { close(); }

void ClientConn::shut(bool after_writes) {
  if (state_ == State::kClosing) return;
  state_ = State::kClosing;
  if (static_cast<LoginLink*>(this)->linked()) proxy_.logging_in().remove(this);
  if (pool_ != nullptr && static_cast<PoolLink*>(this)->linked()) pool_->forget(this);
  if (server_ != nullptr) {
    ServerConn* server = server_;
    server_ = nullptr;
    server->on_client_gone();
  }
  if (after_writes) {
    stream_.close_after_writes();
  } else {
    stream_.close();
  }
}

void ClientConn::on_closed(Stream& /*stream*/) { proxy_.on_client_closed(this); }

}  // namespace pgmux::proxy
