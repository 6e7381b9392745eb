#include "protocol/auth_messages.h"

#include <doctest/doctest.h>

namespace pgmux::protocol {
namespace {

ByteView view(const Bytes& bytes) {
  return {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()};
}

TEST_CASE("authentication requests round-trip through parse_authentication") {
  Bytes out;
  append_authentication_sasl(out, {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"});
  Frame frame = frame_message(view(out), 1 << 20);
  REQUIRE(frame.whole_in(view(out)));
  CHECK(frame.size == out.size());
  auto auth = parse_authentication(view(out));
  REQUIRE(auth.ok());
  CHECK(auth->code == kAuthSasl);
  auto mechanisms = parse_sasl_mechanisms(auth->data);
  REQUIRE(mechanisms.ok());
  REQUIRE(mechanisms->size() == 2);
  CHECK((*mechanisms)[0] == "SCRAM-SHA-256-PLUS");

  Bytes md5;
  append_authentication_md5(md5, {1, 2, 3, 4});
  auto md5_auth = parse_authentication(view(md5));
  REQUIRE(md5_auth.ok());
  CHECK(md5_auth->code == kAuthMd5Password);
  CHECK(md5_auth->data.size() == 4);
  CHECK(md5_auth->data[3] == 4);

  Bytes final_message;
  append_authentication_sasl_final(final_message, "v=abc");
  auto final_auth = parse_authentication(view(final_message));
  REQUIRE(final_auth.ok());
  CHECK(final_auth->code == kAuthSaslFinal);
  CHECK(std::string_view(reinterpret_cast<const char*>(final_auth->data.data()),
                         final_auth->data.size()) == "v=abc");
}

TEST_CASE("client password messages round-trip through the inspectors") {
  Bytes out;
  append_password_message(out, "md5abcdef");
  auto password = parse_password_message(view(out));
  REQUIRE(password.ok());
  CHECK(*password == "md5abcdef");

  Bytes initial;
  append_sasl_initial_response(initial, "SCRAM-SHA-256", "n,,n=,r=abc");
  auto parsed = parse_sasl_initial_response(view(initial));
  REQUIRE(parsed.ok());
  CHECK(parsed->mechanism == "SCRAM-SHA-256");
  CHECK(parsed->data == "n,,n=,r=abc");

  Bytes response;
  append_sasl_response(response, "c=biws,r=abc,p=xyz");
  auto data = parse_sasl_response(view(response));
  REQUIRE(data.ok());
  CHECK(*data == "c=biws,r=abc,p=xyz");
}

TEST_CASE("malformed client password messages are 08P01") {
  Bytes no_nul = std::string(
      "p\0\0\0\x07"
      "abc",
      8);
  auto password = parse_password_message(view(no_nul));
  REQUIRE_FALSE(password.ok());
  CHECK(password.error().sqlstate == "08P01");

  Bytes bad_length = std::string(
      "p\0\0\0\x14SCRAM-SHA-256\0\0\0\0\x09"
      "ab",
      26);
  CHECK_FALSE(parse_sasl_initial_response(view(bad_length)).ok());
  Bytes wrong_type = std::string(
      "Q\0\0\0\x05"
      "a",
      6);
  CHECK_FALSE(parse_sasl_response(view(wrong_type)).ok());
}

}  // namespace
}  // namespace pgmux::protocol
