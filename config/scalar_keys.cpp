// The scalar keys: their table (shared by the TOML reader and the PGMUX_*
// environment overrides), durations, and the conversion of one value into
// its Config field.
#include "config/scalar_keys.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace pgmux::config {

using protocol::Ok;
using protocol::Status;

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

const std::array<KeySpec, 37> kScalarKeys = {{
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
    {"budget_sharing", KeyKind::kBudgetSharing},
    {"budget_survey_interval", KeyKind::kDuration, nullptr, &Config::budget_survey_interval},
    {"max_prepared_statements", KeyKind::kCount, &Config::max_prepared_statements},
    {"session_pinning", KeyKind::kSessionPinning},
    {"max_pinned_server_connections", KeyKind::kCount, &Config::max_pinned_server_connections},
    {"max_message_size", KeyKind::kCount, &Config::max_message_size},
    {"log_level", KeyKind::kLogLevel},
    {"log_format", KeyKind::kLogFormat},
    {"stats_period", KeyKind::kDuration, nullptr, &Config::stats_period},
    {"admin_users", KeyKind::kNameList, nullptr, nullptr, nullptr, &Config::admin_users},
    {"stats_users", KeyKind::kNameList, nullptr, nullptr, nullptr, &Config::stats_users},
    {"metrics_listen", KeyKind::kMetricsListen},
    {"shutdown_timeout", KeyKind::kDuration, nullptr, &Config::shutdown_timeout},
    {"so_reuseport", KeyKind::kBool, nullptr, nullptr, nullptr, nullptr, &Config::so_reuseport},
    {"busy_poll_us", KeyKind::kCount, &Config::busy_poll_us},
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

}  // namespace

bool is_log_level(std::string_view level) {
  return std::find(kLogLevels.begin(), kLogLevels.end(), level) != kLogLevels.end();
}

namespace {

constexpr std::array<ClientTls, 3> kClientTlsModes = {ClientTls::kDisable, ClientTls::kAllow,
                                                      ClientTls::kRequire};
constexpr std::array<SessionPinning, 2> kPinningPolicies = {SessionPinning::kPin,
                                                            SessionPinning::kRefuse};
constexpr std::array<LogFormat, 2> kLogFormats = {LogFormat::kText, LogFormat::kJson};
constexpr std::array<BudgetSharing, 2> kBudgetSharings = {BudgetSharing::kAdaptive,
                                                          BudgetSharing::kOff};
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
Status parse_listen(std::string_view text, const std::string& where, std::string& host_out,
                    uint16_t& port_out) {
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
  host_out = std::string(host);
  port_out = static_cast<uint16_t>(value);
  return Ok{};
}

// A list of names: a TOML array of strings, or comma-separated text.
Status parse_names(const ScalarInput& in, std::vector<std::string>& out) {
  std::vector<std::string> items;
  if (in.list) {
    items = *in.list;
  } else if (in.untyped && in.text) {
    items = in.text->empty() ? std::vector<std::string>{} : split_list(*in.text);
  } else {
    return config_error(in.where + " must be an array of user names, e.g. [\"admin\"]");
  }
  for (const std::string& item : items) {
    if (item.empty()) {
      return config_error(in.where + " has an empty entry; list user names separated by commas");
    }
  }
  out = std::move(items);
  return Ok{};
}

Status parse_bool(const ScalarInput& in, bool& out) {
  if (in.boolean) {
    out = *in.boolean;
    return Ok{};
  }
  if (in.untyped && in.text) {
    const std::string& t = *in.text;
    if (t == "true" || t == "1" || t == "on" || t == "yes") {
      out = true;
      return Ok{};
    }
    if (t == "false" || t == "0" || t == "off" || t == "no") {
      out = false;
      return Ok{};
    }
  }
  return config_error(in.where + " must be true or false");
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
      return parse_listen(*in.text, in.where, config.listen_host, config.listen_port);
    case KeyKind::kMetricsListen:
      if (!in.text) {
        return config_error(in.where + " must be a string like \"127.0.0.1:9930\", or \"\"");
      }
      if (in.text->empty()) {
        config.metrics_host.clear();
        config.metrics_port = 0;
        return Ok{};
      }
      return parse_listen(*in.text, in.where, config.metrics_host, config.metrics_port);
    case KeyKind::kNameList:
      return parse_names(in, config.*key.names);
    case KeyKind::kBool:
      return parse_bool(in, config.*key.flag);
    case KeyKind::kLogFormat:
      return parse_enum(kLogFormats, in, config.log_format);
    case KeyKind::kBudgetSharing:
      return parse_enum(kBudgetSharings, in, config.budget_sharing);
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

}  // namespace detail

}  // namespace pgmux::config
