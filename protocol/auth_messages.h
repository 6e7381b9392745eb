// The authentication messages pgmux sends to its clients and reads from
// them, as a server (PostgreSQL docs 55.3 and 55.7). Builders append one
// whole message; inspectors take one whole message (header included) and
// return views into it.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "protocol/frame.h"
#include "protocol/messages.h"
#include "protocol/result.h"

namespace pgmux::protocol {

void append_authentication_cleartext(Bytes& out);
void append_authentication_md5(Bytes& out, const std::array<uint8_t, 4>& salt);
// AuthenticationSASL with the mechanism names in order of preference.
void append_authentication_sasl(Bytes& out, const std::vector<std::string_view>& mechanisms);
void append_authentication_sasl_continue(Bytes& out, std::string_view data);
void append_authentication_sasl_final(Bytes& out, std::string_view data);

// PasswordMessage ('p'): the NUL-terminated password or md5 response.
Result<std::string_view> parse_password_message(ByteView message);

struct SaslInitialResponse {
  std::string_view mechanism;
  std::string_view data;  // client-first-message
};
// SASLInitialResponse ('p'): mechanism, Int32 length (-1: none), data.
Result<SaslInitialResponse> parse_sasl_initial_response(ByteView message);
// SASLResponse ('p'): the rest of the message is the data.
Result<std::string_view> parse_sasl_response(ByteView message);

}  // namespace pgmux::protocol
