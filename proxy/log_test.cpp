// The JSON log lines' escaping: any message, however odd its bytes, must
// make one valid JSON string.
#include "proxy/log.h"

#include <doctest/doctest.h>

#include <string>

namespace pgmux::proxy {

namespace {

std::string escaped(std::string_view text) {
  std::string out;
  append_json_escaped(text, out);
  return out;
}

}  // namespace

TEST_CASE("JSON log: quotes, backslashes and control characters are escaped") {
  CHECK(escaped("plain text") == "plain text");
  CHECK(escaped("say \"hi\"\\") == "say \\\"hi\\\"\\\\");
  CHECK(escaped("a\nb\tc\rd") == "a\\nb\\tc\\rd");
  CHECK(escaped(std::string("\x01\x1f\x7f", 3)) == "\\u0001\\u001f\\u007f");
  CHECK(escaped(std::string("nul\0end", 7)) == "nul\\u0000end");
}

TEST_CASE("JSON log: valid UTF-8 passes, invalid bytes become U+FFFD") {
  CHECK(escaped("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80") ==
        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  CHECK(escaped("\xff") == "\\ufffd");
  CHECK(escaped("\xc3") == "\\ufffd");                        // Truncated sequence.
  CHECK(escaped("\xc0\xaf") == "\\ufffd\\ufffd");             // Overlong encoding.
  CHECK(escaped("\xed\xa0\x80") == "\\ufffd\\ufffd\\ufffd");  // A surrogate.
  CHECK(escaped("a\xe2\x82") == "a\\ufffd\\ufffd");           // Cut short at the end.
}

}  // namespace pgmux::proxy
