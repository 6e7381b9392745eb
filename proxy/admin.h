// The admin console: PgBouncer's virtual database "pgbouncer" (alias
// "pgmux") on the normal listener. A client whose Login ended in
// LoginNext::kAdmin gets an AdminSession instead of a pool: its ClientConn
// (state kAdmin) hands it the input, and the session answers simple
// queries with SHOW tables (admin_show.cpp) and runs the commands PAUSE,
// RESUME, RECONNECT, KILL, WAIT_CLOSE, RELOAD and SHUTDOWN on the Proxy.
//
// Protocol: simple Query only, one command per Query. The extended protocol
// gets an ErrorResponse 0A000 (once per batch) and, at its Sync,
// ReadyForQuery. Malformed input is FATAL 08P01 and the connection closes.
//
// PAUSE and WAIT_CLOSE finish later: the session stops reading commands and
// joins the Proxy's list of waiting sessions; the janitor calls poll() until
// the condition holds, then the CommandComplete goes out and the next
// command is read. Nothing blocks the loop.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/messages.h"
#include "proxy/list.h"
#include "proxy/login.h"
#include "proxy/proxy.h"

namespace pgmux::proxy {

class ClientConn;
class Pool;

class AdminSession : public AdminLink {
 public:
  // `proxy` and `client` must outlive the session (the client owns it).
  AdminSession(Proxy& proxy, ClientConn& client, AdminRole role);
  AdminSession(const AdminSession&) = delete;
  AdminSession& operator=(const AdminSession&) = delete;
  ~AdminSession();

  AdminRole role() const { return role_; }
  // Writes AuthenticationOk, PgBouncer's ParameterStatus set, the client's
  // BackendKeyData and ReadyForQuery, then reads what the client sent.
  void start();
  // New bytes in the client's input.
  void on_readable();
  // A PAUSE or WAIT_CLOSE in progress: finishes it when its condition
  // holds. Called by the Proxy's janitor for every waiting session.
  void poll();
  // The client is closing: the session stops waiting and writes nothing.
  void detach();

 private:
  enum class Waiting : uint8_t { kNone, kPause, kWaitClose };

  // One whole Query message's SQL (without the NUL).
  void run(std::string_view sql, protocol::Bytes& out);
  void run_command(const std::vector<std::string>& words, protocol::Bytes& out);
  void run_set(std::string_view statement, protocol::Bytes& out);
  // SHOW <what> (admin_show.cpp); false if `what` is not a table pgmux has.
  bool show(std::string_view what, protocol::Bytes& out);
  // The pools a command names: one (by name) or, with no name, all.
  // Appends an ErrorResponse and returns false for an unknown name.
  bool target_pools(const std::vector<std::string>& words, std::vector<Pool*>& pools,
                    protocol::Bytes& out);
  // Whether the command waiting for `pools_` is done.
  bool wait_done() const;
  void start_waiting(Waiting what, std::vector<Pool*> pools, protocol::Bytes& out);
  void write(protocol::Bytes& out);
  void fail(std::string_view message);

  Proxy& proxy_;
  ClientConn& client_;
  AdminRole role_;
  bool detached_ = false;
  bool in_extended_ = false;  // An extended-protocol batch got its error; skip to Sync.
  Waiting waiting_ = Waiting::kNone;
  std::vector<Pool*> waiting_pools_;
  // SHUTDOWN was answered; the Proxy shuts down once the answer is written.
  std::optional<Proxy::ShutdownMode> shutdown_;
};

// The wall-clock time of the uv_now() instant `loop_ms`, given uv_now() is
// `now_ms`, as PgBouncer prints times ("2026-11-28 14:19:04 UTC").
std::string wall_time(uint64_t loop_ms, uint64_t now_ms);

}  // namespace pgmux::proxy
