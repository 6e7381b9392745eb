#include "protocol/extended.h"

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

void check_whole_frame(const Bytes& msg, char type) {
  const Frame f = frame_message(view(msg), kMax);
  REQUIRE(f.status == FrameStatus::kComplete);
  CHECK(f.type == type);
  CHECK(f.size == msg.size());
}

void check_protocol_violation(const Error& e) {
  CHECK(e.sqlstate == sqlstate::kProtocolViolation);
  CHECK(!e.message.empty());
}

// Overwrites the length field of a typed message.
void set_length(Bytes& msg, uint32_t length) {
  for (int i = 0; i < 4; ++i) {
    msg[1 + static_cast<size_t>(i)] = static_cast<char>((length >> (24 - 8 * i)) & 0xFF);
  }
}

// A Bind for portal "p1", statement "stmt": one text parameter "42", one
// result column in binary.
Bytes sample_bind() {
  Bytes rest = raw({0, 1, 0, 0,                  // one format code: text
                    0, 1, 0, 0, 0, 2, '4', '2',  // one parameter "42"
                    0, 1, 0, 1});                // one result format: binary
  Bytes out;
  append_bind_header(out, "p1", "stmt", rest.size());
  out += rest;
  return out;
}

// ---- Golden bytes (PostgreSQL docs 55.7) -------------------------------------

TEST_CASE("ParseComplete, BindComplete, CloseComplete and Flush golden bytes") {
  Bytes out;
  append_parse_complete(out);
  append_bind_complete(out);
  append_close_complete(out);
  append_flush(out);
  CHECK(out == raw({'1', 0, 0, 0, 4, '2', 0, 0, 0, 4, '3', 0, 0, 0, 4, 'H', 0, 0, 0, 4}));
}

TEST_CASE("Parse golden bytes") {
  Bytes out;
  const Bytes oids = raw({0, 0, 0, 23});
  append_parse(out, "s", "q", 1, view(oids));
  CHECK(out == raw({'P', 0, 0, 0, 14, 's', 0, 'q', 0, 0, 1, 0, 0, 0, 23}));
}

TEST_CASE("Describe and Close golden bytes") {
  Bytes out;
  append_describe(out, 'S', "a");
  append_close(out, 'P', "");
  CHECK(out == raw({'D', 0, 0, 0, 7, 'S', 'a', 0, 'C', 0, 0, 0, 6, 'P', 0}));
}

// ---- Round trips ------------------------------------------------------------

TEST_CASE("Parse round trip") {
  const Bytes oids = raw({0, 0, 0, 23, 0, 0, 0, 25});
  Bytes out;
  append_parse(out, "pgmux_s1", "SELECT $1::int, $2", 2, view(oids));
  check_whole_frame(out, 'P');
  auto p = parse_parse(view(out));
  REQUIRE(p.ok());
  CHECK(p->name == "pgmux_s1");
  CHECK(p->query == "SELECT $1::int, $2");
  CHECK(p->param_count == 2);
  REQUIRE(p->param_types.size() == 8);
  CHECK(p->param_types[3] == 23);
  CHECK(p->param_types[7] == 25);
}

TEST_CASE("Parse round trip: unnamed, no parameters") {
  Bytes out;
  append_parse(out, "", "SELECT 1", 0, {});
  auto p = parse_parse(view(out));
  REQUIRE(p.ok());
  CHECK(p->name.empty());
  CHECK(p->query == "SELECT 1");
  CHECK(p->param_count == 0);
  CHECK(p->param_types.empty());
}

TEST_CASE("Describe and Close round trips") {
  for (char kind : {'S', 'P'}) {
    Bytes d;
    append_describe(d, kind, "name_1");
    check_whole_frame(d, 'D');
    auto pd = parse_describe(view(d));
    REQUIRE(pd.ok());
    CHECK(pd->kind == kind);
    CHECK(pd->name == "name_1");

    Bytes c;
    append_close(c, kind, "");
    check_whole_frame(c, 'C');
    auto pc = parse_close(view(c));
    REQUIRE(pc.ok());
    CHECK(pc->kind == kind);
    CHECK(pc->name.empty());
  }
}

TEST_CASE("CommandComplete") {
  const Bytes msg =
      raw({'C', 0, 0, 0, 16, 'D', 'I', 'S', 'C', 'A', 'R', 'D', ' ', 'A', 'L', 'L', 0});
  auto tag = parse_command_complete(view(msg));
  REQUIRE(tag.ok());
  CHECK(*tag == "DISCARD ALL");
}

// ---- Bind -------------------------------------------------------------------

TEST_CASE("parse_bind_header on every prefix of a Bind") {
  const Bytes bind = sample_bind();
  check_whole_frame(bind, 'B');
  // 'B', Int32, "p1\0" (3), "stmt\0" (5): the names end at offset 13.
  constexpr size_t kNamesEnd = 13;
  for (size_t n = 0; n <= bind.size(); ++n) {
    CAPTURE(n);
    const ByteView prefix = view(bind).first(n);
    auto h = parse_bind_header(prefix);
    if (n < kNamesEnd) {
      CHECK_FALSE(bind_header_complete(prefix));
      REQUIRE_FALSE(h.ok());
      CHECK(h.error().sqlstate.empty());
      CHECK(h.error().message == "need more");
    } else {
      CHECK(bind_header_complete(prefix));
      REQUIRE(h.ok());
      CHECK(h->portal == "p1");
      CHECK(h->statement == "stmt");
      CHECK(h->rest_offset == kNamesEnd);
    }
  }
}

