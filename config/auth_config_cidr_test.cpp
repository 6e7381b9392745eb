// Tests of allowed_cidrs address ranges: parse_cidr and Cidr::contains.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <string>
#include <string_view>

#include "config/auth_config_test_util.h"
#include "config/config.h"

namespace pgmux::config {
namespace {

using namespace auth_test_util;

sockaddr_storage socket_address(const char* text) {
  sockaddr_storage storage{};
  if (std::strchr(text, ':') != nullptr) {
    sockaddr_in6 in6{};
    in6.sin6_family = AF_INET6;
    REQUIRE(inet_pton(AF_INET6, text, &in6.sin6_addr) == 1);
    std::memcpy(&storage, &in6, sizeof in6);
  } else {
    sockaddr_in in{};
    in.sin_family = AF_INET;
    REQUIRE(inet_pton(AF_INET, text, &in.sin_addr) == 1);
    std::memcpy(&storage, &in, sizeof in);
  }
  return storage;
}

bool range_contains(std::string_view range, const char* address) {
  Result<Cidr> cidr = parse_cidr(range);
  REQUIRE_MESSAGE(cidr.ok(), range);
  sockaddr_storage storage = socket_address(address);
  return cidr->contains(reinterpret_cast<const sockaddr*>(&storage));
}

TEST_CASE("parse_cidr") {
  Result<Cidr> c = parse_cidr("10.1.2.3/8");
  REQUIRE(c.ok());
  CHECK(c->family == AF_INET);
  CHECK(c->prefix_length == 8);
  CHECK(c->text == "10.1.2.3/8");
  CHECK(c->address[0] == 10);  // Host bits cleared.
  CHECK(c->address[1] == 0);
  CHECK(c->address[3] == 0);

  c = parse_cidr("192.168.1.7");
  REQUIRE(c.ok());
  CHECK(c->prefix_length == 32);
  CHECK(c->address[3] == 7);

  c = parse_cidr("172.16.255.1/12");
  REQUIRE(c.ok());
  CHECK(c->address[1] == 16);
  CHECK(c->address[2] == 0);

  c = parse_cidr("fd00:1234::1/16");
  REQUIRE(c.ok());
  CHECK(c->family == AF_INET6);
  CHECK(c->prefix_length == 16);
  CHECK(c->address[0] == 0xfd);
  CHECK(c->address[2] == 0);
  CHECK(c->address[15] == 0);

  c = parse_cidr("::1");
  REQUIRE(c.ok());
  CHECK(c->prefix_length == 128);
  CHECK(c->address[15] == 1);

  CHECK(parse_cidr("0.0.0.0/0").ok());
  CHECK(parse_cidr("::/0").ok());
  CHECK(parse_cidr("::ffff:10.0.0.0/104").ok());

  for (std::string_view bad :
       {"", "/8", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/+8", "10.0.0.0/8x",
        "10.0.0.0/ 8", "10.0.0", "10.0.0.256", " 10.0.0.1", "10.0.0.1 ", "host.example.com",
        "::1/129", "fe80::1%eth0", "1:2:3:4:5:6:7:8:9", "10.0.0.0/8/8", "[::1]"}) {
    CAPTURE(bad);
    std::string message = error_of(parse_cidr(bad));
    CHECK(contains(message, "invalid address range '" + std::string(bad) + "'"));
  }
}

TEST_CASE("Cidr::contains: IPv4, IPv6, IPv4-mapped IPv6 and /0") {
  CHECK(range_contains("10.0.0.0/8", "10.255.1.2"));
  CHECK_FALSE(range_contains("10.0.0.0/8", "11.0.0.1"));
  CHECK(range_contains("10.1.2.3/8", "10.9.9.9"));  // Written with host bits.
  CHECK(range_contains("192.168.1.7", "192.168.1.7"));
  CHECK_FALSE(range_contains("192.168.1.7", "192.168.1.8"));
  CHECK(range_contains("172.16.0.0/12", "172.31.255.255"));
  CHECK_FALSE(range_contains("172.16.0.0/12", "172.32.0.0"));
  CHECK(range_contains("0.0.0.0/0", "203.0.113.9"));
  CHECK_FALSE(range_contains("0.0.0.0/0", "2001:db8::1"));

  CHECK(range_contains("::1", "::1"));
  CHECK_FALSE(range_contains("::1", "::2"));
  CHECK(range_contains("2001:db8::/32", "2001:db8:ffff::1"));
  CHECK_FALSE(range_contains("2001:db8::/32", "2001:db9::1"));
  CHECK(range_contains("2001:db8::/33", "2001:db8:7fff::1"));
  CHECK_FALSE(range_contains("2001:db8::/33", "2001:db8:8000::1"));
  CHECK(range_contains("::/0", "2001:db8::1"));

  // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d.
  CHECK(range_contains("10.0.0.0/8", "::ffff:10.1.2.3"));
  CHECK_FALSE(range_contains("10.0.0.0/8", "::ffff:11.1.2.3"));
  CHECK(range_contains("0.0.0.0/0", "::ffff:203.0.113.9"));
  CHECK_FALSE(range_contains("10.0.0.0/8", "::a01:203"));  // IPv4-compatible, not mapped.
  CHECK_FALSE(range_contains("10.0.0.0/8", "64:ff9b::a01:203"));
  // And a mapped range matches plain IPv4 peers alike.
  CHECK(range_contains("::ffff:10.0.0.0/104", "10.1.2.3"));
  CHECK_FALSE(range_contains("::ffff:10.0.0.0/104", "11.1.2.3"));
  CHECK_FALSE(range_contains("::1", "127.0.0.1"));

  Result<Cidr> any = parse_cidr("0.0.0.0/0");
  REQUIRE(any.ok());
  CHECK_FALSE(any->contains(nullptr));
  sockaddr_storage unix_peer{};
  unix_peer.ss_family = AF_UNIX;
  CHECK_FALSE(any->contains(reinterpret_cast<const sockaddr*>(&unix_peer)));
}

}  // namespace
}  // namespace pgmux::config
