// Link: the relay from client to server, with the extended-protocol
// rewriting that virtualises named prepared statements and the inspection of
// SQL that tracks session state and pins.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>

#include "protocol/extended.h"
#include "protocol/frame.h"
#include "protocol/message_type.h"
#include "protocol/messages.h"
#include "protocol/sql_scan.h"
#include "protocol/sqlstate.h"
#include "proxy/link.h"
#include "proxy/pool.h"

namespace pgmux::proxy {
namespace sqlstate = protocol::sqlstate;
namespace fe = protocol::fe;
using protocol::FrameStatus;

void Link::on_client_readable() {
  Stream& stream = client_->stream();
  if (stream.lending()) return;  // Resumed in on_client_write_done.
  const uint32_t epoch = epoch_;
  mark_messages(stream.input(), client_left_, config_.max_message_size,
                [this](const protocol::Frame& frame, protocol::ByteView bytes) {
                  return on_client_message(frame, bytes);
                });
  if (epoch_ != epoch) return;
  flush_assembly();
  if (!stream.lending()) drain_to_server();  // Else on_client_write_done resumes.
  // The server may have finished while the client was mid-message (the
  // tail of a COPY the server ended early): now that the message is
  // through, it can go.
  if (client_left_ == 0 && !stream.lending()) maybe_release();
  if (epoch_ != epoch) return;
  // Reading stops by itself when the buffer fills (a request that grew
  // while the client waited); with room made and no write in flight, it
  // goes on. Over TLS this also decrypts what waits in the session.
  if (!stream.lending() && !stream.reading()) stream.start_reading();
}

void Link::on_client_write_done() {
  client_->stream().start_reading();
  on_client_readable();
}

Step Link::on_client_message(const protocol::Frame& frame, protocol::ByteView bytes) {
  if (frame.status == FrameStatus::kInvalid) {
    client_->fail(sqlstate::kProtocolViolation, "invalid message length from the client", {});
    return Step::kStop;
  }
  switch (frame.type) {
    case fe::kTerminate:
      // Terminate is for pgmux, not for a shared server. Anything decided
      // but unsent stays unsent; the server then counts as dirty and is
      // closed rather than reused.
      client_->close("Terminate");
      return Step::kStop;
    case fe::kQuery:
      return on_query(frame, bytes);
    case fe::kParse:
      return on_parse(frame, bytes);
    case fe::kBind:
      return on_bind(frame, bytes);
    case fe::kDescribe:
    case fe::kClose:
      return on_describe_or_close(frame, bytes);
    default:
      note_client_message(frame.type);
      return forward(frame, bytes);
  }
}

bool Link::drain_to_server() {
  return drain(client_->stream(), server_.stream(), stats_.totals.received);
}

protocol::Bytes& Link::assembly() {
  // REQUIRES: nothing decided and unsent (drain_to_server() returned true).
  protocol::Bytes& out = assembly_;
  if (!assembling_) {
    out.clear();
    assembling_ = true;
  }
  return out;
}

Step Link::forward(const protocol::Frame& frame, protocol::ByteView bytes) {
  if (!assembling_) return Step::kForward;
  if (frame.whole_in(bytes)) {
    // After a rewritten message, the rest of the batch joins it in one
    // write rather than a second system call.
    assembly_.append(reinterpret_cast<const char*>(bytes.data()), frame.size);
    client_->stream().input().consume(frame.size);
    return Step::kHandled;
  }
  flush_assembly();
  return Step::kForward;
}

void Link::flush_assembly() {
  if (!assembling_) return;
  assembling_ = false;
  server_.stream().write_owned(assembly_);
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

// The statement that replaces a refused one: by policy, or because the
// pin cap is reached.
std::string_view refusal_sql(const config::Config& config) {
  return config.session_pinning == config::SessionPinning::kRefuse ? kRefusedByPolicy
                                                                   : kRefusedAtCap;
}

std::string_view message_text(protocol::ByteView bytes, size_t from, size_t to) {
  return {reinterpret_cast<const char*>(bytes.data()) + from, to - from};
}

}  // namespace

Step Link::on_query(const protocol::Frame& frame, protocol::ByteView bytes) {
  Buffer& in = client_->stream().input();
  // Session-state statements are looked for in whole messages only (a
  // cheap keyword pre-check first). A Query longer than a buffer block is
  // streamed through unread.
  if (frame.size <= in.capacity()) {
    if (!frame.whole_in(bytes)) return Step::kStop;
    // The body is one NUL-terminated string (55.7): an empty body or a
    // missing terminator is what PostgreSQL itself answers with 08P01.
    if (frame.size <= protocol::kMessageHeaderSize || bytes[frame.size - 1] != 0) {
      client_->fail(sqlstate::kProtocolViolation,
                    "invalid Query message: its text is not terminated", {});
      return Step::kStop;
    }
    const std::string_view sql = message_text(bytes, protocol::kMessageHeaderSize, frame.size - 1);
    if (protocol::may_change_session(sql)) {
      // Inspecting has effects; from here the message is handled this call.
      if (!drain_to_server()) return Step::kStop;
      Statement* statement = nullptr;
      // PostgreSQL reads the text up to its first NUL (and rejects a message
      // with more after it), so the tracking reads no further: a setting
      // replayed later never carries a NUL.
      const std::string_view text = sql.substr(0, sql.find('\0'));
      const SqlAction action = inspect_sql(text, /*named_parse=*/false, &statement,
                                           /*simple_query=*/true);
      if (action != SqlAction::kForward) {
        protocol::Bytes& out = assembly();
        protocol::append_query(out, action == SqlAction::kDeallocate
                                        ? deallocate_on_server(statement)
                                        : std::string(refusal_sql(config_)));
        in.consume(frame.size);
        note_client_message(fe::kQuery);
        return Step::kHandled;
      }
    }
  }
  note_client_message(fe::kQuery);
  return forward(frame, bytes);
}

Step Link::on_parse(const protocol::Frame& frame, protocol::ByteView bytes) {
  Buffer& in = client_->stream().input();
  if (frame.size > in.capacity()) {
    // Too long to read whole: streamed through as it is. A named one
    // cannot be shared, so it is refused.
    if (bytes.size() > 5 && bytes[5] != 0) {
      client_->fail(sqlstate::kProgramLimitExceeded,
                    "pgmux cannot virtualise a named prepared statement longer than " +
                        std::to_string(in.capacity()) + " bytes",
                    "use an unnamed statement for very long queries");
      return Step::kStop;
    }
    note_client_message(fe::kParse);
    return forward(frame, bytes);
  }
  if (!frame.whole_in(bytes)) return Step::kStop;
  auto parse = protocol::parse_parse(bytes.first(frame.size));
  if (!parse) {
    client_->fail(sqlstate::kProtocolViolation, parse.error().message, {});
    return Step::kStop;
  }
  const bool session_sql = protocol::may_change_session(parse->query);
  if (parse->name.empty() && !session_sql) {
    note_client_message(fe::kParse);
    return forward(frame, bytes);
  }
  // From here the message is rewritten, answered or inspected (which has
  // effects), so everything before it goes out first.
  if (!drain_to_server()) return Step::kStop;
  std::string_view query = parse->query;
  Statement* deallocated = nullptr;
  SqlAction action = SqlAction::kForward;
  if (session_sql) {
    action = inspect_sql(query, !parse->name.empty(), &deallocated, /*simple_query=*/false);
  }
  protocol::Bytes& out = assembly();
  if (action == SqlAction::kRefuse) query = refusal_sql(config_);
  if (parse->name.empty()) {
    if (action == SqlAction::kForward) {
      note_client_message(fe::kParse);
      return forward(frame, bytes);
    }
    std::string text;
    if (action == SqlAction::kDeallocate) {
      text = deallocate_on_server(deallocated);
      query = text;
    }
    protocol::append_parse(out, "", query, 0, {});
    in.consume(frame.size);
    note_client_message(fe::kParse);
    return Step::kHandled;
  }

  ClientStatements& names = *client_->statements(true);
  if (Statement* existing = names.find(parse->name)) {
    // PostgreSQL refuses a name in use (42P05); let the server say so, in
    // its place in the pipeline, by preparing the same name twice.
    prepare_on_server(existing);
    protocol::append_parse(out, existing->server_name, query, parse->param_count,
                           parse->param_types);
    in.consume(frame.size);
    note_client_message(fe::kParse);
    return Step::kHandled;
  }
  Statement* statement = pool_.statements().acquire(query, parse->param_count, parse->param_types);
  names.add(parse->name, statement);
  in.consume(frame.size);
  if (server_.statements().touch(statement)) {
    // Already prepared on this server: pgmux answers for it.
    expect(Pending::answered_parse(statement));
    return Step::kHandled;
  }
  Statement* evicted = server_.statements().insert(statement);
  if (evicted != nullptr)
    protocol::append_close(out, protocol::target::kStatement, evicted->server_name);
  protocol::append_parse(out, statement->server_name, statement->query, statement->param_count,
                         parse->param_types);
  if (evicted != nullptr) expect(Pending::own_close(evicted));
  expect(Pending::client_parse(statement));
  return Step::kHandled;
}

std::string Link::deallocate_on_server(Statement* statement) {
  // The client's name goes; the server statement goes from this server
  // only (other clients may use it elsewhere). It must exist there for the
  // DEALLOCATE to succeed.
  prepare_on_server(statement);
  std::string sql = "DEALLOCATE " + statement->server_name;
  server_.statements().erase(statement);
  client_->statements(true)->forget(statement);
  return sql;
}

void Link::prepare_on_server(Statement* statement) {
  if (server_.statements().touch(statement)) return;
  protocol::Bytes& out = assembly();
  Statement* evicted = server_.statements().insert(statement);
  if (evicted != nullptr)
    protocol::append_close(out, protocol::target::kStatement, evicted->server_name);
  protocol::append_parse(out, statement->server_name, statement->query, statement->param_count,
                         {reinterpret_cast<const uint8_t*>(statement->param_types.data()),
                          statement->param_types.size()});
  if (evicted != nullptr) expect(Pending::own_close(evicted));
  expect(Pending::own_parse(statement));
}

Step Link::on_bind(const protocol::Frame& frame, protocol::ByteView bytes) {
  Buffer& in = client_->stream().input();
  if (!protocol::bind_header_complete(bytes)) {
    if (bytes.size() >= in.capacity() || bytes.size() >= frame.size) {
      client_->fail(sqlstate::kProtocolViolation, "invalid Bind message", {});
      return Step::kStop;
    }
    return Step::kStop;
  }
  auto header = protocol::parse_bind_header(bytes);
  if (!header) {
    client_->fail(sqlstate::kProtocolViolation, header.error().message, {});
    return Step::kStop;
  }
  ClientStatements* names = client_->statements(false);
  Statement* statement =
      header->statement.empty() || names == nullptr ? nullptr : names->find(header->statement);
  if (statement == nullptr) {
    note_client_message(fe::kBind);
    return forward(frame, bytes);
  }
  if (!drain_to_server()) return Step::kStop;
  prepare_on_server(statement);
  protocol::Bytes& out = assembly();
  const size_t rest = frame.size - header->rest_offset;
  protocol::append_bind_header(out, header->portal, statement->server_name, rest);
  in.consume(header->rest_offset);
  note_client_message(fe::kBind);
  if (rest <= in.unparsed().size()) {
    out.append(reinterpret_cast<const char*>(in.unparsed().data()), rest);
    in.consume(rest);
    return Step::kHandled;
  }
  // Large parameters follow as they are, streamed.
  flush_assembly();
  const size_t take = std::min(rest, in.unparsed().size());
  in.mark_parsed(take);
  client_left_ = rest - take;
  return Step::kHandled;
}

Step Link::on_describe_or_close(const protocol::Frame& frame, protocol::ByteView bytes) {
  Buffer& in = client_->stream().input();
  const char type = frame.type;
  if (frame.size > in.capacity()) {
    client_->fail(sqlstate::kProtocolViolation, "invalid Describe or Close message", {});
    return Step::kStop;
  }
  if (!frame.whole_in(bytes)) return Step::kStop;
  auto target = type == fe::kDescribe ? protocol::parse_describe(bytes.first(frame.size))
                                      : protocol::parse_close(bytes.first(frame.size));
  if (!target) {
    client_->fail(sqlstate::kProtocolViolation, target.error().message, {});
    return Step::kStop;
  }
  ClientStatements* names = client_->statements(false);
  Statement* statement =
      target->kind != protocol::target::kStatement || target->name.empty() || names == nullptr
          ? nullptr
          : names->find(target->name);
  if (statement == nullptr) {
    note_client_message(type);
    return forward(frame, bytes);
  }
  if (!drain_to_server()) return Step::kStop;
  if (type == fe::kClose) {
    // Only the client's name goes; the server keeps the statement for
    // whoever else uses it. pgmux answers CloseComplete itself.
    names->remove(target->name);
    in.consume(frame.size);
    expect(Pending::answered_close());
    return Step::kHandled;
  }
  prepare_on_server(statement);
  protocol::Bytes& out = assembly();
  protocol::append_describe(out, protocol::target::kStatement, statement->server_name);
  in.consume(frame.size);
  note_client_message(fe::kDescribe);
  return Step::kHandled;
}

Link::SqlAction Link::inspect_sql(std::string_view sql, bool named_parse, Statement** statement,
                                  bool simple_query) {
  size_t statements_in_sql = 0;
  const std::vector<protocol::SqlStatement> found = protocol::scan_sql(sql, &statements_in_sql);
  // A simple Query made only of SET and RESET, sent between transactions,
  // takes effect exactly when it succeeds; anything else may be undone by a
  // rollback (of a block, a savepoint, or the implicit transaction of a
  // multi-statement Query), so the server is asked afterwards.
  bool exact = simple_query && found.size() == statements_in_sql && clean();
  for (const protocol::SqlStatement& s : found) {
    exact =
        exact && (s.kind == protocol::SqlKind::kSet || s.kind == protocol::SqlKind::kSetDefault ||
                  s.kind == protocol::SqlKind::kReset || s.kind == protocol::SqlKind::kResetAll);
  }
  bool needs_pin = false;
  for (const protocol::SqlStatement& s : found) {
    switch (s.kind) {
      case protocol::SqlKind::kSet:
      case protocol::SqlKind::kSetDefault:
      case protocol::SqlKind::kReset: {
        std::optional<std::string> name = normalise_param_name(s.name);
        // Reported parameters are tracked from the server's ParameterStatus.
        if (name && pool_.reports(*name)) break;
        if (!name || named_parse) {
          needs_pin = true;
          break;
        }
        note_untracked_set(*name, s.value, s.kind != protocol::SqlKind::kSet, exact);
        break;
      }
      case protocol::SqlKind::kResetAll:
        note_reset_all(exact);
        break;
      case protocol::SqlKind::kDiscardAll:
        // Resets the session and deallocates every statement on the server.
        // It cannot run inside a transaction block, so it never is undone.
        note_reset_all(/*exact=*/true);
        server_.statements().clear();
        if (ClientStatements* names = client_->statements(false)) names->clear();
        unpin();
        break;
      case protocol::SqlKind::kDeallocateAll:
        server_.statements().clear();
        if (ClientStatements* names = client_->statements(false)) names->clear();
        break;
      case protocol::SqlKind::kDeallocate: {
        ClientStatements* names = client_->statements(false);
        Statement* mine = names != nullptr ? names->find(s.name) : nullptr;
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
  const config::Config& config = config_;
  if (config.session_pinning == config::SessionPinning::kRefuse) {
    spdlog::info("{}: refused a session-level statement (session_pinning = refuse)",
                 client_->tag());
    return SqlAction::kRefuse;
  }
  if (pool_.upstream().pinned() >= config.effective_max_pinned()) {
    spdlog::warn(
        "{}: refused a session-level statement: {} clients are pinned already "
        "(max_pinned_server_connections)",
        client_->tag(), pool_.upstream().pinned());
    return SqlAction::kRefuse;
  }
  pin();
  return SqlAction::kForward;
}

void Link::pin() {
  if (pinned_) return;
  pinned_ = true;
  pinned_on_ = &pool_.upstream();
  pinned_on_->on_pinned();
  spdlog::warn(
      "{}: session-level statement in transaction mode: pinned to {} until it "
      "disconnects or runs DISCARD ALL ({} pinned)",
      client_->tag(), server_.tag(), pool_.upstream().pinned());
}

void Link::unpin() {
  if (!pinned_) return;
  pinned_ = false;
  pinned_on_->on_unpinned();
  spdlog::info("{}: DISCARD ALL: unpinned from its server", client_->tag());
}

}  // namespace pgmux::proxy
