// Internal to config/: the table of scalar keys shared by the TOML reader
// (toml.cpp) and the PGMUX_* environment overrides (config.cpp), so both
// accept exactly the same names and convert values the same way.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "config/config.h"

namespace pgmux::config::detail {

// PostgreSQL's config_file_error class; the proxy never sends these to a client.
inline constexpr std::string_view kConfigError = "F0000";

inline protocol::Error config_error(std::string message) {
  return protocol::make_error(std::string(kConfigError), std::move(message));
}

enum class KeyKind { kListen, kCount, kDuration, kLogLevel, kDatabaseUrl };

struct KeySpec {
  std::string_view name;  // The TOML key; the env variable is PGMUX_ + upper case.
  KeyKind kind;
  uint32_t Config::*count = nullptr;     // Set for kCount.
  Duration Config::*duration = nullptr;  // Set for kDuration.
};

// Every scalar key, in documentation order.
extern const std::array<KeySpec, 14> kScalarKeys;

// Returns the spec named `name`, or nullptr.
const KeySpec* find_scalar_key(std::string_view name);

// "PGMUX_" followed by the upper-cased key.
std::string env_name(std::string_view key);

// A scalar as it arrived. TOML keeps its type (integer or text); an
// environment variable is always text, so `untyped` lets integer keys parse it.
struct ScalarInput {
  std::optional<int64_t> integer;
  std::optional<std::string> text;
  bool untyped = false;
  std::string where;  // Prefix for messages: "pgmux.toml:3:1: max_client_conn" or "PGMUX_LISTEN".
};

// Converts `input` for `key` and stores it in `config`. Messages start with
// `input.where` and never repeat a value that may hold a password.
protocol::Status apply_scalar(Config& config, const KeySpec& key, const ScalarInput& input);

// Adds `database`, replacing one with the same name.
void put_database(Config& config, Database database);

}  // namespace pgmux::config::detail
