// Defaults, scalar conversion, environment overrides, address ranges, the
// auth_file reader, validation and load(). The TOML reader lives in toml.cpp
// and the connection-string parser in database_url.cpp; both share the key
// table declared in scalar_keys.h.
#include "config/config.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

#include "config/scalar_keys.h"

namespace pgmux::config {

using protocol::Error;
using protocol::Ok;
using protocol::Status;

std::string Upstream::endpoint() const {
  // An IPv6 literal needs brackets so that the port stays unambiguous.
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

const Database* Config::find_database(std::string_view name) const {
  for (const Database& db : databases) {
    if (db.name == name) return &db;
  }
  return nullptr;
}

const User* Config::find_user(std::string_view name) const {
  for (const User& user : users) {
    if (user.name == name) return &user;
  }
  return nullptr;
}

std::string_view to_string(AuthType type) {
  switch (type) {
    case AuthType::kTrust:
      return "trust";
    case AuthType::kScramSha256:
      return "scram-sha-256";
    case AuthType::kMd5:
      return "md5";
    case AuthType::kPassword:
      return "password";
  }
  return "unknown";
}

std::string_view to_string(SessionPinning policy) {
  switch (policy) {
    case SessionPinning::kPin:
      return "pin";
    case SessionPinning::kRefuse:
      return "refuse";
  }
  return "unknown";
}

std::string_view to_string(ClientTls mode) {
  switch (mode) {
    case ClientTls::kDisable:
      return "disable";
    case ClientTls::kAllow:
      return "allow";
    case ClientTls::kRequire:
      return "require";
  }
  return "unknown";
}

Result<Cidr> parse_cidr(std::string_view text) {
  auto invalid = [&](std::string_view why) {
    return detail::config_error("invalid address range '" + std::string(text) +
                                "': " + std::string(why) +
                                "; write an address or address/prefix, e.g. \"10.0.0.0/8\", "
                                "\"192.168.1.7\" or \"fd00::/8\"");
  };
  Cidr cidr;
  cidr.text = std::string(text);
  const size_t slash = text.find('/');
  // inet_pton needs a NUL-terminated string.
  const std::string address(text.substr(0, slash));
  cidr.family = address.find(':') != std::string::npos ? AF_INET6 : AF_INET;
  const int max_prefix = cidr.family == AF_INET ? 32 : 128;
  if (inet_pton(cidr.family, address.c_str(), cidr.address.data()) != 1) {
    return invalid(cidr.family == AF_INET ? "not an IPv4 address" : "not an IPv6 address");
  }
  cidr.prefix_length = max_prefix;
  if (slash != std::string_view::npos) {
    std::string_view prefix = text.substr(slash + 1);
    int value = -1;
    auto [end, ec] = std::from_chars(prefix.data(), prefix.data() + prefix.size(), value);
    if (prefix.empty() || ec != std::errc() || end != prefix.data() + prefix.size() || value < 0 ||
        value > max_prefix) {
      return invalid(cidr.family == AF_INET ? "the prefix length must be from 0 to 32"
                                            : "the prefix length must be from 0 to 128");
    }
    cidr.prefix_length = value;
  }
  // "10.1.2.3/8" means 10.0.0.0/8, as in pg_hba.conf: clear the host bits.
  const size_t bytes = cidr.family == AF_INET ? 4 : 16;
  for (size_t i = 0; i < bytes; ++i) {
    const int bits_kept = std::clamp(cidr.prefix_length - static_cast<int>(i) * 8, 0, 8);
    cidr.address[i] &= static_cast<uint8_t>(0xFF00u >> bits_kept);
  }
  return cidr;
}

namespace {

constexpr std::array<uint8_t, 12> kV4MappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};

bool prefix_matches(const uint8_t* range, const uint8_t* address, int prefix_length) {
  const int whole = prefix_length / 8;
  if (std::memcmp(range, address, static_cast<size_t>(whole)) != 0) return false;
  const int rest = prefix_length % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<uint8_t>(0xFF00u >> rest);
  return (range[whole] & mask) == (address[whole] & mask);
}

}  // namespace

bool Cidr::contains(const sockaddr* peer) const {
  if (peer == nullptr) return false;
  // Copy out instead of casting: the caller's buffer need not be aligned
  // for sockaddr_in6. The address is kept in IPv6 form (IPv4 mapped into
  // ::ffff:0:0/96) so that a dual-stack listener's mapped peers and plain
  // IPv4 peers compare the same way against either kind of range.
  std::array<uint8_t, 16> v6{};
  if (peer->sa_family == AF_INET) {
    sockaddr_in in{};
    std::memcpy(&in, peer, sizeof in);
    std::copy(kV4MappedPrefix.begin(), kV4MappedPrefix.end(), v6.begin());
    std::memcpy(v6.data() + 12, &in.sin_addr, 4);
  } else if (peer->sa_family == AF_INET6) {
    sockaddr_in6 in6{};
    std::memcpy(&in6, peer, sizeof in6);
    std::memcpy(v6.data(), &in6.sin6_addr, 16);
  } else {
    return false;
  }
  if (family == AF_INET6) return prefix_matches(address.data(), v6.data(), prefix_length);
  if (family != AF_INET) return false;
  if (!std::equal(kV4MappedPrefix.begin(), kV4MappedPrefix.end(), v6.begin())) return false;
  return prefix_matches(address.data(), v6.data() + 12, prefix_length);
}

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }

