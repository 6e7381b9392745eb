// The pairing of one client and one server for the length of a transaction
// (for a pinned client: until it disconnects or runs DISCARD ALL).
//
// Pool::attach begins a Link, Pool::release (or either side going away)
// ends it. In between the Link alone owns what the pairing means:
//   - the relay both ways: whole messages marked in one side's input Buffer
//     and written as one slice to the other side's Stream;
//   - the queue of requests the server owes answers to (PendingQueue), and
//     when the server may go back to the pool (ReadyForQuery 'I', nothing in
//     flight, both directions at a message boundary);
//   - statement rewriting: the client's names for prepared statements
//     become the pool's server names, prepared on this server on demand;
//   - session-parameter sync: the difference between the client's settings
//     and the server's is sent ahead of the client's first message, and
//     what the transaction changed is recorded on both sides;
//   - pinning: a statement whose effect outlives the transaction keeps the
//     server with the client.
// The connections hand it their readable and write-done events and expose
// their Stream, statements and settings (LinkClient, LinkServer); neither
// connection reaches into the other.
//
// One Link object lives in each ServerConn and is reused by every pairing,
// so its queue's storage is too: beginning or ending a Link allocates
// nothing.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "protocol/frame.h"
#include "protocol/message_type.h"
#include "protocol/messages.h"
#include "proxy/pending.h"
#include "proxy/relay.h"
#include "proxy/session_params.h"
#include "proxy/statements.h"
#include "proxy/stats.h"
#include "proxy/stream.h"

namespace pgmux::proxy {

class Pool;
class Upstream;

// What a Link needs of its client.
class LinkClient {
 public:
  virtual Stream& stream() = 0;
  virtual const std::string& tag() const = 0;
  // The client's names for prepared statements; with `create` false,
  // nullptr until it has named one.
  virtual ClientStatements* statements(bool create) = 0;
  // Session parameters this client differs from a fresh server by.
  virtual ParamOverrides& overrides() = 0;
  // FATAL, then the connection closes (the Link ends on the way).
  virtual void fail(std::string_view sqlstate, std::string_view message, std::string_view hint) = 0;
  // Closes at once (Terminate); the Link ends on the way.
  virtual void close(std::string_view reason) = 0;
  // The server went away mid-pairing (the Link has ended).
  virtual void on_server_lost() = 0;

 protected:
  ~LinkClient() = default;
};

// What a Link needs of its server.
class LinkServer {
 public:
  virtual Stream& stream() = 0;
  virtual const std::string& tag() const = 0;
  // Statements prepared on this server.
  virtual ServerStatements& statements() = 0;
  // Session parameters this server differs from a fresh one by.
  virtual ParamOverrides& overrides() = 0;
  // Back to the pool: the Link ends on the way.
  virtual void release() = 0;
  // Closes the server; the Link ends on the way.
  virtual void close(const char* reason) = 0;

 protected:
  ~LinkServer() = default;
};

class Link {
 public:
  // `assembly` is scratch shared by every Link on the loop (one batch is
  // assembled at a time). All must outlive the Link.
  Link(LinkServer& server, Pool& pool, const config::Config& config, protocol::Bytes& assembly);
  ~Link();
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;

  // ---- Lifetime (ServerConn, on Pool's attach and release) ----
  // Pairs the server with `client`: brings the server's session in line
  // with the client's. REQUIRES: !active().
  void begin(LinkClient& client);
  // Ends the pairing (release, or the server is closing).
  void end();
  bool active() const { return client_ != nullptr; }
  LinkClient* client() const { return client_; }
  // The client is going away while paired: the Link ends, and the server
  // goes back to the pool if it is clean, at a message boundary and holds no
  // session state, else it closes.
  void on_client_departed();
  // The server is closing while paired: the Link ends and the client hears.
  void on_server_closing();
  // pgmux started draining: a pinned client between transactions gets
  // FATAL 57P01 now (its server cannot be released); others are closed
  // when their server is released (ClientConn).
  void on_drain();

  // ---- Events from the connections ----
  // New bytes in the client's input / the server's input.
  void on_client_readable();
  void on_server_readable();
  // A lent write of the client's bytes (to the server) / of the server's
  // bytes (to the client) completed.
  void on_client_write_done();
  void on_server_write_done();

  // ---- What the pairing knows ----
  // The server can serve another client: its last ReadyForQuery said idle,
  // no request is unanswered and nothing unsynced was sent.
  bool clean() const {
    return outstanding_ == 0 && !unsynced_ && tx_status_ == protocol::tx::kIdle && pending_.empty();
  }
  // The client ran a statement whose effect outlives its transaction
  // (LISTEN, a session SET, a temp table, a session advisory lock, WITH
  // HOLD, SQL PREPARE): the pairing lasts until it disconnects or runs
  // DISCARD ALL.
  bool pinned() const { return pinned_; }
  // Part of a client message has gone to the server and the rest has not.
  bool client_mid_message() const { return client_left_ > 0; }

