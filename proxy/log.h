// Logging setup and small formatting helpers. Only proxy/ logs. Levels:
// error = an operator must act; warn = degraded; info = lifecycle;
// debug = state changes; trace = per message (compiled out).
#pragma once

#include <sys/socket.h>

#include <string>
#include <string_view>

namespace pgmux::proxy {

// Sets the default spdlog logger's level and pattern. Returns false for an
// unknown level name.
bool init_logging(std::string_view level);

// "127.0.0.1:5432" or "[::1]:5432".
std::string format_address(const sockaddr* address);

}  // namespace pgmux::proxy
