#include "protocol/auth_messages.h"

#include <cstring>

#include "protocol/sqlstate.h"
#include "protocol/wire.h"

namespace pgmux::protocol {
namespace {

// Writes 'R', a length placeholder and the code; returns where the length is.
size_t begin_auth(Bytes& out, int32_t code) {
  const size_t at = wire::begin_message(out, 'R');
  wire::put_i32(out, code);
  return at;
}

void finish(Bytes& out, size_t at) { wire::patch_length(out, at); }

Error malformed(const char* what) {
  return Error{std::string(sqlstate::kProtocolViolation), std::string("malformed ") + what};
}

// The body of a whole 'p' message, or an error.
Result<std::string_view> password_body(ByteView message, const char* what) {
  if (message.size() < kMessageHeaderSize || message[0] != 'p' ||
      read_u32(message.data() + 1) + 1 != message.size()) {
    return malformed(what);
  }
  return std::string_view(reinterpret_cast<const char*>(message.data()) + kMessageHeaderSize,
                          message.size() - kMessageHeaderSize);
}

}  // namespace

void append_authentication_cleartext(Bytes& out) {
  finish(out, begin_auth(out, kAuthCleartextPassword));
}

void append_authentication_md5(Bytes& out, const std::array<uint8_t, 4>& salt) {
  const size_t start = begin_auth(out, kAuthMd5Password);
  out.append(reinterpret_cast<const char*>(salt.data()), salt.size());
  finish(out, start);
}

void append_authentication_sasl(Bytes& out, const std::vector<std::string_view>& mechanisms) {
  const size_t start = begin_auth(out, kAuthSasl);
  for (std::string_view m : mechanisms) {
    out.append(m);
    out.push_back('\0');
  }
  out.push_back('\0');
  finish(out, start);
}

void append_authentication_sasl_continue(Bytes& out, std::string_view data) {
  const size_t start = begin_auth(out, kAuthSaslContinue);
  out.append(data);
  finish(out, start);
}

void append_authentication_sasl_final(Bytes& out, std::string_view data) {
  const size_t start = begin_auth(out, kAuthSaslFinal);
  out.append(data);
  finish(out, start);
}

Result<std::string_view> parse_password_message(ByteView message) {
  auto body = password_body(message, "PasswordMessage");
  if (!body) return body.error();
  std::string_view text = *body;
  if (text.empty() || text.back() != '\0' || text.find('\0') != text.size() - 1) {
    return malformed("PasswordMessage");
  }
  return text.substr(0, text.size() - 1);
}

Result<SaslInitialResponse> parse_sasl_initial_response(ByteView message) {
  auto body = password_body(message, "SASLInitialResponse");
  if (!body) return body.error();
  std::string_view text = *body;
  const size_t nul = text.find('\0');
  if (nul == std::string_view::npos || text.size() < nul + 5) {
    return malformed("SASLInitialResponse");
  }
  SaslInitialResponse out;
  out.mechanism = text.substr(0, nul);
  const auto* p = reinterpret_cast<const uint8_t*>(text.data()) + nul + 1;
  const auto length = static_cast<int32_t>(read_u32(p));
  const std::string_view rest = text.substr(nul + 5);
  if (length == -1) {
    if (!rest.empty()) return malformed("SASLInitialResponse");
    return out;
  }
  if (length < 0 || static_cast<size_t>(length) != rest.size()) {
    return malformed("SASLInitialResponse");
  }
  out.data = rest;
  return out;
}

Result<std::string_view> parse_sasl_response(ByteView message) {
  return password_body(message, "SASLResponse");
}

}  // namespace pgmux::protocol
