#include "protocol/auth.h"

#include <openssl/crypto.h>

#include <climits>

#include "protocol/crypto.h"
#include "protocol/sqlstate.h"

namespace pgmux::protocol {

namespace {

constexpr size_t kClientNonceBytes = 18;

Error scram_error(std::string_view sqlstate, std::string message) {
  return make_error(std::string(sqlstate), std::move(message));
}

Error malformed_scram(std::string_view why) {
  return scram_error(sqlstate::kProtocolViolation,
                     "malformed SCRAM server-first-message: " + std::string(why));
}

// RFC 5802 section 5.1: in a saslname, "=" and "," are escaped as =3D, =2C.
std::string escape_saslname(std::string_view name) {
  std::string out;
  for (char c : name) {
    if (c == '=') {
      out += "=3D";
    } else if (c == ',') {
      out += "=2C";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// Splits off the next comma-separated attribute "k=value" from `rest`.
// Returns false if the attribute is not `key`.
bool take_attribute(std::string_view& rest, char key, std::string_view* value) {
  const size_t comma = rest.find(',');
  const std::string_view attr = rest.substr(0, comma);
  rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
  if (attr.size() < 2 || attr[0] != key || attr[1] != '=') return false;
  *value = attr.substr(2);
  return true;
}

bool parse_iterations(std::string_view text, int* out) {
  if (text.empty() || text.size() > 10) return false;
  uint64_t n = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  // PBKDF2 takes an int; PostgreSQL's own limit (scram_iterations) is INT_MAX.
  if (n < 1 || n > INT_MAX) return false;
  *out = static_cast<int>(n);
  return true;
}

}  // namespace

// ---- MD5 --------------------------------------------------------------------

std::string md5_password_response(std::string_view user, std::string_view password,
                                  const std::array<uint8_t, 4>& salt) {
  std::string inner = std::string(password).append(user);
  std::string outer = md5_hex(inner);
  outer.append(reinterpret_cast<const char*>(salt.data()), salt.size());
  std::string out = "md5" + md5_hex(outer);
  OPENSSL_cleanse(inner.data(), inner.size());
  return out;
}

// ---- SCRAM-SHA-256 ----------------------------------------------------------

ScramClient::ScramClient(std::string user, std::string password, std::string client_nonce)
    : user_(std::move(user)),
      password_(std::move(password)),
      client_nonce_(std::move(client_nonce)) {
  if (client_nonce_.empty()) {
    client_nonce_ = base64_encode(random_bytes(kClientNonceBytes));
  }
  client_first_bare_ = "n=" + escape_saslname(user_) + ",r=" + client_nonce_;
}

std::string ScramClient::client_first_message() const { return "n,," + client_first_bare_; }

Result<std::string> ScramClient::handle_server_first(std::string_view server_first) {
  // RFC 5802 section 7: server-first-message =
  //   [reserved-mext ","] nonce "," salt "," iteration-count ["," extensions]
  if (server_first.substr(0, 2) == "m=") {
    return scram_error(sqlstate::kFeatureNotSupported,
                       "SCRAM server-first-message requires an unsupported extension");
  }
  std::string_view rest = server_first;
  std::string_view nonce;
  std::string_view salt_text;
  std::string_view iterations_text;
  if (!take_attribute(rest, 'r', &nonce)) return malformed_scram("expected r=<nonce>");
  if (!take_attribute(rest, 's', &salt_text)) return malformed_scram("expected s=<salt>");
  if (!take_attribute(rest, 'i', &iterations_text)) {
    return malformed_scram("expected i=<iteration count>");
  }
  // The server must extend our nonce with its own part; anything else is a
  // replay or a confused server.
  if (nonce.size() <= client_nonce_.size() ||
      nonce.substr(0, client_nonce_.size()) != client_nonce_) {
    return scram_error(sqlstate::kProtocolViolation,
                       "SCRAM server nonce does not extend the client nonce");
  }
  auto salt = base64_decode(salt_text);
  if (!salt || salt->empty()) return malformed_scram("salt is not valid base64");
  int iterations = 0;
  if (!parse_iterations(iterations_text, &iterations)) {
    return malformed_scram("iteration count is not a number from 1 to 2147483647");
  }
  if (password_.size() > INT_MAX || salt->size() > INT_MAX) {
    return malformed_scram("salt too long");
  }

  // RFC 5802 section 3.
  Sha256Digest salted = salted_password(password_, *salt, iterations);
  Sha256Digest client_key = hmac_sha256(view_of(salted), "Client Key");
  const Sha256Digest stored_key = sha256(view_of(client_key));
  std::string client_final = "c=biws,r=";  // biws = base64("n,,"): no channel binding.
  client_final.append(nonce);
  std::string auth_message = client_first_bare_;
  auth_message.append(",").append(server_first).append(",").append(client_final);
  const Sha256Digest client_signature = hmac_sha256(view_of(stored_key), auth_message);
  Sha256Digest proof{};
  for (size_t i = 0; i < proof.size(); ++i) {
    proof[i] = static_cast<uint8_t>(client_key[i] ^ client_signature[i]);
  }
  Sha256Digest server_key = hmac_sha256(view_of(salted), "Server Key");
  expected_server_signature_ =
      base64_encode(view_of(hmac_sha256(view_of(server_key), auth_message)));

  client_final.append(",p=").append(base64_encode(view_of(proof)));
  OPENSSL_cleanse(salted.data(), salted.size());
  OPENSSL_cleanse(client_key.data(), client_key.size());
  OPENSSL_cleanse(server_key.data(), server_key.size());
  return client_final;
}

Status ScramClient::verify_server_final(std::string_view server_final) const {
  // server-final-message = (server-error / verifier) ["," extensions]
  if (server_final.substr(0, 2) == "e=") {
    const std::string_view text = server_final.substr(2, server_final.find(',') - 2);
    return scram_error(
        sqlstate::kInvalidAuthorization,
        "SCRAM authentication failed: server reported \"" + std::string(text) + "\"");
  }
  if (expected_server_signature_.empty()) {
    return scram_error(sqlstate::kProtocolViolation,
                       "SCRAM server-final-message arrived before server-first-message");
  }
  std::string_view rest = server_final;
  std::string_view verifier;
  if (!take_attribute(rest, 'v', &verifier)) {
    return scram_error(sqlstate::kProtocolViolation,
                       "malformed SCRAM server-final-message: expected v=<signature>");
  }
  auto received = base64_decode(verifier);
  auto expected = base64_decode(expected_server_signature_);
  if (!received || !expected || received->size() != expected->size() ||
      CRYPTO_memcmp(received->data(), expected->data(), expected->size()) != 0) {
    return scram_error(sqlstate::kInvalidAuthorization,
                       "SCRAM server signature does not match: the server does not know the "
                       "password");
  }
  return Ok{};
}

}  // namespace pgmux::protocol
