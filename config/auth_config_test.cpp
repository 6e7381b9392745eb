// Tests for the TLS and client-authentication part of the configuration:
// upstream sslmode, client_tls, auth_type, [users.NAME], auth_file,
// allowed_cidrs and the secrets-file permission warnings.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <vector>

#include "config/config.h"

namespace pgmux::config {
namespace {

using namespace std::chrono_literals;

bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

Getenv env_of(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

// A file in the temp directory with the given mode, removed when the test ends.
class TempFile {
 public:
  TempFile(std::string_view stem, std::string_view content, mode_t mode = 0600)
      : path_(std::filesystem::temp_directory_path() /
              ("pgmux-auth-test-" + std::string(stem) + "-" + std::to_string(::getpid()))) {
    std::ofstream(path_, std::ios::binary) << content;
    REQUIRE(::chmod(path_.c_str(), mode) == 0);
  }
  ~TempFile() { std::filesystem::remove(path_); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

std::string error_of(const auto& result) {
  REQUIRE_FALSE(result.ok());
  return result.error().message;
}

Config valid_config() {
  Config c;
  Upstream u;
  u.user = "alice";
  u.dbname = "app";
  c.databases.push_back(Database{"app", u});
  return c;
}

sockaddr_storage socket_address(const char* text) {
  sockaddr_storage storage{};
  if (std::strchr(text, ':') != nullptr) {
    sockaddr_in6 in6{};
    in6.sin6_family = AF_INET6;
    REQUIRE(inet_pton(AF_INET6, text, &in6.sin6_addr) == 1);
    std::memcpy(&storage, &in6, sizeof in6);
  } else {
    sockaddr_in in{};
    in.sin_family = AF_INET;
    REQUIRE(inet_pton(AF_INET, text, &in.sin_addr) == 1);
    std::memcpy(&storage, &in, sizeof in);
  }
  return storage;
}

bool range_contains(std::string_view range, const char* address) {
  Result<Cidr> cidr = parse_cidr(range);
  REQUIRE_MESSAGE(cidr.ok(), range);
  sockaddr_storage storage = socket_address(address);
  return cidr->contains(reinterpret_cast<const sockaddr*>(&storage));
}

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

TEST_CASE("parse_cidr") {
  Result<Cidr> c = parse_cidr("10.1.2.3/8");
  REQUIRE(c.ok());
  CHECK(c->family == AF_INET);
  CHECK(c->prefix_length == 8);
  CHECK(c->text == "10.1.2.3/8");
  CHECK(c->address[0] == 10);  // Host bits cleared.
  CHECK(c->address[1] == 0);
  CHECK(c->address[3] == 0);

  c = parse_cidr("192.168.1.7");
  REQUIRE(c.ok());
  CHECK(c->prefix_length == 32);
  CHECK(c->address[3] == 7);

  c = parse_cidr("172.16.255.1/12");
  REQUIRE(c.ok());
  CHECK(c->address[1] == 16);
  CHECK(c->address[2] == 0);

  c = parse_cidr("fd00:1234::1/16");
  REQUIRE(c.ok());
  CHECK(c->family == AF_INET6);
  CHECK(c->prefix_length == 16);
  CHECK(c->address[0] == 0xfd);
  CHECK(c->address[2] == 0);
  CHECK(c->address[15] == 0);

  c = parse_cidr("::1");
  REQUIRE(c.ok());
  CHECK(c->prefix_length == 128);
  CHECK(c->address[15] == 1);

  CHECK(parse_cidr("0.0.0.0/0").ok());
  CHECK(parse_cidr("::/0").ok());
  CHECK(parse_cidr("::ffff:10.0.0.0/104").ok());

  for (std::string_view bad :
       {"", "/8", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/+8", "10.0.0.0/8x",
        "10.0.0.0/ 8", "10.0.0", "10.0.0.256", " 10.0.0.1", "10.0.0.1 ", "host.example.com",
        "::1/129", "fe80::1%eth0", "1:2:3:4:5:6:7:8:9", "10.0.0.0/8/8", "[::1]"}) {
    CAPTURE(bad);
    std::string message = error_of(parse_cidr(bad));
    CHECK(contains(message, "invalid address range '" + std::string(bad) + "'"));
  }
}

TEST_CASE("Cidr::contains: IPv4, IPv6, IPv4-mapped IPv6 and /0") {
  CHECK(range_contains("10.0.0.0/8", "10.255.1.2"));
  CHECK_FALSE(range_contains("10.0.0.0/8", "11.0.0.1"));
  CHECK(range_contains("10.1.2.3/8", "10.9.9.9"));  // Written with host bits.
  CHECK(range_contains("192.168.1.7", "192.168.1.7"));
  CHECK_FALSE(range_contains("192.168.1.7", "192.168.1.8"));
  CHECK(range_contains("172.16.0.0/12", "172.31.255.255"));
  CHECK_FALSE(range_contains("172.16.0.0/12", "172.32.0.0"));
  CHECK(range_contains("0.0.0.0/0", "203.0.113.9"));
  CHECK_FALSE(range_contains("0.0.0.0/0", "2001:db8::1"));

  CHECK(range_contains("::1", "::1"));
  CHECK_FALSE(range_contains("::1", "::2"));
  CHECK(range_contains("2001:db8::/32", "2001:db8:ffff::1"));
  CHECK_FALSE(range_contains("2001:db8::/32", "2001:db9::1"));
  CHECK(range_contains("2001:db8::/33", "2001:db8:7fff::1"));
  CHECK_FALSE(range_contains("2001:db8::/33", "2001:db8:8000::1"));
  CHECK(range_contains("::/0", "2001:db8::1"));

  // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d.
  CHECK(range_contains("10.0.0.0/8", "::ffff:10.1.2.3"));
  CHECK_FALSE(range_contains("10.0.0.0/8", "::ffff:11.1.2.3"));
  CHECK(range_contains("0.0.0.0/0", "::ffff:203.0.113.9"));
  CHECK_FALSE(range_contains("10.0.0.0/8", "::a01:203"));  // IPv4-compatible, not mapped.
  CHECK_FALSE(range_contains("10.0.0.0/8", "64:ff9b::a01:203"));
  // And a mapped range matches plain IPv4 peers alike.
  CHECK(range_contains("::ffff:10.0.0.0/104", "10.1.2.3"));
  CHECK_FALSE(range_contains("::ffff:10.0.0.0/104", "11.1.2.3"));
  CHECK_FALSE(range_contains("::1", "127.0.0.1"));

  Result<Cidr> any = parse_cidr("0.0.0.0/0");
  REQUIRE(any.ok());
  CHECK_FALSE(any->contains(nullptr));
  sockaddr_storage unix_peer{};
  unix_peer.ss_family = AF_UNIX;
  CHECK_FALSE(any->contains(reinterpret_cast<const sockaddr*>(&unix_peer)));
}

}  // namespace
}  // namespace pgmux::config
