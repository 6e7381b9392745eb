// The cryptographic building blocks of password authentication: SHA-256,
// HMAC-SHA-256, PBKDF2 (SCRAM's Hi()), MD5 in hex, random bytes and base64.
// Thin wrappers over OpenSSL libcrypto; pure functions, no I/O.
//
// libcrypto failing to hash, MAC or produce random bytes means the process
// is broken (or a FIPS policy forbids the algorithm); nothing sensible can
// continue. These functions then write "pgmux: libcrypto failure: <what>" to
// stderr and abort: they never return an error for it. protocol/ does not log.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "protocol/result.h"

namespace pgmux::protocol {

inline constexpr size_t kSha256Size = 32;
inline constexpr size_t kMd5Size = 16;

// A SHA-256 or HMAC-SHA-256 result; also the type of a SCRAM StoredKey,
// ServerKey and SaltedPassword.
using Sha256Digest = std::array<uint8_t, kSha256Size>;

// The digest's raw bytes as a string_view, valid as long as `digest`.
std::string_view view_of(const Sha256Digest& digest);

// SHA-256 of `data`.
Sha256Digest sha256(std::string_view data);

// HMAC-SHA-256 of `data` under `key` (RFC 2104).
Sha256Digest hmac_sha256(std::string_view key, std::string_view data);

// RFC 5802 section 3: SaltedPassword := Hi(Normalize(password), salt, i),
// i.e. PBKDF2-HMAC-SHA-256 with one 32-byte block. The password is used as
// given: no SASLprep, which is what PostgreSQL does for passwords that are not
// valid UTF-8 and matches it for ASCII ones. The cost grows linearly with
// `iterations`. The caller wipes the result (OPENSSL_cleanse) when done.
// REQUIRES: iterations >= 1; password and salt no longer than INT_MAX bytes
// (longer aborts, like a libcrypto failure).
Sha256Digest salted_password(std::string_view password, std::string_view salt, int iterations);

// MD5 of `data` as 32 lower-case hex digits, PostgreSQL's md5 password form.
std::string md5_hex(std::string_view data);

// `n` bytes from OpenSSL's CSPRNG. REQUIRES: n <= INT_MAX.
std::string random_bytes(size_t n);
// Fills `out` from OpenSSL's CSPRNG. Small requests (a cancel key, a salt,
// a nonce) are served from a per-thread reserve that one RAND_bytes call
// refills, since each RAND_bytes call costs microseconds of lookups in
// OpenSSL 3; every byte is handed out once, then wiped from the reserve.
void fill_random(std::span<uint8_t> out);

// Base64 with the standard alphabet and padding (RFC 4648 section 4), as
// SCRAM uses it.
std::string base64_encode(std::string_view bytes);

// Strict: whole quanta of four, padding only at the very end, no whitespace,
// and no stray bits in the last quantum. Anything else is an Error with
// SQLSTATE 08P01 (the input comes from a peer).
Result<std::string> base64_decode(std::string_view text);

}  // namespace pgmux::protocol
