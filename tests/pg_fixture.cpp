#include "tests/pg_fixture.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string_view>

namespace pgmux::testing {
namespace {

constexpr const char* kDefaultBinDir = "/usr/lib/postgresql/15/bin";
constexpr int kStartAttempts = 3;
constexpr int kLogTailLines = 40;

// PGMUX_PG_BINDIR lets a developer point the fixture at another PostgreSQL
// build; CI uses the Debian layout.
std::string bin_dir() {
  const char* env = std::getenv("PGMUX_PG_BINDIR");
  return (env != nullptr && *env != '\0') ? env : kDefaultBinDir;
}

// Single-quotes a word for /bin/sh.
std::string shell_quote(std::string_view word) {
  std::string out = "'";
  for (char c : word) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  out += '\'';
  return out;
}

// Quotes a value for a libpq key=value conninfo string.
std::string conninfo_quote(std::string_view value) {
  std::string out = "'";
  for (char c : value) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  out += '\'';
  return out;
}

// Quotes a value for a postgresql.conf line.
std::string conf_quote(std::string_view value) {
  std::string out = "'";
  for (char c : value) {
    if (c == '\'') out += '\'';
    out += c;
  }
  out += '\'';
  return out;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  out.close();
  if (!out) throw std::runtime_error("pg_fixture: cannot write " + path);
}

std::string tail_lines(const std::string& text, int lines) {
  std::deque<std::string> kept;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    kept.push_back(std::move(line));
    if (static_cast<int>(kept.size()) > lines) kept.pop_front();
  }
  std::string out;
  for (const auto& line : kept) out += line + "\n";
  return out;
}

struct PgConnDeleter {
  void operator()(PGconn* conn) const { PQfinish(conn); }
};
struct PgResultDeleter {
  void operator()(PGresult* result) const { PQclear(result); }
};
using PgConn = std::unique_ptr<PGconn, PgConnDeleter>;
using PgResult = std::unique_ptr<PGresult, PgResultDeleter>;

}  // namespace

uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error(std::string("free_port: socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    int err = errno;
    ::close(fd);
    throw std::runtime_error(std::string("free_port: ") + std::strerror(err));
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

CommandResult run_command(const std::string& command) {
  CommandResult result;
  std::string full = command + " 2>&1";
  FILE* pipe = ::popen(full.c_str(), "r");
  if (pipe == nullptr) {
    result.output = std::string("popen failed: ") + std::strerror(errno);
    return result;
  }
  char chunk[4096];
  size_t n = 0;
  while ((n = std::fread(chunk, 1, sizeof(chunk), pipe)) > 0) result.output.append(chunk, n);
  int status = ::pclose(pipe);
  if (status == -1) {
    result.status = -1;
  } else if (WIFEXITED(status)) {
    result.status = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.status = 128 + WTERMSIG(status);
  }
  return result;
}

namespace {

// Runs one openssl command line in `dir`; throws with its output on failure.
void run_openssl(const std::string& dir, const std::string& args) {
  CommandResult r = run_command("cd " + shell_quote(dir) + " && openssl " + args);
  if (r.status != 0) {
    throw std::runtime_error("test_pki: openssl " + args + " failed (status " +
                             std::to_string(r.status) + ")\n" + r.output);
  }
}

// The configuration for `openssl req`: an empty distinguished name section
// (subjects come from -subj) and the CA extensions. OpenSSL 3.0's req has no
// -extfile, hence a file rather than the system openssl.cnf.
constexpr const char* kReqConfig =
    "[req]\n"
    "distinguished_name = dn\n"
    "[dn]\n"
    "[ca_ext]\n"
    "basicConstraints = critical, CA:TRUE\n"
    "keyUsage = critical, keyCertSign, cRLSign\n"
    "subjectKeyIdentifier = hash\n";

// A fresh P-256 key and a CA certificate for it, self-signed.
void make_ca(const std::string& dir, const std::string& name, const std::string& subject) {
  run_openssl(dir,
              "req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 "
              "-days 1 -config req.cnf -extensions ca_ext -subj " +
                  shell_quote(subject) + " -keyout " + name + ".key -out " + name + ".crt");
}

// A fresh P-256 key and a leaf certificate for it, signed by the CA `ca`.
void make_leaf(const std::string& dir, const std::string& name, const std::string& ca,
               const std::string& subject, const std::string& san, int serial) {
  std::string extensions =
      "basicConstraints = CA:FALSE\n"
      "keyUsage = critical, digitalSignature\n"
      "extendedKeyUsage = serverAuth, clientAuth\n"
      "authorityKeyIdentifier = keyid\n";
  extensions += "subjectAltName = " + san + "\n";
  write_file(dir + "/" + name + ".ext", extensions);
  run_openssl(dir,
              "req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 "
              "-config req.cnf -subj " +
                  shell_quote(subject) + " -keyout " + name + ".key -out " + name + ".csr");
  run_openssl(dir, "x509 -req -sha256 -days 1 -in " + name + ".csr -CA " + ca + ".crt -CAkey " +
                       ca + ".key -set_serial " + std::to_string(serial) + " -extfile " + name +
                       ".ext -out " + name + ".crt");
}

// Owns the folder for the life of the process.
struct PkiHolder {
  TestPki pki;
  PkiHolder() {
    char tmpl[] = "/tmp/pgmux-pki-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) {
      throw std::runtime_error(std::string("test_pki: mkdtemp: ") + std::strerror(errno));
    }
    const std::string dir = tmpl;
    try {
      // Readable by the postgres user when tests run as root; the keys are
      // still 0600 (openssl writes them so) and PgServer copies its own.
      std::filesystem::permissions(dir, std::filesystem::perms(0755));
      write_file(dir + "/req.cnf", kReqConfig);
      make_ca(dir, "ca", "/CN=pgmux test CA");
      make_ca(dir, "other_ca", "/CN=pgmux unrelated test CA");
      make_leaf(dir, "server", "ca", "/CN=localhost", "DNS:localhost, IP:127.0.0.1", 1001);
      make_leaf(dir, "wrong_host", "ca", "/CN=wrong.example", "DNS:wrong.example", 1002);
      for (const char* key : {"ca.key", "other_ca.key", "server.key", "wrong_host.key"}) {
        std::filesystem::permissions(dir + "/" + key, std::filesystem::perms(0600));
      }
    } catch (...) {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
      throw;
    }
    pki.dir = dir;
    pki.ca_cert = dir + "/ca.crt";
    pki.ca_key = dir + "/ca.key";
    pki.server_cert = dir + "/server.crt";
    pki.server_key = dir + "/server.key";
    pki.other_ca_cert = dir + "/other_ca.crt";
    pki.wrong_host_cert = dir + "/wrong_host.crt";
    pki.wrong_host_key = dir + "/wrong_host.key";
  }
  ~PkiHolder() {
    std::error_code ec;
    std::filesystem::remove_all(pki.dir, ec);
  }
  PkiHolder(const PkiHolder&) = delete;
  PkiHolder& operator=(const PkiHolder&) = delete;
};

}  // namespace

const TestPki& test_pki() {
  // A function-local static: made on first use, once even across threads, and
  // destroyed (removing the folder) at exit. A throwing constructor is retried
  // by the next caller.
  static const PkiHolder holder;
  return holder.pki;
}

namespace {

// The server's stderr, written by pg_ctl -l beside the data folder.
std::string log_path(const std::string& root_dir) { return root_dir + "/postgres.log"; }

// Runs a PostgreSQL binary from the folder (so runuser does not complain
// about an unreadable cwd), as postgres when we are root.
CommandResult run_pg(bool as_postgres, const std::string& root_dir, const std::string& tool,
                     const std::string& args) {
  std::string cmd = "cd " + shell_quote(root_dir) + " && ";
  if (as_postgres) cmd += "runuser -u postgres -- ";
  cmd += shell_quote(bin_dir() + "/" + tool) + " " + args;
  return run_command(cmd);
}

[[noreturn]] void fail(const std::string& what, const CommandResult& r,
                       const std::string& root_dir) {
  std::string msg = "pg_fixture: " + what + " failed (status " + std::to_string(r.status) +
                    ")\n--- output ---\n" + r.output;
  std::string log = read_file(log_path(root_dir));
  if (!log.empty()) msg += "--- server log (tail) ---\n" + tail_lines(log, kLogTailLines);
  throw std::runtime_error(msg);
}

// Immediate shutdown: the data is throwaway, so there is nothing to flush.
void stop_and_remove(bool as_postgres, const std::string& root_dir,
                     const std::string& data_dir) noexcept {
  try {
    run_pg(as_postgres, root_dir, "pg_ctl",
           "-D " + shell_quote(data_dir) + " -m immediate -w stop");
  } catch (...) {
    // Out of memory while building the command; still try to remove the folder.
  }
  std::error_code ec;
  std::filesystem::remove_all(root_dir, ec);
}

}  // namespace

PgServer::PgServer(PgOptions options) {
  run_as_postgres_ = ::geteuid() == 0;

  char tmpl[] = "/tmp/pgmux-pg-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    throw std::runtime_error(std::string("pg_fixture: mkdtemp: ") + std::strerror(errno));
  }
  root_dir_ = tmpl;
  data_dir_ = root_dir_ + "/data";

  // A failure after mkdtemp must not leak the folder or a running server: the
  // destructor does not run for a constructor that throws.
  bool started = false;

  try {
    if (run_as_postgres_) {
      // initdb refuses to run as root, so the whole folder belongs to postgres.
      passwd* pw = ::getpwnam("postgres");
      if (pw == nullptr) {
        throw std::runtime_error("pg_fixture: running as root but no postgres user");
      }
      if (::chown(root_dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
        int err = errno;
        throw std::runtime_error("pg_fixture: chown " + root_dir_ + ": " + std::strerror(err));
      }
    }

    CommandResult r =
        run_pg(run_as_postgres_, root_dir_, "initdb",
               "--nosync -A trust -U postgres -E UTF8 --locale=C -D " + shell_quote(data_dir_));
    if (r.status != 0) fail("initdb", r, root_dir_);

    write_file(data_dir_ + "/pg_hba.conf",
               "local all all trust\n"
               "host all postgres 127.0.0.1/32 trust\n"
               "host all app_md5 127.0.0.1/32 md5\n"
               "host all app_plain 127.0.0.1/32 password\n"
               "host all all 127.0.0.1/32 scram-sha-256\n");

    std::string ssl_conf;
    if (options.ssl) {
      // PostgreSQL refuses a key readable by others, and as root it runs as
      // postgres, so the files are copied into the data folder it owns.
      const TestPki& pki = test_pki();
      const std::string cert = data_dir_ + "/server.crt";
      const std::string key = data_dir_ + "/server.key";
      const std::string ca = data_dir_ + "/root.crt";
      namespace fs = std::filesystem;
      fs::copy_file(pki.server_cert, cert, fs::copy_options::overwrite_existing);
      fs::copy_file(pki.server_key, key, fs::copy_options::overwrite_existing);
      fs::copy_file(pki.ca_cert, ca, fs::copy_options::overwrite_existing);
      fs::permissions(cert, fs::perms(0644));
      fs::permissions(key, fs::perms(0600));
      fs::permissions(ca, fs::perms(0644));
      if (run_as_postgres_) {
        passwd* pw = ::getpwnam("postgres");
        for (const std::string& file : {cert, key, ca}) {
          if (pw == nullptr || ::chown(file.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
            int err = errno;
            throw std::runtime_error("pg_fixture: chown " + file + ": " + std::strerror(err));
          }
        }
      }
      ssl_conf = "ssl = on\nssl_cert_file = " + conf_quote(cert) +
                 "\nssl_key_file = " + conf_quote(key) + "\nssl_ca_file = " + conf_quote(ca) + "\n";
    }

    const std::string base_conf = read_file(data_dir_ + "/postgresql.conf");
    std::string common = "\n# pgmux test fixture\n";
    common += "listen_addresses = '127.0.0.1'\n";
    common += "unix_socket_directories = " + conf_quote(root_dir_) + "\n";
    common += "max_connections = " + std::to_string(options.max_connections) + "\n";
    common += "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n";
    common += "shared_buffers = 128MB\n";
    common += "logging_collector = off\nlog_destination = 'stderr'\n";
    common += ssl_conf;
    for (const auto& line : options.extra_conf) common += line + "\n";

    // free_port() can race with another process grabbing the port before
    // postgres binds it, so a failed start is retried on a fresh port.
    CommandResult start;
    for (int attempt = 0; attempt < kStartAttempts; ++attempt) {
      port_ = free_port();
      // Rewritten from the initdb original each time; the port goes last so
      // a stray `port` in extra_conf cannot move the server off port_.
      write_file(data_dir_ + "/postgresql.conf",
                 base_conf + common + "port = " + std::to_string(port_) + "\n");
      start = run_pg(run_as_postgres_, root_dir_, "pg_ctl",
                     "-D " + shell_quote(data_dir_) + " -w -t 60 -l " +
                         shell_quote(log_path(root_dir_)) + " start");
      if (start.status == 0) break;
      // pg_ctl may have timed out on a postmaster that is still coming up.
      run_pg(run_as_postgres_, root_dir_, "pg_ctl",
             "-D " + shell_quote(data_dir_) + " -m immediate -w stop");
    }
    if (start.status != 0) fail("pg_ctl start", start, root_dir_);
    started = true;

    exec("CREATE ROLE " + std::string(kScramUser) + " LOGIN PASSWORD '" + kScramPassword + "'");
    // The stored verifier follows password_encryption at CREATE time, and the
    // md5 pg_hba method needs an md5 hash (the docs, section 21.5).
    exec("SET password_encryption = 'md5'; CREATE ROLE " + std::string(kMd5User) +
         " LOGIN PASSWORD '" + kMd5Password + "'");
    // The `password` method accepts a SCRAM verifier, so the default is fine.
    exec("CREATE ROLE " + std::string(kPlainUser) + " LOGIN PASSWORD '" + kPlainPassword + "'");
    // CREATE DATABASE cannot run inside the implicit transaction of a
    // multi-statement query, so it gets its own exec.
    exec("CREATE DATABASE " + std::string(kAppDatabase) + " OWNER " + kScramUser);
    const std::string all_roles = std::string(kScramUser) + ", " + kMd5User + ", " + kPlainUser;
    exec("GRANT ALL ON DATABASE " + std::string(kAppDatabase) + " TO " + all_roles);
    // PostgreSQL 15 no longer grants CREATE on public to everyone.
    exec("GRANT CREATE, USAGE ON SCHEMA public TO " + all_roles, kAppDatabase);
  } catch (const std::exception& e) {
    std::string msg = e.what();
    if (started && msg.find("server log") == std::string::npos) {
      std::string log = read_file(log_path(root_dir_));
      if (!log.empty()) msg += "\n--- server log (tail) ---\n" + tail_lines(log, kLogTailLines);
    }
    if (started) {
      stop_and_remove(run_as_postgres_, root_dir_, data_dir_);
    } else {
      std::error_code ec;
      std::filesystem::remove_all(root_dir_, ec);
    }
    throw std::runtime_error(msg);
  }
}

PgServer::~PgServer() { stop_and_remove(run_as_postgres_, root_dir_, data_dir_); }

void PgServer::stop(const std::string& mode) {
  CommandResult r = run_pg(run_as_postgres_, root_dir_, "pg_ctl",
                           "-D " + shell_quote(data_dir_) + " -m " + mode + " -w -t 60 stop");
  if (r.status != 0) fail("pg_ctl stop", r, root_dir_);
}

void PgServer::start() {
  CommandResult r = run_pg(run_as_postgres_, root_dir_, "pg_ctl",
                           "-D " + shell_quote(data_dir_) + " -w -t 60 -l " +
                               shell_quote(log_path(root_dir_)) + " start");
  if (r.status != 0) fail("pg_ctl start", r, root_dir_);
}

void PgServer::restart(const std::string& mode) {
  CommandResult r = run_pg(run_as_postgres_, root_dir_, "pg_ctl",
                           "-D " + shell_quote(data_dir_) + " -m " + mode + " -w -t 60 -l " +
                               shell_quote(log_path(root_dir_)) + " restart");
  if (r.status != 0) fail("pg_ctl restart", r, root_dir_);
}

void PgServer::set_hba(const std::string& hba) {
  write_file(data_dir_ + "/pg_hba.conf", hba);
  exec("select pg_reload_conf()");
}

std::string PgServer::superuser_conninfo(const std::string& dbname) const {
  return "host=" + host_ + " port=" + std::to_string(port_) +
         " user=postgres dbname=" + conninfo_quote(dbname) + " connect_timeout=10";
}

std::string PgServer::url(const std::string& user, const std::string& password,
                          const std::string& dbname) const {
  return "postgresql://" + user + ":" + password + "@" + host_ + ":" + std::to_string(port_) + "/" +
         dbname;
}

namespace {

PgResult run_sql(const std::string& conninfo, const std::string& sql) {
  PgConn conn(PQconnectdb(conninfo.c_str()));
  if (conn == nullptr || PQstatus(conn.get()) != CONNECTION_OK) {
    throw std::runtime_error("pg_fixture: connect (" + conninfo +
                             "): " + (conn ? PQerrorMessage(conn.get()) : "out of memory"));
  }
  PgResult res(PQexec(conn.get(), sql.c_str()));
  ExecStatusType status = res ? PQresultStatus(res.get()) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK && status != PGRES_EMPTY_QUERY) {
    throw std::runtime_error("pg_fixture: SQL failed: " + sql + ": " + PQerrorMessage(conn.get()));
  }
  return res;
}

}  // namespace

void PgServer::exec(const std::string& sql, const std::string& dbname) const {
  run_sql(superuser_conninfo(dbname), sql);
}

std::string PgServer::query_value(const std::string& sql, const std::string& dbname) const {
  PgResult res = run_sql(superuser_conninfo(dbname), sql);
  if (PQntuples(res.get()) < 1 || PQnfields(res.get()) < 1 || PQgetisnull(res.get(), 0, 0) != 0) {
    return "";
  }
  return PQgetvalue(res.get(), 0, 0);
}

}  // namespace pgmux::testing