// Reads one double-quoted field starting at line[pos] == '"'; "" inside
// stands for one quote. Advances pos past the closing quote.
std::optional<std::string> quoted_field(std::string_view line, size_t& pos) {
  if (pos >= line.size() || line[pos] != '"') return std::nullopt;
  std::string value;
  for (size_t i = pos + 1; i < line.size(); ++i) {
    if (line[i] != '"') {
      value += line[i];
    } else if (i + 1 < line.size() && line[i + 1] == '"') {
      value += '"';
      ++i;
    } else {
      pos = i + 1;
      return value;
    }
  }
  return std::nullopt;  // No closing quote on this line.
}

}  // namespace

Result<std::vector<User>> parse_userlist(std::string_view text, std::string_view origin) {
  std::vector<User> users;
  size_t line_number = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    start = end + 1;
    ++line_number;

    size_t pos = 0;
    while (pos < line.size() && is_space(line[pos])) ++pos;
    if (pos == line.size() || line[pos] == ';' || line[pos] == '#') continue;

    // The message never quotes the line: it holds a password.
    auto malformed = [&] {
      return detail::config_error("auth_file " + std::string(origin) + ":" +
                                  std::to_string(line_number) +
                                  ": expected \"user\" \"password\" (write a quote inside "
                                  "either as two quotes, \"\")");
    };
    std::optional<std::string> name = quoted_field(line, pos);
    if (!name) return malformed();
    while (pos < line.size() && is_space(line[pos])) ++pos;
    std::optional<std::string> password = quoted_field(line, pos);
    if (!password) return malformed();
    // PgBouncer ignores the rest of the line. It must at least be set apart
    // by whitespace: "pa"ss" is a lone quote inside the password, not the
    // password "pa" followed by a remark.
    if (pos < line.size() && !is_space(line[pos])) return malformed();
    users.push_back(User{std::move(*name), std::move(*password), {}});
  }
  return users;
}

Getenv process_getenv() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

Result<Duration> parse_duration(std::string_view text) {
  auto invalid = [&] {
    return detail::config_error("invalid duration '" + std::string(text) +
                                "': use a whole number with a unit (ms, s, m, h, d), e.g. "
                                "\"250ms\" or \"30s\", or a bare number of seconds");
  };
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  if (digits == 0) return invalid();
  int64_t number = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + digits, number);
  if (ec != std::errc() || end != text.data() + digits) return invalid();

  std::string_view unit = text.substr(digits);
  int64_t scale_ms = 0;
  if (unit.empty() || unit == "s") {
    scale_ms = 1000;
  } else if (unit == "ms") {
    scale_ms = 1;
  } else if (unit == "m") {
    scale_ms = int64_t{60} * 1000;
  } else if (unit == "h") {
    scale_ms = int64_t{60} * 60 * 1000;
  } else if (unit == "d") {
    scale_ms = int64_t{24} * 60 * 60 * 1000;
  } else {
    return invalid();
  }
  if (number > std::numeric_limits<int64_t>::max() / scale_ms) {
    return detail::config_error("duration '" + std::string(text) + "' is too large");
  }
  return Duration(number * scale_ms);
}

