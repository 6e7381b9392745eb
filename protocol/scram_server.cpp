#include "protocol/scram_server.h"

#include <openssl/crypto.h>

#include <cassert>
#include <climits>
#include <utility>

#include "protocol/crypto.h"
#include "protocol/sqlstate.h"

namespace pgmux::protocol {

namespace {

constexpr size_t kSaltBytes = 16;         // PostgreSQL's SCRAM_DEFAULT_SALT_LEN.
constexpr size_t kServerNonceBytes = 18;  // PostgreSQL's SCRAM_RAW_NONCE_LEN.
constexpr std::string_view kSecretPrefix = "SCRAM-SHA-256$";
constexpr std::string_view kMechanism = "SCRAM-SHA-256";
constexpr std::string_view kMechanismPlus = "SCRAM-SHA-256-PLUS";
constexpr std::string_view kChannelBindingType = "tls-server-end-point";

// StoredKey and ServerKey from SaltedPassword; wipes the intermediates.
void derive_keys(Sha256Digest& salted, Sha256Digest* stored_key, Sha256Digest* server_key) {
  Sha256Digest client_key = hmac_sha256(view_of(salted), "Client Key");
  *stored_key = sha256(view_of(client_key));
  *server_key = hmac_sha256(view_of(salted), "Server Key");
  OPENSSL_cleanse(client_key.data(), client_key.size());
  OPENSSL_cleanse(salted.data(), salted.size());
}

// Equal sizes and equal bytes, in time that depends only on the sizes.
bool equal_ct(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool parse_positive_int(std::string_view text, int* out) {
  if (text.empty() || text.size() > 10) return false;
  uint64_t n = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  if (n < 1 || n > INT_MAX) return false;
  *out = static_cast<int>(n);
  return true;
}

bool decode_key(std::string_view text, std::array<uint8_t, 32>* out) {
  auto raw = base64_decode(text);
  if (!raw || raw->size() != out->size()) return false;
  for (size_t i = 0; i < out->size(); ++i) (*out)[i] = static_cast<uint8_t>((*raw)[i]);
  return true;
}

bool is_lower_hex(std::string_view text) {
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// RFC 5802 section 7: printable = %x21-2B / %x2D-7E (no comma).
bool is_printable(std::string_view text) {
  for (char c : text) {
    if (c < 0x21 || c > 0x7E || c == ',') return false;
  }
  return true;
}

Error protocol_error(std::string message) {
  return make_error(std::string(sqlstate::kProtocolViolation), std::move(message));
}

Error malformed(std::string_view which, std::string_view why) {
  return protocol_error("malformed SCRAM message: " + std::string(which) + ": " + std::string(why));
}

// Splits off the next comma-separated attribute "k=value" from `rest`.
// Returns false if it is not of that shape; `key` receives its letter.
bool take_any_attribute(std::string_view& rest, char* key, std::string_view* value) {
  const size_t comma = rest.find(',');
  const std::string_view attr = rest.substr(0, comma);
  rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
  if (attr.size() < 2 || attr[1] != '=') return false;
  const char k = attr[0];
  if (!((k >= 'a' && k <= 'z') || (k >= 'A' && k <= 'Z'))) return false;
  *key = k;
  *value = attr.substr(2);
  return true;
}

bool take_attribute(std::string_view& rest, char key, std::string_view* value) {
  char got = 0;
  return take_any_attribute(rest, &got, value) && got == key;
}

}  // namespace

// ---- Stored secrets ---------------------------------------------------------

Result<ScramSecret> parse_scram_secret(std::string_view text) {
  // Not a wire error: the stored credential is pgmux's own configuration, so
  // there is no SQLSTATE to give.
  auto invalid = [](std::string_view why) {
    return make_error("", "invalid SCRAM secret: " + std::string(why));
  };
  if (text.substr(0, kSecretPrefix.size()) != kSecretPrefix) {
    return invalid("does not start with SCRAM-SHA-256$");
  }
  std::string_view rest = text.substr(kSecretPrefix.size());
  const size_t dollar = rest.find('$');
  if (dollar == std::string_view::npos) return invalid("missing '$' before the keys");
  const std::string_view params = rest.substr(0, dollar);
  const std::string_view keys = rest.substr(dollar + 1);
  const size_t colon1 = params.find(':');
  const size_t colon2 = keys.find(':');
  if (colon1 == std::string_view::npos || colon2 == std::string_view::npos) {
    return invalid("missing ':'");
  }
  ScramSecret secret;
  if (!parse_positive_int(params.substr(0, colon1), &secret.iterations)) {
    return invalid("iteration count is not a number from 1 to 2147483647");
  }
  auto salt = base64_decode(params.substr(colon1 + 1));
  // An empty salt would decode, but no SCRAM client accepts one.
  if (!salt || salt->empty()) return invalid("salt is not valid base64");
  secret.salt = std::move(*salt);
  if (!decode_key(keys.substr(0, colon2), &secret.stored_key) ||
      !decode_key(keys.substr(colon2 + 1), &secret.server_key)) {
    return invalid("StoredKey or ServerKey is not 32 bytes of base64");
  }
  return secret;
}

std::string format_scram_secret(const ScramSecret& secret) {
  std::string out(kSecretPrefix);
  out.append(std::to_string(secret.iterations))
      .append(":")
      .append(base64_encode(secret.salt))
      .append("$")
      .append(base64_encode(view_of(secret.stored_key)))
      .append(":")
      .append(base64_encode(view_of(secret.server_key)));
  return out;
}

ScramSecret make_scram_secret(std::string_view password, std::string_view salt, int iterations) {
  ScramSecret secret;
  secret.iterations = iterations;
  secret.salt = salt.empty() ? random_bytes(kSaltBytes) : std::string(salt);
  Sha256Digest salted = salted_password(password, secret.salt, iterations);
  derive_keys(salted, &secret.stored_key, &secret.server_key);
  return secret;
}

ScramSecret mock_scram_secret(std::string_view user, std::string_view seed) {
  // Like PostgreSQL's scram_mock_salt(): derived from a per-process secret
  // so that repeated attempts for one unknown user see the same salt.
  ScramSecret secret;
  std::string input(seed);
  input.append(user);
  const Sha256Digest salt = sha256(input);
  secret.salt.assign(reinterpret_cast<const char*>(salt.data()), kSaltBytes);
  std::string label(user);
  secret.stored_key = hmac_sha256(seed, label + "stored");
  secret.server_key = hmac_sha256(seed, label + "server");
  return secret;
}

// ---- Stored credentials, MD5 and cleartext ---------------------------------

Credential parse_credential(std::string_view stored) {
  Credential credential;
  if (stored.substr(0, kSecretPrefix.size()) == kSecretPrefix) {
    auto secret = parse_scram_secret(stored);
    if (secret) {
      credential.kind = Credential::Kind::kScram;
      credential.scram = std::move(*secret);
      return credential;
    }
  } else if (stored.size() == 3 + 2 * kMd5Size && stored.substr(0, 3) == "md5" &&
             is_lower_hex(stored.substr(3))) {
    credential.kind = Credential::Kind::kMd5;
    credential.md5 = std::string(stored);
    return credential;
  }
  // Anything else, including a string that merely starts like a SCRAM secret,
  // is a plain password: the header's contract.
  credential.plain = std::string(stored);
  return credential;
}

std::string md5_stored_hash(std::string_view user, std::string_view password) {
  std::string input(password);
  input.append(user);
  std::string out = "md5" + md5_hex(input);
  OPENSSL_cleanse(input.data(), input.size());
  return out;
}

bool verify_md5_response(const Credential& credential, std::string_view user,
                         const std::array<uint8_t, 4>& salt, std::string_view response) {
  std::string stored;
  switch (credential.kind) {
    case Credential::Kind::kPlain:
      stored = md5_stored_hash(user, credential.plain);
      break;
    case Credential::Kind::kMd5:
      stored = credential.md5;
      break;
    case Credential::Kind::kScram:
      return false;
  }
  // PostgreSQL docs 55.3.1: the client sends
  // "md5" + md5hex(md5hex(password + user) + salt); the stored form already
  // holds the inner hash.
  std::string outer = stored.substr(3);
  outer.append(reinterpret_cast<const char*>(salt.data()), salt.size());
  const std::string expected = "md5" + md5_hex(outer);
  const bool ok = equal_ct(expected, response);
  OPENSSL_cleanse(stored.data(), stored.size());
  OPENSSL_cleanse(outer.data(), outer.size());
  return ok;
}

bool verify_cleartext(const Credential& credential, std::string_view user,
                      std::string_view password) {
  switch (credential.kind) {
    case Credential::Kind::kPlain: {
      // Comparing digests keeps the time independent of both lengths.
      const Sha256Digest a = sha256(credential.plain);
      const Sha256Digest b = sha256(password);
      return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
    }
    case Credential::Kind::kMd5: {
      std::string hashed = md5_stored_hash(user, password);
      const bool ok = equal_ct(hashed, credential.md5);
      OPENSSL_cleanse(hashed.data(), hashed.size());
      return ok;
    }
    case Credential::Kind::kScram: {
      const ScramSecret& secret = credential.scram;
      if (secret.iterations < 1 || secret.salt.empty()) return false;
      Sha256Digest salted = salted_password(password, secret.salt, secret.iterations);
      Sha256Digest stored_key{};
      Sha256Digest server_key{};
      derive_keys(salted, &stored_key, &server_key);
      // Both keys must match; `|` rather than `||` so that the time does not
      // depend on the first result.
      const int differ =
          CRYPTO_memcmp(stored_key.data(), secret.stored_key.data(), stored_key.size()) |
          CRYPTO_memcmp(server_key.data(), secret.server_key.data(), server_key.size());
      const bool ok = differ == 0;
      OPENSSL_cleanse(server_key.data(), server_key.size());
      return ok;
    }
  }
  return false;
}

// ---- SCRAM-SHA-256 server ---------------------------------------------------

ScramServer::ScramServer(ScramSecret secret, std::string channel_binding, std::string server_nonce)
    : secret_(std::move(secret)),
      channel_binding_(std::move(channel_binding)),
      server_nonce_(std::move(server_nonce)) {
  if (server_nonce_.empty()) server_nonce_ = base64_encode(random_bytes(kServerNonceBytes));
  // REQUIRES: an injected nonce is printable and has no comma.
  assert(is_printable(server_nonce_));
}

Result<std::string> ScramServer::handle_client_first(std::string_view mechanism,
                                                     std::string_view client_first) {
  if (!gs2_header_.empty()) return protocol_error("SCRAM client-first-message sent twice");
  bool plus = false;
  if (mechanism == kMechanismPlus && offers_plus()) {
    plus = true;
  } else if (mechanism != kMechanism) {
    return protocol_error("client selected an invalid SASL authentication mechanism");
  }

  // RFC 5802 section 7:
  //   gs2-header = gs2-cbind-flag "," [ authzid ] ","
  //   gs2-cbind-flag = ("p=" cb-name) / "n" / "y"
  // The checks follow PostgreSQL's read_client_first_message() (auth-scram.c).
  constexpr std::string_view kWhich = "client-first-message";
  std::string_view rest = client_first;
  const size_t comma = rest.find(',');
  if (comma == std::string_view::npos) return malformed(kWhich, "no gs2 header");
  const std::string_view flag = rest.substr(0, comma);
  rest = rest.substr(comma + 1);
  if (flag == "n") {
    if (plus) {
      return protocol_error(
          "client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include channel "
          "binding data");
    }
  } else if (flag == "y") {
    // The client could have bound to the channel but believes we cannot: a
    // man in the middle may have removed SCRAM-SHA-256-PLUS from our list.
    if (offers_plus()) {
      return make_error(std::string(sqlstate::kInvalidAuthorization),
                        "SCRAM channel binding negotiation error");
    }
  } else if (flag.substr(0, 2) == "p=") {
    if (!plus) {
      return protocol_error(
          "client selected SCRAM-SHA-256 without channel binding, but the SCRAM message "
          "includes channel binding data");
    }
    if (flag.substr(2) != kChannelBindingType) {
      return protocol_error("unsupported SCRAM channel-binding type \"" +
                            std::string(flag.substr(2)) + "\"");
    }
  } else {
    return malformed(kWhich, "unexpected channel-binding flag");
  }
  if (rest.substr(0, 2) == "a=") {
    return make_error(std::string(sqlstate::kFeatureNotSupported),
                      "client uses authorization identity, but it is not supported");
  }
  if (rest.empty() || rest[0] != ',') {
    return malformed(kWhich, "unexpected attribute in gs2 header");
  }
  rest = rest.substr(1);
  const std::string_view gs2_header = client_first.substr(0, client_first.size() - rest.size());
  const std::string_view bare = rest;

  // client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
  if (rest.substr(0, 2) == "m=") {
    return make_error(std::string(sqlstate::kFeatureNotSupported),
                      "client requires an unsupported SCRAM extension");
  }
  std::string_view user;
  std::string_view client_nonce;
  // PostgreSQL ignores the SCRAM user name (the startup packet's is used);
  // libpq sends it empty.
  if (!take_attribute(rest, 'n', &user)) return malformed(kWhich, "expected n=<user name>");
  if (!take_attribute(rest, 'r', &client_nonce)) return malformed(kWhich, "expected r=<nonce>");
  if (client_nonce.empty() || !is_printable(client_nonce)) {
    return malformed(kWhich, "the nonce is empty or not printable");
  }
  // Optional extensions follow; like PostgreSQL, accept and ignore them.
  while (!rest.empty()) {
    char key = 0;
    std::string_view value;
    if (!take_any_attribute(rest, &key, &value)) return malformed(kWhich, "garbage at the end");
  }

  gs2_header_ = std::string(gs2_header);
  client_first_bare_ = std::string(bare);
  combined_nonce_ = std::string(client_nonce) + server_nonce_;
  server_first_ = "r=" + combined_nonce_ + ",s=" + base64_encode(secret_.salt) +
                  ",i=" + std::to_string(secret_.iterations);
  return server_first_;
}

Result<std::string> ScramServer::handle_client_final(std::string_view client_final) {
  if (server_first_.empty()) {
    return protocol_error("SCRAM client-final-message out of order");
  }
  // One attempt per exchange: whatever happens below, the exchange is over.
  const std::string server_first = std::move(server_first_);
  server_first_.clear();

  // client-final-message-without-proof = channel-binding "," nonce ["," extensions]
  // client-final-message = client-final-message-without-proof "," proof
  constexpr std::string_view kWhich = "client-final-message";
  std::string_view rest = client_final;
  std::string_view cbind;
  std::string_view nonce;
  if (!take_attribute(rest, 'c', &cbind)) return malformed(kWhich, "expected c=<channel binding>");
  // PostgreSQL docs 55.3.1 and RFC 5929: with -PLUS, c= carries the gs2
  // header followed by the hash of the server certificate.
  std::string expected_cbind = gs2_header_;
  if (gs2_header_[0] == 'p') expected_cbind.append(channel_binding_);
  if (!equal_ct(cbind, base64_encode(expected_cbind))) {
    return protocol_error("SCRAM channel binding check failed");
  }
  if (!take_attribute(rest, 'r', &nonce)) return malformed(kWhich, "expected r=<nonce>");
  if (!equal_ct(nonce, combined_nonce_)) return protocol_error("SCRAM nonce mismatch");
  // Extensions may come before the proof; the proof is the last attribute.
  std::string_view proof_text;
  size_t proof_start = 0;
  for (;;) {
    if (rest.empty()) return malformed(kWhich, "expected p=<proof>");
    proof_start = client_final.size() - rest.size();
    char key = 0;
    if (!take_any_attribute(rest, &key, &proof_text)) {
      return malformed(kWhich, "unexpected attribute");
    }
    if (key == 'p') break;
  }
  if (!rest.empty()) return malformed(kWhich, "garbage after the proof");
  auto proof = base64_decode(proof_text);
  if (!proof || proof->size() != kSha256Size) return malformed(kWhich, "invalid proof");

  // RFC 5802 section 3:
  //   AuthMessage     := client-first-message-bare + "," + server-first-message + "," +
  //                      client-final-message-without-proof
  //   ClientSignature := HMAC(StoredKey, AuthMessage)
  //   ClientKey       := ClientProof XOR ClientSignature; H(ClientKey) must be StoredKey.
  std::string auth_message = client_first_bare_;
  auth_message.append(",")
      .append(server_first)
      .append(",")
      .append(client_final.substr(0, proof_start - 1));
  const Sha256Digest client_signature = hmac_sha256(view_of(secret_.stored_key), auth_message);
  Sha256Digest client_key{};
  for (size_t i = 0; i < client_key.size(); ++i) {
    client_key[i] = static_cast<uint8_t>(static_cast<uint8_t>((*proof)[i]) ^ client_signature[i]);
  }
  const Sha256Digest computed = sha256(view_of(client_key));
  OPENSSL_cleanse(client_key.data(), client_key.size());
  if (CRYPTO_memcmp(computed.data(), secret_.stored_key.data(), computed.size()) != 0) {
    return make_error(std::string(sqlstate::kInvalidPassword), "password authentication failed");
  }
  // ServerSignature := HMAC(ServerKey, AuthMessage)
  return "v=" + base64_encode(view_of(hmac_sha256(view_of(secret_.server_key), auth_message)));
}

}  // namespace pgmux::protocol
