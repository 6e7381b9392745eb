// Tests of load() and validate() for TLS and auth: auth_file merging, secret modes, rules.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <string>

#include "config/auth_config_test_util.h"
#include "config/config.h"

namespace pgmux::config {
namespace {

using namespace std::chrono_literals;
using namespace auth_test_util;

TEST_CASE("load: auth_file is merged after [users.NAME]; the TOML user wins") {
  TempFile userlist("merge-users",
                    "\"alice\" \"from-auth-file\"\n\"bob\" \"bob-pw\"\n\"carol\" \"carol-pw\"\n");
  TempFile file("merge.toml", "auth_file = \"" + userlist.path() +
                                  "\"\n[users.alice]\npassword = \"from-toml\"\n"
                                  "[databases.app]\nurl = \"postgresql://app@h/app\"\n");
  LoadOptions options;
  options.config_path = file.path();
  options.getenv = env_of({});
  Result<Config> r = load(options);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  REQUIRE(r->users.size() == 3);
  CHECK(r->users[0].name == "alice");
  CHECK(r->users[0].password == "from-toml");
  CHECK(r->users[1].name == "bob");
  CHECK(r->users[2].name == "carol");
  CHECK(r->warnings.empty());

  // A name twice in the auth_file itself is a mistake, not a silent choice.
  TempFile twice("twice-users", "\"bob\" \"one\"\n\"bob\" \"two\"\n");
  options.config_path.reset();
  options.getenv =
      env_of({{"DATABASE_URL", "postgresql://app@h/app"}, {"PGMUX_AUTH_FILE", twice.path()}});
  std::string message = error_of(load(options));
  CHECK(contains(message, "user 'bob' is configured twice"));

  options.getenv = env_of({{"DATABASE_URL", "postgresql://app@h/app"},
                           {"PGMUX_AUTH_FILE", "/nonexistent/pgmux-userlist.txt"}});
  message = error_of(load(options));
  CHECK(contains(message, "cannot read auth_file '/nonexistent/pgmux-userlist.txt'"));

  TempFile broken("broken-users", "\"bob\" \"one\"\nbob two\n");
  options.getenv =
      env_of({{"DATABASE_URL", "postgresql://app@h/app"}, {"PGMUX_AUTH_FILE", broken.path()}});
  message = error_of(load(options));
  CHECK(contains(message, "auth_file " + broken.path() + ":2: expected"));
}

TEST_CASE("load: secrets readable by group or others give a warning, not an error") {
  TempFile open_users("open-users", "\"bob\" \"pw\"\n", 0644);
  TempFile open_password("open-password", "pw\n", 0640);
  TempFile cert("open-cert", "certificate", 0644);  // Certificates are public.
  TempFile open_key("open-key", "key", 0604);
  TempFile file("open.toml", "client_tls_cert_file = \"" + cert.path() +
                                 "\"\nclient_tls_key_file = \"" + open_key.path() +
                                 "\"\nauth_file = \"" + open_users.path() +
                                 "\"\n[databases.app]\nurl = \"postgresql://app@h/app\"\n"
                                 "password_file = \"" +
                                 open_password.path() +
                                 "\"\n[databases.other]\nurl = \"postgresql://app@h/other\"\n"
                                 "password_file = \"" +
                                 open_password.path() + "\"\n");
  LoadOptions options;
  options.config_path = file.path();
  options.getenv = env_of({});
  Result<Config> r = load(options);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  CHECK(r->effective_client_tls() == ClientTls::kAllow);
  REQUIRE(r->warnings.size() == 3);  // One per file, although two databases share one.
  CHECK(r->warnings[0] == open_password.path() +
                              " is readable by group or others (mode 0640); run chmod 600 " +
                              open_password.path());
  CHECK(r->warnings[1] == open_users.path() +
                              " is readable by group or others (mode 0644); run chmod 600 " +
                              open_users.path());
  CHECK(r->warnings[2] == open_key.path() +
                              " is readable by group or others (mode 0604); run chmod 600 " +
                              open_key.path());

  // The same files made private: no warning.
  for (const TempFile* f : {&open_users, &open_password, &open_key}) {
    REQUIRE(::chmod(f->path().c_str(), 0600) == 0);
  }
  r = load(options);
  REQUIRE(r.ok());
  CHECK(r->warnings.empty());

  // A [users.NAME] password_file is checked too.
  TempFile user_password("open-user-password", "pw", 0644);
  Result<Config> parsed = parse_toml(
      "[users.bob]\npassword_file = \"" + user_password.path() + "\"\n", "p.toml", Config{});
  REQUIRE(parsed.ok());
  REQUIRE(parsed->warnings.size() == 1);
  CHECK(contains(parsed->warnings[0], "(mode 0644); run chmod 600 " + user_password.path()));
}

TEST_CASE("load: an md5-stored user with scram-sha-256 loads without a warning (md5 fallback)") {
  TempFile file("md5.toml",
                "[users.bob]\npassword = \"md5a1b2c3d4e5f60718293a4b5c6d7e8f90\"\n"
                "[databases.app]\nurl = \"postgresql://app@h/app\"\n");
  LoadOptions options;
  options.config_path = file.path();
  options.getenv = env_of({});
  Result<Config> r = load(options);
  REQUIRE(r.ok());
  CHECK(r->warnings.empty());
  CHECK(r->auth_type == AuthType::kScramSha256);
}

TEST_CASE("validate: client TLS rules") {
  TempFile cert("validate-cert", "certificate", 0644);
  TempFile key("validate-key", "key");

  Config c = valid_config();
  c.client_tls = ClientTls::kRequire;
  std::string message = error_of(validate(c));
  CHECK(contains(message, "client_tls"));
  CHECK(contains(message, "client_tls_cert_file"));

  c = valid_config();
  c.client_tls = ClientTls::kAllow;  // Allow without a certificate: plain only, fine.
  CHECK(validate(c).ok());

  c = valid_config();
  c.client_tls_cert_file = cert.path();
  message = error_of(validate(c));
  CHECK(contains(message, "client_tls_cert_file is set but client_tls_key_file is not"));

  c = valid_config();
  c.client_tls_key_file = key.path();
  message = error_of(validate(c));
  CHECK(contains(message, "client_tls_key_file is set but client_tls_cert_file is not"));

  c = valid_config();
  c.client_tls = ClientTls::kRequire;
  c.client_tls_cert_file = cert.path();
  c.client_tls_key_file = key.path();
  CHECK(validate(c).ok());

  c.client_tls_cert_file = "/nonexistent/server.crt";
  message = error_of(validate(c));
  CHECK(contains(message, "client_tls_cert_file: cannot read '/nonexistent/server.crt'"));

  c.client_tls_cert_file = cert.path();
  c.client_tls_key_file = std::filesystem::temp_directory_path().string();
  message = error_of(validate(c));
  CHECK(contains(message, "client_tls_key_file: cannot read"));
  CHECK(contains(message, "not a regular file"));
}

TEST_CASE("validate: upstream sslrootcert must exist for verify-ca and verify-full") {
  TempFile root("validate-root", "ca", 0644);
  for (SslMode mode : {SslMode::kVerifyCa, SslMode::kVerifyFull}) {
    Config c = valid_config();
    c.databases[0].upstream.sslmode = mode;
    CHECK(validate(c).ok());  // No sslrootcert: the system store.
    c.databases[0].upstream.sslrootcert = root.path();
    CHECK(validate(c).ok());
    c.databases[0].upstream.sslrootcert = "/nonexistent/root.crt";
    std::string message = error_of(validate(c));
    CHECK(contains(message, "database 'app'"));
    CHECK(contains(message, "sslrootcert '/nonexistent/root.crt'"));
    CHECK(contains(message, "sslmode=" + std::string(to_string(mode))));
  }
  Config c = valid_config();
  c.databases[0].upstream.sslmode = SslMode::kRequire;  // libpq only checks it if present.
  c.databases[0].upstream.sslrootcert = "/nonexistent/root.crt";
  CHECK(validate(c).ok());
}

TEST_CASE("validate: users and auth_type") {
  const std::string scram = "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy";
  Config c = valid_config();
  c.users = {User{"alice", "plain", {}}, User{"bob", scram, {}}};
  CHECK(validate(c).ok());
  for (AuthType type : {AuthType::kTrust, AuthType::kPassword}) {
    c.auth_type = type;
    CHECK(validate(c).ok());
  }
  c.auth_type = AuthType::kMd5;
  std::string message = error_of(validate(c));
  CHECK(contains(message, "user 'bob'"));
  CHECK(contains(message,
                 "md5 cannot check a SCRAM secret; give the plain password or use auth_type = "
                 "scram-sha-256"));
  CHECK_FALSE(contains(message, "c3RvcmVk"));

  c = valid_config();
  c.users = {User{"alice", "a", {}}, User{"alice", "b", {}}};
  CHECK(contains(error_of(validate(c)), "user 'alice' is configured twice"));

  c = valid_config();
  c.users = {User{"", "a", {}}};
  CHECK(contains(error_of(validate(c)), "a user has an empty name"));

  c = valid_config();
  c.auth_failure_delay = 0ms;
  CHECK(validate(c).ok());
  c.auth_failure_delay = -1ms;
  CHECK(contains(error_of(validate(c)), "auth_failure_delay"));
}

}  // namespace
}  // namespace pgmux::config
