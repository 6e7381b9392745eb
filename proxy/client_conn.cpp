#include "proxy/client_conn.h"

#include <spdlog/spdlog.h>

#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <optional>

#include "protocol/frame.h"
#include "protocol/auth_messages.h"
#include "protocol/extended.h"
#include "protocol/messages.h"
#include "protocol/sql_scan.h"
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
      process_active();
      break;
    case State::kWaitingForServer:
      // More of a pipeline while waiting: it stays in the buffer, unread
      // further until a server is attached.
      stream_.stop_reading();
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

void ClientConn::welcome(const std::vector<std::pair<std::string, std::string>>& params) {
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
      close();
      return;
    }
    // Preparing a known statement needs no server (below); anything else
    // is the first message of a transaction: wait for a server.
    if ((frame.type == 'P' || frame.type == 'C') && answer_without_server()) continue;
    // Reading goes on while the client waits (stopping and starting it
    // costs system calls on every transaction), until it sends more.
    pool_->acquire(this);
    return;
  }
}

bool ClientConn::answer_without_server() {
  // A request made only of Parse (of statements some server has accepted
  // before) and Close (statement) messages, then Sync, changes nothing on
  // any server: pgmux answers it alone. That is what a driver's prepare
  // call sends, and answering it without a server means a client thread
  // blocked in a synchronous prepare cannot wait on servers that other
  // clients of the same thread hold (pgbench -M prepared does this).
  Buffer& in = stream_.input();
  const protocol::ByteView bytes = in.unparsed();
  const uint32_t max_size = proxy_.config().max_message_size;
  constexpr int kMaxMessages = 16;
  std::array<std::string_view, kMaxMessages> names{};
  int count = 0;
  size_t end = 0;
  for (size_t offset = 0;; ++count) {
    if (count == kMaxMessages) return false;
    const protocol::ByteView rest = bytes.subspan(offset);
    const protocol::Frame frame = protocol::frame_message(rest, max_size);
    if (frame.status != FrameStatus::kComplete || !frame.whole_in(rest)) return false;
    const protocol::ByteView message = rest.first(frame.size);
    if (frame.type == 'S') {
      end = offset + frame.size;
      break;
    }
    if (frame.type == 'P') {
      auto parse = protocol::parse_parse(message);
      if (!parse || parse->name.empty()) return false;
      Statement* known =
          pool_->statements().find(parse->query, parse->param_count, parse->param_types);
      if (known == nullptr || !known->valid) return false;
      if (statements_ && statements_->find(parse->name) != nullptr) return false;  // 42P05.
      for (int i = 0; i < count; ++i) {
        if (names[i] == parse->name) return false;
      }
      names[count] = parse->name;
    } else if (frame.type == 'C') {
      auto target = protocol::parse_close(message);
      if (!target || target->kind != 'S') return false;
    } else {
      return false;
    }
    offset += frame.size;
  }
  protocol::Bytes& out = proxy_.scratch();
  out.clear();
  for (size_t offset = 0; offset < end;) {
    const protocol::ByteView rest = bytes.subspan(offset);
    const protocol::Frame frame = protocol::frame_message(rest, max_size);
    const protocol::ByteView message = rest.first(frame.size);
    if (frame.type == 'P') {
      auto parse = protocol::parse_parse(message);
      statements().add(parse->name, pool_->statements().acquire(parse->query, parse->param_count,
                                                                 parse->param_types));
      protocol::append_parse_complete(out);
    } else if (frame.type == 'C') {
      auto target = protocol::parse_close(message);
      if (statements_ && !target->name.empty()) statements_->remove(target->name);
      protocol::append_close_complete(out);
    }
    offset += frame.size;
  }
  protocol::append_ready_for_query(out, 'I');
  in.consume(end);
  stream_.write_owned(out);
  return true;
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
  if (!overrides_.empty() || !server->overrides().empty()) {
    // The server may carry another client's settings, or lack this one's:
    // bring it in line ahead of the client's first message.
    std::string sql;
    append_param_sync(sql, overrides_, server->overrides());
    if (!sql.empty()) server->send_session_sync(sql, overrides_);
  }
  stream_.start_reading();
  process_active();
}

