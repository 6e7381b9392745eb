// Errors of a run, grouped by SQLSTATE and the start of the message, with
// capacity errors (the server or pooler refusing another client) told apart.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgmux::bench {

// How many characters of a message make its group.
inline constexpr size_t kMessagePrefix = 60;

// SQLSTATE 53300, or a message with "too many clients", "remaining connection
// slots" or Supavisor's "MaxClientsInSessionMode".
bool is_capacity_error(std::string_view sqlstate, std::string_view message);

// The part of a libpq message that tells errors apart: without libpq's
// 'connection to server at "h", port p failed: ' and a "FATAL:  " or
// "ERROR:  " severity, whitespace runs as one space, at most kMessagePrefix
// characters.
std::string message_prefix(std::string_view message);

struct ErrorKind {
  std::string sqlstate;  // "" when the error did not come with one (connection failures).
  std::string message;   // message_prefix() of the first message seen.
  uint64_t count = 0;
  bool capacity = false;
};

class ErrorTable {
 public:
  void add(std::string_view sqlstate, std::string_view message);
  uint64_t total() const { return total_; }
  uint64_t capacity() const { return capacity_; }
  // Most frequent first.
  std::vector<ErrorKind> kinds() const;

 private:
  std::map<std::pair<std::string, std::string>, ErrorKind> kinds_;
  uint64_t total_ = 0;
  uint64_t capacity_ = 0;
};

}  // namespace pgmux::bench