 private:
  // ---- Client to server (link_requests.cpp) ----
  Step on_client_message(const protocol::Frame& frame, protocol::ByteView bytes);
  Step on_query(const protocol::Frame& frame, protocol::ByteView bytes);
  Step on_parse(const protocol::Frame& frame, protocol::ByteView bytes);
  Step on_bind(const protocol::Frame& frame, protocol::ByteView bytes);
  Step on_describe_or_close(const protocol::Frame& frame, protocol::ByteView bytes);
  // Forwards the message as it is, or joins it to the batch being assembled.
  Step forward(const protocol::Frame& frame, protocol::ByteView bytes);
  // Messages pgmux writes for the server in this batch, joined by the rest
  // of the batch and written once (flush_assembly) at its end.
  protocol::Bytes& assembly();
  void flush_assembly();
  // Every decided client byte goes to the server; false (and the client
  // stops reading) while that write is in flight.
  bool drain_to_server();
  // Sends the server what it needs so that `statement` is prepared there.
  void prepare_on_server(Statement* statement);
  // Drops the client's name for `statement` and the statement from this
  // server; returns the DEALLOCATE to send there in place of the client's.
  std::string deallocate_on_server(Statement* statement);
  enum class SqlAction { kForward, kRefuse, kDeallocate };
  // Looks for session-state statements in a Query or Parse: tracks SET,
  // pins, unpins. For kDeallocate, *statement is the client's statement.
  // `simple_query`: from a Query message (else a Parse).
  SqlAction inspect_sql(std::string_view sql, bool named_parse, Statement** statement,
                        bool simple_query);
  void pin();
  void unpin();

  // ---- The pending queue (link.cpp) ----
  // The client sent a message of this type, as it is.
  void note_client_message(char type);
  // A request whose responses need more than forwarding (see Pending).
  // kFake entries are answered as soon as every earlier response is out.
  void expect(const Pending& entry);
  // The server answered the head request with CopyInResponse.
  void on_copy_in();
  // Drops the entries the server skipped after an error, up to the next
  // Sync (55.2.3), undoing what they would have done.
  void skip_to_sync();
  void undo(const Pending& entry);
  void finish(const Pending& entry);
  // Sends the answers pgmux gives for the server that are now due.
  void answer_fakes();

  // ---- Server to client (link.cpp) ----
  Step on_response(const protocol::Frame& frame, protocol::ByteView bytes);
  Step on_ready_for_query(const protocol::Frame& frame, protocol::ByteView bytes,
                          bool head_swallowed);
  bool drain_to_client();
  void flush_to_client();
  // Counts the request a ReadyForQuery answered, and the transaction when
  // `status` is idle.
  void count_ready(char status);
  // Releases the server if its last ReadyForQuery said it may go and both
  // directions are now at a message boundary.
  void maybe_release();

  // ---- Session parameters (link_settings.cpp) ----
  // Sends the session sync ahead of the client's first message.
  void sync_session();
  // SET (value as written) or RESET of a parameter PostgreSQL does not
  // report. `exact`: a simple Query of SET/RESET statements only, sent
  // between transactions: recorded on both sides at the next ReadyForQuery
  // unless an error came first. Otherwise a rollback may still undo it:
  // once the server is clean, pgmux reads the settings back.
  void note_untracked_set(std::string_view name, std::string_view value, bool reset, bool exact);
  void note_reset_all(bool exact);
  void apply_untracked_sets();
  void read_back_settings();
  void on_settings_row(protocol::ByteView message);
  void on_parameter_status(protocol::ByteView message);

  LinkServer& server_;
  Pool& pool_;
  PoolStats& stats_;  // The pool's.
  const config::Config& config_;
  protocol::Bytes& assembly_;
  LinkClient* client_ = nullptr;
  // Bumped at begin() and end(): a relay loop that called out (a failure, a
  // release) checks it to learn whether its pairing is still the same.
  uint32_t epoch_ = 0;

  uint64_t client_left_ = 0;  // Bytes of a client message being streamed to the server.
  uint64_t server_left_ = 0;  // Bytes of a server message being streamed to the client.
  uint32_t outstanding_ = 0;  // Query/Sync/FunctionCall sent, ReadyForQuery not yet seen.
  bool unsynced_ = false;     // A message that needs a later Sync was sent.
  char tx_status_ = protocol::tx::kIdle;  // From the last ReadyForQuery.
  bool release_after_flush_ = false;
  // Copy-in mode (CopyInResponse seen; the client's CopyDone or CopyFail,
  // or an error, not yet): the server ignores Sync and Flush.
  bool copy_in_ = false;
  bool assembling_ = false;
  bool pinned_ = false;
  // The budget the pin counts against (the pool's upstream when it pinned;
  // a reload may move the pool).
  Upstream* pinned_on_ = nullptr;
  PendingQueue pending_;
  // SET/RESET of unreported parameters awaiting the ReadyForQuery that
  // confirms them; untracked_reset_all_ for RESET ALL / DISCARD ALL.
  std::vector<ParamValue> untracked_sets_;  // Empty value with sql=false: RESET.
  bool untracked_reset_all_ = false;
  bool settings_unsure_ = false;  // Some untracked change needs the read-back.
  bool error_since_ready_ = false;
  // now_us() when the request now being answered was sent / when the
  // transaction's first request was; 0 when none is.
  uint64_t query_started_us_ = 0;
  uint64_t xact_started_us_ = 0;
  protocol::Bytes scratch_;  // Generated messages, reused.
};

}  // namespace pgmux::proxy