void ClientConn::process_active() {
  if (stream_.lending()) return;  // Resumed in on_lent_write_done.
  Buffer& in = stream_.input();
  mark_messages(in, message_left_, proxy_.config().max_message_size,
                [this](const protocol::Frame& frame, protocol::ByteView bytes) {
                  if (frame.status == FrameStatus::kInvalid) {
                    fail(sqlstate::kProtocolViolation, "invalid message length from the client");
                    return Step::kStop;
                  }
                  switch (frame.type) {
                    case 'X':
                      // Terminate is for pgmux, not for a shared server.
                      // Anything decided but unsent stays unsent; the server
                      // then counts as dirty and is closed rather than reused.
                      close();
                      return Step::kStop;
                    case 'Q':
                      return on_query(frame, bytes);
                    case 'P':
                      return on_parse(frame, bytes);
                    case 'B':
                      return on_bind(frame, bytes);
                    case 'D':
                    case 'C':
                      return on_describe_or_close(frame, bytes);
                    default:
                      server_->note_client_message(frame.type);
                      return forward(frame, bytes);
                  }
                });
  if (state_ == State::kActive) {
    flush_assembly();
    flush_to_server();
  }
}

protocol::Bytes& ClientConn::assembly() {
  // REQUIRES: nothing decided and unsent (drain_to_server() returned true).
  protocol::Bytes& out = proxy_.assembly();
  if (!assembling_) {
    out.clear();
    assembling_ = true;
  }
  return out;
}

Step ClientConn::forward(const protocol::Frame& frame, protocol::ByteView bytes) {
  if (!assembling_) return Step::kForward;
  if (frame.whole_in(bytes)) {
    // After a rewritten message, the rest of the batch joins it in one
    // write rather than a second system call.
    proxy_.assembly().append(reinterpret_cast<const char*>(bytes.data()), frame.size);
    stream_.input().consume(frame.size);
    return Step::kHandled;
  }
  flush_assembly();
  return Step::kForward;
}

void ClientConn::flush_assembly() {
  if (!assembling_) return;
  assembling_ = false;
  server_->stream().write_owned(proxy_.assembly());
}

namespace {

// What a refused session-level statement becomes: the server raises the
// error at the statement's place in the client's pipeline, so everything
// around it behaves as after any other error. Constant text only.
constexpr std::string_view kRefusedByPolicy =
    "DO $pgmux$BEGIN RAISE EXCEPTION 'pgmux refuses session-level statements in transaction "
    "mode (LISTEN, session SET it cannot track, temporary tables, session advisory locks, WITH "
    "HOLD cursors, SQL PREPARE, LOAD)' USING ERRCODE = '0A000', HINT = 'session_pinning is "
    "refuse; use transaction-scoped forms (SET LOCAL, pg_advisory_xact_lock, ON COMMIT DROP) or "
    "connect to the database directly'; END$pgmux$";
constexpr std::string_view kRefusedAtCap =
    "DO $pgmux$BEGIN RAISE EXCEPTION 'pgmux cannot pin another client to a server connection: "
    "max_pinned_server_connections are pinned already' USING ERRCODE = '0A000', HINT = 'this "
    "statement keeps session state (LISTEN, temporary table, session advisory lock, WITH HOLD, "
    "SQL PREPARE, SET ROLE); use a transaction-scoped form, or raise "
    "max_pinned_server_connections'; END$pgmux$";

std::string_view message_text(protocol::ByteView bytes, size_t from, size_t to) {
  return {reinterpret_cast<const char*>(bytes.data()) + from, to - from};
}

}  // namespace

bool ClientConn::drain_to_server() {
  Buffer& in = stream_.input();
  if (in.pending().empty()) return true;
  if (server_->stream().write_lent(stream_)) {
    in.mark_sent();
    return true;
  }
  stream_.stop_reading();  // Resumed in on_lent_write_done.
  return false;
}

ClientStatements& ClientConn::statements() {
  if (!statements_) statements_ = std::make_unique<ClientStatements>(pool_->statements());
  return *statements_;
}

void ClientConn::forget_statement(const Statement* statement) {
  if (statements_) statements_->forget(statement);
}

