#include "bench/errors.h"

#include <algorithm>

namespace pgmux::bench {

bool is_capacity_error(std::string_view sqlstate, std::string_view message) {
  return sqlstate == "53300" || message.find("too many clients") != std::string_view::npos ||
         message.find("remaining connection slots") != std::string_view::npos ||
         message.find("MaxClientsInSessionMode") != std::string_view::npos;
}

std::string message_prefix(std::string_view message) {
  // libpq (15) prefixes connection failures with the server it tried.
  if (message.starts_with("connection to server")) {
    const size_t failed = message.find(" failed: ");
    if (failed != std::string_view::npos) message.remove_prefix(failed + 9);
  }
  for (std::string_view severity : {"FATAL:", "ERROR:"}) {
    if (message.starts_with(severity)) message.remove_prefix(severity.size());
  }
  std::string out;
  bool space = false;
  for (char c : message) {
    const bool blank = c == ' ' || c == '\n' || c == '\t' || c == '\r';
    if (blank) {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    if (out.size() >= kMessagePrefix) break;
    out += c;
  }
  // Do not end inside a UTF-8 sequence: JSON readers reject half a character.
  size_t start = out.size();
  while (start > 0 && (static_cast<unsigned char>(out[start - 1]) & 0xC0) == 0x80) --start;
  if (start > 0) {
    const auto lead = static_cast<unsigned char>(out[start - 1]);
    const size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (out.size() - (start - 1) < need) out.resize(start - 1);
  }
  return out;
}

void ErrorTable::add(std::string_view sqlstate, std::string_view message) {
  const bool capacity = is_capacity_error(sqlstate, message);
  std::string prefix = message_prefix(message);
  auto key = std::make_pair(std::string(sqlstate), prefix);
  auto [it, inserted] = kinds_.try_emplace(key);
  if (inserted) {
    it->second.sqlstate = key.first;
    it->second.message = std::move(prefix);
    it->second.capacity = capacity;
  }
  ++it->second.count;
  ++total_;
  if (capacity) ++capacity_;
}

std::vector<ErrorKind> ErrorTable::kinds() const {
  std::vector<ErrorKind> out;
  out.reserve(kinds_.size());
  for (const auto& [key, kind] : kinds_) out.push_back(kind);
  std::stable_sort(out.begin(), out.end(),
                   [](const ErrorKind& a, const ErrorKind& b) { return a.count > b.count; });
  return out;
}

}  // namespace pgmux::bench
