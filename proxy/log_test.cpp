// The JSON log lines' escaping: any message, however odd its bytes, must
// make one valid JSON string.
#include "proxy/log.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>

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

namespace pgmux::proxy {
namespace {

TEST_CASE("format_address: IPv4 as inet_ntop writes it, with the port; IPv6 in brackets") {
  struct Case {
    const char* ip;
    uint16_t port;
    const char* text;
  };
  const Case cases[] = {{"127.0.0.1", 6432, "127.0.0.1:6432"},
                        {"0.0.0.0", 0, "0.0.0.0:0"},
                        {"255.255.255.255", 65535, "255.255.255.255:65535"},
                        {"10.20.100.9", 50001, "10.20.100.9:50001"}};
  for (const Case& c : cases) {
    sockaddr_in in{};
    in.sin_family = AF_INET;
    in.sin_port = htons(c.port);
    REQUIRE(inet_pton(AF_INET, c.ip, &in.sin_addr) == 1);
    CHECK(format_address(reinterpret_cast<const sockaddr*>(&in)) == c.text);
  }
  sockaddr_in6 in6{};
  in6.sin6_family = AF_INET6;
  in6.sin6_port = htons(5432);
  REQUIRE(inet_pton(AF_INET6, "::1", &in6.sin6_addr) == 1);
  CHECK(format_address(reinterpret_cast<const sockaddr*>(&in6)) == "[::1]:5432");
}

}  // namespace
}  // namespace pgmux::proxy
