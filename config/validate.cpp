// validate(): the rules that span keys (min <= max, at least one database,
// TLS files that can be read, no user twice), checked once everything is read.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "config/config.h"
#include "config/scalar_keys.h"

namespace pgmux::config {

using protocol::Ok;
using protocol::Status;

namespace {

constexpr uint32_t kMaxBusyPollUs = 1000;

// Why `path` cannot serve as a certificate or key file, or nullopt if it can
// be opened for reading and is a regular file. O_NONBLOCK: opening a FIFO
// for reading would otherwise wait for a writer.
std::optional<std::string> unreadable_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return std::string(std::strerror(errno));
  struct stat st {};
  const bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  ::close(fd);
  if (!regular) return std::string("not a regular file");
  return std::nullopt;
}

Status validate_tls_and_auth(const Config& c) {
  using detail::config_error;
  if (c.client_tls == ClientTls::kRequire && c.client_tls_cert_file.empty()) {
    return config_error(
        "client_tls = \"require\" needs a certificate: set client_tls_cert_file and "
        "client_tls_key_file, or use client_tls = \"allow\" or \"disable\"");
  }
  if (!c.client_tls_cert_file.empty() && c.client_tls_key_file.empty()) {
    return config_error(
        "client_tls_cert_file is set but client_tls_key_file is not; set both (the "
        "certificate and its private key) or neither");
  }
  if (c.client_tls_cert_file.empty() && !c.client_tls_key_file.empty()) {
    return config_error(
        "client_tls_key_file is set but client_tls_cert_file is not; set both (the "
        "certificate and its private key) or neither");
  }
  const std::array<std::pair<std::string_view, const std::string*>, 2> tls_files = {{
      {"client_tls_cert_file", &c.client_tls_cert_file},
      {"client_tls_key_file", &c.client_tls_key_file},
  }};
  for (const auto& [key, path] : tls_files) {
    if (path->empty()) continue;
    if (std::optional<std::string> why = unreadable_file(*path)) {
      return config_error(std::string(key) + ": cannot read '" + *path + "': " + *why +
                          "; check the path and that pgmux may read it");
    }
  }
  for (const Database& db : c.databases) {
    const Upstream& u = db.upstream;
    if ((u.sslmode == SslMode::kVerifyCa || u.sslmode == SslMode::kVerifyFull) &&
        !u.sslrootcert.empty()) {
      if (std::optional<std::string> why = unreadable_file(u.sslrootcert)) {
        return config_error("database '" + db.name + "': sslrootcert '" + u.sslrootcert +
                            "' cannot be read (" + *why +
                            "), and sslmode=" + std::string(to_string(u.sslmode)) +
                            " needs it; fix the path, or leave sslrootcert out (or "
                            "sslrootcert=system) to use the system's CA store");
      }
    }
  }
  if (c.auth_failure_delay < Duration::zero()) {
    return config_error("auth_failure_delay must not be negative; the default is \"500ms\"");
  }
  if (c.server_check_delay < Duration::zero()) {
    return config_error(
        "server_check_delay must not be negative; the default is \"30s\" (0 checks every time)");
  }
  for (size_t i = 0; i < c.users.size(); ++i) {
    const User& user = c.users[i];
    if (user.name.empty()) {
      return config_error(
          "a user has an empty name; fix the [users.NAME] table or the auth_file line");
    }
    for (size_t j = 0; j < i; ++j) {
      if (c.users[j].name == user.name) {
        return config_error("user '" + user.name +
                            "' is configured twice; keep one [users.NAME] table or auth_file line "
                            "per user");
      }
    }
    if (c.auth_type == AuthType::kMd5 && detail::is_scram_secret(user.password)) {
      return config_error("user '" + user.name +
                          "' has a SCRAM secret as password, and auth_type = md5: md5 cannot "
                          "check a SCRAM secret; give the plain password or use auth_type = "
                          "scram-sha-256");
    }
  }
  return Ok{};
}

}  // namespace

