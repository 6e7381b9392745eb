#include "protocol/scram_server.h"

#include <doctest/doctest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "protocol/auth.h"
#include "protocol/crypto.h"
#include "protocol/sqlstate.h"

namespace pgmux::protocol {
namespace {

// A secret PostgreSQL 15.20 stored for `CREATE ROLE alice PASSWORD 'correct horse'`
// with password_encryption = 'scram-sha-256' (read from pg_authid at authoring
// time; Python's hashlib.pbkdf2_hmac + hmac give the same keys).
constexpr std::string_view kPostgresSecret =
    "SCRAM-SHA-256$4096:egFu5yvyPkIvEM1w+Z61OQ==$Cr8//rctIgHNZJkZUWEaBcRAwZMqECQripPtOc0FCBo=:"
    "WrjvaiNpWo4+GqKnKFUt0hkgy8I95yxxi66fY9Bw8Nc=";

// tls-server-end-point data is the certificate's hash; any 32 bytes will do.
constexpr std::string_view kChannelBinding = "0123456789abcdef0123456789abcdef";
constexpr std::string_view kServerNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";

std::string_view as_view(const unsigned char* p, size_t n) {
  return {reinterpret_cast<const char*>(p), n};
}

std::string hmac(std::string_view key, std::string_view data) {
  unsigned char out[32];
  unsigned int n = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &n);
  return std::string(as_view(out, n));
}

std::string sha256(std::string_view data) {
  unsigned char out[32];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), out, &n, EVP_sha256(), nullptr);
  return std::string(as_view(out, n));
}

// A SCRAM client built in the test from RFC 5802 section 3, so that it can
// send any gs2 header and channel binding data. Returns client-final-message
// and sets `server_final` to what an honest server answers.
std::string hand_built_client_final(std::string_view password, const ScramSecret& secret,
                                    std::string_view gs2_header, std::string_view cbind_data,
                                    std::string_view client_first_bare,
                                    std::string_view server_first, std::string* server_final,
                                    std::string_view extension = {}) {
  unsigned char salted[32];
  PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                    reinterpret_cast<const unsigned char*>(secret.salt.data()),
                    static_cast<int>(secret.salt.size()), secret.iterations, EVP_sha256(), 32,
                    salted);
  const std::string client_key = hmac(as_view(salted, 32), "Client Key");
  const std::string server_key = hmac(as_view(salted, 32), "Server Key");
  const std::string stored_key = sha256(client_key);
  const std::string nonce = std::string(server_first.substr(2, server_first.find(',') - 2));
  std::string without_proof =
      "c=" + base64_encode(std::string(gs2_header) + std::string(cbind_data)) + ",r=" + nonce;
  if (!extension.empty()) without_proof.append(",").append(extension);
  const std::string auth_message =
      std::string(client_first_bare) + "," + std::string(server_first) + "," + without_proof;
  const std::string signature = hmac(stored_key, auth_message);
  std::string proof(32, '\0');
  for (size_t i = 0; i < 32; ++i) proof[i] = static_cast<char>(client_key[i] ^ signature[i]);
  *server_final = "v=" + base64_encode(hmac(server_key, auth_message));
  return without_proof + ",p=" + base64_encode(proof);
}

TEST_CASE("ScramServer: a full exchange with ScramClient") {
  const ScramSecret secret = make_scram_secret("pencil");
  CHECK(secret.salt.size() == 16);
  CHECK(secret.iterations == 4096);

  ScramServer server(secret, "");
  CHECK_FALSE(server.offers_plus());
  ScramClient client("", "pencil");
  auto server_first = server.handle_client_first("SCRAM-SHA-256", client.client_first_message());
  REQUIRE(server_first.ok());
  auto client_final = client.handle_server_first(*server_first);
  REQUIRE(client_final.ok());
  auto server_final = server.handle_client_final(*client_final);
  REQUIRE(server_final.ok());
  CHECK(client.verify_server_final(*server_final).ok());

  // One attempt per exchange: replaying the client's final message fails.
  CHECK_FALSE(server.handle_client_final(*client_final).ok());
}

