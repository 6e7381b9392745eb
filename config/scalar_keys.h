// Internal to config/: the table of scalar keys shared by the TOML reader
// (toml.cpp) and the PGMUX_* environment overrides (load.cpp), so both
// accept exactly the same names and convert values the same way, and the
// helpers the other config/ files share.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace pgmux::config::detail {

// PostgreSQL's config_file_error class; the proxy never sends these to a client.
inline constexpr std::string_view kConfigError = "F0000";

inline protocol::Error config_error(std::string message) {
  return protocol::make_error(std::string(kConfigError), std::move(message));
}

enum class KeyKind {
  kListen,
  kCount,
  kDuration,
  kLogLevel,
  kDatabaseUrl,
  kPath,            // A file name, stored as given; empty means none.
  kClientTls,       // disable | allow | require
  kAuthType,        // trust | scram-sha-256 | md5 | password
  kSessionPinning,  // pin | refuse
  kCidrList,        // TOML: an array of strings; environment: comma-separated.
  kNameList,        // User names. TOML: an array of strings; environment: comma-separated.
  kBool,            // TOML: true | false; environment: true, false, 1, 0, on, off.
  kLogFormat,       // text | json
  kBudgetSharing,   // adaptive | off
  kMetricsListen,   // host:port, or "" for none.
};

struct KeySpec {
  std::string_view name;  // The TOML key; the env variable is PGMUX_ + upper case.
  KeyKind kind;
  uint32_t Config::*count = nullptr;                  // Set for kCount.
  Duration Config::*duration = nullptr;               // Set for kDuration.
  std::string Config::*path = nullptr;                // Set for kPath.
  std::vector<std::string> Config::*names = nullptr;  // Set for kNameList.
  bool Config::*flag = nullptr;                       // Set for kBool.
};

// Every scalar key, in documentation order.
extern const std::array<KeySpec, 37> kScalarKeys;

// Returns the spec named `name`, or nullptr.
const KeySpec* find_scalar_key(std::string_view name);

// "PGMUX_" followed by the upper-cased key.
std::string env_name(std::string_view key);

// True for trace, debug, info, warn, error, critical and off.
bool is_log_level(std::string_view level);

// A scalar as it arrived. TOML keeps its type (integer, text or an array of
// strings); an environment variable is always text, so `untyped` lets integer
// and list keys parse it.
struct ScalarInput {
  std::optional<int64_t> integer;
  std::optional<std::string> text;
  bool untyped = false;
  std::string where;  // Prefix for messages: "pgmux.toml:3:1: max_client_conn" or "PGMUX_LISTEN".
  std::optional<std::vector<std::string>> list;  // A TOML array whose elements are all strings.
  std::optional<bool> boolean;                   // A TOML boolean.
};

// Converts `input` for `key` and stores it in `config`. Messages start with
// `input.where` and never repeat a value that may hold a password.
protocol::Status apply_scalar(Config& config, const KeySpec& key, const ScalarInput& input);

// Adds `database`, replacing one with the same name.
void put_database(Config& config, Database database);

// Adds `user`, replacing one with the same name.
void put_user(Config& config, User user);

// Reads a password_file: the file's content without trailing newlines. The
// error starts with `where` and names the path, never the content.
Result<std::string> read_password_file(const std::string& path, const std::string& where);

// If the file at `path` grants any permission to group or others, appends a
// warning (once per path) saying so and how to fix it. A file that cannot be
// stat()ed adds nothing: reading it reports that problem.
void warn_if_not_private(const std::string& path, std::vector<std::string>& warnings);

// toml++ 3.3.0 (Debian 12) reaches __builtin_unreachable() in
// is_non_ascii_horizontal_whitespace() for many non-ASCII characters where it
// looks for whitespace: outside strings and comments (a bare value is
// scanned up to whitespace, quotes included), and after a backslash in a
// basic string (toml++ issues #190 and #295, fixed upstream after 3.3.0).
// That is undefined behaviour in the installed library on a typo in
// pgmux.toml, so such characters are refused here, before toml++ sees them.
// TOML allows non-ASCII text only inside strings and comments, and escapes are
// ASCII, so only the line-ending-backslash case rejects a valid document.
// Returns an error naming line and column for the first such character.
// Also used by tests/fuzz/fuzz_toml.cpp before its own toml++ call.
protocol::Status check_toml_characters(std::string_view text, std::string_view origin);

// True for "SCRAM-SHA-256$...", the form PostgreSQL stores in pg_authid.
bool is_scram_secret(std::string_view password);
// True for "md5" followed by 32 hex digits.
bool is_md5_hash(std::string_view password);

}  // namespace pgmux::config::detail