Step ClientConn::on_query(const protocol::Frame& frame, protocol::ByteView bytes) {
  Buffer& in = stream_.input();
  // Session-state statements are looked for in whole messages only (a
  // cheap keyword pre-check first). A Query longer than a buffer block is
  // streamed through unread.
  if (frame.size <= in.capacity()) {
    if (!frame.whole_in(bytes)) return Step::kStop;
    const std::string_view sql = message_text(bytes, protocol::kMessageHeaderSize, frame.size - 1);
    if (protocol::may_change_session(sql)) {
      // Inspecting has effects; from here the message is handled this call.
      if (!drain_to_server()) return Step::kStop;
      Statement* statement = nullptr;
      const SqlAction action = inspect_sql(sql, /*named_parse=*/false, &statement);
      if (action != SqlAction::kForward) {
        protocol::Bytes& out = assembly();
        if (action == SqlAction::kDeallocate) {
          // The client's name goes; the server statement goes from this
          // server only (other clients may use it elsewhere).
          prepare_on_server(statement);
          protocol::append_query(out, "DEALLOCATE " + statement->server_name);
          server_->statements().erase(statement);
          statements().forget(statement);
        } else {
          protocol::append_query(out, pinned_ || proxy_.config().session_pinning ==
                                                      config::SessionPinning::kRefuse
                                          ? kRefusedByPolicy
                                          : kRefusedAtCap);
        }
        in.consume(frame.size);
        server_->note_client_message('Q');
        return Step::kHandled;
      }
    }
  }
  server_->note_client_message('Q');
  return forward(frame, bytes);
}

Step ClientConn::on_parse(const protocol::Frame& frame, protocol::ByteView bytes) {
  Buffer& in = stream_.input();
  if (frame.size > in.capacity()) {
    // Too long to read whole: streamed through as it is. A named one
    // cannot be shared, so it is refused.
    if (bytes.size() > 5 && bytes[5] != 0) {
      fail(sqlstate::kProgramLimitExceeded,
           "pgmux cannot virtualise a named prepared statement longer than " +
               std::to_string(in.capacity()) + " bytes",
           "use an unnamed statement for very long queries");
      return Step::kStop;
    }
    server_->note_client_message('P');
    return forward(frame, bytes);
  }
  if (!frame.whole_in(bytes)) return Step::kStop;
  auto parse = protocol::parse_parse(bytes.first(frame.size));
  if (!parse) {
    fail(sqlstate::kProtocolViolation, parse.error().message);
    return Step::kStop;
  }
  const bool session_sql = protocol::may_change_session(parse->query);
  if (parse->name.empty() && !session_sql) {
    server_->note_client_message('P');
    return forward(frame, bytes);
  }
  // From here the message is rewritten, answered or inspected (which has
  // effects), so everything before it goes out first.
  if (!drain_to_server()) return Step::kStop;
  std::string_view query = parse->query;
  Statement* deallocated = nullptr;
  SqlAction action = SqlAction::kForward;
  if (session_sql) action = inspect_sql(query, !parse->name.empty(), &deallocated);
  protocol::Bytes& out = assembly();
  if (action == SqlAction::kRefuse) {
    query = pinned_ || proxy_.config().session_pinning == config::SessionPinning::kRefuse
                ? kRefusedByPolicy
                : kRefusedAtCap;
  }
  if (parse->name.empty()) {
    if (action == SqlAction::kForward) {
      server_->note_client_message('P');
      return forward(frame, bytes);
    }
    std::string text;
    if (action == SqlAction::kDeallocate) {
      prepare_on_server(deallocated);
      text = "DEALLOCATE " + deallocated->server_name;
      query = text;
      server_->statements().erase(deallocated);
      statements().forget(deallocated);
    }
    protocol::append_parse(out, "", query, 0, {});
    in.consume(frame.size);
    server_->note_client_message('P');
    return Step::kHandled;
  }

  ClientStatements& names = statements();
  if (Statement* existing = names.find(parse->name)) {
    // PostgreSQL refuses a name in use (42P05); let the server say so, in
    // its place in the pipeline, by preparing the same name twice.
    prepare_on_server(existing);
    protocol::append_parse(out, existing->server_name, query, parse->param_count,
                           parse->param_types);
    in.consume(frame.size);
    server_->note_client_message('P');
    return Step::kHandled;
  }
  Statement* statement =
      pool_->statements().acquire(query, parse->param_count, parse->param_types);
  names.add(parse->name, statement);
  in.consume(frame.size);
  if (server_->statements().touch(statement)) {
    // Already prepared on this server: pgmux answers for it.
    server_->expect(Pending{'P', Reply::kFake, '1', true, statement});
    return Step::kHandled;
  }
  Statement* evicted = server_->statements().insert(statement);
  if (evicted != nullptr) protocol::append_close(out, 'S', evicted->server_name);
  protocol::append_parse(out, statement->server_name, statement->query, statement->param_count,
                         parse->param_types);
  if (evicted != nullptr) server_->expect(Pending{'C', Reply::kSwallow, 0, false, evicted});
  server_->expect(Pending{'P', Reply::kForward, 0, true, statement});
  return Step::kHandled;
}

