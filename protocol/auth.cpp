#include "protocol/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "protocol/sqlstate.h"

namespace pgmux::protocol {

namespace {

constexpr size_t kSha256Size = 32;
constexpr size_t kMd5Size = 16;
constexpr size_t kClientNonceBytes = 18;
using Digest = std::array<uint8_t, kSha256Size>;

// libcrypto failing to hash, MAC or produce random bytes means the process
// is broken (or a FIPS policy forbids the algorithm); nothing sensible can
// continue. protocol/ does not log, so say why on stderr and stop.
[[noreturn]] void crypto_failure(const char* what) {
  std::fprintf(stderr, "pgmux: libcrypto failure: %s\n", what);
  std::abort();
}

const unsigned char* bytes_of(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

std::string_view view_of(const Digest& d) {
  return {reinterpret_cast<const char*>(d.data()), d.size()};
}

void hex_into(const unsigned char* bytes, size_t n, std::string& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kHex[bytes[i] >> 4]);
    out.push_back(kHex[bytes[i] & 0x0F]);
  }
}

std::string md5_hex(std::string_view data) {
  std::array<unsigned char, kMd5Size> digest{};
  unsigned int length = 0;
  if (EVP_Digest(data.data(), data.size(), digest.data(), &length, EVP_md5(), nullptr) != 1 ||
      length != kMd5Size) {
    crypto_failure("MD5");
  }
  std::string out;
  hex_into(digest.data(), digest.size(), out);
  return out;
}

Digest sha256(std::string_view data) {
  Digest out{};
  unsigned int length = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &length, EVP_sha256(), nullptr) != 1 ||
      length != kSha256Size) {
    crypto_failure("SHA-256");
  }
  return out;
}

Digest hmac_sha256(std::string_view key, std::string_view data) {
  Digest out{};
  unsigned int length = 0;
  if (key.size() > INT_MAX ||
      HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), bytes_of(data), data.size(),
           out.data(), &length) == nullptr ||
      length != kSha256Size) {
    crypto_failure("HMAC-SHA-256");
  }
  return out;
}

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

constexpr char kBase64Alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

}  // namespace

// ---- Base64 -----------------------------------------------------------------

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t v = (uint32_t{static_cast<uint8_t>(bytes[i])} << 16) |
                       (uint32_t{static_cast<uint8_t>(bytes[i + 1])} << 8) |
                       uint32_t{static_cast<uint8_t>(bytes[i + 2])};
    out.push_back(kBase64Alphabet[(v >> 18) & 0x3F]);
    out.push_back(kBase64Alphabet[(v >> 12) & 0x3F]);
    out.push_back(kBase64Alphabet[(v >> 6) & 0x3F]);
    out.push_back(kBase64Alphabet[v & 0x3F]);
  }
  const size_t left = bytes.size() - i;
  if (left > 0) {
    uint32_t v = uint32_t{static_cast<uint8_t>(bytes[i])} << 16;
    if (left == 2) v |= uint32_t{static_cast<uint8_t>(bytes[i + 1])} << 8;
    out.push_back(kBase64Alphabet[(v >> 18) & 0x3F]);
    out.push_back(kBase64Alphabet[(v >> 12) & 0x3F]);
    out.push_back(left == 2 ? kBase64Alphabet[(v >> 6) & 0x3F] : '=');
    out.push_back('=');
  }
  return out;
}

// Strict: whole quanta of four, padding only at the very end, no whitespace,
// and no stray bits in the last quantum.
Result<std::string> base64_decode(std::string_view text) {
  auto invalid = [] {
    return make_error(std::string(sqlstate::kProtocolViolation), "invalid base64 text");
  };
  if (text.size() % 4 != 0) return invalid();
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    size_t pad = 0;
    if (last && text[i + 3] == '=') pad = text[i + 2] == '=' ? 2 : 1;
    uint32_t v = 0;
    for (size_t j = 0; j < 4; ++j) {
      int d = 0;
      if (j < 4 - pad) {
        d = base64_value(text[i + j]);
        if (d < 0) return invalid();
      }
      v = (v << 6) | static_cast<uint32_t>(d);
    }
    if ((pad == 1 && (v & 0xFF) != 0) || (pad == 2 && (v & 0xFFFF) != 0)) return invalid();
    out.push_back(static_cast<char>((v >> 16) & 0xFF));
    if (pad < 2) out.push_back(static_cast<char>((v >> 8) & 0xFF));
    if (pad < 1) out.push_back(static_cast<char>(v & 0xFF));
  }
  return out;
}

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
    std::array<unsigned char, kClientNonceBytes> raw{};
    if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1) crypto_failure("RAND_bytes");
    client_nonce_ = base64_encode({reinterpret_cast<const char*>(raw.data()), raw.size()});
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
  Digest salted{};
  if (PKCS5_PBKDF2_HMAC(password_.data(), static_cast<int>(password_.size()), bytes_of(*salt),
                        static_cast<int>(salt->size()), iterations, EVP_sha256(),
                        static_cast<int>(salted.size()), salted.data()) != 1) {
    crypto_failure("PBKDF2-HMAC-SHA-256");
  }
  Digest client_key = hmac_sha256(view_of(salted), "Client Key");
  const Digest stored_key = sha256(view_of(client_key));
  std::string client_final = "c=biws,r=";  // biws = base64("n,,"): no channel binding.
  client_final.append(nonce);
  std::string auth_message = client_first_bare_;
  auth_message.append(",").append(server_first).append(",").append(client_final);
  const Digest client_signature = hmac_sha256(view_of(stored_key), auth_message);
  Digest proof{};
  for (size_t i = 0; i < proof.size(); ++i) {
    proof[i] = static_cast<uint8_t>(client_key[i] ^ client_signature[i]);
  }
  Digest server_key = hmac_sha256(view_of(salted), "Server Key");
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
