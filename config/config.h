// pgmux configuration: plain structs, filled from a TOML file, DATABASE_URL
// and PGMUX_* environment variables, then validated. No I/O beyond reading
// the files named by the caller; no globals. The proxy takes a Config by value
// (a snapshot), so a later reload can swap it.
#pragma once

#include <sys/socket.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/result.h"

namespace pgmux::config {

using protocol::Result;
using Duration = std::chrono::milliseconds;

// libpq's sslmode values, with libpq's meanings.
enum class SslMode { kDisable, kAllow, kPrefer, kRequire, kVerifyCa, kVerifyFull };
std::string_view to_string(SslMode mode);

// An address range: "10.0.0.0/8", "192.168.1.7" (a /32), "::1/128".
struct Cidr {
  int family = 0;  // AF_INET or AF_INET6
  std::array<uint8_t, 16> address{};
  int prefix_length = 0;
  std::string text;  // As written, for messages.
  // True if the IPv4 or IPv6 socket address lies in the range. An IPv4-mapped
  // IPv6 address (::ffff:a.b.c.d) matches IPv4 ranges.
  bool contains(const sockaddr* peer) const;
};
Result<Cidr> parse_cidr(std::string_view text);

// Where and how pgmux logs into one upstream PostgreSQL.
struct Upstream {
  std::string host = "127.0.0.1";  // Name or address; TCP only.
  uint16_t port = 5432;
  std::string user;
  std::string password;          // Never logged.
  std::string dbname;            // The database name on the upstream.
  std::string application_name;  // Sent in the upstream StartupMessage; default "pgmux".
  // TLS to the upstream, from the URL's sslmode, sslrootcert, sslcert,
  // sslkey and sslsni. Default prefer, as libpq.
  SslMode sslmode = SslMode::kPrefer;
  std::string sslrootcert;  // Empty: the system CA store.
  std::string sslcert;
  std::string sslkey;
  bool sslsni = true;

  // "host:port", the identity of the upstream's connection budget.
  std::string endpoint() const;
};

// A database that clients can name in their StartupMessage.
struct Database {
  std::string name;  // What clients ask for.
  Upstream upstream;
};

// How clients prove who they are.
enum class AuthType { kTrust, kScramSha256, kMd5, kPassword };
std::string_view to_string(AuthType type);

enum class ClientTls { kDisable, kAllow, kRequire };
std::string_view to_string(ClientTls mode);

// What happens to a client that runs a statement whose effect outlives its
// transaction (LISTEN, a temp table, a session advisory lock, ...).
enum class SessionPinning { kPin, kRefuse };
std::string_view to_string(SessionPinning policy);

// text: spdlog's human-readable lines; json: one JSON object per line.
enum class LogFormat { kText, kJson };
// How pgmux treats an upstream whose budget other clients may share (other
// pgmux sidecars, other apps): adaptive lowers and raises its own cap with
// what the upstream allows; off keeps max_server_connections fixed (the
// static split).
enum class BudgetSharing { kAdaptive, kOff };
std::string_view to_string(BudgetSharing sharing);
std::string_view to_string(LogFormat format);

// A user clients may log in as. `password` is stored as given: a plain
// password, an md5 hash ("md5" + 32 hex) or a SCRAM secret
// ("SCRAM-SHA-256$..."), as in PgBouncer's auth_file. Never logged.
struct User {
  std::string name;
  std::string password;
  std::vector<Cidr> allowed_cidrs;  // Empty: the global list applies.
};

struct Config {
  // Listener.
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 6432;  // 0 picks a free port (tests).

  // Clients.
  uint32_t max_client_conn = 10000;
  Duration client_login_timeout = std::chrono::seconds(60);

  // Servers, per upstream endpoint (shared by every database that uses it).
  uint32_t max_server_connections = 15;
  uint32_t min_server_connections = 5;
  Duration query_wait_timeout = std::chrono::seconds(30);
  Duration server_lifetime = std::chrono::hours(1);
  Duration server_idle_timeout = std::chrono::minutes(10);
  // An idle server unused for this long is checked (a Sync round trip)
  // before a client gets it; 0 checks at every hand-out.
  Duration server_check_delay = std::chrono::seconds(30);
  Duration server_connect_timeout = std::chrono::seconds(5);
  // Backoff after a failed or refused upstream connect: doubles from the
  // initial value up to the max, with +-25 % jitter.
  Duration server_retry_initial = std::chrono::milliseconds(500);
  Duration server_retry_max = std::chrono::seconds(8);
  // While backing off from an upstream that is down (unreachable, or 57P03),
  // a bare TCP connect probes it this often; when one connects, the backoff
  // ends. 0 turns probes off.
  Duration server_probe_interval = std::chrono::milliseconds(250);
  // Sharing an upstream's connection budget with other instances (see
  // proxy/upstream.h): adaptive or off.
  BudgetSharing budget_sharing = BudgetSharing::kAdaptive;
  // How often, while it holds idle servers, pgmux asks the upstream how full
  // its budget is (pg_stat_activity, pg_roles); 0 turns the survey off.
  Duration budget_survey_interval = std::chrono::seconds(1);

