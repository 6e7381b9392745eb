// A real PostgreSQL 15 for integration tests: initdb in a temporary folder,
// started on a free loopback port, stopped and removed on destruction.
// As root, initdb and postgres run as the `postgres` user through runuser.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pgmux::testing {

// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read,
// close).
uint16_t free_port();

struct PgOptions {
  int max_connections = 200;
  // Extra postgresql.conf lines, e.g. "log_min_messages = debug1".
  std::vector<std::string> extra_conf;
  // TLS with test_pki()'s server certificate (ssl = on, ssl_ca_file = the test
  // CA). pg_hba's "host" lines match both TLS and plain connections.
  bool ssl = false;
};

// Throwaway certificates for TLS tests, made once per process with the
// `openssl` command line tool (EC P-256, SHA-256 signatures, valid one day).
// Files are PEM; keys are unencrypted. The folder is world-readable (the
// keys themselves are mode 0600) and removed at process exit.
struct TestPki {
  std::string dir;
  std::string ca_cert, ca_key;          // The test CA.
  std::string server_cert, server_key;  // CN=localhost, SAN DNS:localhost, IP:127.0.0.1; by the CA.
  std::string other_ca_cert;            // An unrelated CA, for "wrong CA" tests.
  std::string wrong_host_cert, wrong_host_key;  // By the CA; CN and SAN DNS:wrong.example only.
};
// Thread-safe; throws std::runtime_error with openssl's output on failure.
const TestPki& test_pki();

// Roles and databases every PgServer has, for upstream authentication tests.
// pg_hba.conf on 127.0.0.1: postgres trust; kMd5User md5; kPlainUser
// password (cleartext); everyone else scram-sha-256.
inline constexpr const char* kScramUser = "app_scram";
inline constexpr const char* kScramPassword = "scram-secret";
inline constexpr const char* kMd5User = "app_md5";
inline constexpr const char* kMd5Password = "md5-secret";
inline constexpr const char* kPlainUser = "app_plain";
inline constexpr const char* kPlainPassword = "plain-secret";
inline constexpr const char* kAppDatabase = "app";  // Owned by kScramUser; all three may connect.

class PgServer {
 public:
  // initdb (--nosync, -A trust for local), configure, start, create the roles
  // and database above. Throws std::runtime_error with the command's output
  // on failure.
  explicit PgServer(PgOptions options = {});
  ~PgServer();  // pg_ctl stop -m immediate, then removes the folder.
  PgServer(const PgServer&) = delete;
  PgServer& operator=(const PgServer&) = delete;

  const std::string& host() const { return host_; }  // "127.0.0.1"
  uint16_t port() const { return port_; }
  const std::string& data_dir() const { return data_dir_; }

  // libpq key=value conninfo for the superuser postgres (trust).
  std::string superuser_conninfo(const std::string& dbname = "postgres") const;
  // "postgresql://user:password@127.0.0.1:port/dbname"
  std::string url(const std::string& user, const std::string& password,
                  const std::string& dbname = kAppDatabase) const;

  // Runs SQL as the superuser over libpq; throws std::runtime_error on error.
  void exec(const std::string& sql, const std::string& dbname = "postgres") const;
  // First column of the first row as text ("" for NULL or no rows).
  std::string query_value(const std::string& sql, const std::string& dbname = "postgres") const;

  // For fault tests. stop() waits until the server is down (mode: "fast",
  // "immediate" or "smart"); start() brings it back on the same port and
  // waits until it accepts connections; restart() is both, like
  // `pg_ctl restart -m mode`. Each throws std::runtime_error on failure.
  void stop(const std::string& mode = "fast");
  void start();
  void restart(const std::string& mode = "fast");
  // Replaces pg_hba.conf and reloads the configuration.
  void set_hba(const std::string& hba);

 private:
  std::string host_ = "127.0.0.1";
  uint16_t port_ = 0;
  std::string root_dir_;  // mkdtemp folder; data_dir_ lives inside it.
  std::string data_dir_;
  bool run_as_postgres_ = false;
};

// Runs a shell command, returns its exit status and combined stdout+stderr.
struct CommandResult {
  int status = -1;
  std::string output;
};
CommandResult run_command(const std::string& command);

}  // namespace pgmux::testing
