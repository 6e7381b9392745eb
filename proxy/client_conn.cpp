#include "proxy/client_conn.h"

#include <spdlog/spdlog.h>

#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <optional>

#include "protocol/frame.h"
#include "protocol/auth_messages.h"
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

ClientConn::ClientConn(Proxy& proxy, uint64_t id, uint32_t slot)
    : proxy_(proxy), id_(id), slot_(slot), stream_(*this, proxy.blocks()) {
  if (stream_.init(proxy_.loop()) != 0) {
    spdlog::critical("C-{}: cannot create a TCP handle", id_);
    std::abort();
  }
}

void ClientConn::start() {
  login_->accepted_at = proxy_.now();
  sockaddr_storage address{};
  int length = sizeof address;
  if (uv_tcp_getpeername(stream_.tcp(), reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    login_->peer = format_address(reinterpret_cast<const sockaddr*>(&address));
  }
  tag_ = "C-" + std::to_string(id_) + " " + login_->peer;
  uv_tcp_nodelay(stream_.tcp(), 1);
  stream_.start_reading();
}

void ClientConn::on_readable(Stream& /*stream*/) { process(); }

void ClientConn::process() {
  switch (state_) {
    case State::kStartup:
      process_startup();
      break;
    case State::kAuthenticating:
      process_auth();
      break;
    case State::kIdle:
      process_idle();
      break;
    case State::kActive:
      server_->link().on_client_readable();
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
      case protocol::StartupKind::kSslRequest: {
        in.consume(frame.size);
        const TlsContext* tls = proxy_.client_tls();
        if (tls_ || tls == nullptr) {
          // 'N': go on in plaintext (55.2.10).
          stream_.write_owned(std::string("N"));
          continue;
        }
        if (!in.unparsed().empty()) {
          // Bytes sent before the handshake are unencrypted whatever they
          // claim: refuse them (CVE-2021-23214).
          fail(sqlstate::kProtocolViolation, "received unencrypted data after SSL request");
          return;
        }
        stream_.write_owned(std::string("S"));
        stream_.start_tls(*tls);
        tls_ = true;
        continue;
      }
      case protocol::StartupKind::kGssEncRequest:
        in.consume(frame.size);
        stream_.write_owned(std::string("N"));
        continue;
      case protocol::StartupKind::kCancelRequest:
        in.consume(frame.size);
        proxy_.forward_cancel(packet->cancel_pid, packet->cancel_secret);
        close("cancel request forwarded");
        return;
      case protocol::StartupKind::kStartup:
        break;
    }
    // The startup packet is complete: the startup deadline no longer applies.
    proxy_.starting().remove(this);
    if (packet->user.empty()) {
      fail(sqlstate::kInvalidAuthorization, "no PostgreSQL user name specified in startup packet");
      return;
    }
    // The views point into the buffer: use them before consuming.
    const std::string user(packet->user);
    const std::string database(packet->database);
    for (const auto& [name, value] : packet->params) {
      if (name == "user" || name == "database" || name == "replication") continue;
      login_->startup_params.emplace_back(name, value);
    }
    in.consume(frame.size);
    start_session(user, database);
    return;
  }
}

void ClientConn::start_session(std::string_view user, std::string_view database) {
  const config::Config& config = proxy_.config();
  if (!tls_ && config.effective_client_tls() == config::ClientTls::kRequire) {
    fail(sqlstate::kInvalidAuthorization, "pgmux accepts only TLS connections",
         "connect with sslmode=require or stronger");
    return;
  }
  Pool* pool = proxy_.find_pool(database);
  if (pool == nullptr) {
    std::string served;
    for (const config::Database& db : config.databases) {
      served += (served.empty() ? "" : ", ") + db.name;
    }
    fail(sqlstate::kInvalidCatalogName,
         "database \"" + std::string(database) + "\" does not exist in pgmux",
         "pgmux serves: " + served);
    return;
  }
  pool_ = pool;
  login_->user = std::string(user);
  tag_ = "C-" + std::to_string(id_) + " " + std::string(database) + "/" + login_->user + "@" + login_->peer;

  // Who may log in: the configured users, or, with none configured, the
  // database's own upstream user with its upstream password (drop-in).
  const config::Upstream& upstream = pool->database().upstream;
  const config::User* configured = config.find_user(login_->user);
  const std::vector<config::Cidr>* allowed = &config.allowed_cidrs;
  if (configured != nullptr) {
    login_->known_user = true;
    login_->credential = protocol::parse_credential(configured->password);
    if (!configured->allowed_cidrs.empty()) allowed = &configured->allowed_cidrs;
  } else if (config.users.empty() && login_->user == upstream.user) {
    login_->known_user = config.auth_type == config::AuthType::kTrust || !upstream.password.empty();
    login_->credential = protocol::parse_credential(upstream.password);
  }
  if (!allowed->empty()) {
    sockaddr_storage address{};
    int length = sizeof address;
    uv_tcp_getpeername(stream_.tcp(), reinterpret_cast<sockaddr*>(&address), &length);
    const bool permitted = std::any_of(allowed->begin(), allowed->end(), [&](const config::Cidr& c) {
      return c.contains(reinterpret_cast<const sockaddr*>(&address));
    });
    if (!permitted) {
      spdlog::warn("{}: refused: address not in allowed_cidrs", tag_);
      fail(sqlstate::kInvalidAuthorization,
           "pgmux does not accept connections from " + login_->peer + " for user \"" + login_->user + "\"");
      return;
    }
  }
  if (config.auth_type == config::AuthType::kTrust) {
    if (!login_->known_user && !config.users.empty()) {
      fail(sqlstate::kInvalidAuthorization, "user \"" + login_->user + "\" is not known to pgmux");
      return;
    }
    if (!login_->known_user && config.users.empty()) {
      fail(sqlstate::kInvalidAuthorization,
           "user \"" + login_->user + "\" may not use database \"" + std::string(database) +
               "\" through pgmux",
           "connect as \"" + upstream.user + "\", the user pgmux logs in as");
      return;
    }
    finish_login();
    return;
  }
  begin_authentication();
}