TEST_CASE("ScramServer: a wrong password fails with 28P01") {
  ScramServer server(make_scram_secret("pencil"), "");
  ScramClient client("", "pen");
  auto server_first = server.handle_client_first("SCRAM-SHA-256", client.client_first_message());
  REQUIRE(server_first.ok());
  auto client_final = client.handle_server_first(*server_first);
  REQUIRE(client_final.ok());
  auto server_final = server.handle_client_final(*client_final);
  REQUIRE_FALSE(server_final.ok());
  CHECK(server_final.error().sqlstate == sqlstate::kInvalidPassword);
  CHECK(server_final.error().message == "password authentication failed");
}

TEST_CASE("ScramServer: a mock secret fails like a wrong password") {
  ScramServer server(mock_scram_secret("nobody", "seed"), "");
  ScramClient client("", "anything");
  auto server_first = server.handle_client_first("SCRAM-SHA-256", client.client_first_message());
  REQUIRE(server_first.ok());
  auto client_final = client.handle_server_first(*server_first);
  REQUIRE(client_final.ok());
  auto server_final = server.handle_client_final(*client_final);
  REQUIRE_FALSE(server_final.ok());
  CHECK(server_final.error().sqlstate == sqlstate::kInvalidPassword);
}

TEST_CASE("ScramServer: the RFC 7677 vector") {
  auto salt = base64_decode("W22ZaJ0SNY7soEsUEjb6gQ==");
  REQUIRE(salt.ok());
  ScramServer server(make_scram_secret("pencil", *salt, 4096), "", std::string(kServerNonce));
  auto server_first =
      server.handle_client_first("SCRAM-SHA-256", "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
  REQUIRE(server_first.ok());
  CHECK(*server_first ==
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
  auto server_final = server.handle_client_final(
      "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
      "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
  REQUIRE(server_final.ok());
  CHECK(*server_final == "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
}

TEST_CASE("ScramServer: a flipped proof bit or a wrong nonce fails") {
  auto salt = base64_decode("W22ZaJ0SNY7soEsUEjb6gQ==");
  REQUIRE(salt.ok());
  const ScramSecret secret = make_scram_secret("pencil", *salt, 4096);
  {
    ScramServer server(secret, "", std::string(kServerNonce));
    REQUIRE(server.handle_client_first("SCRAM-SHA-256", "n,,n=user,r=rOprNGfwEbeRWgbNEkqO").ok());
    auto r = server.handle_client_final(
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        "p=eHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().sqlstate == sqlstate::kInvalidPassword);
  }
  {
    ScramServer server(secret, "", std::string(kServerNonce));
    REQUIRE(server.handle_client_first("SCRAM-SHA-256", "n,,n=user,r=rOprNGfwEbeRWgbNEkqO").ok());
    auto r = server.handle_client_final(
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k1,"
        "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().sqlstate == sqlstate::kProtocolViolation);
  }
}

TEST_CASE("ScramServer: malformed and out-of-order messages") {
  const ScramSecret secret = make_scram_secret("pencil", "saltsaltsaltsalt", 1);
  {
    ScramServer server(secret, "");
    auto r = server.handle_client_final("c=biws,r=x,p=AAAA");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().sqlstate == sqlstate::kProtocolViolation);
  }
  {
    ScramServer server(secret, "");
    REQUIRE(server.handle_client_first("SCRAM-SHA-256", "n,,n=,r=abc").ok());
    CHECK_FALSE(server.handle_client_first("SCRAM-SHA-256", "n,,n=,r=abc").ok());
  }
  const std::string_view bad_first[] = {
      "",         "n",        "n,",          "x,,n=,r=abc",         "n,,",          "n,,n=",
      "n,,r=abc", "n,,n=,r=", "n,,n=,r=a b", "n,,n=,r=abc,garbage", "n,x,n=,r=abc",
  };
  for (std::string_view text : bad_first) {
    ScramServer server(secret, "");
    auto r = server.handle_client_first("SCRAM-SHA-256", text);
    REQUIRE_MESSAGE(!r.ok(), text);
    CHECK(r.error().sqlstate == sqlstate::kProtocolViolation);
  }
  {
    // Trailing extensions in client-first-message-bare are ignored, as
    // PostgreSQL does.
    ScramServer server(secret, "");
    CHECK(server.handle_client_first("SCRAM-SHA-256", "n,,n=,r=abc,x=ext").ok());
  }
  {
    ScramServer server(secret, "");
    auto r = server.handle_client_first("SCRAM-SHA-256", "n,,m=ext,n=,r=abc");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().sqlstate == sqlstate::kFeatureNotSupported);
  }
  {
    ScramServer server(secret, "");
    auto r = server.handle_client_first("SCRAM-SHA-1", "n,,n=,r=abc");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().sqlstate == sqlstate::kProtocolViolation);
    // -PLUS is not on the list without channel binding data.
    CHECK_FALSE(
        server.handle_client_first("SCRAM-SHA-256-PLUS", "p=tls-server-end-point,,n=,r=a").ok());
  }
  const std::string_view bad_final[] = {
      "",
      "c=biws",
      "c=biws,r=abcNONCE",
      "r=abcNONCE,c=biws,p=AAAA",
      "c=biws,r=abcNONCE,p=AAAA",
      "c=biws,r=abcNONCE,p=not base64",
      "c=biws,r=abcNONCE,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=,x=1",
      "c=biws,r=abcNONCE,oops,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
  };
  for (std::string_view text : bad_final) {
    ScramServer server(secret, "", "NONCE");
    REQUIRE(server.handle_client_first("SCRAM-SHA-256", "n,,n=,r=abc").ok());
    auto r = server.handle_client_final(text);
    REQUIRE_MESSAGE(!r.ok(), text);
    CHECK_MESSAGE(r.error().sqlstate == sqlstate::kProtocolViolation, text);
  }
}

TEST_CASE("ScramServer: an extension before the proof is signed and accepted") {
  const ScramSecret secret = make_scram_secret("pencil", "saltsaltsaltsalt", 1);
  ScramServer server(secret, "", "NONCE");
  auto server_first = server.handle_client_first("SCRAM-SHA-256", "n,,n=,r=abc");
  REQUIRE(server_first.ok());
  std::string expected_final;
  std::string client_final = hand_built_client_final("pencil", secret, "n,,", "", "n=,r=abc",
                                                     *server_first, &expected_final, "x=ext");
  REQUIRE(client_final.find(",x=ext,p=") != std::string::npos);
  auto r = server.handle_client_final(client_final);
  REQUIRE(r.ok());
  CHECK(*r == expected_final);

  // The proof covers client-final-without-proof: dropping the extension breaks it.
  ScramServer again(secret, "", "NONCE");
  REQUIRE(again.handle_client_first("SCRAM-SHA-256", "n,,n=,r=abc").ok());
  const size_t ext = client_final.find(",x=ext");
  client_final.erase(ext, 6);
  auto r2 = again.handle_client_final(client_final);
  REQUIRE_FALSE(r2.ok());
  CHECK(r2.error().sqlstate == sqlstate::kInvalidPassword);
}

TEST_CASE("ScramServer: SCRAM-SHA-256-PLUS with tls-server-end-point") {
  const ScramSecret secret = make_scram_secret("pencil", "saltsaltsaltsalt", 4096);
  constexpr std::string_view kHeader = "p=tls-server-end-point,,";
  const std::string client_first = std::string(kHeader) + "n=,r=abc";

  SUBCASE("the right binding data succeeds") {
    ScramServer server(secret, std::string(kChannelBinding));
    CHECK(server.offers_plus());
    auto server_first = server.handle_client_first("SCRAM-SHA-256-PLUS", client_first);
    REQUIRE(server_first.ok());
    std::string expected_final;
    const std::string client_final = hand_built_client_final(
        "pencil", secret, kHeader, kChannelBinding, "n=,r=abc", *server_first, &expected_final);
    auto server_final = server.handle_client_final(client_final);
    REQUIRE(server_final.ok());
    CHECK(*server_final == expected_final);
  }
  SUBCASE("other binding data fails with 08P01") {
    ScramServer server(secret, std::string(kChannelBinding));
    auto server_first = server.handle_client_first("SCRAM-SHA-256-PLUS", client_first);
    REQUIRE(server_first.ok());
    std::string expected_final;
    const std::string client_final =
        hand_built_client_final("pencil", secret, kHeader, "fedcba9876543210fedcba9876543210",
                                "n=,r=abc", *server_first, &expected_final);
    auto r = server.handle_client_final(client_final);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().sqlstate == sqlstate::kProtocolViolation);
    CHECK(r.error().message == "SCRAM channel binding check failed");
  }
  SUBCASE("no binding data in c= fails") {
    ScramServer server(secret, std::string(kChannelBinding));
    auto server_first = server.handle_client_first("SCRAM-SHA-256-PLUS", client_first);
    REQUIRE(server_first.ok());
    std::string expected_final;
    const std::string client_final = hand_built_client_final(
        "pencil", secret, kHeader, "", "n=,r=abc", *server_first, &expected_final);
    CHECK_FALSE(server.handle_client_final(client_final).ok());
  }
  SUBCASE("plain SCRAM-SHA-256 still works over TLS") {
    ScramServer server(secret, std::string(kChannelBinding));
    ScramClient client("", "pencil");
    auto server_first = server.handle_client_first("SCRAM-SHA-256", client.client_first_message());
    REQUIRE(server_first.ok());
    auto client_final = client.handle_server_first(*server_first);
    REQUIRE(client_final.ok());
    auto server_final = server.handle_client_final(*client_final);
    REQUIRE(server_final.ok());
    CHECK(client.verify_server_final(*server_final).ok());
  }
  SUBCASE("y,, while PLUS is offered is a downgrade: 28000") {
    ScramServer server(secret, std::string(kChannelBinding));
    auto r = server.handle_client_first("SCRAM-SHA-256", "y,,n=,r=abc");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().sqlstate == sqlstate::kInvalidAuthorization);
    CHECK(r.error().message == "SCRAM channel binding negotiation error");
  }
  SUBCASE("y,, without TLS is fine and binds c=eSws") {
    ScramServer server(secret, "");
    auto server_first = server.handle_client_first("SCRAM-SHA-256", "y,,n=,r=abc");
    REQUIRE(server_first.ok());
    std::string expected_final;
    const std::string client_final = hand_built_client_final(
        "pencil", secret, "y,,", "", "n=,r=abc", *server_first, &expected_final);
    CHECK(client_final.rfind("c=eSws,", 0) == 0);
    auto server_final = server.handle_client_final(client_final);
    REQUIRE(server_final.ok());
    CHECK(*server_final == expected_final);
  }
  SUBCASE("p= with plain SCRAM-SHA-256 fails") {
    ScramServer server(secret, std::string(kChannelBinding));
    auto r = server.handle_client_first("SCRAM-SHA-256", client_first);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().sqlstate == sqlstate::kProtocolViolation);
  }
  SUBCASE("PLUS without p= fails") {
    ScramServer server(secret, std::string(kChannelBinding));
    CHECK_FALSE(server.handle_client_first("SCRAM-SHA-256-PLUS", "n,,n=,r=abc").ok());
    ScramServer server2(secret, std::string(kChannelBinding));
    CHECK_FALSE(server2.handle_client_first("SCRAM-SHA-256-PLUS", "y,,n=,r=abc").ok());
  }
  SUBCASE("another channel binding type fails") {
    ScramServer server(secret, std::string(kChannelBinding));
    auto r = server.handle_client_first("SCRAM-SHA-256-PLUS", "p=tls-unique,,n=,r=abc");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().sqlstate == sqlstate::kProtocolViolation);
  }
  SUBCASE("an authzid fails with 0A000") {
    ScramServer server(secret, std::string(kChannelBinding));
    auto r =
        server.handle_client_first("SCRAM-SHA-256-PLUS", "p=tls-server-end-point,a=bob,n=,r=a");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().sqlstate == sqlstate::kFeatureNotSupported);
    CHECK(r.error().message == "client uses authorization identity, but it is not supported");
    ScramServer plain(secret, "");
    auto r2 = plain.handle_client_first("SCRAM-SHA-256", "n,a=bob,n=,r=abc");
    REQUIRE_FALSE(r2.ok());
    CHECK(r2.error().sqlstate == sqlstate::kFeatureNotSupported);
  }
}

