#include "proxy/admin.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <ctime>

#include "protocol/frame.h"
#include "protocol/message_type.h"
#include "protocol/result_set.h"
#include "protocol/sqlstate.h"
#include "proxy/client_conn.h"
#include "proxy/pool.h"
#include "proxy/proxy.h"

namespace pgmux::proxy {
namespace fe = protocol::fe;
namespace sqlstate = protocol::sqlstate;
using protocol::Bytes;
using protocol::FrameStatus;

namespace {

// A message type for an error text: 'Q' when printable, else 0x00. The
// byte is the client's: a NUL or a control character must never reach an
// ErrorResponse field (a C string).
std::string describe_type(char type) {
  const auto byte = static_cast<unsigned char>(type);
  if (byte >= 0x20 && byte < 0x7F) return std::string("'") + type + "'";
  static constexpr char kHex[] = "0123456789abcdef";
  return std::string("0x") + kHex[byte >> 4] + kHex[byte & 0xF];
}

// What PgBouncer's console reports at login; server_version names pgmux.
constexpr std::pair<std::string_view, std::string_view> kWelcomeParams[] = {
    {"server_version", "1.24.0/pgmux"},
    {"client_encoding", "UTF8"},
    {"server_encoding", "UTF8"},
    {"DateStyle", "ISO"},
    {"TimeZone", "GMT"},
    {"standard_conforming_strings", "on"},
    {"is_superuser", "on"},
};

// Session settings a driver or psql may SET at connect: accepted and ignored.
constexpr std::string_view kIgnoredSettings[] = {
    "client_encoding",
    "datestyle",
    "timezone",
    "standard_conforming_strings",
    "application_name",
    "extra_float_digits",
    "default_transaction_isolation",
};

std::string upper(std::string_view word) {
  std::string out(word);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string lower(std::string_view word) {
  std::string out(word);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

std::string_view trim(std::string_view text) {
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  return text;
}

std::vector<std::string> split_words(std::string_view text) {
  std::vector<std::string> words;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && is_space(text[i])) ++i;
    const size_t start = i;
    while (i < text.size() && !is_space(text[i])) ++i;
    if (i > start) words.emplace_back(text.substr(start, i - start));
  }
  return words;
}

void append_error(Bytes& out, std::string_view code, std::string_view message,
                  std::string_view hint = {}) {
  protocol::append_error_response(out, "ERROR", code, message, {}, hint);
}

}  // namespace

std::string wall_time(uint64_t loop_ms, uint64_t now_ms) {
  const std::time_t now = std::time(nullptr);
  const std::time_t then = now - static_cast<std::time_t>((now_ms - loop_ms) / 1000);
  std::tm utc{};
  gmtime_r(&then, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S UTC", &utc);
  return text;
}

AdminSession::AdminSession(Proxy& proxy, ClientConn& client, AdminRole role)
    : proxy_(proxy), client_(client), role_(role) {}

AdminSession::~AdminSession() { detach(); }

void AdminSession::detach() {
  detached_ = true;
  if (static_cast<AdminLink*>(this)->linked()) proxy_.admin_waiting().remove(this);
  waiting_ = Waiting::kNone;
}

void AdminSession::start() {
  Bytes out;
  protocol::append_authentication_ok(out);
  for (const auto& [name, value] : kWelcomeParams) {
    protocol::append_parameter_status(out, name, value);
  }
  protocol::append_backend_key_data(out, client_.cancel_pid(), client_.cancel_secret());
  protocol::append_ready_for_query(out, protocol::tx::kIdle);
  write(out);
  client_.stream().start_reading();
  on_readable();
}

void AdminSession::write(Bytes& out) {
  if (!out.empty() && !detached_) client_.stream().write_owned(out);
  out.clear();
}

void AdminSession::fail(std::string_view message) {
  spdlog::info("{}: admin console: {}", client_.tag(), message);
  client_.fail(sqlstate::kProtocolViolation, message);
}

void AdminSession::on_readable() {
  Buffer& in = client_.stream().input();
  Bytes out;
  while (!detached_ && waiting_ == Waiting::kNone) {
    const protocol::ByteView bytes = in.unparsed();
    if (bytes.empty()) break;
    // A message must fit in the buffer: admin commands are short, and a
    // longer one could never be read whole.
    const auto limit =
        static_cast<uint32_t>(std::min<size_t>(proxy_.config().max_message_size, in.capacity()));
    const protocol::Frame frame = protocol::frame_message(bytes, limit);
    if (frame.status == FrameStatus::kInvalid) {
      write(out);
      fail("invalid message length, or a message too long for the admin console");
      return;
    }
    if (frame.status == FrameStatus::kNeedMore || !frame.whole_in(bytes)) break;
    const protocol::ByteView message = bytes.first(frame.size);
    switch (frame.type) {
      case fe::kTerminate:
        write(out);
        client_.close("Terminate");
        return;
      case fe::kQuery: {
        const protocol::ByteView body = message.subspan(5);
        const auto* text = reinterpret_cast<const char*>(body.data());
        if (body.empty() || body.back() != 0 || std::memchr(text, 0, body.size() - 1) != nullptr) {
          write(out);
          fail("malformed Query message");
          return;
        }
        in_extended_ = false;
        run(std::string_view(text, body.size() - 1), out);
        if (waiting_ == Waiting::kNone) protocol::append_ready_for_query(out, protocol::tx::kIdle);
        if (shutdown_) {
          in.consume(frame.size);
          write(out);
          const Proxy::ShutdownMode mode = *shutdown_;
          shutdown_.reset();
          proxy_.shutdown(mode);
          return;
        }
        break;
      }
      case fe::kSync:
        in_extended_ = false;
        protocol::append_ready_for_query(out, protocol::tx::kIdle);
        break;
      case fe::kFlush:
      case fe::kCopyData:
      case fe::kCopyDone:
      case fe::kCopyFail:
        // Nothing to flush, and no COPY: dropped, as PostgreSQL drops them.
        break;
      case fe::kFunctionCall:
        // A request of its own, answered like a Query.
        append_error(out, sqlstate::kFeatureNotSupported,
                     "the admin console does not run function calls");
        protocol::append_ready_for_query(out, protocol::tx::kIdle);
        break;
      case fe::kParse:
      case fe::kBind:
      case fe::kDescribe:
      case fe::kExecute:
      case fe::kClose:
        // One error per batch; the rest of the batch is skipped up to its
        // Sync, as a server skips after an error (55.2.3).
        if (!in_extended_) {
          append_error(out, sqlstate::kFeatureNotSupported,
                       "the admin console accepts simple queries only",
                       "send SHOW and the other commands as simple Query messages");
          in_extended_ = true;
        }
        break;
      default:
        write(out);
        fail("unexpected message type " + describe_type(frame.type) + " for the admin console");
        return;
    }
    in.consume(frame.size);
  }
  write(out);
  if (!detached_) client_.stream().start_reading();
}

void AdminSession::run(std::string_view sql, Bytes& out) {
  std::string_view statement = trim(sql);
  while (!statement.empty() && statement.back() == ';') {
    statement = trim(statement.substr(0, statement.size() - 1));
  }
  if (statement.empty()) {
    protocol::append_empty_query_response(out);
    return;
  }
  if (statement.find(';') != std::string_view::npos) {
    append_error(out, sqlstate::kSyntaxError,
                 "invalid command: the admin console runs one command per query",
                 "send each command as its own query");
    return;
  }
  const std::vector<std::string> words = split_words(statement);
  spdlog::debug("{}: admin command {}", client_.tag(), upper(words[0]));
  run_command(words, out);
}

void AdminSession::run_command(const std::vector<std::string>& words, Bytes& out) {
  const std::string verb = upper(words[0]);
  if (verb == "SHOW") {
    if (words.size() != 2) {
      append_error(out, sqlstate::kSyntaxError, "SHOW takes one name, e.g. SHOW POOLS");
      return;
    }
    if (!show(words[1], out)) {
      append_error(out, sqlstate::kUndefinedObject, "unknown SHOW command \"" + words[1] + "\"",
                   "pgmux shows POOLS, STATS, STATS_TOTALS, STATS_AVERAGES, DATABASES, LISTS, "
                   "CLIENTS, SERVERS, CONFIG, VERSION, STATE, USERS and PGMUX");
    }
    return;
  }
  if (verb == "SET") {
    std::string name = words.size() > 1 ? lower(words[1]) : std::string();
    if ((name == "session" || name == "local") && words.size() > 2) name = lower(words[2]);
    if (const size_t eq = name.find('='); eq != std::string::npos) name.resize(eq);
    const bool known = std::find(std::begin(kIgnoredSettings), std::end(kIgnoredSettings), name) !=
                       std::end(kIgnoredSettings);
    if (!known) {
      append_error(out, sqlstate::kUndefinedObject,
                   "the admin console cannot SET \"" + name + "\"");
      return;
    }
    protocol::append_notice_response(out, "NOTICE", "00000", "SET ignored by the admin console");
    protocol::append_command_complete(out, "SET");
    return;
  }
  static constexpr std::string_view kCommands[] = {"PAUSE",      "RESUME", "RECONNECT", "KILL",
                                                   "WAIT_CLOSE", "RELOAD", "SHUTDOWN"};
  if (std::find(std::begin(kCommands), std::end(kCommands), verb) == std::end(kCommands)) {
    append_error(out, sqlstate::kSyntaxError, "invalid command \"" + words[0] + "\"",
                 "the admin console runs SHOW, SET, PAUSE, RESUME, RECONNECT, KILL, WAIT_CLOSE, "
                 "RELOAD and SHUTDOWN");
    return;
  }
  if (role_ != AdminRole::kAdmin) {
    append_error(out, sqlstate::kInsufficientPrivilege,
                 "permission denied: " + verb + " needs a user listed in admin_users");
    return;
  }
  spdlog::info("{}: admin command {}", client_.tag(), verb);
  if (verb == "RELOAD") {
    const protocol::Status status = proxy_.reload();
    if (!status.ok()) {
      const std::string& code = status.error().sqlstate;
      append_error(out, code.empty() ? sqlstate::kInternalError : std::string_view(code),
                   "RELOAD failed: " + status.error().message);
      return;
    }
    protocol::append_command_complete(out, "RELOAD");
    return;
  }
  if (verb == "SHUTDOWN") {
    Proxy::ShutdownMode mode = Proxy::ShutdownMode::kImmediate;
    const std::string how = words.size() > 1 ? upper(words[1]) : std::string();
    if (how == "WAIT_FOR_CLIENTS") {
      mode = Proxy::ShutdownMode::kWaitForClients;
    } else if (how == "WAIT_FOR_SERVERS") {
      mode = Proxy::ShutdownMode::kWaitForServers;
    } else if (!how.empty() || words.size() > 2) {
      append_error(out, sqlstate::kSyntaxError,
                   "SHUTDOWN takes WAIT_FOR_CLIENTS, "
                   "WAIT_FOR_SERVERS or nothing");
      return;
    }
    // The answer goes out first (on_readable runs the shutdown after
    // writing it); an immediate shutdown then ends this connection too,
    // with FATAL 57P01.
    protocol::append_command_complete(out, "SHUTDOWN");
    shutdown_ = mode;
    return;
  }
  std::vector<Pool*> pools;
  if (verb == "KILL" && words.size() != 2) {
    append_error(out, sqlstate::kSyntaxError, "KILL takes a database name");
    return;
  }
  if (!target_pools(words, pools, out)) return;
  if (verb == "PAUSE") {
    for (Pool* pool : pools) pool->pause();
    start_waiting(Waiting::kPause, std::move(pools), out);
  } else if (verb == "RESUME") {
    for (Pool* pool : pools) pool->resume();
    protocol::append_command_complete(out, "RESUME");
  } else if (verb == "RECONNECT") {
    for (Pool* pool : pools) pool->reconnect();
    protocol::append_command_complete(out, "RECONNECT");
  } else if (verb == "KILL") {
    proxy_.kill(*pools.front());
    protocol::append_command_complete(out, "KILL");
  } else {
    start_waiting(Waiting::kWaitClose, std::move(pools), out);
  }
}

bool AdminSession::target_pools(const std::vector<std::string>& words, std::vector<Pool*>& pools,
                                Bytes& out) {
  if (words.size() > 2) {
    append_error(out, sqlstate::kSyntaxError, upper(words[0]) + " takes at most one database");
    return false;
  }
  if (words.size() == 1) {
    for (const auto& pool : proxy_.pools()) pools.push_back(pool.get());
    return true;
  }
  std::string_view name = words[1];
  if (name.size() >= 2 && name.front() == '"' && name.back() == '"') {
    name = name.substr(1, name.size() - 2);
  }
  for (const auto& pool : proxy_.pools()) {
    if (pool->name() == name) pools.push_back(pool.get());
  }
  if (pools.empty()) {
    append_error(out, sqlstate::kInvalidCatalogName,
                 "database \"" + std::string(name) + "\" does not exist in pgmux");
    return false;
  }
  return true;
}

bool AdminSession::wait_done() const {
  return std::all_of(waiting_pools_.begin(), waiting_pools_.end(), [&](const Pool* pool) {
    // A PAUSE ends when the pool's servers are gone, or when a RESUME
    // overtook it; a WAIT_CLOSE when the servers RECONNECT marked are gone.
    if (waiting_ == Waiting::kPause) return pool->server_count() == 0 || !pool->paused();
    return pool->stale_count() == 0;
  });
}

void AdminSession::start_waiting(Waiting what, std::vector<Pool*> pools, Bytes& out) {
  waiting_ = what;
  waiting_pools_ = std::move(pools);
  if (wait_done()) {
    protocol::append_command_complete(out, what == Waiting::kPause ? "PAUSE" : "WAIT_CLOSE");
    waiting_ = Waiting::kNone;
    waiting_pools_.clear();
    return;
  }
  proxy_.admin_waiting().push_back(this);
}

void AdminSession::poll() {
  if (detached_ || waiting_ == Waiting::kNone || !wait_done()) return;
  Bytes out;
  protocol::append_command_complete(out, waiting_ == Waiting::kPause ? "PAUSE" : "WAIT_CLOSE");
  protocol::append_ready_for_query(out, protocol::tx::kIdle);
  proxy_.admin_waiting().remove(this);
  waiting_ = Waiting::kNone;
  waiting_pools_.clear();
  write(out);
  on_readable();
}

}  // namespace pgmux::proxy
