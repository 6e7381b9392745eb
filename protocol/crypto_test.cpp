#include "protocol/crypto.h"

#include <doctest/doctest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <set>
#include <string>
#include <string_view>

#include "protocol/sqlstate.h"

namespace pgmux::protocol {
namespace {

std::string hex(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (char c : bytes) {
    const auto b = static_cast<unsigned char>(c);
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0x0F]);
  }
  return out;
}

std::string hex(const Sha256Digest& digest) { return hex(view_of(digest)); }

TEST_CASE("sha256: FIPS 180-2 \"abc\"") {
  CHECK(hex(sha256("abc")) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("hmac_sha256: RFC 4231 test cases 1 and 2") {
  CHECK(hex(hmac_sha256(std::string(20, '\x0b'), "Hi There")) ==
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  CHECK(hex(hmac_sha256("Jefe", "what do ya want for nothing?")) ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST_CASE("hmac_sha256: agrees with OpenSSL's one-shot HMAC for empty, short and long keys") {
  const std::string keys[] = {"", "k", std::string(64, 'a'), std::string(200, 'b')};
  const std::string data[] = {"", "what do ya want for nothing?", std::string(1000, 'x')};
  for (const std::string& key : keys) {
    for (const std::string& text : data) {
      Sha256Digest want{};
      unsigned int length = 0;
      REQUIRE(HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
                   reinterpret_cast<const unsigned char*>(text.data()), text.size(), want.data(),
                   &length) != nullptr);
      CHECK(hmac_sha256(key, text) == want);
    }
  }
}

TEST_CASE("salted_password: RFC 7914 section 11, PBKDF2-HMAC-SHA-256") {
  // P = "passwd", S = "salt", c = 1; the first 32 of the 64 bytes given.
  CHECK(hex(salted_password("passwd", "salt", 1)) ==
        "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc");
}

TEST_CASE("SCRAM-SHA-256 from the primitives: the RFC 7677 proof and signature") {
  // RFC 5802 section 3, with RFC 7677 section 3's password, salt and nonces.
  auto salt = base64_decode("W22ZaJ0SNY7soEsUEjb6gQ==");
  REQUIRE(salt.ok());
  const Sha256Digest salted = salted_password("pencil", *salt, 4096);
  const Sha256Digest client_key = hmac_sha256(view_of(salted), "Client Key");
  const Sha256Digest stored_key = sha256(view_of(client_key));
  const std::string auth_message =
      "n=user,r=rOprNGfwEbeRWgbNEkqO,"
      "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
      "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
  const Sha256Digest client_signature = hmac_sha256(view_of(stored_key), auth_message);
  Sha256Digest proof{};
  for (size_t i = 0; i < proof.size(); ++i) {
    proof[i] = static_cast<uint8_t>(client_key[i] ^ client_signature[i]);
  }
  CHECK(base64_encode(view_of(proof)) == "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
  const Sha256Digest server_key = hmac_sha256(view_of(salted), "Server Key");
  CHECK(base64_encode(view_of(hmac_sha256(view_of(server_key), auth_message))) ==
        "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
}

TEST_CASE("md5_hex: RFC 1321 test suite") {
  CHECK(md5_hex("") == "d41d8cd98f00b204e9800998ecf8427e");
  CHECK(md5_hex("abc") == "900150983cd24fb0d6963f7d28e17f72");
}

TEST_CASE("random_bytes: the size asked for, different each time") {
  CHECK(random_bytes(0).empty());
  const std::string a = random_bytes(18);
  const std::string b = random_bytes(18);
  CHECK(a.size() == 18);
  CHECK(a != b);
}

TEST_CASE("fill_random: small requests across reserve refills never repeat, large ones too") {
  // 4-byte requests (cancel keys) drain and refill the reserve many times.
  std::set<uint32_t> seen;
  for (int i = 0; i < 2000; ++i) {
    uint32_t key = 0;
    fill_random({reinterpret_cast<uint8_t*>(&key), sizeof key});
    seen.insert(key);
  }
  CHECK(seen.size() >= 1999);  // A 32-bit collision in 2000 draws is rare, not impossible.
  // Requests larger than a quarter of the reserve bypass it.
  std::array<uint8_t, 1000> big1{}, big2{};
  fill_random(big1);
  fill_random(big2);
  CHECK(big1 != big2);
  CHECK(std::count(big1.begin(), big1.end(), 0) < 50);
}

TEST_CASE("base64: RFC 4648 section 10 round trips") {
  const std::string_view samples[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  const std::string_view encoded[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                      "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
  for (size_t i = 0; i < std::size(samples); ++i) {
    CHECK(base64_encode(samples[i]) == encoded[i]);
    auto back = base64_decode(encoded[i]);
    REQUIRE(back.ok());
    CHECK(*back == samples[i]);
  }
}

TEST_CASE("base64: every byte value survives a round trip") {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  for (size_t length = 0; length <= all.size(); length += 85) {
    const std::string_view bytes = std::string_view(all).substr(all.size() - length);
    auto back = base64_decode(base64_encode(bytes));
    REQUIRE(back.ok());
    CHECK(*back == bytes);
  }
}

TEST_CASE("base64: strict decoding rejects malformed text with 08P01") {
  CHECK_FALSE(base64_decode(std::string_view("\0\xff", 2)).ok());
  for (std::string_view bad : {"Zg=", "Zg=a", "Z===", "Zh==", "Zm9", "Zm 9v", "=Zm9",
                               "Zg==Zg==", "Zm9v\n", "Zm9v-_==", "Zm9vYg==="}) {
    auto decoded = base64_decode(bad);
    REQUIRE_MESSAGE(!decoded.ok(), bad);
    CHECK(decoded.error().sqlstate == sqlstate::kProtocolViolation);
  }
}

}  // namespace
}  // namespace pgmux::protocol