TEST_CASE("SCRAM secrets: one stored by PostgreSQL") {
  auto secret = parse_scram_secret(kPostgresSecret);
  REQUIRE(secret.ok());
  CHECK(secret->iterations == 4096);
  CHECK(secret->salt.size() == 16);
  CHECK(format_scram_secret(*secret) == kPostgresSecret);

  const Credential credential = parse_credential(kPostgresSecret);
  REQUIRE(credential.kind == Credential::Kind::kScram);
  CHECK(verify_cleartext(credential, "alice", "correct horse"));
  CHECK_FALSE(verify_cleartext(credential, "alice", "correct horsE"));
  CHECK_FALSE(verify_cleartext(credential, "alice", ""));

  // Same salt and count: the same secret as PostgreSQL's.
  CHECK(format_scram_secret(make_scram_secret("correct horse", secret->salt, 4096)) ==
        kPostgresSecret);

  ScramServer server(*secret, "");
  ScramClient client("", "correct horse");
  auto server_first = server.handle_client_first("SCRAM-SHA-256", client.client_first_message());
  REQUIRE(server_first.ok());
  auto client_final = client.handle_server_first(*server_first);
  REQUIRE(client_final.ok());
  auto server_final = server.handle_client_final(*client_final);
  REQUIRE(server_final.ok());
  CHECK(client.verify_server_final(*server_final).ok());
}