Status validate(const Config& c) {
  using detail::config_error;
  if (c.databases.empty()) {
    return config_error(
        "no database configured: set DATABASE_URL or add a [databases.NAME] table with "
        "url = \"postgresql://user:password@host:5432/dbname\"");
  }
  if (c.listen_host.empty()) {
    return config_error("listen has an empty host; set listen = \"127.0.0.1:6432\"");
  }
  if (c.max_client_conn < 1) {
    return config_error("max_client_conn must be at least 1; the default is 10000");
  }
  if (c.max_server_connections < 1 || c.max_server_connections > 10000) {
    return config_error("max_server_connections is " + std::to_string(c.max_server_connections) +
                        "; set it from 1 to 10000, at or below the upstream's connection "
                        "limit (the default is 15)");
  }
  if (c.busy_poll_us > kMaxBusyPollUs) {
    return config_error("busy_poll_us must be at most " + std::to_string(kMaxBusyPollUs) +
                        " (1 ms); the default is 0 (no busy polling), and 50 covers a "
                        "round trip to a PostgreSQL on the same host");
  }
  if (c.max_prepared_statements < 1) {
    return config_error("max_prepared_statements must be at least 1; the default is 200");
  }
  if (c.max_pinned_server_connections > c.max_server_connections) {
    return config_error("max_pinned_server_connections (" +
                        std::to_string(c.max_pinned_server_connections) +
                        ") is greater than max_server_connections; lower it so pinned clients "
                        "cannot hold the whole pool (0 means half of max_server_connections)");
  }
  if (c.min_server_connections > c.max_server_connections) {
    return config_error("min_server_connections (" + std::to_string(c.min_server_connections) +
                        ") is greater than max_server_connections (" +
                        std::to_string(c.max_server_connections) +
                        "); lower min_server_connections or raise max_server_connections");
  }
  const std::array<std::pair<std::string_view, Duration>, 8> timeouts = {{
      {"shutdown_timeout", c.shutdown_timeout},
      {"client_login_timeout", c.client_login_timeout},
      {"query_wait_timeout", c.query_wait_timeout},
      {"server_lifetime", c.server_lifetime},
      {"server_idle_timeout", c.server_idle_timeout},
      {"server_connect_timeout", c.server_connect_timeout},
      {"server_retry_initial", c.server_retry_initial},
      {"server_retry_max", c.server_retry_max},
  }};
  for (const auto& [name, value] : timeouts) {
    if (value <= Duration::zero()) {
      return config_error(std::string(name) +
                          " must be greater than zero; set a duration such as \"30s\"");
    }
  }
  if (c.server_retry_initial > c.server_retry_max) {
    return config_error(
        "server_retry_initial is greater than server_retry_max; lower server_retry_initial or "
        "raise server_retry_max (defaults 500ms and 8s)");
  }
  if (c.server_probe_interval < Duration::zero()) {
    return config_error(
        "server_probe_interval must not be negative; the default is \"250ms\" (0 turns probes "
        "off)");
  }
  if (c.budget_survey_interval < Duration::zero()) {
    return config_error(
        "budget_survey_interval must not be negative; the default is \"1s\" (0 turns the "
        "survey off)");
  }
  if (c.metrics_enabled() && c.metrics_port != 0 && c.metrics_port == c.listen_port &&
      c.metrics_host == c.listen_host) {
    return config_error("metrics_listen is the same address as listen (" + c.listen_host + ":" +
                        std::to_string(c.listen_port) +
                        "); give /metrics its own port, e.g. \"127.0.0.1:9930\"");
  }
  if (c.max_message_size < 8192) {
    return config_error("max_message_size is " + std::to_string(c.max_message_size) +
                        "; set it to at least 8192 bytes (the default is 1073741824, 1 GiB)");
  }
  if (!detail::is_log_level(c.log_level)) {
    return config_error("log_level '" + c.log_level +
                        "' is not valid; use one of trace, debug, info, warn, error, critical, "
                        "off");
  }
  for (size_t i = 0; i < c.databases.size(); ++i) {
    const Database& db = c.databases[i];
    if (db.name.empty()) {
      return config_error(
          "a database has an empty name; name it in [databases.NAME], or put a dbname in "
          "DATABASE_URL (postgresql://user@host:5432/DBNAME)");
    }
    for (size_t j = 0; j < i; ++j) {
      if (c.databases[j].name == db.name) {
        return config_error("database '" + db.name +
                            "' is configured twice; give each [databases.NAME] a unique name");
      }
    }
    if (db.upstream.user.empty()) {
      return config_error("database '" + db.name +
                          "' has no user: put one in its url "
                          "(postgresql://USER:password@host:5432/dbname)");
    }
    if (db.upstream.host.empty()) {
      return config_error("database '" + db.name +
                          "' has an empty host: put one in its url (postgresql://user@HOST/db)");
    }
  }
  return validate_tls_and_auth(c);
}

}  // namespace pgmux::config