void ClientConn::begin_authentication() {
  const config::Config& config = proxy_.config();
  protocol::Bytes out;
  state_ = State::kAuthenticating;
  using Kind = protocol::Credential::Kind;
  config::AuthType method = config.auth_type;
  // A stored md5 hash cannot do SCRAM; as PgBouncer, fall back to md5.
  if (method == config::AuthType::kScramSha256 && login_->known_user && login_->credential.kind == Kind::kMd5) {
    method = config::AuthType::kMd5;
  }
  switch (method) {
    case config::AuthType::kScramSha256: {
      protocol::ScramSecret secret;
      if (login_->known_user && login_->credential.kind == Kind::kScram) {
        secret = login_->credential.scram;
      } else if (login_->known_user) {
        secret = proxy_.scram_secret_for(login_->user, login_->credential.plain);
      } else {
        // An unknown user runs the same exchange and fails at the proof.
        secret = protocol::mock_scram_secret(login_->user, proxy_.mock_seed());
      }
      std::string binding;
      if (tls_ && proxy_.client_tls() != nullptr) binding = proxy_.client_tls()->server_end_point();
      login_->scram = std::make_unique<protocol::ScramServer>(std::move(secret), std::move(binding));
      std::vector<std::string_view> mechanisms;
      if (login_->scram->offers_plus()) mechanisms.emplace_back("SCRAM-SHA-256-PLUS");
      mechanisms.emplace_back("SCRAM-SHA-256");
      protocol::append_authentication_sasl(out, mechanisms);
      login_->auth_step = AuthStep::kSaslInitial;
      break;
    }
    case config::AuthType::kMd5:
      if (RAND_bytes(login_->md5_salt.data(), static_cast<int>(login_->md5_salt.size())) != 1) {
        spdlog::critical("the OpenSSL random generator failed");
        std::abort();
      }
      protocol::append_authentication_md5(out, login_->md5_salt);
      login_->auth_step = AuthStep::kMd5;
      break;
    default:
      protocol::append_authentication_cleartext(out);
      login_->auth_step = AuthStep::kCleartext;
      break;
  }
  stream_.write_owned(out);
  process_auth();
}

void ClientConn::process_auth() {
  Buffer& in = stream_.input();
  while (state_ == State::kAuthenticating) {
    protocol::ByteView bytes = in.unparsed();
    protocol::Frame frame = protocol::frame_message(bytes, proxy_.config().max_message_size);
    if (frame.status == FrameStatus::kNeedMore) return;
    if (frame.status == FrameStatus::kInvalid || frame.size > in.capacity() || frame.type != 'p') {
      fail(sqlstate::kProtocolViolation, "expected a password message");
      return;
    }
    if (!frame.whole_in(bytes)) return;
    // Consumed first: handling may finish the login, and then the client's
    // next bytes are processed at once. The view stays valid until the next
    // read into the buffer, which only a finished login can trigger.
    protocol::ByteView message = bytes.first(frame.size);
    in.consume(frame.size);
    if (!handle_auth_message(message)) return;
  }
}