TEST_CASE("SCRAM secrets: make, format and parse") {
  // Computed independently at authoring time with Python's
  // hashlib.pbkdf2_hmac("sha256", b"pencil", b"saltsaltsaltsalt", 4096) and hmac.
  const ScramSecret secret = make_scram_secret("pencil", "saltsaltsaltsalt", 4096);
  const std::string text = format_scram_secret(secret);
  CHECK(text ==
        "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0c2FsdA==$Y7KMtnzzL+zDqi0RtBNdAPJekq+PCg4eCcAMKDtLILQ=:"
        "c1MMj1kLUJb96FIM7IjzQUXiW2pIi8LDbQl55vL1oRo=");
  auto back = parse_scram_secret(text);
  REQUIRE(back.ok());
  CHECK(back->iterations == secret.iterations);
  CHECK(back->salt == secret.salt);
  CHECK(back->stored_key == secret.stored_key);
  CHECK(back->server_key == secret.server_key);

  // Random salts differ.
  CHECK(make_scram_secret("pencil").salt != make_scram_secret("pencil").salt);

  const std::string_view bad[] = {
      "",
      "SCRAM-SHA-256$",
      "SCRAM-SHA-1$4096:c2FsdA==$Y7KMtnzzL+zDqi0RtBNdAPJekq+PCg4eCcAMKDtLILQ=:"
      "c1MMj1kLUJb96FIM7IjzQUXiW2pIi8LDbQl55vL1oRo=",
      "SCRAM-SHA-256$0:c2FsdA==$Y7KMtnzzL+zDqi0RtBNdAPJekq+PCg4eCcAMKDtLILQ=:"
      "c1MMj1kLUJb96FIM7IjzQUXiW2pIi8LDbQl55vL1oRo=",
      "SCRAM-SHA-256$x:c2FsdA==$Y7KMtnzzL+zDqi0RtBNdAPJekq+PCg4eCcAMKDtLILQ=:"
      "c1MMj1kLUJb96FIM7IjzQUXiW2pIi8LDbQl55vL1oRo=",
      "SCRAM-SHA-256$4096:$Y7KMtnzzL+zDqi0RtBNdAPJekq+PCg4eCcAMKDtLILQ=:"
      "c1MMj1kLUJb96FIM7IjzQUXiW2pIi8LDbQl55vL1oRo=",
      "SCRAM-SHA-256$4096:c2FsdA==$Y7KMtnzzL+zDqi0RtBNdAPJekq+PCg4eCcAMKDtLIL=:"
      "c1MMj1kLUJb96FIM7IjzQUXiW2pIi8LDbQl55vL1oRo=",
      "SCRAM-SHA-256$4096:c2FsdA==$Y7KMtnzzL+zDqi0RtBNdAPJekq+PCg4eCcAMKDtLILQ=",
      "SCRAM-SHA-256$4096:c2FsdA==$Y7KMtnzzL+zDqi0RtBNdAPJekq+PCg4eCcAMKDtLILQ=:c2FsdA==",
  };
  for (std::string_view text_case : bad) {
    CHECK_MESSAGE(!parse_scram_secret(text_case).ok(), text_case);
  }
}

