// TLS on both sides and client authentication, end to end with libpq,
// psql and pgbench against a PostgreSQL 15 that runs with ssl = on.
#include <doctest/doctest.h>
#include <libpq-fe.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "protocol/scram_server.h"
#include "tests/pg_fixture.h"
#include "tests/proxy_fixture.h"

namespace pgmux::testing {
namespace {

constexpr const char* kBin = "/usr/lib/postgresql/15/bin/";

PgServer& tls_pg() {
  // Also on 127.0.0.2, an address its certificate does not name.
  static PgServer pg(PgOptions{.max_connections = 200,
                               .extra_conf = {"listen_addresses = '127.0.0.1,127.0.0.2'"},
                               .ssl = true});
  return pg;
}

// Connects; returns "" on success, else libpq's error message.
std::string try_connect(const std::string& conninfo, std::string* sqlstate = nullptr) {
  PGconn* conn = PQconnectdb(conninfo.c_str());
  std::string error;
  if (PQstatus(conn) != CONNECTION_OK) {
    error = PQerrorMessage(conn);
    if (error.empty()) error = "unknown error";
  } else {
    PGresult* r = PQexec(conn, "select 1");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) error = PQresultErrorMessage(r);
    PQclear(r);
  }
  if (sqlstate != nullptr) {
    // libpq keeps no SQLSTATE for a failed connection; read it from the text.
    *sqlstate = error.find("password authentication failed") != std::string::npos ? "28P01" : "";
  }
  PQfinish(conn);
  return error;
}

std::string query_one(const std::string& conninfo, const std::string& sql) {
  PGconn* conn = PQconnectdb(conninfo.c_str());
  REQUIRE_MESSAGE(PQstatus(conn) == CONNECTION_OK, PQerrorMessage(conn));
  PGresult* r = PQexec(conn, sql.c_str());
  REQUIRE_MESSAGE(PQresultStatus(r) == PGRES_TUPLES_OK, PQresultErrorMessage(r));
  std::string value = PQgetvalue(r, 0, 0);
  PQclear(r);
  PQfinish(conn);
  return value;
}

std::string base(const ProxyRunner& proxy, const std::string& user, const std::string& password) {
  return "hostaddr=127.0.0.1 host=localhost port=" + std::to_string(proxy.port()) +
         " dbname=app user=" + user + " password=" + password;
}

config::Config tls_upstream_config(config::SslMode mode, const std::string& root,
                                   const std::string& host = "127.0.0.1") {
  config::Config config = make_config(tls_pg());
  config.databases[0].upstream.host = host;
  config.databases[0].upstream.sslmode = mode;
  config.databases[0].upstream.sslrootcert = root;
  config.min_server_connections = 0;
  return config;
}

TEST_CASE("upstream TLS: verify-full succeeds, and a wrong CA or host name fails clearly") {
  const TestPki& pki = test_pki();
  SUBCASE("verify-full by IP address and by host name") {
    for (const char* host : {"127.0.0.1", "localhost"}) {
      ProxyRunner proxy(tls_upstream_config(config::SslMode::kVerifyFull, pki.ca_cert, host));
      CHECK(query_one(proxy.conninfo(),
                      "select ssl::text from pg_stat_ssl where pid = "
                      "pg_backend_pid()") == "true");
    }
  }
  SUBCASE("wrong CA") {
    ProxyRunner proxy(tls_upstream_config(config::SslMode::kVerifyFull, pki.other_ca_cert));
    const std::string error = try_connect(proxy.conninfo());
    INFO(error);
    CHECK(error.find("certificate verify failed") != std::string::npos);
  }
  SUBCASE("wrong host name") {
    config::Config config = tls_upstream_config(config::SslMode::kVerifyFull, pki.ca_cert);
    // The certificate names localhost and 127.0.0.1; ask for another name
    // that still reaches the server.
    config.databases[0].upstream.host = "127.0.0.2";
    ProxyRunner proxy(config);
    const std::string error = try_connect(proxy.conninfo());
    INFO(error);
    CHECK(error.find("TLS") != std::string::npos);
    CHECK(error.find("certificate verify failed") != std::string::npos);
  }
  SUBCASE("require without a root certificate encrypts without verifying") {
    ProxyRunner proxy(tls_upstream_config(config::SslMode::kRequire, ""));
    CHECK(query_one(proxy.conninfo(),
                    "select ssl::text from pg_stat_ssl where pid = "
                    "pg_backend_pid()") == "true");
  }
}

TEST_CASE("upstream sslmode=allow: plaintext first, TLS when pg_hba.conf insists") {
  PgServer pg(PgOptions{.max_connections = 200, .extra_conf = {}, .ssl = true});
  config::Config config = make_config(pg);
  config.databases[0].upstream.sslmode = config::SslMode::kAllow;
  config.min_server_connections = 2;
  const std::string ssl_sql = "select ssl::text from pg_stat_ssl where pid = pg_backend_pid()";
  {
    ProxyRunner proxy(config);
    CHECK(query_one(proxy.conninfo(), ssl_sql) == "false");
  }

  // Only TLS for the application's user; the fixture's superuser as before.
  pg.set_hba(
      "local all all trust\n"
      "host all postgres 127.0.0.1/32 trust\n"
      "hostssl all app_scram 127.0.0.1/32 scram-sha-256\n");
  // The reload is asynchronous: wait until a plaintext login is refused.
  const std::string direct = "host=127.0.0.1 port=" + std::to_string(pg.port()) +
                             " dbname=app user=" + kScramUser + " password=" + kScramPassword;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (try_connect(direct + " sslmode=disable").find("no pg_hba.conf entry") ==
         std::string::npos) {
    REQUIRE(std::chrono::steady_clock::now() < deadline);
  }
  CHECK(try_connect(direct + " sslmode=require") == "");

  ProxyRunner proxy(config);
  CHECK(query_one(proxy.conninfo(), ssl_sql) == "true");
  CHECK(query_one(proxy.conninfo(), "select 42") == "42");
  // Every server pgmux holds (the warm ones too) went straight to TLS or
  // retried with it.
  CHECK(pg.query_value("select count(*) from pg_stat_ssl join pg_stat_activity using (pid) "
                       "where usename = 'app_scram' and not ssl") == "0");
  CHECK(pg.query_value("select count(*) > 0 from pg_stat_ssl join pg_stat_activity using (pid) "
                       "where usename = 'app_scram' and ssl") == "t");
}

TEST_CASE("upstream sslmode=allow: a server without TLS that refuses plaintext fails the client") {
  PgServer pg;  // ssl = off
  pg.set_hba(
      "local all all trust\n"
      "host all postgres 127.0.0.1/32 trust\n"
      "hostssl all app_scram 127.0.0.1/32 scram-sha-256\n");
  const std::string direct = "host=127.0.0.1 port=" + std::to_string(pg.port()) +
                             " dbname=app user=" + kScramUser + " password=" + kScramPassword +
                             " sslmode=disable";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (try_connect(direct).find("no pg_hba.conf entry") == std::string::npos) {
    REQUIRE(std::chrono::steady_clock::now() < deadline);
  }
  config::Config config = make_config(pg);
  config.databases[0].upstream.sslmode = config::SslMode::kAllow;
  config.min_server_connections = 0;
  ProxyRunner proxy(config);
  // Plaintext refused, TLS refused ('N'), plaintext again and refused: that
  // refusal is final and reaches the client, no endless retry.
  const auto start = std::chrono::steady_clock::now();
  const std::string error = try_connect(proxy.conninfo());
  INFO(error);
  CHECK(error.find("no pg_hba.conf entry") != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
}

config::Config client_tls_config(config::ClientTls mode) {
  const TestPki& pki = test_pki();
  config::Config config = make_config(tls_pg());
  config.client_tls = mode;
  config.client_tls_cert_file = pki.server_cert;
  config.client_tls_key_file = pki.server_key;
  return config;
}

TEST_CASE("client TLS: require, verify-full and channel binding; plaintext refused when required") {
  const TestPki& pki = test_pki();
  ProxyRunner proxy(client_tls_config(config::ClientTls::kRequire));
  const std::string login = base(proxy, kScramUser, kScramPassword);
  CHECK(query_one(login + " sslmode=require", "select 1") == "1");
  CHECK(query_one(login + " sslmode=verify-full sslrootcert=" + pki.ca_cert, "select 1") == "1");
  CHECK(query_one(login + " sslmode=require channel_binding=require", "select 2") == "2");
  CHECK(try_connect(login + " sslmode=verify-full sslrootcert=" + pki.other_ca_cert) != "");

  const std::string plain_error = try_connect(login + " sslmode=disable");
  INFO(plain_error);
  CHECK(plain_error.find("pgmux accepts only TLS connections") != std::string::npos);

  // psql, too.
  CommandResult psql = run_command(std::string(kBin) + "psql -X -Atc 'select 40 + 2' '" + login +
                                   " sslmode=verify-full sslrootcert=" + pki.ca_cert + "'");
  INFO(psql.output);
  CHECK(psql.status == 0);
  CHECK(psql.output.find("42") != std::string::npos);
}

TEST_CASE("pgbench -S with 100 TLS clients: zero errors") {
  ProxyRunner proxy(client_tls_config(config::ClientTls::kAllow));
  const std::string url = "postgresql://" + std::string(kScramUser) + ":" + kScramPassword +
                          "@127.0.0.1:" + std::to_string(proxy.port()) + "/app?sslmode=require";
  CommandResult init = run_command(std::string(kBin) + "pgbench -i -s 1 -q '" + url + "'");
  INFO(init.output);
  REQUIRE(init.status == 0);
  CommandResult r = run_command(std::string(kBin) + "pgbench -n -S -c 100 -j 4 -T 4 '" + url + "'");
  INFO(r.output);
  CHECK(r.status == 0);
  CHECK(r.output.find("number of failed transactions: 0 ") != std::string::npos);
}

// Users in every stored form, from TOML-equivalent config and an auth_file.
struct AuthFixture {
  std::filesystem::path dir;
  std::string auth_file;
  std::string md5_auth_file;  // Without SCRAM secrets, which md5 cannot check.
  AuthFixture() {
    dir = std::filesystem::temp_directory_path() / ("pgmux-auth-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir);
    auth_file = (dir / "userlist.txt").string();
    md5_auth_file = (dir / "userlist-md5.txt").string();
    for (const std::string& path : {auth_file, md5_auth_file}) {
      std::ofstream f(path);
      f << "; PgBouncer's format\n";
      if (path == auth_file) {
        f << "\"file_scram\" \""
          << protocol::format_scram_secret(protocol::make_scram_secret("fs-pw")) << "\"\n";
      }
      f << "\"file_md5\" \"" << protocol::md5_stored_hash("file_md5", "fm-pw") << "\"\n"
        << "\"file_plain\" \"fp-pw\"\n";
      f.close();
      std::filesystem::permissions(
          path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    }
  }
  ~AuthFixture() { std::filesystem::remove_all(dir); }

  // Loads a real pgmux.toml (users in [users.NAME] tables, the auth_file
  // above) through config::load, with the upstream from DATABASE_URL.
  config::Config make(config::AuthType type) const {
    const std::string toml_path = (dir / "pgmux.toml").string();
    std::ofstream toml(toml_path);
    const bool md5 = type == config::AuthType::kMd5;
    toml << "auth_type = \"" << config::to_string(type) << "\"\n"
         << "auth_file = \"" << (md5 ? md5_auth_file : auth_file) << "\"\n"
         << "listen = \"127.0.0.1:0\"\n"
         // Failed logins are answered after this; the default 500 ms would
         // make the wrong-password rounds take seconds.
         << "auth_failure_delay = \"10ms\"\n";
    if (!md5) {
      toml << "[users.toml_scram]\npassword = \""
           << protocol::format_scram_secret(protocol::make_scram_secret("ts-pw")) << "\"\n";
    }
    toml << "[users.toml_md5]\npassword = \"" << protocol::md5_stored_hash("toml_md5", "tm-pw")
         << "\"\n"
         << "[users.toml_plain]\npassword = \"tp-pw\"\n";
    toml.close();
    const std::string url = tls_pg().url(kScramUser, kScramPassword);
    config::LoadOptions options;
    options.config_path = toml_path;
    options.getenv = [url](const std::string& name) -> std::optional<std::string> {
      if (name == "DATABASE_URL") return url + "?application_name=pgmux";
      return std::nullopt;
    };
    auto loaded = config::load(options);
    REQUIRE_MESSAGE(loaded.ok(), (loaded.ok() ? "" : loaded.error().message));
    config::Config config = *loaded;
    config.databases[0].upstream.sslmode = config::SslMode::kDisable;
    const char* level = std::getenv("PGMUX_TEST_LOG_LEVEL");
    config.log_level = level != nullptr ? level : "warn";
    return config;
  }
  static PgServer& shared_tls_free_pg() { return tls_pg(); }
};

TEST_CASE(
    "client authentication: scram-sha-256, md5 and password against TOML and auth_file users") {
  AuthFixture fixture;
  struct Case {
    const char* user;
    const char* password;
    bool scram_stored;
  };
  const Case cases[] = {{"toml_scram", "ts-pw", true},  {"toml_md5", "tm-pw", false},
                        {"toml_plain", "tp-pw", false}, {"file_scram", "fs-pw", true},
                        {"file_md5", "fm-pw", false},   {"file_plain", "fp-pw", false}};
  for (config::AuthType type :
       {config::AuthType::kScramSha256, config::AuthType::kMd5, config::AuthType::kPassword}) {
    // md5 cannot check a SCRAM secret (validation refuses such a setup), so
    // the md5 round has no SCRAM-stored users.
    ProxyRunner proxy(fixture.make(type));
    for (const Case& c : cases) {
      if (type == config::AuthType::kMd5 && c.scram_stored) continue;
      INFO("auth_type " << config::to_string(type) << ", user " << c.user);
      const std::string login = base(proxy, c.user, c.password) + " sslmode=disable";
      CHECK(try_connect(login) == "");
      std::string wrong_state;
      const std::string wrong =
          try_connect(base(proxy, c.user, "nope") + " sslmode=disable", &wrong_state);
      CHECK(wrong_state == "28P01");
      // An unknown user hears exactly the same, but for the name.
      std::string unknown = try_connect(base(proxy, "nobody", "nope") + " sslmode=disable");
      const std::string from = "\"nobody\"";
      const size_t at = unknown.find(from);
      REQUIRE(at != std::string::npos);
      unknown.replace(at, from.size(), "\"" + std::string(c.user) + "\"");
      CHECK(unknown == wrong);
    }
  }
}

TEST_CASE("trust logs in any configured user without a password") {
  AuthFixture fixture;
  ProxyRunner proxy(fixture.make(config::AuthType::kTrust));
  CHECK(try_connect(base(proxy, "toml_md5", "ignored") + " sslmode=disable") == "");
  CHECK(try_connect(base(proxy, "file_plain", "") + " sslmode=disable") == "");
}

TEST_CASE("drop-in: with only DATABASE_URL, its user and password log in and nothing else") {
  ProxyRunner proxy(make_config(tls_pg()));
  CHECK(try_connect(base(proxy, kScramUser, kScramPassword) + " sslmode=disable") == "");
  std::string state;
  try_connect(base(proxy, kScramUser, "not-the-password") + " sslmode=disable", &state);
  CHECK(state == "28P01");
  CHECK(try_connect(base(proxy, kMd5User, kMd5Password) + " sslmode=disable") != "");
}

TEST_CASE("allowed_cidrs: a client outside the ranges gets 28000") {
  config::Config config = make_config(tls_pg());
  auto outside = config::parse_cidr("10.0.0.0/8");
  REQUIRE(outside.ok());
  config.allowed_cidrs.push_back(*outside);
  {
    ProxyRunner proxy(config);
    const std::string error =
        try_connect(base(proxy, kScramUser, kScramPassword) + " sslmode=disable");
    INFO(error);
    CHECK(error.find("does not accept connections from") != std::string::npos);
  }
  auto loopback = config::parse_cidr("127.0.0.0/8");
  REQUIRE(loopback.ok());
  config.allowed_cidrs.push_back(*loopback);
  ProxyRunner proxy(config);
  CHECK(try_connect(base(proxy, kScramUser, kScramPassword) + " sslmode=disable") == "");
}

TEST_CASE("TLS on both sides: a 20 MB value round-trips, and cancel reaches a TLS upstream") {
  const TestPki& pki = test_pki();
  config::Config config = client_tls_config(config::ClientTls::kRequire);
  config.databases[0].upstream.sslmode = config::SslMode::kVerifyFull;
  config.databases[0].upstream.sslrootcert = pki.ca_cert;
  ProxyRunner proxy(config);
  PGconn* conn = PQconnectdb(
      (base(proxy, kScramUser, kScramPassword) + " sslmode=verify-full sslrootcert=" + pki.ca_cert)
          .c_str());
  REQUIRE_MESSAGE(PQstatus(conn) == CONNECTION_OK, PQerrorMessage(conn));

  std::string big(20 * 1024 * 1024, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 2654435761u) >> 13);
  const char* values[] = {big.data()};
  const int lengths[] = {static_cast<int>(big.size())};
  const int formats[] = {1};
  PGresult* r = PQexecParams(conn, "select $1::bytea", 1, nullptr, values, lengths, formats, 1);
  REQUIRE_MESSAGE(PQresultStatus(r) == PGRES_TUPLES_OK, PQresultErrorMessage(r));
  REQUIRE(static_cast<size_t>(PQgetlength(r, 0, 0)) == big.size());
  CHECK(std::memcmp(PQgetvalue(r, 0, 0), big.data(), big.size()) == 0);
  PQclear(r);

  REQUIRE(PQsendQuery(conn, "select pg_sleep(30)") == 1);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (tls_pg().query_value("select count(*) from pg_stat_activity where query = "
                              "'select pg_sleep(30)' and state = 'active'") != "1") {
    REQUIRE(std::chrono::steady_clock::now() < deadline);
  }
  const auto start = std::chrono::steady_clock::now();
  PGcancel* cancel = PQgetCancel(conn);
  char err[256];
  REQUIRE(PQcancel(cancel, err, sizeof err) == 1);
  PQfreeCancel(cancel);
  r = PQgetResult(conn);
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const char* code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  CHECK(std::string(code != nullptr ? code : "") == "57014");
  PQclear(r);
  while ((r = PQgetResult(conn)) != nullptr) PQclear(r);
  CHECK(elapsed < 1.0);
  PQfinish(conn);
}

}  // namespace
}  // namespace pgmux::testing
