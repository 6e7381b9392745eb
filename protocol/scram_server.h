// Server-side password authentication for pgmux's clients: SCRAM-SHA-256
// (RFC 5802/7677, with tls-server-end-point channel binding, RFC 5929), MD5
// and cleartext, checked against a stored credential in any of PostgreSQL's
// forms. Pure functions over libcrypto; no I/O. Never log any of these values.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "protocol/result.h"

namespace pgmux::protocol {

// PostgreSQL's stored SCRAM secret:
// "SCRAM-SHA-256$<iterations>:<salt base64>$<StoredKey base64>:<ServerKey base64>"
struct ScramSecret {
  int iterations = 4096;
  std::string salt;  // Raw bytes.
  std::array<uint8_t, 32> stored_key{};
  std::array<uint8_t, 32> server_key{};
};
Result<ScramSecret> parse_scram_secret(std::string_view text);
std::string format_scram_secret(const ScramSecret& secret);
// Derives a secret from a password. An empty `salt` means 16 random bytes.
ScramSecret make_scram_secret(std::string_view password, std::string_view salt = {},
                              int iterations = 4096);
// A deterministic fake secret for a user that does not exist, so that an
// unknown user and a wrong password look the same on the wire (PostgreSQL
// does the same). `seed` is a per-process random value.
ScramSecret mock_scram_secret(std::string_view user, std::string_view seed);

// A stored credential: a plain password, "md5" + 32 hex digits
// (md5(password + user)), or a SCRAM secret.
struct Credential {
  enum class Kind { kPlain, kMd5, kScram };
  Kind kind = Kind::kPlain;
  std::string plain;  // kPlain
  std::string md5;    // kMd5: "md5..." (35 characters)
  ScramSecret scram;  // kScram
};
// Recognises the three forms; anything else is a plain password.
Credential parse_credential(std::string_view stored);

// "md5" + md5hex(password + user): PostgreSQL's stored MD5 form.
std::string md5_stored_hash(std::string_view user, std::string_view password);

// Checks the PasswordMessage answering AuthenticationMD5Password. Needs a
// kPlain or kMd5 credential (false for kScram, which cannot do MD5).
// Constant-time comparison.
bool verify_md5_response(const Credential& credential, std::string_view user,
                         const std::array<uint8_t, 4>& salt, std::string_view response);

// Checks a cleartext password against any credential kind. Constant-time.
bool verify_cleartext(const Credential& credential, std::string_view user,
                      std::string_view password);

// One SCRAM-SHA-256 exchange as the server.
class ScramServer {
 public:
  // `channel_binding` is the tls-server-end-point hash of pgmux's certificate
  // when the client is on TLS (then SCRAM-SHA-256-PLUS is offered), empty
  // otherwise. An empty `server_nonce` means 18 random bytes, base64.
  ScramServer(ScramSecret secret, std::string channel_binding, std::string server_nonce = {});

  // The mechanism list for AuthenticationSASL: "SCRAM-SHA-256-PLUS" (only
  // with channel binding) then "SCRAM-SHA-256".
  bool offers_plus() const { return !channel_binding_.empty(); }

  // Takes the mechanism the client chose and its client-first-message;
  // returns server-first-message. Errors (08P01, 28000): malformed message,
  // unknown mechanism, a gs2 header inconsistent with the mechanism ("p="
  // without PLUS, PLUS without "p=tls-server-end-point", "y" while PLUS was
  // offered: a downgrade), an authzid.
  Result<std::string> handle_client_first(std::string_view mechanism,
                                          std::string_view client_first);

  // Takes client-final-message; returns server-final-message ("v=...").
  // Error 28P01 for a wrong proof, 08P01 for malformed input or channel
  // binding data that does not match.
  Result<std::string> handle_client_final(std::string_view client_final);

 private:
  ScramSecret secret_;
  std::string channel_binding_;
  std::string server_nonce_;
  std::string gs2_header_;
  std::string client_first_bare_;
  std::string server_first_;
  std::string combined_nonce_;
};

}  // namespace pgmux::protocol
