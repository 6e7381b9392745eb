// libFuzzer target: the input as the content of an auth_file (PgBouncer's
// userlist.txt format) through config's parse_userlist. Checks: each user
// written back in the same format (quotes doubled) parses to the same list.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using pgmux::config::User;
using pgmux::fuzz::check;

std::string quoted(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto users = pgmux::config::parse_userlist(text, "userlist.txt");
  if (!users) {
    check(!users.error().message.empty());
    return 0;
  }
  std::string again;
  for (const User& user : *users) {
    // A field never spans lines: the parser reads one line at a time.
    check(user.name.find('\n') == std::string::npos);
    check(user.password.find('\n') == std::string::npos);
    again += quoted(user.name) + " " + quoted(user.password) + "\n";
  }
  auto reparsed = pgmux::config::parse_userlist(again, "again.txt");
  check(reparsed.ok() && reparsed->size() == users->size());
  for (size_t i = 0; i < users->size(); ++i) {
    check((*reparsed)[i].name == (*users)[i].name);
    check((*reparsed)[i].password == (*users)[i].password);
  }
  return 0;
}