void ClientConn::prepare_on_server(Statement* statement) {
  if (server_->statements().touch(statement)) return;
  protocol::Bytes& out = assembly();
  Statement* evicted = server_->statements().insert(statement);
  if (evicted != nullptr) protocol::append_close(out, 'S', evicted->server_name);
  protocol::append_parse(
      out, statement->server_name, statement->query, statement->param_count,
      {reinterpret_cast<const uint8_t*>(statement->param_types.data()),
       statement->param_types.size()});
  if (evicted != nullptr) server_->expect(Pending{'C', Reply::kSwallow, 0, false, evicted});
  server_->expect(Pending{'P', Reply::kSwallow, 0, false, statement});
}

Step ClientConn::on_bind(const protocol::Frame& frame, protocol::ByteView bytes) {
  Buffer& in = stream_.input();
  if (!protocol::bind_header_complete(bytes)) {
    if (bytes.size() >= in.capacity() || bytes.size() >= frame.size) {
      fail(sqlstate::kProtocolViolation, "invalid Bind message");
      return Step::kStop;
    }
    return Step::kStop;
  }
  auto header = protocol::parse_bind_header(bytes);
  if (!header) {
    fail(sqlstate::kProtocolViolation, header.error().message);
    return Step::kStop;
  }
  Statement* statement =
      header->statement.empty() || !statements_ ? nullptr : statements_->find(header->statement);
  if (statement == nullptr) {
    server_->note_client_message('B');
    return forward(frame, bytes);
  }
  if (!drain_to_server()) return Step::kStop;
  prepare_on_server(statement);
  protocol::Bytes& out = assembly();
  const size_t rest = frame.size - header->rest_offset;
  protocol::append_bind_header(out, header->portal, statement->server_name, rest);
  in.consume(header->rest_offset);
  server_->note_client_message('B');
  if (rest <= in.unparsed().size()) {
    out.append(reinterpret_cast<const char*>(in.unparsed().data()), rest);
    in.consume(rest);
    return Step::kHandled;
  }
  // Large parameters follow as they are, streamed.
  flush_assembly();
  const size_t take = std::min(rest, in.unparsed().size());
  in.mark_parsed(take);
  message_left_ = rest - take;
  return Step::kHandled;
}

Step ClientConn::on_describe_or_close(const protocol::Frame& frame, protocol::ByteView bytes) {
  Buffer& in = stream_.input();
  const char type = frame.type;
  if (frame.size > in.capacity()) {
    fail(sqlstate::kProtocolViolation, "invalid Describe or Close message");
    return Step::kStop;
  }
  if (!frame.whole_in(bytes)) return Step::kStop;
  auto target = type == 'D' ? protocol::parse_describe(bytes.first(frame.size))
                            : protocol::parse_close(bytes.first(frame.size));
  if (!target) {
    fail(sqlstate::kProtocolViolation, target.error().message);
    return Step::kStop;
  }
  Statement* statement = target->kind != 'S' || target->name.empty() || !statements_
                             ? nullptr
                             : statements_->find(target->name);
  if (statement == nullptr) {
    server_->note_client_message(type);
    return forward(frame, bytes);
  }
  if (!drain_to_server()) return Step::kStop;
  if (type == 'C') {
    // Only the client's name goes; the server keeps the statement for
    // whoever else uses it. pgmux answers CloseComplete itself.
    statements_->remove(target->name);
    in.consume(frame.size);
    server_->expect(Pending{'C', Reply::kFake, '3'});
    return Step::kHandled;
  }
  prepare_on_server(statement);
  protocol::Bytes& out = assembly();
  protocol::append_describe(out, 'S', statement->server_name);
  in.consume(frame.size);
  server_->note_client_message('D');
  return Step::kHandled;
}