  // Transaction-mode compatibility.
  // Named prepared statements each server keeps (least recently used go).
  uint32_t max_prepared_statements = 200;
  // pin: the client keeps its server until it disconnects or runs DISCARD
  // ALL; refuse: the statement fails with 0A000.
  SessionPinning session_pinning = SessionPinning::kPin;
  // At most this many servers per upstream are held by pinned clients; past
  // it, session-level statements are refused. 0: half of
  // max_server_connections (at least 1).
  uint32_t max_pinned_server_connections = 0;
  uint32_t effective_max_pinned() const {
    if (max_pinned_server_connections != 0) return max_pinned_server_connections;
    return max_server_connections / 2 > 0 ? max_server_connections / 2 : 1;
  }

  // Client TLS. client_tls defaults to allow when a certificate is set,
  // else disable; require without a certificate is a validation error.
  std::optional<ClientTls> client_tls;
  std::string client_tls_cert_file;
  std::string client_tls_key_file;
  ClientTls effective_client_tls() const {
    return client_tls.value_or(client_tls_cert_file.empty() ? ClientTls::kDisable
                                                            : ClientTls::kAllow);
  }

  // Client authentication.
  AuthType auth_type = AuthType::kScramSha256;
  std::string auth_file;  // PgBouncer's userlist.txt format: "user" "password"
  // From [users.NAME] tables, then auth_file entries not already present.
  // With neither, a client may log in as a database's upstream user with
  // that upstream password (the drop-in default).
  std::vector<User> users;
  std::vector<Cidr> allowed_cidrs;  // Empty: any address.
  Duration auth_failure_delay = std::chrono::milliseconds(500);

  // Problems that do not stop pgmux but deserve a warning at start, e.g. a
  // secrets file readable by group or others. Never contain a secret.
  std::vector<std::string> warnings;

  // Protocol.
  uint32_t max_message_size = 1024u * 1024u * 1024u;  // 1 GiB

  // Logging: trace, debug, info, warn, error, critical, off.
  std::string log_level = "info";
  LogFormat log_format = LogFormat::kText;
  // A stats line (transactions and queries per second, average wait,
  // clients, servers) this often, as PgBouncer's; 0 turns it off.
  Duration stats_period = std::chrono::seconds(60);

  // Operations.
  // The admin console (virtual database "pgbouncer", alias "pgmux"): users
  // in admin_users may run every command, users in stats_users only SHOW.
  // They log in like any other user (users, auth_file, auth_type).
  std::vector<std::string> admin_users;
  std::vector<std::string> stats_users;
  // Where /metrics, /healthz and /readyz are served over HTTP; empty (the
  // default) serves none. Port 0 picks a free one (tests).
  std::string metrics_host;
  uint16_t metrics_port = 0;
  bool metrics_enabled() const { return !metrics_host.empty(); }
  // SIGTERM and SHUTDOWN WAIT_FOR_CLIENTS wait this long for clients to
  // finish their transactions before exiting anyway.
  Duration shutdown_timeout = std::chrono::seconds(30);
  // SO_REUSEPORT on the listener (and the metrics listener): a new pgmux can
  // bind the same port while the old one drains.
  bool so_reuseport = false;
  // Microseconds the event loop goes on polling for I/O, without sleeping,
  // after the last read before it sleeps in epoll_wait; 0 (the default)
  // never polls. Trades CPU for latency; read once at start.
  uint32_t busy_poll_us = 0;

  std::vector<Database> databases;

  // REQUIRES: nothing. Returns the database clients call `name`, or nullptr.
  const Database* find_database(std::string_view name) const;
  const User* find_user(std::string_view name) const;
};

// Reads an environment variable; std::nullopt when unset. Injected for tests.
using Getenv = std::function<std::optional<std::string>(const std::string&)>;
Getenv process_getenv();

struct LoadOptions {
  std::optional<std::string> config_path;  // A pgmux.toml; none means defaults only.
  Getenv getenv;                           // Defaults to process_getenv() when empty.
};

// Builds the Config: defaults, then the TOML file, then DATABASE_URL (adds or
// replaces the database it names), then PGMUX_<KEY> overrides for every
// scalar key (e.g. PGMUX_MAX_SERVER_CONNECTIONS=10, PGMUX_LISTEN=0.0.0.0:6432),
// then validation. Errors name the key and the fix.
Result<Config> load(const LoadOptions& options);

// Parses TOML text (the file's content) on top of `base`. `origin` names the
// file in error messages.
Result<Config> parse_toml(std::string_view text, std::string_view origin, Config base);

// Parses a libpq connection string, URI ("postgresql://...") or key=value,
// with PQconninfoParse. Missing parts take libpq's defaults where they make
// sense for a TCP upstream (host 127.0.0.1, port 5432, user from the URL,
// dbname = user). Unix-socket hosts are refused with a clear message.
Result<Upstream> parse_database_url(std::string_view url);

// "250ms", "30s", "5m", "1h", "1d", or a bare integer of seconds.
Result<Duration> parse_duration(std::string_view text);

// Parses PgBouncer's auth_file format: one `"user" "password"` per line,
// a doubled quote inside quotes stands for one, blank lines and lines
// starting with ';' or '#' are ignored. `origin` names the file in errors
// (which never quote a password).
Result<std::vector<User>> parse_userlist(std::string_view text, std::string_view origin);

// Checks cross-key rules (min <= max, at least one database, ...).
protocol::Status validate(const Config& config);

}  // namespace pgmux::config