TEST_CASE("mock_scram_secret is deterministic and differs per user") {
  const ScramSecret a1 = mock_scram_secret("alice", "seed");
  const ScramSecret a2 = mock_scram_secret("alice", "seed");
  const ScramSecret b = mock_scram_secret("bob", "seed");
  const ScramSecret a_other_seed = mock_scram_secret("alice", "other seed");
  CHECK(format_scram_secret(a1) == format_scram_secret(a2));
  CHECK(a1.salt.size() == 16);
  CHECK(a1.salt != b.salt);
  CHECK(a1.stored_key != b.stored_key);
  CHECK(a1.server_key != b.server_key);
  CHECK(a1.stored_key != a1.server_key);
  CHECK(a1.salt != a_other_seed.salt);
  // It looks like a real secret.
  CHECK(parse_scram_secret(format_scram_secret(a1)).ok());
}

TEST_CASE("parse_credential recognises the three forms") {
  const Credential plain = parse_credential("hunter2");
  CHECK(plain.kind == Credential::Kind::kPlain);
  CHECK(plain.plain == "hunter2");

  const Credential md5 = parse_credential("md520eb1b22a92b5c573dc1eb4331fc49ee");
  CHECK(md5.kind == Credential::Kind::kMd5);
  CHECK(md5.md5 == "md520eb1b22a92b5c573dc1eb4331fc49ee");

  const Credential scram = parse_credential(kPostgresSecret);
  CHECK(scram.kind == Credential::Kind::kScram);

  // Anything else is a plain password: upper-case hex, a wrong length, and a
  // string that starts like a SCRAM secret but does not parse.
  for (std::string_view text :
       {"md520EB1B22A92B5C573DC1EB4331FC49EE", "md520eb1b22a92b5c573dc1eb4331fc49e",
        "md520eb1b22a92b5c573dc1eb4331fc49eee", "md5", "", "SCRAM-SHA-256$4096:broken",
        "SCRAM-SHA-256$"}) {
    const Credential c = parse_credential(text);
    CHECK_MESSAGE(c.kind == Credential::Kind::kPlain, text);
    CHECK(c.plain == text);
  }
}

