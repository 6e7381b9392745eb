#include "protocol/messages.h"

#include <doctest/doctest.h>

#include <string>

#include "protocol/sqlstate.h"

namespace pgmux::protocol {
namespace {

ByteView view(const Bytes& b) { return {reinterpret_cast<const uint8_t*>(b.data()), b.size()}; }
Bytes raw(std::initializer_list<int> bytes) {
  Bytes out;
  for (int b : bytes) out.push_back(static_cast<char>(b));
  return out;
}

constexpr uint32_t kMax = 1 << 20;

// Frames `msg` as one whole typed message and returns its type.
char frame_whole(const Bytes& msg) {
  const Frame f = frame_message(view(msg), kMax);
  REQUIRE(f.status == FrameStatus::kComplete);
  REQUIRE(f.size == msg.size());
  return f.type;
}

void check_protocol_violation(const Error& e, std::string_view mentions) {
  CHECK(e.sqlstate == sqlstate::kProtocolViolation);
  CHECK_MESSAGE(e.message.find(mentions) != std::string::npos, e.message);
}

// ---- Golden bytes (PostgreSQL docs 55.7) -------------------------------------

TEST_CASE("ReadyForQuery golden bytes") {
  Bytes out;
  append_ready_for_query(out, 'I');
  CHECK(out == raw({'Z', 0, 0, 0, 5, 'I'}));
}

TEST_CASE("SSLRequest golden bytes") {
  Bytes out;
  append_ssl_request(out);
  CHECK(out == raw({0, 0, 0, 8, 0x04, 0xD2, 0x16, 0x2F}));  // 1234.5679
}

TEST_CASE("CancelRequest golden bytes") {
  Bytes out;
  append_cancel_request(out, 0x01020304, -2);
  CHECK(out == raw({0, 0, 0, 16, 0x04, 0xD2, 0x16, 0x2E, 1, 2, 3, 4, 0xFF, 0xFF, 0xFF, 0xFE}));
}

TEST_CASE("AuthenticationOk, Terminate and Sync golden bytes") {
  Bytes out;
  append_authentication_ok(out);
  append_terminate(out);
  append_sync(out);
  CHECK(out == raw({'R', 0, 0, 0, 8, 0, 0, 0, 0, 'X', 0, 0, 0, 4, 'S', 0, 0, 0, 4}));
}

// ---- Round trips ------------------------------------------------------------

TEST_CASE("StartupMessage round trip") {
  Bytes out;
  append_startup_message(out, {{"user", "alice"}, {"database", "app"}, {"application_name", "x"}});
  CHECK(frame_startup(view(out)).size == out.size());
  auto p = parse_startup_packet(view(out));
  REQUIRE(p.ok());
  CHECK(p->kind == StartupKind::kStartup);
  CHECK(p->version == kProtocolVersion3);
  CHECK(p->user == "alice");
  CHECK(p->database == "app");
  REQUIRE(p->params.size() == 3);
  CHECK(p->params[2].first == "application_name");
  CHECK(p->params[2].second == "x");
}

TEST_CASE("StartupMessage database defaults to user") {
  Bytes out;
  append_startup_message(out, {{"user", "bob"}});
  auto p = parse_startup_packet(view(out));
  REQUIRE(p.ok());
  CHECK(p->database == "bob");

  Bytes none;
  append_startup_message(none, {});
  auto q = parse_startup_packet(view(none));
  REQUIRE(q.ok());  // A missing user is the proxy's to reject with 28000.
  CHECK(q->user.empty());
  CHECK(q->database.empty());
}

TEST_CASE("StartupMessage accepts a newer 3.x minor version") {
  Bytes out;
  append_startup_message(out, {{"user", "u"}});
  out[7] = 2;  // 3.2
  auto p = parse_startup_packet(view(out));
  REQUIRE(p.ok());
  CHECK(p->version == ((3u << 16) | 2u));
}

TEST_CASE("SSLRequest and CancelRequest round trip") {
  Bytes ssl;
  append_ssl_request(ssl);
  auto s = parse_startup_packet(view(ssl));
  REQUIRE(s.ok());
  CHECK(s->kind == StartupKind::kSslRequest);

  Bytes cancel;
  append_cancel_request(cancel, 4242, -123456789);
  auto c = parse_startup_packet(view(cancel));
  REQUIRE(c.ok());
  CHECK(c->kind == StartupKind::kCancelRequest);
  CHECK(c->cancel_pid == 4242);
  CHECK(c->cancel_secret == -123456789);

  Bytes gss = raw({0, 0, 0, 8, 0x04, 0xD2, 0x16, 0x30});
  auto g = parse_startup_packet(view(gss));
  REQUIRE(g.ok());
  CHECK(g->kind == StartupKind::kGssEncRequest);
}

TEST_CASE("ErrorResponse and NoticeResponse round trip") {
  Bytes out;
  append_error_response(out, "FATAL", "28P01", "password authentication failed", "d", "h");
  CHECK(frame_whole(out) == 'E');
  auto e = parse_error_response(view(out));
  REQUIRE(e.ok());
  CHECK(e->severity == "FATAL");
  CHECK(e->sqlstate == "28P01");
  CHECK(e->message == "password authentication failed");
  CHECK(e->detail == "d");
  CHECK(e->hint == "h");

  Bytes notice;
  append_notice_response(notice, "NOTICE", "00000", "hello");
  CHECK(frame_whole(notice) == 'N');
  auto n = parse_error_response(view(notice));
  REQUIRE(n.ok());
  CHECK(n->severity == "NOTICE");
  CHECK(n->message == "hello");
  CHECK(n->detail.empty());
  CHECK(n->hint.empty());
}

TEST_CASE("ParameterStatus, BackendKeyData, ReadyForQuery, AuthenticationOk round trip") {
  Bytes ps;
  append_parameter_status(ps, "server_version", "16.2");
  auto p = parse_parameter_status(view(ps));
  REQUIRE(p.ok());
  CHECK(p->name == "server_version");
  CHECK(p->value == "16.2");

  Bytes kd;
  append_backend_key_data(kd, 77, -1);
  auto k = parse_backend_key_data(view(kd));
  REQUIRE(k.ok());
  CHECK(k->pid == 77);
  CHECK(k->secret == -1);

  for (char status : {'I', 'T', 'E'}) {
    Bytes z;
    append_ready_for_query(z, status);
    auto r = parse_ready_for_query(view(z));
    REQUIRE(r.ok());
    CHECK(*r == status);
  }

  Bytes ok;
  append_authentication_ok(ok);
  auto a = parse_authentication(view(ok));
  REQUIRE(a.ok());
  CHECK(a->code == kAuthOk);
  CHECK(a->data.empty());
}

TEST_CASE("frontend messages frame to their own size") {
  Bytes q;
  append_query(q, "SELECT 1");
  CHECK(frame_whole(q) == 'Q');
  CHECK(q.substr(5) == std::string("SELECT 1\0", 9));

  Bytes x;
  append_terminate(x);
  CHECK(frame_whole(x) == 'X');
  Bytes s;
  append_sync(s);
  CHECK(frame_whole(s) == 'S');

  Bytes pw;
  append_password_message(pw, "md5abc");
  CHECK(frame_whole(pw) == 'p');
  CHECK(pw.substr(5) == std::string("md5abc\0", 7));

  Bytes init;
  append_sasl_initial_response(init, "SCRAM-SHA-256", "n,,n=,r=abc");
  CHECK(frame_whole(init) == 'p');
  CHECK(init.substr(5) == std::string("SCRAM-SHA-256\0\0\0\0\x0bn,,n=,r=abc", 29));

  Bytes resp;
  append_sasl_response(resp, "c=biws");
  CHECK(frame_whole(resp) == 'p');
  CHECK(resp.substr(5) == "c=biws");
}

TEST_CASE("Authentication requests") {
  const Bytes md5 = raw({'R', 0, 0, 0, 12, 0, 0, 0, 5, 1, 2, 3, 4});
  auto m = parse_authentication(view(md5));
  REQUIRE(m.ok());
  CHECK(m->code == kAuthMd5Password);
  REQUIRE(m->data.size() == 4);
  CHECK(m->data[3] == 4);

  const Bytes short_salt = raw({'R', 0, 0, 0, 11, 0, 0, 0, 5, 1, 2, 3});
  check_protocol_violation(parse_authentication(view(short_salt)).error(), "salt");

  Bytes sasl = raw({'R', 0, 0, 0, 0, 0, 0, 0, 10});
  sasl += std::string("SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0", 34);
  sasl[4] = static_cast<char>(sasl.size() - 1);
  auto s = parse_authentication(view(sasl));
  REQUIRE(s.ok());
  CHECK(s->code == kAuthSasl);
  auto names = parse_sasl_mechanisms(s->data);
  REQUIRE(names.ok());
  REQUIRE(names->size() == 2);
  CHECK((*names)[0] == "SCRAM-SHA-256-PLUS");
  CHECK((*names)[1] == "SCRAM-SHA-256");

  const Bytes unterminated("SCRAM-SHA-256\0", 14);
  check_protocol_violation(parse_sasl_mechanisms(view(unterminated)).error(), "terminator");
}

// ---- Malformed input ----------------------------------------------------------

TEST_CASE("unknown protocol versions are 08P01 and name the version") {
  for (uint8_t major : {uint8_t{2}, uint8_t{4}}) {
    Bytes out;
    append_startup_message(out, {{"user", "u"}});
    out[5] = static_cast<char>(major);
    auto p = parse_startup_packet(view(out));
    REQUIRE_FALSE(p.ok());
    check_protocol_violation(p.error(), std::to_string(major) + ".0");
    check_protocol_violation(p.error(), "3.0");
  }
}

TEST_CASE("malformed startup packets are 08P01") {
  SUBCASE("missing final terminator") {
    Bytes out;
    append_startup_message(out, {{"user", "u"}});
    out.pop_back();
    out[3] = static_cast<char>(out.size());
    check_protocol_violation(parse_startup_packet(view(out)).error(), "terminator");
  }
  SUBCASE("value without terminator") {
    Bytes out = raw({0, 0, 0, 0, 0, 3, 0, 0});
    out += std::string("user\0u", 6);
    out[3] = static_cast<char>(out.size());
    check_protocol_violation(parse_startup_packet(view(out)).error(), "terminator");
  }
  SUBCASE("no parameter list at all") {
    const Bytes out = raw({0, 0, 0, 8, 0, 3, 0, 0});
    check_protocol_violation(parse_startup_packet(view(out)).error(), "terminator");
  }
  SUBCASE("bytes after the terminator") {
    Bytes out;
    append_startup_message(out, {{"user", "u"}});
    out.push_back('x');
    out[3] = static_cast<char>(out.size());
    check_protocol_violation(parse_startup_packet(view(out)).error(), "after");
  }
  SUBCASE("length field disagrees with the span") {
    Bytes out;
    append_startup_message(out, {{"user", "u"}});
    out.push_back('\0');
    check_protocol_violation(parse_startup_packet(view(out)).error(), "length");
  }
  SUBCASE("CancelRequest of the wrong size") {
    Bytes out;
    append_cancel_request(out, 1, 2);
    out.push_back(0);
    out[3] = 17;
    check_protocol_violation(parse_startup_packet(view(out)).error(), "CancelRequest");
  }
  SUBCASE("SSLRequest of the wrong size") {
    Bytes out;
    append_ssl_request(out);
    out.append(4, '\0');
    out[3] = 12;
    check_protocol_violation(parse_startup_packet(view(out)).error(), "SSLRequest");
  }
}

TEST_CASE("inspectors check the type byte and the length field") {
  Bytes z;
  append_ready_for_query(z, 'I');
  check_protocol_violation(parse_parameter_status(view(z)).error(), "type");
  check_protocol_violation(parse_error_response(view(z)).error(), "type");
  check_protocol_violation(parse_authentication(view(z)).error(), "type");
  check_protocol_violation(parse_backend_key_data(view(z)).error(), "type");

  Bytes longer = z + "x";
  check_protocol_violation(parse_ready_for_query(view(longer)).error(), "length");
  check_protocol_violation(parse_ready_for_query(view(z).first(3)).error(), "header");

  const Bytes bad_status = raw({'Z', 0, 0, 0, 5, 'Q'});
  check_protocol_violation(parse_ready_for_query(view(bad_status)).error(), "status");
  const Bytes short_key = raw({'K', 0, 0, 0, 8, 0, 0, 0, 1});
  check_protocol_violation(parse_backend_key_data(view(short_key)).error(), "length");
}

TEST_CASE("ErrorResponse without its terminator") {
  Bytes out;
  append_error_response(out, "ERROR", "42000", "x");
  out.pop_back();
  out[4] = static_cast<char>(out[4] - 1);
  auto e = parse_error_response(view(out));
  REQUIRE_FALSE(e.ok());
  CHECK(e.error().message == "malformed ErrorResponse: missing terminator");
  CHECK(e.error().sqlstate == sqlstate::kProtocolViolation);
}

TEST_CASE("ParameterStatus missing its value") {
  const Bytes out = raw({'S', 0, 0, 0, 7, 'a', 0, 'b'});
  check_protocol_violation(parse_parameter_status(view(out)).error(), "value");
}

TEST_CASE("DataRow: values, NULL, empty; malformed counts and lengths") {
  Bytes out;
  append_data_row(out, {std::string_view("search_path"), std::nullopt, std::string_view("")});
  auto row = parse_data_row(view(out));
  REQUIRE(row.ok());
  REQUIRE(row->size() == 3);
  CHECK((*row)[0] == std::optional<std::string_view>("search_path"));
  CHECK_FALSE((*row)[1].has_value());
  CHECK((*row)[2] == std::optional<std::string_view>(""));

  Bytes none;
  append_data_row(none, {});
  CHECK(parse_data_row(view(none))->empty());

  // One column that claims 9 bytes but has 2.
  check_protocol_violation(
      parse_data_row(view(raw({'D', 0, 0, 0, 12, 0, 1, 0, 0, 0, 9, 'a', 'b'}))).error(), "longer");
  // Two columns announced, one present.
  check_protocol_violation(
      parse_data_row(view(raw({'D', 0, 0, 0, 11, 0, 2, 0, 0, 0, 1, 'a'}))).error(), "missing");
  // A negative count, and a length below -1.
  check_protocol_violation(parse_data_row(view(raw({'D', 0, 0, 0, 6, 0xff, 0xfe}))).error(),
                           "count");
  check_protocol_violation(
      parse_data_row(view(raw({'D', 0, 0, 0, 10, 0, 1, 0xff, 0xff, 0xff, 0xfe}))).error(),
      "longer");
  // Bytes after the last column.
  check_protocol_violation(
      parse_data_row(view(raw({'D', 0, 0, 0, 11, 0, 1, 0, 0, 0, 0, 'x'}))).error(), "after");
}

}  // namespace
}  // namespace pgmux::protocol