ClientConn::SqlAction ClientConn::inspect_sql(std::string_view sql, bool named_parse,
                                              Statement** statement) {
  const std::vector<protocol::SqlStatement> found = protocol::scan_sql(sql);
  bool needs_pin = false;
  for (const protocol::SqlStatement& s : found) {
    switch (s.kind) {
      case protocol::SqlKind::kSet:
      case protocol::SqlKind::kSetDefault:
      case protocol::SqlKind::kReset: {
        std::optional<std::string> name = normalise_param_name(s.name);
        // Reported parameters are tracked from the server's ParameterStatus.
        if (name && pool_->reports(*name)) break;
        if (!name || named_parse) {
          needs_pin = true;
          break;
        }
        server_->note_untracked_set(*name, s.value, s.kind != protocol::SqlKind::kSet);
        break;
      }
      case protocol::SqlKind::kResetAll:
        server_->note_reset_all();
        break;
      case protocol::SqlKind::kDiscardAll:
        // Resets the session and deallocates every statement on the server.
        server_->note_reset_all();
        server_->statements().clear();
        if (statements_) statements_->clear();
        unpin();
        break;
      case protocol::SqlKind::kDeallocateAll:
        server_->statements().clear();
        if (statements_) statements_->clear();
        break;
      case protocol::SqlKind::kDeallocate: {
        Statement* mine = statements_ ? statements_->find(s.name) : nullptr;
        if (mine != nullptr && found.size() == 1) {
          *statement = mine;
          return SqlAction::kDeallocate;
        }
        break;
      }
      case protocol::SqlKind::kExecute:
      case protocol::SqlKind::kDiscardOther:
      case protocol::SqlKind::kUnlisten:
        break;
      default:
        needs_pin = true;
        break;
    }
  }
  if (!needs_pin || pinned_) return SqlAction::kForward;
  const config::Config& config = proxy_.config();
  if (config.session_pinning == config::SessionPinning::kRefuse) {
    spdlog::info("{}: refused a session-level statement (session_pinning = refuse)", tag_);
    return SqlAction::kRefuse;
  }
  if (pool_->upstream().pinned() >= config.effective_max_pinned()) {
    spdlog::warn("{}: refused a session-level statement: {} clients are pinned already "
                 "(max_pinned_server_connections)",
                 tag_, pool_->upstream().pinned());
    return SqlAction::kRefuse;
  }
  pin();
  return SqlAction::kForward;
}

void ClientConn::pin() {
  if (pinned_) return;
  pinned_ = true;
  pool_->upstream().on_pinned();
  spdlog::warn("{}: session-level statement in transaction mode: pinned to {} until it "
               "disconnects or runs DISCARD ALL ({} pinned)",
               tag_, server_->tag(), pool_->upstream().pinned());
}

void ClientConn::unpin() {
  if (!pinned_) return;
  pinned_ = false;
  pool_->upstream().on_unpinned();
  spdlog::info("{}: DISCARD ALL: unpinned from its server", tag_);
}

void ClientConn::flush_to_server() {
  if (stream_.lending()) return;  // A drain is in flight; resumed when it is done.
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
  const State state_before = state_;
  state_ = State::kClosing;
  if (static_cast<LoginLink*>(this)->linked()) {
    if (state_before == State::kAuthFailed) {
      proxy_.auth_failed().remove(this);
    } else {
      proxy_.logging_in().remove(this);
    }
  }
  if (pool_ != nullptr && static_cast<PoolLink*>(this)->linked()) pool_->forget(this);
  if (server_ != nullptr) {
    ServerConn* server = server_;
    server_ = nullptr;
    server->on_client_gone(/*reusable=*/!pinned_);
  }
  if (pinned_) {
    pinned_ = false;
    pool_->upstream().on_unpinned();
  }
  if (after_writes) {
    stream_.close_after_writes();
  } else {
    stream_.close();
  }
}

void ClientConn::on_closed(Stream& /*stream*/) { proxy_.on_client_closed(this); }

}  // namespace pgmux::proxy