TEST_CASE("parse_bind_header stops at the end of its message") {
  // Two Binds back to back: the first's names must not be read from the second.
  Bytes two = sample_bind() + sample_bind();
  auto h = parse_bind_header(view(two));
  REQUIRE(h.ok());
  CHECK(h->statement == "stmt");

  // A Bind whose statement name is not terminated inside its length, even
  // though a NUL follows in the buffer.
  Bytes bad = raw({'B', 0, 0, 0, 7, 'p', 0, 's', 0, 0});
  auto b = parse_bind_header(view(bad));
  REQUIRE_FALSE(b.ok());
  CHECK(bind_header_complete(view(bad)));
  check_protocol_violation(b.error());
}

TEST_CASE("append_bind_header renames a Bind without touching its parameters") {
  const Bytes original = sample_bind();
  auto h = parse_bind_header(view(original));
  REQUIRE(h.ok());
  const Bytes rest = original.substr(h->rest_offset);

  Bytes renamed;
  append_bind_header(renamed, "", "pgmux_s42", rest.size());
  renamed += rest;

  check_whole_frame(renamed, 'B');
  auto r = parse_bind_header(view(renamed));
  REQUIRE(r.ok());
  CHECK(r->portal.empty());
  CHECK(r->statement == "pgmux_s42");
  CHECK(renamed.substr(r->rest_offset) == rest);
}

// ---- Malformed input --------------------------------------------------------

TEST_CASE("malformed lengths are protocol violations") {
  Bytes parse;
  append_parse(parse, "s", "SELECT 1", 0, {});
  Bytes describe;
  append_describe(describe, 'S', "s");
  Bytes close;
  append_close(close, 'P', "p");
  const Bytes complete = raw({'C', 0, 0, 0, 9, 'S', 'E', 'T', 0});

  SUBCASE("length field one too large") {
    Bytes p = parse;
    set_length(p, static_cast<uint32_t>(p.size()));
    check_protocol_violation(parse_parse(view(p)).error());
    Bytes d = describe;
    set_length(d, static_cast<uint32_t>(d.size()));
    check_protocol_violation(parse_describe(view(d)).error());
    Bytes c = close;
    set_length(c, static_cast<uint32_t>(c.size()));
    check_protocol_violation(parse_close(view(c)).error());
    Bytes cc = complete;
    set_length(cc, static_cast<uint32_t>(cc.size()));
    check_protocol_violation(parse_command_complete(view(cc)).error());
  }
  SUBCASE("length field one too small") {
    Bytes p = parse;
    set_length(p, static_cast<uint32_t>(p.size() - 2));
    check_protocol_violation(parse_parse(view(p)).error());
    Bytes d = describe;
    set_length(d, static_cast<uint32_t>(d.size() - 2));
    check_protocol_violation(parse_describe(view(d)).error());
  }
  SUBCASE("truncated message") {
    check_protocol_violation(parse_parse(view(parse).first(parse.size() - 1)).error());
    check_protocol_violation(parse_describe(view(describe).first(3)).error());
  }
  SUBCASE("Parse with more parameter types than its count") {
    Bytes bad;
    const Bytes oids = raw({0, 0, 0, 23});
    append_parse(bad, "s", "q", 1, view(oids));
    bad[bad.size() - 5] = 2;  // The count's low byte: 2 declared, 1 present.
    check_protocol_violation(parse_parse(view(bad)).error());
  }
  SUBCASE("Parse without its parameter count") {
    const Bytes bad = raw({'P', 0, 0, 0, 8, 's', 0, 'q', 0});
    check_protocol_violation(parse_parse(view(bad)).error());
  }
  SUBCASE("Describe with bytes after the name") {
    const Bytes bad = raw({'D', 0, 0, 0, 8, 'S', 'a', 0, 'x'});
    check_protocol_violation(parse_describe(view(bad)).error());
  }
  SUBCASE("name without terminator") {
    const Bytes bad = raw({'C', 0, 0, 0, 6, 'S', 'a'});
    check_protocol_violation(parse_close(view(bad)).error());
  }
  SUBCASE("Bind length below 4") {
    const Bytes bad = raw({'B', 0, 0, 0, 3, 0, 0});
    CHECK(bind_header_complete(view(bad)));
    check_protocol_violation(parse_bind_header(view(bad)).error());
  }
}

TEST_CASE("Describe and Close kinds other than S and P are protocol violations") {
  const Bytes d = raw({'D', 0, 0, 0, 7, 'X', 'a', 0});
  check_protocol_violation(parse_describe(view(d)).error());
  const Bytes c = raw({'C', 0, 0, 0, 6, 's', 0});  // Lower case is not accepted either.
  check_protocol_violation(parse_close(view(c)).error());
  const Bytes empty = raw({'D', 0, 0, 0, 4});
  check_protocol_violation(parse_describe(view(empty)).error());
}

TEST_CASE("inspectors check the type byte") {
  Bytes describe;
  append_describe(describe, 'S', "s");
  check_protocol_violation(parse_close(view(describe)).error());
  check_protocol_violation(parse_parse(view(describe)).error());
  check_protocol_violation(parse_command_complete(view(describe)).error());
  check_protocol_violation(parse_bind_header(view(describe)).error());
  CHECK(bind_header_complete(view(describe)));
}

}  // namespace
}  // namespace pgmux::protocol
