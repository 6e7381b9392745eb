// Client-side password authentication towards an upstream PostgreSQL:
// SCRAM-SHA-256 (RFC 5802, RFC 7677; PostgreSQL docs 55.3.1) and MD5.
// Pure functions over OpenSSL libcrypto; no I/O.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "protocol/crypto.h"  // base64_encode and base64_decode, which SCRAM callers use.
#include "protocol/result.h"

namespace pgmux::protocol {

// "md5" + md5hex(md5hex(password + user) + salt), as PostgreSQL expects in the
// PasswordMessage answering AuthenticationMD5Password.
std::string md5_password_response(std::string_view user, std::string_view password,
                                  const std::array<uint8_t, 4>& salt);

// One SCRAM-SHA-256 exchange as the client, without channel binding
// (gs2 header "n,,"). PostgreSQL ignores the SCRAM user name and sends "n=";
// pass an empty `user` for PostgreSQL, "user" for the RFC 7677 vector.
// The password is used as given (no SASLprep), which is what PostgreSQL does
// for passwords that are not valid UTF-8 and matches it for ASCII ones.
class ScramClient {
 public:
  // An empty `client_nonce` means: generate 18 random bytes, base64-encoded.
  ScramClient(std::string user, std::string password, std::string client_nonce = {});

  // client-first-message, e.g. "n,,n=,r=<nonce>".
  std::string client_first_message() const;

  // Takes server-first-message, returns client-final-message. Errors (08P01
  // or 28000) for a malformed message, a nonce that does not extend ours, or
  // an iteration count below 1.
  Result<std::string> handle_server_first(std::string_view server_first);

  // Checks the server signature in server-final-message. Error 28000 if it
  // does not match (the server does not know the password: a spoofed server)
  // or if the server reported an error ("e=...").
  Status verify_server_final(std::string_view server_final) const;

 private:
  std::string user_;
  std::string password_;
  std::string client_nonce_;
  std::string client_first_bare_;
  std::string expected_server_signature_;  // base64
};

}  // namespace pgmux::protocol
