// libFuzzer target: the input as a DATABASE_URL (a libpq URI or key=value
// string) through config's parse_database_url, which uses libpq's
// PQconninfoParse. Checks: an accepted URL gives a TCP upstream (a host that
// is not a socket directory, a port from 1) whose database defaults to the
// user name.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "config/config.h"
#include "tests/fuzz/fuzz_util.h"

using pgmux::fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view url(reinterpret_cast<const char*>(data), size);
  auto upstream = pgmux::config::parse_database_url(url);
  if (!upstream) {
    check(!upstream.error().message.empty());
    return 0;
  }
  check(!upstream->host.empty() && upstream->host.front() != '/');
  check(upstream->port >= 1);
  check(!upstream->dbname.empty() || upstream->user.empty());
  check(!upstream->application_name.empty());
  return 0;
}