namespace detail {

const std::array<KeySpec, 26> kScalarKeys = {{
    {"listen", KeyKind::kListen},
    {"max_client_conn", KeyKind::kCount, &Config::max_client_conn},
    {"client_login_timeout", KeyKind::kDuration, nullptr, &Config::client_login_timeout},
    {"client_tls", KeyKind::kClientTls},
    {"client_tls_cert_file", KeyKind::kPath, nullptr, nullptr, &Config::client_tls_cert_file},
    {"client_tls_key_file", KeyKind::kPath, nullptr, nullptr, &Config::client_tls_key_file},
    {"auth_type", KeyKind::kAuthType},
    {"auth_file", KeyKind::kPath, nullptr, nullptr, &Config::auth_file},
    {"allowed_cidrs", KeyKind::kCidrList},
    {"auth_failure_delay", KeyKind::kDuration, nullptr, &Config::auth_failure_delay},
    {"max_server_connections", KeyKind::kCount, &Config::max_server_connections},
    {"min_server_connections", KeyKind::kCount, &Config::min_server_connections},
    {"query_wait_timeout", KeyKind::kDuration, nullptr, &Config::query_wait_timeout},
    {"server_lifetime", KeyKind::kDuration, nullptr, &Config::server_lifetime},
    {"server_idle_timeout", KeyKind::kDuration, nullptr, &Config::server_idle_timeout},
    {"server_check_delay", KeyKind::kDuration, nullptr, &Config::server_check_delay},
    {"server_connect_timeout", KeyKind::kDuration, nullptr, &Config::server_connect_timeout},
    {"server_retry_initial", KeyKind::kDuration, nullptr, &Config::server_retry_initial},
    {"server_retry_max", KeyKind::kDuration, nullptr, &Config::server_retry_max},
    {"server_probe_interval", KeyKind::kDuration, nullptr, &Config::server_probe_interval},
    {"max_prepared_statements", KeyKind::kCount, &Config::max_prepared_statements},
    {"session_pinning", KeyKind::kSessionPinning},
    {"max_pinned_server_connections", KeyKind::kCount, &Config::max_pinned_server_connections},
    {"max_message_size", KeyKind::kCount, &Config::max_message_size},
    {"log_level", KeyKind::kLogLevel},
    {"database_url", KeyKind::kDatabaseUrl},
}};

const KeySpec* find_scalar_key(std::string_view name) {
  for (const KeySpec& key : kScalarKeys) {
    if (key.name == name) return &key;
  }
  return nullptr;
}

std::string env_name(std::string_view key) {
  std::string name = "PGMUX_";
  for (char c : key) name += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return name;
}

namespace {

constexpr std::array<std::string_view, 7> kLogLevels = {"trace", "debug",    "info", "warn",
                                                        "error", "critical", "off"};

bool is_log_level(std::string_view level) {
  return std::find(kLogLevels.begin(), kLogLevels.end(), level) != kLogLevels.end();
}

constexpr std::array<ClientTls, 3> kClientTlsModes = {ClientTls::kDisable, ClientTls::kAllow,
                                                      ClientTls::kRequire};
constexpr std::array<SessionPinning, 2> kPinningPolicies = {SessionPinning::kPin,
                                                           SessionPinning::kRefuse};
constexpr std::array<AuthType, 4> kAuthTypes = {AuthType::kTrust, AuthType::kScramSha256,
                                                AuthType::kMd5, AuthType::kPassword};

// Finds the enumerator spelled `text`; the message lists the spellings.
template <class Enum, size_t N>
Status parse_enum(const std::array<Enum, N>& all, const ScalarInput& in, Enum& out) {
  std::string list;
  for (Enum value : all) {
    if (in.text && *in.text == to_string(value)) {
      out = value;
      return Ok{};
    }
    list += (list.empty() ? "" : ", ") + std::string(to_string(value));
  }
  if (!in.text) return config_error(in.where + " must be a string, one of " + list);
  return config_error(in.where + ": '" + *in.text + "' is not valid; use one of " + list);
}

// "10.0.0.0/8, 192.168.0.0/16" -> {"10.0.0.0/8", "192.168.0.0/16"}.
std::vector<std::string> split_list(std::string_view text) {
  std::vector<std::string> items;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string_view::npos) comma = text.size();
    std::string_view item = text.substr(start, comma - start);
    while (!item.empty() && std::isspace(static_cast<unsigned char>(item.front()))) {
      item.remove_prefix(1);
    }
    while (!item.empty() && std::isspace(static_cast<unsigned char>(item.back()))) {
      item.remove_suffix(1);
    }
    items.emplace_back(item);
    start = comma + 1;
  }
  return items;
}

// "host:port" or "[v6]:port"; port 0 asks the kernel for a free one.
Status parse_listen(std::string_view text, const std::string& where, Config& config) {
  auto invalid = [&](std::string_view why) -> Status {
    return config_error(where + ": invalid listen address '" + std::string(text) +
                        "': " + std::string(why) +
                        "; use host:port, e.g. \"127.0.0.1:6432\", \"0.0.0.0:6432\" or "
                        "\"[::1]:6432\"");
  };
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return invalid("an IPv6 address needs the form [address]:port");
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return invalid("the port is missing");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return invalid("put an IPv6 address in brackets");
    }
  }
  if (host.empty()) return invalid("the host is empty");
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value > 65535) {
    return invalid("the port must be a number from 0 to 65535");
  }
  config.listen_host = std::string(host);
  config.listen_port = static_cast<uint16_t>(value);
  return Ok{};
}

}  // namespace

