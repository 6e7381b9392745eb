// Address ranges (allowed_cidrs): parsing "10.0.0.0/8" and matching a peer's
// socket address against a range.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "config/config.h"
#include "config/scalar_keys.h"

namespace pgmux::config {

Result<Cidr> parse_cidr(std::string_view text) {
  auto invalid = [&](std::string_view why) {
    return detail::config_error("invalid address range '" + std::string(text) +
                                "': " + std::string(why) +
                                "; write an address or address/prefix, e.g. \"10.0.0.0/8\", "
                                "\"192.168.1.7\" or \"fd00::/8\"");
  };
  Cidr cidr;
  cidr.text = std::string(text);
  const size_t slash = text.find('/');
  // inet_pton needs a NUL-terminated string.
  const std::string address(text.substr(0, slash));
  cidr.family = address.find(':') != std::string::npos ? AF_INET6 : AF_INET;
  const int max_prefix = cidr.family == AF_INET ? 32 : 128;
  if (inet_pton(cidr.family, address.c_str(), cidr.address.data()) != 1) {
    return invalid(cidr.family == AF_INET ? "not an IPv4 address" : "not an IPv6 address");
  }
  cidr.prefix_length = max_prefix;
  if (slash != std::string_view::npos) {
    std::string_view prefix = text.substr(slash + 1);
    int value = -1;
    auto [end, ec] = std::from_chars(prefix.data(), prefix.data() + prefix.size(), value);
    if (prefix.empty() || ec != std::errc() || end != prefix.data() + prefix.size() || value < 0 ||
        value > max_prefix) {
      return invalid(cidr.family == AF_INET ? "the prefix length must be from 0 to 32"
                                            : "the prefix length must be from 0 to 128");
    }
    cidr.prefix_length = value;
  }
  // "10.1.2.3/8" means 10.0.0.0/8, as in pg_hba.conf: clear the host bits.
  const size_t bytes = cidr.family == AF_INET ? 4 : 16;
  for (size_t i = 0; i < bytes; ++i) {
    const int bits_kept = std::clamp(cidr.prefix_length - static_cast<int>(i) * 8, 0, 8);
    cidr.address[i] &= static_cast<uint8_t>(0xFF00u >> bits_kept);
  }
  return cidr;
}

namespace {

constexpr std::array<uint8_t, 12> kV4MappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};

bool prefix_matches(const uint8_t* range, const uint8_t* address, int prefix_length) {
  const int whole = prefix_length / 8;
  if (std::memcmp(range, address, static_cast<size_t>(whole)) != 0) return false;
  const int rest = prefix_length % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<uint8_t>(0xFF00u >> rest);
  return (range[whole] & mask) == (address[whole] & mask);
}

}  // namespace

bool Cidr::contains(const sockaddr* peer) const {
  if (peer == nullptr) return false;
  // Copy out instead of casting: the caller's buffer need not be aligned
  // for sockaddr_in6. The address is kept in IPv6 form (IPv4 mapped into
  // ::ffff:0:0/96) so that a dual-stack listener's mapped peers and plain
  // IPv4 peers compare the same way against either kind of range.
  std::array<uint8_t, 16> v6{};
  if (peer->sa_family == AF_INET) {
    sockaddr_in in{};
    std::memcpy(&in, peer, sizeof in);
    std::copy(kV4MappedPrefix.begin(), kV4MappedPrefix.end(), v6.begin());
    std::memcpy(v6.data() + 12, &in.sin_addr, 4);
  } else if (peer->sa_family == AF_INET6) {
    sockaddr_in6 in6{};
    std::memcpy(&in6, peer, sizeof in6);
    std::memcpy(v6.data(), &in6.sin6_addr, 16);
  } else {
    return false;
  }
  if (family == AF_INET6) return prefix_matches(address.data(), v6.data(), prefix_length);
  if (family != AF_INET) return false;
  if (!std::equal(kV4MappedPrefix.begin(), kV4MappedPrefix.end(), v6.begin())) return false;
  return prefix_matches(address.data(), v6.data() + 12, prefix_length);
}

}  // namespace pgmux::config
