// libFuzzer target: the input as the text of pgmux.toml through config's
// parse_toml (toml++ in header-only mode, so its parser is instrumented too),
// then validate. No exception may leave parse_toml: config converts toml++'s
// exceptions at its edge, and an escaping one aborts this target.
//
// Two parts of config read files named in the text: password_file (in
// parse_toml) and the TLS file checks (in validate). Inputs that name a
// password_file are skipped, found with toml++ itself so that a key spelled
// with escapes ("password\u005ffile") is caught too; validate runs only when
// no file name is set. That keeps the target free of I/O, and free of a
// hang on a path like /dev/zero.
//
// Found with it: toml++ 3.3.0 reaches __builtin_unreachable() on non-ASCII
// text outside strings (regressions/toml/toml_non_ascii_*); parse_toml now
// refuses such text before toml++ sees it.
#include <toml++/toml.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "config/config.h"
#include "config/scalar_keys.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using pgmux::config::Config;
using pgmux::fuzz::check;

bool names_password_file(const toml::node& node) {
  if (const toml::table* table = node.as_table()) {
    for (auto&& [key, value] : *table) {
      if (key.str() == "password_file" || names_password_file(value)) return true;
    }
  } else if (const toml::array* array = node.as_array()) {
    for (const toml::node& element : *array) {
      if (names_password_file(element)) return true;
    }
  }
  return false;
}

bool reads_files(const Config& config) {
  if (!config.client_tls_cert_file.empty() || !config.client_tls_key_file.empty()) return true;
  for (const pgmux::config::Database& db : config.databases) {
    if (!db.upstream.sslrootcert.empty()) return true;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  // The pre-check parses with toml++ only text that parse_toml would hand to
  // toml++ too: the rest is refused by parse_toml before any file is read.
  if (pgmux::config::detail::check_toml_characters(text, "pre-check").ok()) {
    try {
      if (names_password_file(toml::parse(text, std::string_view("pre-check")))) return 0;
    } catch (const toml::parse_error&) {
      // Not TOML: parse_toml reports the same error without reading a file.
    }
  }
  auto config = pgmux::config::parse_toml(text, "pgmux.toml", Config{});
  if (!config) {
    check(!config.error().message.empty());
    return 0;
  }
  if (!reads_files(*config)) (void)pgmux::config::validate(*config);
  return 0;
}
