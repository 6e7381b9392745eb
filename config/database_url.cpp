// parse_database_url: libpq's own parser (PQconninfoParse), so pgmux accepts
// exactly the URIs and key=value strings that psql does, including
// percent-encoding and quoting. Only the parts a TCP upstream needs are kept:
// address, credentials, dbname, application_name and the TLS options
// (sslmode, sslrootcert, sslcert, sslkey, sslsni). Other options are accepted
// and ignored.
#include <libpq-fe.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <memory>
#include <optional>
#include <string>

#include "config/config.h"
#include "config/scalar_keys.h"

namespace pgmux::config {
namespace {

struct ConninfoFree {
  void operator()(PQconninfoOption* options) const { PQconninfoFree(options); }
};
using ConninfoPtr = std::unique_ptr<PQconninfoOption, ConninfoFree>;

bool is_keyword(std::string_view word) {
  // PQconninfoParse("") returns every option libpq knows, all unset.
  char* errmsg = nullptr;
  ConninfoPtr all(PQconninfoParse("", &errmsg));
  PQfreemem(errmsg);
  for (PQconninfoOption* o = all.get(); o != nullptr && o->keyword != nullptr; ++o) {
    if (word == o->keyword) return true;
  }
  return false;
}

// libpq quotes pieces of the input in its messages (for instance the whole
// raw password in "invalid percent-encoded token"). When the input may carry
// a password, every quoted piece that is not an option name is masked.
std::string redact(std::string message, std::string_view input) {
  bool may_hold_secret = input.find('@') != std::string_view::npos;
  for (size_t i = 0; i + 8 <= input.size() && !may_hold_secret; ++i) {
    std::string_view word = input.substr(i, 8);
    may_hold_secret = std::equal(word.begin(), word.end(), "password", [](char a, char b) {
      return std::tolower(static_cast<unsigned char>(a)) == b;
    });
  }
  if (!may_hold_secret) return message;
  std::string out;
  size_t pos = 0;
  while (pos < message.size()) {
    size_t open = message.find('"', pos);
    size_t close = open == std::string::npos ? open : message.find('"', open + 1);
    if (close == std::string::npos) {
      out += message.substr(pos);
      break;
    }
    std::string_view quoted(message.data() + open + 1, close - open - 1);
    out += message.substr(pos, open + 1 - pos);
    bool punctuation = std::none_of(quoted.begin(), quoted.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c));
    });
    out += punctuation || is_keyword(quoted) ? std::string(quoted) : std::string("...");
    out += '"';
    pos = close + 1;
  }
  return out;
}

constexpr std::array<SslMode, 6> kSslModes = {SslMode::kDisable,  SslMode::kAllow,
                                              SslMode::kPrefer,   SslMode::kRequire,
                                              SslMode::kVerifyCa, SslMode::kVerifyFull};

Result<SslMode> parse_sslmode(std::string_view text) {
  std::string list;
  for (SslMode mode : kSslModes) {
    if (text == to_string(mode)) return mode;
    list += (list.empty() ? "" : ", ") + std::string(to_string(mode));
  }
  return detail::config_error("sslmode '" + std::string(text) + "' is not valid; use one of " +
                              list);
}

Result<uint16_t> parse_port(std::string_view text) {
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 1 || value > 65535) {
    // The value is not repeated: a mangled URL can put part of the password here.
    return detail::config_error("the port is not a number from 1 to 65535; fix the port");
  }
  return static_cast<uint16_t>(value);
}

}  // namespace

std::string_view to_string(SslMode mode) {
  switch (mode) {
    case SslMode::kDisable:
      return "disable";
    case SslMode::kAllow:
      return "allow";
    case SslMode::kPrefer:
      return "prefer";
    case SslMode::kRequire:
      return "require";
    case SslMode::kVerifyCa:
      return "verify-ca";
    case SslMode::kVerifyFull:
      return "verify-full";
  }
  return "unknown";
}

