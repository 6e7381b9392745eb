// Logging setup and small formatting helpers. Only proxy/ logs. Levels:
// error = an operator must act; warn = degraded; info = lifecycle;
// debug = state changes; trace = per message (compiled out).
#pragma once

#include <netdb.h>
#include <sys/socket.h>

#include <string>
#include <string_view>

namespace pgmux::proxy {

// Sets the default spdlog logger's level and format: text lines, or with
// `json` one JSON object per line ({"time":..., "level":..., "msg":...}).
// Returns false for an unknown level name.
bool init_logging(std::string_view level, bool json = false);
// Sets the level only (reload). Returns false for an unknown level name.
bool set_log_level(std::string_view level);

// Appends `text` as the inside of a JSON string: quotes, backslashes and
// control characters escaped, bytes that are not valid UTF-8 replaced by
// U+FFFD, so any message makes a valid JSON line.
void append_json_escaped(std::string_view text, std::string& out);

// "127.0.0.1:5432" or "[::1]:5432".
std::string format_address(const sockaddr* address);

// The address to connect to from a resolver's list: the first IPv4 one, else
// the first. "localhost" often resolves to ::1 first while servers commonly
// listen on 127.0.0.1 only. REQUIRES: result != nullptr.
const sockaddr* preferred_address(const addrinfo* result);

}  // namespace pgmux::proxy
