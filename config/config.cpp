// Defaults, scalar conversion, environment overrides, validation and load().
// The TOML reader lives in toml.cpp and the connection-string parser in
// database_url.cpp; both share the key table declared in scalar_keys.h.
#include "config/config.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
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

const std::array<KeySpec, 14> kScalarKeys = {{
    {"listen", KeyKind::kListen},
    {"max_client_conn", KeyKind::kCount, &Config::max_client_conn},
    {"client_login_timeout", KeyKind::kDuration, nullptr, &Config::client_login_timeout},
    {"max_server_connections", KeyKind::kCount, &Config::max_server_connections},
    {"min_server_connections", KeyKind::kCount, &Config::min_server_connections},
    {"query_wait_timeout", KeyKind::kDuration, nullptr, &Config::query_wait_timeout},
    {"server_lifetime", KeyKind::kDuration, nullptr, &Config::server_lifetime},
    {"server_idle_timeout", KeyKind::kDuration, nullptr, &Config::server_idle_timeout},
    {"server_connect_timeout", KeyKind::kDuration, nullptr, &Config::server_connect_timeout},
    {"server_retry_initial", KeyKind::kDuration, nullptr, &Config::server_retry_initial},
    {"server_retry_max", KeyKind::kDuration, nullptr, &Config::server_retry_max},
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

}  // namespace detail

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
  return Ok{};
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
    detail::ScalarInput input{std::nullopt, std::move(url), true, "DATABASE_URL"};
    Status status = apply_scalar(config, *detail::find_scalar_key("database_url"), input);
    if (!status) return status.error();
  }

  for (const detail::KeySpec& key : detail::kScalarKeys) {
    std::string name = detail::env_name(key.name);
    std::optional<std::string> value = getenv(name);
    if (!value || value->empty()) continue;
    detail::ScalarInput input{std::nullopt, std::move(value), true, name};
    Status status = apply_scalar(config, key, input);
    if (!status) return status.error();
  }

  Status valid = validate(config);
  if (!valid) return valid.error();
  return config;
}

}  // namespace pgmux::config
