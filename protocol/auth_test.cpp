#include "protocol/auth.h"

#include <doctest/doctest.h>

#include "protocol/sqlstate.h"

namespace pgmux::protocol {
namespace {

// RFC 7677 section 3.
constexpr std::string_view kClientNonce = "rOprNGfwEbeRWgbNEkqO";
constexpr std::string_view kServerFirst =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
constexpr std::string_view kClientFinal =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
constexpr std::string_view kServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

ScramClient rfc_client() { return ScramClient("user", "pencil", std::string(kClientNonce)); }

TEST_CASE("SCRAM-SHA-256: the RFC 7677 vector") {
  ScramClient client = rfc_client();
  CHECK(client.client_first_message() == "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
  auto final_message = client.handle_server_first(kServerFirst);
  REQUIRE(final_message.ok());
  CHECK(*final_message == kClientFinal);
  CHECK(client.verify_server_final(kServerFinal).ok());
}

TEST_CASE("SCRAM-SHA-256: a tampered server signature fails with 28000") {
  ScramClient client = rfc_client();
  REQUIRE(client.handle_server_first(kServerFirst).ok());
  std::string tampered(kServerFinal);
  tampered[2] = tampered[2] == 'A' ? 'B' : 'A';
  const Status s = client.verify_server_final(tampered);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().sqlstate == sqlstate::kInvalidAuthorization);
  CHECK_FALSE(client.verify_server_final("v=").ok());
  CHECK_FALSE(client.verify_server_final("v=not base64!").ok());
  CHECK_FALSE(client.verify_server_final("").ok());
}

TEST_CASE("SCRAM-SHA-256: the server's error is reported with 28000") {
  ScramClient client = rfc_client();
  REQUIRE(client.handle_server_first(kServerFirst).ok());
  const Status s = client.verify_server_final("e=invalid-proof");
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().sqlstate == sqlstate::kInvalidAuthorization);
  CHECK(s.error().message.find("invalid-proof") != std::string::npos);
}

TEST_CASE("SCRAM-SHA-256: server-final before server-first fails") {
  const ScramClient client = rfc_client();
  CHECK_FALSE(client.verify_server_final(kServerFinal).ok());
}

TEST_CASE("SCRAM-SHA-256: a nonce that does not extend ours fails") {
  ScramClient client = rfc_client();
  auto r = client.handle_server_first(
      "r=XOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("nonce") != std::string::npos);
  // The bare client nonce, with nothing added by the server, is not enough.
  CHECK_FALSE(
      client.handle_server_first("r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1").ok());
}

TEST_CASE("SCRAM-SHA-256: malformed server-first messages") {
  const std::string_view cases[] = {
      "",
      "r=rOprNGfwEbeRWgbNEkqOxyz",
      "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==",
      "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0",
      "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-1",
      "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=",
      "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=2147483648",
      "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ=,i=1",
      "r=rOprNGfwEbeRWgbNEkqOxyz,s=,i=1",
      "r=rOprNGfwEbeRWgbNEkqOxyz,i=1,s=W22ZaJ0SNY7soEsUEjb6gQ==",
      "m=ext,r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1",
  };
  for (std::string_view text : cases) {
    ScramClient client = rfc_client();
    auto r = client.handle_server_first(text);
    CHECK_MESSAGE(!r.ok(), text);
  }
}

TEST_CASE("SCRAM-SHA-256: generated nonce and escaped user name") {
  const ScramClient a("", "pw");
  const ScramClient b("", "pw");
  const std::string first = a.client_first_message();
  REQUIRE(first.rfind("n,,n=,r=", 0) == 0);
  CHECK(first.size() == 8 + 24);  // 18 random bytes in base64.
  CHECK(first != b.client_first_message());

  const ScramClient odd("a=b,c", "pw", "nonce");
  CHECK(odd.client_first_message() == "n,,n=a=3Db=2Cc,r=nonce");
}

TEST_CASE("md5_password_response") {
  // Computed independently at authoring time:
  //   python3 -c 'import hashlib; a = hashlib.md5(b"secretalice").hexdigest();
  //     print("md5" + hashlib.md5(a.encode() + bytes([1, 2, 3, 4])).hexdigest())'
  CHECK(md5_password_response("alice", "secret", {1, 2, 3, 4}) ==
        "md598a0412b9c31436fc53776e863350083");
}

}  // namespace
}  // namespace pgmux::protocol