Result<Upstream> parse_database_url(std::string_view url) {
  const std::string input(url);  // PQconninfoParse needs a NUL-terminated string.
  char* errmsg = nullptr;
  ConninfoPtr options(PQconninfoParse(input.c_str(), &errmsg));
  if (!options) {
    std::string message = errmsg != nullptr ? errmsg : "out of memory";
    PQfreemem(errmsg);
    while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) {
      message.pop_back();
    }
    return detail::config_error(
        "cannot parse the connection string: " + redact(std::move(message), url) +
        " (expected postgresql://user:password@host:5432/dbname or "
        "\"host=... port=... user=... password=... dbname=...\")");
  }
  PQfreemem(errmsg);

  // Only options present in the string have a value; libpq inserts no
  // defaults (and reads no PG* variables) here.
  std::string host;
  std::string hostaddr;
  std::string port;
  std::optional<std::string> sslmode;
  Upstream upstream;
  upstream.application_name = "pgmux";
  for (PQconninfoOption* o = options.get(); o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    std::string_view key = o->keyword;
    if (key == "host") {
      host = o->val;
    } else if (key == "hostaddr") {
      hostaddr = o->val;
    } else if (key == "port") {
      port = o->val;
    } else if (key == "user") {
      upstream.user = o->val;
    } else if (key == "password") {
      upstream.password = o->val;
    } else if (key == "dbname") {
      upstream.dbname = o->val;
    } else if (key == "application_name" && o->val[0] != '\0') {
      upstream.application_name = o->val;
    } else if (key == "sslmode") {
      sslmode = o->val;
    } else if (key == "sslrootcert") {
      upstream.sslrootcert = o->val;
    } else if (key == "sslcert") {
      upstream.sslcert = o->val;
    } else if (key == "sslkey") {
      upstream.sslkey = o->val;
    } else if (key == "sslsni") {
      std::string_view sni = o->val;
      if (sni != "0" && sni != "1") {
        return detail::config_error(
            "sslsni must be 0 or 1 (1, the default, sends the host name "
            "in the TLS handshake)");
      }
      upstream.sslsni = sni == "1";
    }
  }

  // libpq 16: sslrootcert=system names the system's CA store, and then
  // defaults to (and insists on) verify-full, since any public CA could
  // otherwise vouch for a server under the wrong name.
  const bool system_roots = upstream.sslrootcert == "system";
  if (system_roots) upstream.sslrootcert.clear();
  if (sslmode) {
    Result<SslMode> mode = parse_sslmode(*sslmode);
    if (!mode) return mode.error();
    upstream.sslmode = *mode;
  } else if (system_roots) {
    upstream.sslmode = SslMode::kVerifyFull;
  }
  if (system_roots && upstream.sslmode != SslMode::kVerifyFull) {
    return detail::config_error("sslmode=" + std::string(to_string(upstream.sslmode)) +
                                " is too weak for sslrootcert=system; use sslmode=verify-full "
                                "(the default with sslrootcert=system)");
  }

  // hostaddr skips name resolution in libpq; for pgmux it is simply the address.
  if (host.empty()) host = hostaddr;
  // An unencoded '@' or '/' in a password shifts the rest of a URI into the
  // host, port or dbname; libpq accepts that, so catch it here without
  // repeating any of those values.
  const bool is_uri = url.starts_with("postgresql://") || url.starts_with("postgres://");
  if (host.find('@') != std::string::npos || port.find('@') != std::string::npos ||
      (is_uri && upstream.dbname.find('@') != std::string::npos)) {
    return detail::config_error(
        "the connection string looks malformed: an '@', ':' or '/' inside the user name or "
        "password must be percent-encoded (%40, %3A, %2F)");
  }
  if (host.find(',') != std::string::npos || port.find(',') != std::string::npos) {
    return detail::config_error(
        "the connection string lists several hosts or ports; pgmux forwards each database to "
        "exactly one upstream: keep one host:port, or configure one [databases.NAME] per "
        "server");
  }
  if (!host.empty() && host.front() == '/') {
    return detail::config_error(
        "host '" + host +
        "' is a Unix-domain socket directory; pgmux connects to PostgreSQL over TCP only: "
        "use host=127.0.0.1 (or the server's address) with its port instead");
  }
  if (!host.empty()) upstream.host = host;
  if (!port.empty()) {
    Result<uint16_t> number = parse_port(port);
    if (!number) return number.error();
    upstream.port = *number;
  }
  if (upstream.dbname.empty()) upstream.dbname = upstream.user;
  return upstream;
}

}  // namespace pgmux::config
