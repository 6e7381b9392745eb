// Where passwords come from and what they hold: PgBouncer's auth_file format,
// password_file, the warning for a secrets file others may read, and the
// stored-password forms (md5 hash, SCRAM secret).
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "config/scalar_keys.h"

namespace pgmux::config {

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

namespace detail {

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

}  // namespace pgmux::config
