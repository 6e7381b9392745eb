// Tests of parsing the TLS and auth settings: URL, TOML, environment, users, auth_file.
#include <arpa/inet.h>
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "config/auth_config_test_util.h"
#include "config/config.h"

namespace pgmux::config {
namespace {

using namespace std::chrono_literals;
using namespace auth_test_util;

TEST_CASE("enum spellings and defaults") {
  CHECK(to_string(SslMode::kDisable) == "disable");
  CHECK(to_string(SslMode::kAllow) == "allow");
  CHECK(to_string(SslMode::kPrefer) == "prefer");
  CHECK(to_string(SslMode::kRequire) == "require");
  CHECK(to_string(SslMode::kVerifyCa) == "verify-ca");
  CHECK(to_string(SslMode::kVerifyFull) == "verify-full");
  CHECK(to_string(AuthType::kTrust) == "trust");
  CHECK(to_string(AuthType::kScramSha256) == "scram-sha-256");
  CHECK(to_string(AuthType::kMd5) == "md5");
  CHECK(to_string(AuthType::kPassword) == "password");
  CHECK(to_string(ClientTls::kDisable) == "disable");
  CHECK(to_string(ClientTls::kAllow) == "allow");
  CHECK(to_string(ClientTls::kRequire) == "require");

  Config c;
  CHECK(c.auth_type == AuthType::kScramSha256);
  CHECK(c.auth_failure_delay == 500ms);
  CHECK(c.effective_client_tls() == ClientTls::kDisable);
  c.client_tls_cert_file = "server.crt";
  CHECK(c.effective_client_tls() == ClientTls::kAllow);
  c.client_tls = ClientTls::kRequire;
  CHECK(c.effective_client_tls() == ClientTls::kRequire);
  CHECK(c.users.empty());
  CHECK(c.find_user("alice") == nullptr);
  c.users.push_back(User{"alice", "pw", {}});
  REQUIRE(c.find_user("alice") != nullptr);
  CHECK(c.find_user("alice")->password == "pw");
  CHECK(c.find_user("Alice") == nullptr);
}

TEST_CASE("database URL: TLS options") {
  Result<Upstream> u = parse_database_url("postgresql://a@h/d");
  REQUIRE(u.ok());
  CHECK(u->sslmode == SslMode::kPrefer);  // libpq's default.
  CHECK(u->sslrootcert.empty());
  CHECK(u->sslcert.empty());
  CHECK(u->sslkey.empty());
  CHECK(u->sslsni);

  for (SslMode mode : {SslMode::kDisable, SslMode::kAllow, SslMode::kPrefer, SslMode::kRequire,
                       SslMode::kVerifyCa, SslMode::kVerifyFull}) {
    std::string url = "postgresql://a@h/d?sslmode=" + std::string(to_string(mode));
    CAPTURE(url);
    u = parse_database_url(url);
    REQUIRE(u.ok());
    CHECK(u->sslmode == mode);
  }

  u = parse_database_url(
      "host=h user=a sslmode=verify-ca sslrootcert=/etc/ca.pem sslcert=/etc/c.pem "
      "sslkey=/etc/c.key sslsni=0");
  REQUIRE(u.ok());
  CHECK(u->sslmode == SslMode::kVerifyCa);
  CHECK(u->sslrootcert == "/etc/ca.pem");
  CHECK(u->sslcert == "/etc/c.pem");
  CHECK(u->sslkey == "/etc/c.key");
  CHECK_FALSE(u->sslsni);

  // sslrootcert=system: the system store, and verify-full unless told otherwise.
  u = parse_database_url("postgresql://a@h/d?sslrootcert=system");
  REQUIRE(u.ok());
  CHECK(u->sslrootcert.empty());
  CHECK(u->sslmode == SslMode::kVerifyFull);
  u = parse_database_url("postgresql://a@h/d?sslrootcert=system&sslmode=verify-full");
  REQUIRE(u.ok());
  CHECK(u->sslrootcert.empty());
  std::string message =
      error_of(parse_database_url("postgresql://a@h/d?sslrootcert=system&sslmode=require"));
  CHECK(contains(message, "sslrootcert=system"));
  CHECK(contains(message, "verify-full"));

  message = error_of(parse_database_url("postgresql://a:pw@h/d?sslmode=requir"));
  CHECK(contains(message, "sslmode 'requir' is not valid"));
  CHECK(contains(message, "disable, allow, prefer, require, verify-ca, verify-full"));
  CHECK_FALSE(contains(message, "pw@"));

  CHECK(contains(error_of(parse_database_url("postgresql://a@h/d?sslsni=yes")), "sslsni"));
}

TEST_CASE("TOML: the TLS and auth keys") {
  constexpr std::string_view kToml = R"(
client_tls = "require"
client_tls_cert_file = "/etc/pgmux/server.crt"
client_tls_key_file = "/etc/pgmux/server.key"
auth_type = "md5"
auth_file = "/etc/pgmux/userlist.txt"
allowed_cidrs = ["10.0.0.0/8", "192.168.1.7", "fd00::/8"]
auth_failure_delay = "0"

[databases.app]
url = "postgresql://alice@db.internal/appdb?sslmode=require"
)";
  Result<Config> r = parse_toml(kToml, "pgmux.toml", Config{});
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  CHECK(r->client_tls == ClientTls::kRequire);
  CHECK(r->client_tls_cert_file == "/etc/pgmux/server.crt");
  CHECK(r->client_tls_key_file == "/etc/pgmux/server.key");
  CHECK(r->auth_type == AuthType::kMd5);
  CHECK(r->auth_file == "/etc/pgmux/userlist.txt");
  REQUIRE(r->allowed_cidrs.size() == 3);
  CHECK(r->allowed_cidrs[0].text == "10.0.0.0/8");
  CHECK(r->allowed_cidrs[1].prefix_length == 32);
  CHECK(r->allowed_cidrs[2].family == AF_INET6);
  CHECK(r->auth_failure_delay == 0ms);
  CHECK(r->find_database("app")->upstream.sslmode == SslMode::kRequire);

