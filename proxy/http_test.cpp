#include "proxy/http.h"

#include <doctest/doctest.h>

#include <string>

namespace pgmux::proxy {
namespace {

TEST_CASE("http: a request head is complete only at its blank line") {
  const std::string request = "GET /metrics?x=1 HTTP/1.1\r\nHost: pgmux\r\nAccept: */*\r\n\r\n";
  RequestHead head;
  for (size_t n = 0; n < request.size(); ++n) {
    CHECK(parse_request_head(std::string_view(request).substr(0, n), head) ==
          HeadStatus::kIncomplete);
  }
  REQUIRE(parse_request_head(request, head) == HeadStatus::kComplete);
  CHECK(head.method == "GET");
  CHECK(head.path == "/metrics");
  // Bare LF line ends, as netcat users type them.
  REQUIRE(parse_request_head("GET /readyz HTTP/1.0\n\n", head) == HeadStatus::kComplete);
  CHECK(head.path == "/readyz");
}

TEST_CASE("http: an oversized head is refused, a malformed one too") {
  RequestHead head;
  std::string big = "GET / HTTP/1.1\r\nX-Filler: " + std::string(kMaxRequestHead, 'a');
  CHECK(parse_request_head(big, head) == HeadStatus::kTooLarge);
  CHECK(parse_request_head(big.substr(0, 100), head, 64) == HeadStatus::kTooLarge);
  CHECK(parse_request_head("HELLO\r\n\r\n", head) == HeadStatus::kMalformed);
  CHECK(parse_request_head("GET metrics HTTP/1.1\r\n\r\n", head) == HeadStatus::kMalformed);
  CHECK(parse_request_head("GET /metrics SPDY/3\r\n\r\n", head) == HeadStatus::kMalformed);
  CHECK(parse_request_head("\r\n\r\n", head) == HeadStatus::kMalformed);
}

TEST_CASE("http: another method is parsed, and its answer is 405 with Allow") {
  RequestHead head;
  REQUIRE(parse_request_head("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", head) ==
          HeadStatus::kComplete);
  CHECK(head.method == "POST");
  const std::string response = format_response(HttpReply{405, "text/plain", "only GET\n"});
  CHECK(response ==
        "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n"
        "Cache-Control: no-store\r\nConnection: close\r\nAllow: GET\r\n\r\nonly GET\n");
}

}  // namespace
}  // namespace pgmux::proxy
