// pgmux configuration: plain structs, filled from a TOML file, DATABASE_URL
// and PGMUX_* environment variables, then validated. No I/O beyond reading
// the files named by the caller; no globals. The proxy takes a Config by value
// (a snapshot), so a later reload can swap it.
#pragma once

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

// Where and how pgmux logs into one upstream PostgreSQL.
struct Upstream {
  std::string host = "127.0.0.1";  // Name or address; TCP only.
  uint16_t port = 5432;
  std::string user;
  std::string password;  // Never logged.
  std::string dbname;    // The database name on the upstream.
  std::string application_name;  // Sent in the upstream StartupMessage; default "pgmux".

  // "host:port", the identity of the upstream's connection budget.
  std::string endpoint() const;
};

// A database that clients can name in their StartupMessage.
struct Database {
  std::string name;  // What clients ask for.
  Upstream upstream;
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
  Duration server_connect_timeout = std::chrono::seconds(5);
  // Backoff after a failed or refused upstream connect: doubles from the
  // initial value up to the max, with +-25 % jitter.
  Duration server_retry_initial = std::chrono::milliseconds(500);
  Duration server_retry_max = std::chrono::seconds(8);

  // Protocol.
  uint32_t max_message_size = 1024u * 1024u * 1024u;  // 1 GiB

  // Logging: trace, debug, info, warn, error, critical, off.
  std::string log_level = "info";

  std::vector<Database> databases;

  // REQUIRES: nothing. Returns the database clients call `name`, or nullptr.
  const Database* find_database(std::string_view name) const;
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

// Checks cross-key rules (min <= max, at least one database, ...).
protocol::Status validate(const Config& config);

}  // namespace pgmux::config