  r = parse_toml("auth_type = \"scram-sha-256\"\nclient_tls = \"allow\"\nallowed_cidrs = []\n",
                 "p.toml", Config{});
  REQUIRE(r.ok());
  CHECK(r->auth_type == AuthType::kScramSha256);
  CHECK(r->client_tls == ClientTls::kAllow);
  CHECK(r->allowed_cidrs.empty());

  for (std::string_view type : {"trust", "password"}) {
    r = parse_toml("auth_type = \"" + std::string(type) + "\"\n", "p.toml", Config{});
    REQUIRE(r.ok());
    CHECK(to_string(r->auth_type) == type);
  }
}

TEST_CASE("TOML: wrong TLS and auth values name the key and the choices") {
  std::string message = error_of(parse_toml("client_tls = \"on\"\n", "p.toml", Config{}));
  CHECK(contains(message, "p.toml:1:14: client_tls: 'on' is not valid"));
  CHECK(contains(message, "disable, allow, require"));

  message = error_of(parse_toml("auth_type = \"scram\"\n", "p.toml", Config{}));
  CHECK(contains(message, "auth_type: 'scram' is not valid"));
  CHECK(contains(message, "trust, scram-sha-256, md5, password"));

  CHECK(contains(error_of(parse_toml("auth_type = 1\n", "p.toml", Config{})),
                 "auth_type must be a string"));
  CHECK(contains(error_of(parse_toml("auth_file = 1\n", "p.toml", Config{})),
                 "auth_file must be a string"));

  message = error_of(parse_toml("allowed_cidrs = \"10.0.0.0/8\"\n", "p.toml", Config{}));
  CHECK(contains(message, "allowed_cidrs must be an array of strings"));
  message = error_of(parse_toml("allowed_cidrs = [\"10.0.0.0/8\", 7]\n", "p.toml", Config{}));
  CHECK(contains(message, "allowed_cidrs must be an array of strings"));
  message = error_of(parse_toml("allowed_cidrs = [\"10.0.0.0/33\"]\n", "p.toml", Config{}));
  CHECK(contains(message, "allowed_cidrs"));
  CHECK(contains(message, "'10.0.0.0/33'"));

  CHECK(contains(error_of(parse_toml("auth_failure_delay = \"soon\"\n", "p.toml", Config{})),
                 "auth_failure_delay: invalid duration"));

  message = error_of(parse_toml("auth_typ = \"md5\"\n", "p.toml", Config{}));
  CHECK(contains(message, "did you mean auth_type?"));
  CHECK(contains(message, "users"));  // Listed among the valid keys.
}

TEST_CASE("environment: the TLS and auth keys") {
  TempFile cert("env-cert", "certificate");
  TempFile key("env-key", "key");
  TempFile users("env-users", "\"bob\" \"pw\"\n");
  LoadOptions options;
  options.getenv = env_of({
      {"DATABASE_URL", "postgresql://alice@h/app?sslmode=disable"},
      {"PGMUX_CLIENT_TLS", "require"},
      {"PGMUX_CLIENT_TLS_CERT_FILE", cert.path()},
      {"PGMUX_CLIENT_TLS_KEY_FILE", key.path()},
      {"PGMUX_AUTH_TYPE", "password"},
      {"PGMUX_AUTH_FILE", users.path()},
      {"PGMUX_ALLOWED_CIDRS", "10.0.0.0/8, ::1 ,192.168.0.0/16"},
      {"PGMUX_AUTH_FAILURE_DELAY", "2s"},
  });
  Result<Config> r = load(options);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  CHECK(r->client_tls == ClientTls::kRequire);
  CHECK(r->client_tls_cert_file == cert.path());
  CHECK(r->client_tls_key_file == key.path());
  CHECK(r->auth_type == AuthType::kPassword);
  CHECK(r->auth_file == users.path());
  REQUIRE(r->find_user("bob") != nullptr);
  REQUIRE(r->allowed_cidrs.size() == 3);
  CHECK(r->allowed_cidrs[1].text == "::1");
  CHECK(r->allowed_cidrs[2].text == "192.168.0.0/16");
  CHECK(r->auth_failure_delay == 2s);
  CHECK(r->databases[0].upstream.sslmode == SslMode::kDisable);
  CHECK(r->warnings.empty());

  options.getenv = env_of(
      {{"DATABASE_URL", "postgresql://alice@h/app"}, {"PGMUX_ALLOWED_CIDRS", "10.0.0.0/8,,::1"}});
  CHECK(contains(error_of(load(options)), "PGMUX_ALLOWED_CIDRS has an empty entry"));
  options.getenv =
      env_of({{"DATABASE_URL", "postgresql://alice@h/app"}, {"PGMUX_ALLOWED_CIDRS", "10.0.0.256"}});
  CHECK(contains(error_of(load(options)), "PGMUX_ALLOWED_CIDRS: invalid address range"));
  options.getenv =
      env_of({{"DATABASE_URL", "postgresql://alice@h/app"}, {"PGMUX_AUTH_TYPE", "MD5"}});
  CHECK(contains(error_of(load(options)), "PGMUX_AUTH_TYPE: 'MD5' is not valid"));
  options.getenv = env_of({{"DATABASE_URL", "postgresql://alice@h/app?sslmode=bogus"}});
  CHECK(contains(error_of(load(options)), "DATABASE_URL: sslmode 'bogus' is not valid"));
}

TEST_CASE("[users.NAME] tables") {
  TempFile secret("user-password", "from-file\n");
  std::string toml = R"(
[users.alice]
password = "plain"
allowed_cidrs = ["10.0.0.0/8"]

[users."bob@corp"]
password = "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy"

[users.carol]
password_file = ")" + secret.path() +
                     "\"\n";
  Result<Config> r = parse_toml(toml, "p.toml", Config{});
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  REQUIRE(r->users.size() == 3);
  const User* alice = r->find_user("alice");
  REQUIRE(alice != nullptr);
  CHECK(alice->password == "plain");
  REQUIRE(alice->allowed_cidrs.size() == 1);
  CHECK(alice->allowed_cidrs[0].text == "10.0.0.0/8");
  REQUIRE(r->find_user("bob@corp") != nullptr);
  CHECK(r->find_user("bob@corp")->allowed_cidrs.empty());
  REQUIRE(r->find_user("carol") != nullptr);
  CHECK(r->find_user("carol")->password == "from-file");
  CHECK(r->warnings.empty());  // The file is 0600.

  std::string message = error_of(parse_toml("[users.dave]\npasword = \"x\"\n", "p.toml", Config{}));
  CHECK(contains(message, "unknown key 'pasword' in [users.dave] at p.toml:2:1"));
  CHECK(contains(message, "did you mean password?"));

  message = error_of(parse_toml("[users.dave]\nallowed_cidrs = []\n", "p.toml", Config{}));
  CHECK(contains(message, "[users.dave] has no password"));

  message = error_of(parse_toml(
      "[users.dave]\npassword = \"x\"\npassword_file = \"/nonexistent\"\n", "p.toml", Config{}));
  CHECK(contains(message, "both password and password_file"));

  message = error_of(
      parse_toml("[users.dave]\npassword_file = \"/nonexistent/pgmux-pw\"\n", "p.toml", Config{}));
  CHECK(contains(message, "password_file"));
  CHECK(contains(message, "/nonexistent/pgmux-pw"));

  message = error_of(parse_toml("[users.dave]\npassword = 5\n", "p.toml", Config{}));
  CHECK(contains(message, "[users.dave] password must be a string"));

  message = error_of(parse_toml("[users.dave]\npassword = \"x\"\nallowed_cidrs = [\"nope\"]\n",
                                "p.toml", Config{}));
  CHECK(contains(message, "p.toml:3:17: [users.dave] allowed_cidrs: invalid address range"));

  message = error_of(
      parse_toml("[users.dave]\npassword = \"x\"\nauth_type = \"md5\"\n", "p.toml", Config{}));
  CHECK(contains(message, "is inside [users.dave]; move top-level keys above"));

  message = error_of(parse_toml("users = 1\n", "p.toml", Config{}));
  CHECK(contains(message, "users must be a table"));
  message = error_of(parse_toml("[users]\ndave = \"x\"\n", "p.toml", Config{}));
  CHECK(contains(message, "users.dave must be a table"));
}

TEST_CASE("parse_userlist: PgBouncer's auth_file format") {
  constexpr std::string_view kText =
      "; PgBouncer style comment\n"
      "# shell style comment\n"
      "\n"
      "   \t\n"
      "\"alice\" \"plain pass\"\n"
      "  \"bo\"\"b\"\t\"say \"\"hi\"\"\" trailing remark ignored\r\n"
      "\"carol\" \"\"\n"
      "\"dave\" \"md5a1b2c3d4e5f60718293a4b5c6d7e8f90\"\n"
      "   ; indented comment\n"
      "\"erin\" \"SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy\"";  // No final newline.
  Result<std::vector<User>> r = parse_userlist(kText, "userlist.txt");
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  REQUIRE(r->size() == 5);
  CHECK((*r)[0].name == "alice");
  CHECK((*r)[0].password == "plain pass");
  CHECK((*r)[1].name == "bo\"b");
  CHECK((*r)[1].password == "say \"hi\"");
  CHECK((*r)[2].name == "carol");
  CHECK((*r)[2].password.empty());
  CHECK((*r)[3].password == "md5a1b2c3d4e5f60718293a4b5c6d7e8f90");
  CHECK((*r)[4].name == "erin");
  CHECK((*r)[4].allowed_cidrs.empty());

  r = parse_userlist("", "empty.txt");
  REQUIRE(r.ok());
  CHECK(r->empty());
}

TEST_CASE("parse_userlist: a malformed line names file and line, never the password") {
  const std::string secret = "Sup3rS3cret";
  for (const std::string& line : std::vector<std::string>{
           "alice " + secret,                  // No quotes.
           std::string("\"alice\""),           // No password.
           "\"alice\" " + secret,              // Unquoted password.
           "\"alice\" \"" + secret,            // Unterminated password.
           "\"alice " + secret,                // Unterminated user.
           "\"alice\" \"" + secret + "\"x\"",  // An undoubled quote inside.
           "\"alice\" x \"" + secret + "\"",   // Junk between the fields.
       }) {
    CAPTURE(line);
    std::string message =
        error_of(parse_userlist("\"ok\" \"fine\"\n\n" + line + "\n", "/etc/pgmux/userlist.txt"));
    CHECK(contains(message, "auth_file /etc/pgmux/userlist.txt:3: expected \"user\" \"password\""));
    CHECK_FALSE(contains(message, secret));
  }
}

}  // namespace
}  // namespace pgmux::config