Status apply_scalar(Config& config, const KeySpec& key, const ScalarInput& in) {
  switch (key.kind) {
    case KeyKind::kCount: {
      std::optional<int64_t> number = in.integer;
      if (!number && in.untyped && in.text) {
        int64_t parsed = 0;
        const std::string& t = *in.text;
        auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), parsed);
        if (ec == std::errc() && end == t.data() + t.size()) number = parsed;
      }
      if (!number) return config_error(in.where + " must be an integer, e.g. 15");
      if (*number < 0 || *number > std::numeric_limits<uint32_t>::max()) {
        return config_error(in.where + " must be an integer from 0 to 4294967295");
      }
      config.*key.count = static_cast<uint32_t>(*number);
      return Ok{};
    }
    case KeyKind::kDuration: {
      std::string text = in.integer ? std::to_string(*in.integer) : in.text.value_or("");
      if (!in.integer && !in.text) {
        return config_error(in.where + " must be a duration string such as \"30s\" or " +
                            "\"250ms\", or an integer number of seconds");
      }
      Result<Duration> duration = parse_duration(text);
      if (!duration) return config_error(in.where + ": " + duration.error().message);
      config.*key.duration = *duration;
      return Ok{};
    }
    case KeyKind::kListen:
      if (!in.text) return config_error(in.where + " must be a string like \"127.0.0.1:6432\"");
      return parse_listen(*in.text, in.where, config);
    case KeyKind::kLogLevel:
      if (!in.text) return config_error(in.where + " must be a string such as \"info\"");
      if (!is_log_level(*in.text)) {
        return config_error(in.where + ": unknown log level '" + *in.text +
                            "'; use one of trace, debug, info, warn, error, critical, off");
      }
      config.log_level = *in.text;
      return Ok{};
    case KeyKind::kDatabaseUrl: {
      // Never echo the URL: it usually carries the password.
      if (!in.text) {
        return config_error(in.where + " must be a string like \"postgresql://user@host/db\"");
      }
      Result<Upstream> upstream = parse_database_url(*in.text);
      if (!upstream) return config_error(in.where + ": " + upstream.error().message);
      put_database(config, Database{upstream->dbname, std::move(*upstream)});
      return Ok{};
    }
    case KeyKind::kPath:
      if (!in.text) return config_error(in.where + " must be a string (a file path)");
      config.*key.path = *in.text;
      return Ok{};
    case KeyKind::kClientTls: {
      ClientTls mode = ClientTls::kDisable;
      Status status = parse_enum(kClientTlsModes, in, mode);
      if (!status) return status;
      config.client_tls = mode;
      return Ok{};
    }
    case KeyKind::kAuthType:
      return parse_enum(kAuthTypes, in, config.auth_type);
    case KeyKind::kSessionPinning:
      return parse_enum(kPinningPolicies, in, config.session_pinning);
    case KeyKind::kCidrList: {
      std::vector<std::string> items;
      if (in.list) {
        items = *in.list;
      } else if (in.untyped && in.text) {
        items = split_list(*in.text);
      } else {
        return config_error(in.where +
                            " must be an array of strings, e.g. [\"10.0.0.0/8\", \"::1\"]");
      }
      std::vector<Cidr> ranges;
      for (const std::string& item : items) {
        if (item.empty()) {
          return config_error(in.where +
                              " has an empty entry; list address ranges such as "
                              "\"10.0.0.0/8\", separated by single commas");
        }
        Result<Cidr> range = parse_cidr(item);
        if (!range) return config_error(in.where + ": " + range.error().message);
        ranges.push_back(std::move(*range));
      }
      config.allowed_cidrs = std::move(ranges);
      return Ok{};
    }
  }
  return config_error(in.where + ": internal error: unhandled key kind");
}

void put_database(Config& config, Database database) {
  for (Database& existing : config.databases) {
    if (existing.name == database.name) {
      existing = std::move(database);
      return;
    }
  }
  config.databases.push_back(std::move(database));
}

void put_user(Config& config, User user) {
  for (User& existing : config.users) {
    if (existing.name == user.name) {
      existing = std::move(user);
      return;
    }
  }
  config.users.push_back(std::move(user));
}