bool ClientConn::handle_auth_message(protocol::ByteView message) {
  protocol::Bytes out;
  switch (login_->auth_step) {
    case AuthStep::kSaslInitial: {
      auto initial = protocol::parse_sasl_initial_response(message);
      if (!initial) {
        fail(initial.error().sqlstate, initial.error().message);
        return false;
      }
      auto server_first = login_->scram->handle_client_first(initial->mechanism, initial->data);
      if (!server_first) {
        fail(server_first.error().sqlstate, server_first.error().message);
        return false;
      }
      protocol::append_authentication_sasl_continue(out, *server_first);
      stream_.write_owned(out);
      login_->auth_step = AuthStep::kSaslFinal;
      return true;
    }
    case AuthStep::kSaslFinal: {
      auto data = protocol::parse_sasl_response(message);
      if (!data) {
        fail(data.error().sqlstate, data.error().message);
        return false;
      }
      auto server_final = login_->scram->handle_client_final(*data);
      if (!server_final) {
        if (server_final.error().sqlstate == sqlstate::kInvalidPassword) {
          authentication_failed("wrong SCRAM proof");
        } else {
          fail(server_final.error().sqlstate, server_final.error().message);
        }
        return false;
      }
      if (!login_->known_user) {
        authentication_failed("unknown user");
        return false;
      }
      login_->scram.reset();
      protocol::append_authentication_sasl_final(out, *server_final);
      stream_.write_owned(out);
      finish_login();
      return false;
    }
    case AuthStep::kMd5:
    case AuthStep::kCleartext: {
      auto password = protocol::parse_password_message(message);
      if (!password) {
        fail(password.error().sqlstate, password.error().message);
        return false;
      }
      const bool ok =
          login_->known_user && (login_->auth_step == AuthStep::kMd5
                              ? protocol::verify_md5_response(login_->credential, login_->user, login_->md5_salt, *password)
                              : protocol::verify_cleartext(login_->credential, login_->user, *password));
      if (!ok) {
        authentication_failed(login_->known_user ? "wrong password" : "unknown user");
        return false;
      }
      finish_login();
      return false;
    }
  }
  return false;
}

void ClientConn::authentication_failed(const char* why) {
  const uint64_t failures = proxy_.count_auth_failure();
  // The reason is for the operator only; the client hears the same words
  // for an unknown user and a wrong password.
  spdlog::warn("{}: password authentication failed ({}); {} failures since start", tag_, why,
               failures);
  login_->scram.reset();
  state_ = State::kAuthFailed;
  stream_.stop_reading();
  if (static_cast<LoginLink*>(this)->linked()) proxy_.logging_in().remove(this);
  login_->auth_failed_at = proxy_.now();
  proxy_.auth_failed().push_back(this);
}

void ClientConn::report_auth_failure() {
  fail(sqlstate::kInvalidPassword, "password authentication failed for user \"" + login_->user + "\"");
}

void ClientConn::finish_login() {
  proxy_.logging_in().remove(this);
  login_->credential = {};
  proxy_.register_cancel_key(this);
  state_ = State::kWaitingForWelcome;
  stream_.stop_reading();
  spdlog::debug("{}: logged in", tag_);
  pool_->request_welcome(this);
}

void ClientConn::welcome(const ParameterList& params) {
  // The startup packet's settings become this client's session: reported
  // parameters that differ from a fresh server's, and any other setting.
  std::vector<std::pair<std::string, std::string>> settings;
  for (auto& [name, value] : login_->startup_params) {
    if (name == "options") {
      StartupOptions options = parse_startup_options(value);
      for (const std::string& ignored : options.ignored) {
        spdlog::warn("{}: ignoring startup option \"{}\"", tag_, ignored);
      }
      for (auto& setting : options.settings) settings.push_back(std::move(setting));
    } else {
      settings.emplace_back(std::move(name), std::move(value));
    }
  }
  login_.reset();  // Logged in: the login state goes.
  for (const auto& [name, value] : settings) {
    std::optional<std::string> normal = normalise_param_name(name);
    if (!normal) {
      spdlog::warn("{}: ignoring startup parameter with an unusual name", tag_);
      continue;
    }
    const std::string* baseline = pool_->baseline_value(*normal);
    if (baseline == nullptr || *baseline != value) overrides_.set(*normal, value, false);
  }
  protocol::Bytes out;
  protocol::append_authentication_ok(out);
  for (const auto& [name, value] : params) {
    const ParamValue* mine = overrides_.empty() ? nullptr : overrides_.find(
        normalise_param_name(name).value_or(std::string()));
    protocol::append_parameter_status(out, name, mine != nullptr ? mine->value : value);
  }
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
      close("Terminate");
      return;
    }
    if (frame.type == 'd' || frame.type == 'c' || frame.type == 'f' || frame.type == 'H') {
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
    if ((frame.type == 'P' || frame.type == 'C') && answer_without_server()) continue;
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
  protocol::append_ready_for_query(out, 'I');
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
  const char* how = status == UV_EOF ? "the client closed the connection"
                                     : "the client's connection failed: ";
  if (mid_request) {
    spdlog::info("{}: closing: {}{} {}", tag_, how, status == UV_EOF ? "" : uv_strerror(status),
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
  if (static_cast<StartupLink*>(this)->linked()) proxy_.starting().remove(this);
  if (static_cast<LoginLink*>(this)->linked()) {
    if (state_before == State::kAuthFailed) {
      proxy_.auth_failed().remove(this);
    } else {
      proxy_.logging_in().remove(this);
    }
  }
  // The pool list the client is on, not its state (already kClosing), says
  // what to unlink it from.
  if (pool_ != nullptr && pool_list != PoolList::kNone) pool_->forget(this);
  if (server_ != nullptr) {
    ServerConn* server = server_;
    server_ = nullptr;
    server->link().on_client_departed();
  }
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
  proxy_.on_client_freed(this);
}

}  // namespace pgmux::proxy