TEST_CASE("md5_stored_hash and verify_md5_response") {
  // Computed independently at authoring time:
  //   printf %s 'secretuser' | md5sum                    -> 20eb1b22a92b5c573dc1eb4331fc49ee
  //   python3 -c 'import hashlib; print("md5" + hashlib.md5(
  //     b"20eb1b22a92b5c573dc1eb4331fc49ee" + bytes([1, 2, 3, 4])).hexdigest())'
  constexpr std::string_view kStored = "md520eb1b22a92b5c573dc1eb4331fc49ee";
  constexpr std::string_view kResponse = "md5fccef98e4f1cf6cbe96b743fad4e8bd0";
  const std::array<uint8_t, 4> salt{1, 2, 3, 4};
  CHECK(md5_stored_hash("user", "secret") == kStored);
  // The client side agrees.
  CHECK(md5_password_response("user", "secret", salt) == kResponse);

  const Credential plain = parse_credential("secret");
  const Credential md5 = parse_credential(kStored);
  for (const Credential* c : {&plain, &md5}) {
    CHECK(verify_md5_response(*c, "user", salt, kResponse));
    CHECK_FALSE(verify_md5_response(*c, "user", {1, 2, 3, 5}, kResponse));
    CHECK_FALSE(verify_md5_response(*c, "user", salt, "md5fccef98e4f1cf6cbe96b743fad4e8bd1"));
    CHECK_FALSE(verify_md5_response(*c, "user", salt, "md5fccef98e4f1cf6cbe96b743fad4e8bd"));
    CHECK_FALSE(verify_md5_response(*c, "user", salt, ""));
  }
  // For a plain password the user name is part of the hash.
  CHECK_FALSE(verify_md5_response(plain, "other", salt, kResponse));

  const Credential scram = parse_credential(format_scram_secret(make_scram_secret("secret")));
  REQUIRE(scram.kind == Credential::Kind::kScram);
  CHECK_FALSE(verify_md5_response(scram, "user", salt, kResponse));
}

TEST_CASE("verify_cleartext for plain and md5 credentials") {
  const Credential plain = parse_credential("secret");
  CHECK(verify_cleartext(plain, "user", "secret"));
  CHECK_FALSE(verify_cleartext(plain, "user", "secreT"));
  CHECK_FALSE(verify_cleartext(plain, "user", "secret "));
  CHECK_FALSE(verify_cleartext(plain, "user", ""));

  const Credential md5 = parse_credential("md520eb1b22a92b5c573dc1eb4331fc49ee");
  CHECK(verify_cleartext(md5, "user", "secret"));
  CHECK_FALSE(verify_cleartext(md5, "other", "secret"));
  CHECK_FALSE(verify_cleartext(md5, "user", "secrets"));
}

}  // namespace
}  // namespace pgmux::protocol