Result<std::string> read_password_file(const std::string& path, const std::string& where) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return config_error(where + ": cannot read password_file '" + path +
                        "'; check that it exists and that pgmux may read it");
  }
  std::ostringstream content;
  content << in.rdbuf();
  std::string password = content.str();
  // Files written by editors and `echo` end in a newline that is not part of it.
  while (!password.empty() && (password.back() == '\n' || password.back() == '\r')) {
    password.pop_back();
  }
  return password;
}

void warn_if_not_private(const std::string& path, std::vector<std::string>& warnings) {
  struct stat st {};
  // stat() follows symlinks: what matters is who can read the content.
  if (path.empty() || ::stat(path.c_str(), &st) != 0) return;
  const unsigned mode = static_cast<unsigned>(st.st_mode) & 07777u;
  if ((mode & 077u) == 0) return;
  char octal[8];
  std::snprintf(octal, sizeof octal, "%04o", mode);
  std::string warning =
      path + " is readable by group or others (mode " + octal + "); run chmod 600 " + path;
  if (std::find(warnings.begin(), warnings.end(), warning) == warnings.end()) {
    warnings.push_back(std::move(warning));
  }
}

bool is_scram_secret(std::string_view password) { return password.starts_with("SCRAM-SHA-256$"); }

bool is_md5_hash(std::string_view password) {
  return password.size() == 35 && password.starts_with("md5") &&
         std::all_of(password.begin() + 3, password.end(),
                     [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; });
}

}  // namespace detail

namespace {

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
  const std::array<std::pair<std::string_view, Duration>, 7> timeouts = {{
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

namespace {

Result<std::string> read_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return detail::config_error("cannot read config file '" + path + "': " + std::strerror(errno) +
                                "; check the path given to pgmux");
  }
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad()) return detail::config_error("cannot read config file '" + path + "'");
  return content.str();
}

// Reads config.auth_file, if set, and appends its users. A [users.NAME]
// table wins over an auth_file line for the same user. Only the TOML names
// are checked, so a name listed twice in the file is left for validate().
Status merge_auth_file(Config& config) {
  if (config.auth_file.empty()) return Ok{};
  std::ifstream in(config.auth_file, std::ios::binary);
  if (!in) {
    return detail::config_error("cannot read auth_file '" + config.auth_file +
                                "': " + std::strerror(errno) +
                                "; check the path and that pgmux may read it");
  }
  std::ostringstream content;
  content << in.rdbuf();
  Result<std::vector<User>> listed = parse_userlist(content.str(), config.auth_file);
  if (!listed) return listed.error();
  const auto from_toml = static_cast<std::ptrdiff_t>(config.users.size());
  for (User& user : *listed) {
    bool in_toml = std::any_of(config.users.begin(), config.users.begin() + from_toml,
                               [&](const User& u) { return u.name == user.name; });
    if (!in_toml) config.users.push_back(std::move(user));
  }
  return Ok{};
}

// Warnings that need the final configuration (after the environment).
// password_file warnings were added while reading the TOML.
void add_secret_warnings(Config& config) {
  if (!config.auth_file.empty()) detail::warn_if_not_private(config.auth_file, config.warnings);
  detail::warn_if_not_private(config.client_tls_key_file, config.warnings);
}

}  // namespace

Result<Config> load(const LoadOptions& options) {
  const Getenv getenv = options.getenv ? options.getenv : process_getenv();
  Config config;

  if (options.config_path) {
    Result<std::string> text = read_config_file(*options.config_path);
    if (!text) return text.error();
    Result<Config> parsed = parse_toml(*text, *options.config_path, std::move(config));
    if (!parsed) return parsed.error();
    config = std::move(*parsed);
  }

  // An empty variable counts as unset: container tooling often exports "".
  if (std::optional<std::string> url = getenv("DATABASE_URL"); url && !url->empty()) {
    detail::ScalarInput input{std::nullopt, std::move(url), true, "DATABASE_URL", std::nullopt};
    Status status = apply_scalar(config, *detail::find_scalar_key("database_url"), input);
    if (!status) return status.error();
  }

  for (const detail::KeySpec& key : detail::kScalarKeys) {
    std::string name = detail::env_name(key.name);
    std::optional<std::string> value = getenv(name);
    if (!value || value->empty()) continue;
    detail::ScalarInput input{std::nullopt, std::move(value), true, name, std::nullopt};
    Status status = apply_scalar(config, key, input);
    if (!status) return status.error();
  }

  Status users = merge_auth_file(config);
  if (!users) return users.error();
  add_secret_warnings(config);

  Status valid = validate(config);
  if (!valid) return valid.error();
  return config;
}

}  // namespace pgmux::config
