// SHA-256, HMAC-SHA-256, PBKDF2, MD5, random bytes over libcrypto, and a
// strict base64 codec.
#include "protocol/crypto.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <array>
#include <cassert>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "protocol/sqlstate.h"

namespace pgmux::protocol {

namespace {

// See the header: a libcrypto failure is an impossible environment failure.
[[noreturn]] void crypto_failure(const char* what) {
  std::fprintf(stderr, "pgmux: libcrypto failure: %s\n", what);
  std::abort();
}

const unsigned char* bytes_of(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
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

// OpenSSL 3 looks an algorithm up in its provider tables on every one-shot
// call (HMAC(), or EVP_Digest() with EVP_sha256()): microseconds each time,
// which were most of pgmux's CPU in a SCRAM login. Both are fetched once.
const EVP_MD* sha256_md() {
  static EVP_MD* const md = [] {
    EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    if (fetched == nullptr) crypto_failure("EVP_MD_fetch(SHA256)");
    return fetched;
  }();
  return md;
}

// An HMAC context with its digest set and no key: each HMAC starts from a
// copy of it.
const EVP_MAC_CTX* hmac_sha256_template() {
  static EVP_MAC_CTX* const ctx = [] {
    EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    if (mac == nullptr) crypto_failure("EVP_MAC_fetch(HMAC)");
    EVP_MAC_CTX* made = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac);  // The context holds its own reference.
    char digest[] = "SHA256";
    const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                                 OSSL_PARAM_construct_end()};
    if (made == nullptr || EVP_MAC_CTX_set_params(made, params) != 1) {
      crypto_failure("HMAC-SHA-256 set-up");
    }
    return made;
  }();
  return ctx;
}

}  // namespace

std::string_view view_of(const Sha256Digest& digest) {
  return {reinterpret_cast<const char*>(digest.data()), digest.size()};
}

// ---- Digests ----------------------------------------------------------------

Sha256Digest sha256(std::string_view data) {
  Sha256Digest out{};
  unsigned int length = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &length, sha256_md(), nullptr) != 1 ||
      length != kSha256Size) {
    crypto_failure("SHA-256");
  }
  return out;
}

Sha256Digest hmac_sha256(std::string_view key, std::string_view data) {
  Sha256Digest out{};
  size_t length = 0;
  // A null key would mean "the key set before", of which there is none.
  static const unsigned char kEmpty = 0;
  const unsigned char* key_bytes = key.empty() ? &kEmpty : bytes_of(key);
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_dup(hmac_sha256_template());
  const bool ok = ctx != nullptr && EVP_MAC_init(ctx, key_bytes, key.size(), nullptr) == 1 &&
                  EVP_MAC_update(ctx, bytes_of(data), data.size()) == 1 &&
                  EVP_MAC_final(ctx, out.data(), &length, out.size()) == 1 && length == kSha256Size;
  EVP_MAC_CTX_free(ctx);
  if (!ok) crypto_failure("HMAC-SHA-256");
  return out;
}

Sha256Digest salted_password(std::string_view password, std::string_view salt, int iterations) {
  assert(iterations >= 1);
  if (password.size() > INT_MAX || salt.size() > INT_MAX) crypto_failure("PBKDF2 input too long");
  Sha256Digest out{};
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()), bytes_of(salt),
                        static_cast<int>(salt.size()), iterations, sha256_md(),
                        static_cast<int>(out.size()), out.data()) != 1) {
    crypto_failure("PBKDF2-HMAC-SHA-256");
  }
  return out;
}

std::string md5_hex(std::string_view data) {
  std::array<unsigned char, kMd5Size> digest{};
  unsigned int length = 0;
  if (EVP_Digest(data.data(), data.size(), digest.data(), &length, EVP_md5(), nullptr) != 1 ||
      length != kMd5Size) {
    crypto_failure("MD5");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * kMd5Size);
  for (unsigned char b : digest) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0x0F]);
  }
  return out;
}

void fill_random(std::span<uint8_t> out) {
  constexpr size_t kReserve = 512;
  struct Reserve {
    std::array<uint8_t, kReserve> bytes{};
    size_t used = kReserve;  // Empty until the first request.
    ~Reserve() { OPENSSL_cleanse(bytes.data(), bytes.size()); }
  };
  thread_local Reserve reserve;
  if (out.size() > kReserve / 4) {
    if (RAND_bytes(out.data(), static_cast<int>(out.size())) != 1) crypto_failure("RAND_bytes");
    return;
  }
  if (kReserve - reserve.used < out.size()) {
    if (RAND_bytes(reserve.bytes.data(), static_cast<int>(kReserve)) != 1) {
      crypto_failure("RAND_bytes");
    }
    reserve.used = 0;
  }
  uint8_t* from = reserve.bytes.data() + reserve.used;
  std::memcpy(out.data(), from, out.size());
  OPENSSL_cleanse(from, out.size());
  reserve.used += out.size();
}

std::string random_bytes(size_t n) {
  std::string out(n, '\0');
  fill_random({reinterpret_cast<uint8_t*>(out.data()), n});
  return out;
}

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

}  // namespace pgmux::protocol
