#include "protocol/messages.h"

#include <cassert>
#include <cstring>
#include <optional>

#include "protocol/sqlstate.h"
#include "protocol/wire.h"

namespace pgmux::protocol {

using namespace wire;  // NOLINT(google-build-using-namespace): internal helpers.

namespace {

// ---- Writing ----------------------------------------------------------------

void append_fields(Bytes& out, char type, std::string_view severity, std::string_view sqlstate,
                   std::string_view message, std::string_view detail, std::string_view hint) {
  const size_t at = begin_message(out, type);
  out.push_back('S');
  put_cstring(out, severity);
  out.push_back('V');
  put_cstring(out, severity);
  out.push_back('C');
  put_cstring(out, sqlstate);
  out.push_back('M');
  put_cstring(out, message);
  if (!detail.empty()) {
    out.push_back('D');
    put_cstring(out, detail);
  }
  if (!hint.empty()) {
    out.push_back('H');
    put_cstring(out, hint);
  }
  out.push_back('\0');
  patch_length(out, at);
}

// ---- Reading ----------------------------------------------------------------

// A cursor over the body of one message. Every read checks the bounds.
class Reader {
 public:
  explicit Reader(ByteView bytes) : bytes_(bytes) {}

  bool done() const { return pos_ == bytes_.size(); }
  size_t remaining() const { return bytes_.size() - pos_; }

  bool read_u8(uint8_t* v) {
    if (remaining() < 1) return false;
    *v = bytes_[pos_++];
    return true;
  }
  bool read_i32(int32_t* v) {
    if (remaining() < 4) return false;
    *v = static_cast<int32_t>(read_u32(bytes_.data() + pos_));
    pos_ += 4;
    return true;
  }
  // A NUL-terminated string; the view excludes the NUL.
  bool read_cstring(std::string_view* s) {
    const uint8_t* start = bytes_.data() + pos_;
    const void* nul = std::memchr(start, 0, remaining());
    if (nul == nullptr) return false;
    const auto length = static_cast<size_t>(static_cast<const uint8_t*>(nul) - start);
    *s = std::string_view(reinterpret_cast<const char*>(start), length);
    pos_ += length + 1;
    return true;
  }
  ByteView rest() const { return bytes_.subspan(pos_); }
  bool read_i16(int16_t* v) {
    if (remaining() < 2) return false;
    *v = static_cast<int16_t>((bytes_[pos_] << 8) | bytes_[pos_ + 1]);
    pos_ += 2;
    return true;
  }
  bool read_span(size_t n, ByteView* out) {
    if (remaining() < n) return false;
    *out = bytes_.subspan(pos_, n);
    pos_ += n;
    return true;
  }

 private:
  ByteView bytes_;
  size_t pos_ = 0;
};

// Checks the header of a typed message and returns a Reader over its body.
Result<Reader> open_message(ByteView message, char type, std::string_view what) {
  if (message.size() < kMessageHeaderSize) return malformed(what, "shorter than its header");
  if (static_cast<char>(message[0]) != type) return malformed(what, "wrong message type");
  if (uint64_t{read_u32(message.data() + 1)} + 1 != message.size()) {
    return malformed(what, "length field does not match message size");
  }
  return Reader(message.subspan(kMessageHeaderSize));
}

}  // namespace

// ---- Builders ---------------------------------------------------------------

void append_error_response(Bytes& out, std::string_view severity, std::string_view sqlstate,
                           std::string_view message, std::string_view detail,
                           std::string_view hint) {
  append_fields(out, 'E', severity, sqlstate, message, detail, hint);
}

void append_notice_response(Bytes& out, std::string_view severity, std::string_view sqlstate,
                            std::string_view message, std::string_view detail,
                            std::string_view hint) {
  append_fields(out, 'N', severity, sqlstate, message, detail, hint);
}

void append_ready_for_query(Bytes& out, char status) {
  assert(status == 'I' || status == 'T' || status == 'E');
  out.push_back('Z');
  put_u32(out, 5);
  out.push_back(status);
}

void append_parameter_status(Bytes& out, std::string_view name, std::string_view value) {
  const size_t at = begin_message(out, 'S');
  put_cstring(out, name);
  put_cstring(out, value);
  patch_length(out, at);
}

void append_data_row(Bytes& out, const std::vector<std::optional<std::string_view>>& values) {
  const size_t at = begin_message(out, 'D');
  out.push_back(static_cast<char>((values.size() >> 8) & 0xff));
  out.push_back(static_cast<char>(values.size() & 0xff));
  for (const auto& value : values) {
    if (!value) {
      put_i32(out, -1);
      continue;
    }
    put_i32(out, static_cast<int32_t>(value->size()));
    out.append(value->data(), value->size());
  }
  patch_length(out, at);
}

void append_backend_key_data(Bytes& out, int32_t pid, int32_t secret) {
  out.push_back('K');
  put_u32(out, 12);
  put_i32(out, pid);
  put_i32(out, secret);
}

void append_authentication_ok(Bytes& out) {
  out.push_back('R');
  put_u32(out, 8);
  put_i32(out, kAuthOk);
}

void append_startup_message(Bytes& out,
                            const std::vector<std::pair<std::string, std::string>>& params) {
  const size_t at = out.size();
  put_u32(out, 0);
  put_u32(out, kProtocolVersion3);
  for (const auto& [name, value] : params) {
    assert(!name.empty());  // An empty name would end the list early.
    put_cstring(out, name);
    put_cstring(out, value);
  }
  out.push_back('\0');
  patch_length(out, at);
}

void append_cancel_request(Bytes& out, int32_t pid, int32_t secret) {
  put_u32(out, 16);
  put_u32(out, kCancelRequestCode);
  put_i32(out, pid);
  put_i32(out, secret);
}

void append_ssl_request(Bytes& out) {
  put_u32(out, 8);
  put_u32(out, kSslRequestCode);
}

void append_terminate(Bytes& out) {
  out.push_back('X');
  put_u32(out, 4);
}

void append_query(Bytes& out, std::string_view sql) {
  const size_t at = begin_message(out, 'Q');
  put_cstring(out, sql);
  patch_length(out, at);
}

void append_sync(Bytes& out) {
  out.push_back('S');
  put_u32(out, 4);
}

void append_password_message(Bytes& out, std::string_view password) {
  const size_t at = begin_message(out, 'p');
  put_cstring(out, password);
  patch_length(out, at);
}

void append_sasl_initial_response(Bytes& out, std::string_view mechanism, std::string_view data) {
  const size_t at = begin_message(out, 'p');
  put_cstring(out, mechanism);
  put_u32(out, static_cast<uint32_t>(data.size()));
  out.append(data);
  patch_length(out, at);
}

void append_sasl_response(Bytes& out, std::string_view data) {
  const size_t at = begin_message(out, 'p');
  out.append(data);
  patch_length(out, at);
}

// ---- Inspectors -------------------------------------------------------------

Result<StartupPacket> parse_startup_packet(ByteView packet) {
  constexpr std::string_view kWhat = "startup packet";
  if (packet.size() < 8) return malformed(kWhat, "shorter than 8 bytes");
  if (read_u32(packet.data()) != packet.size()) {
    return malformed(kWhat, "length field does not match packet size");
  }
  StartupPacket out;
  out.version = read_u32(packet.data() + 4);
  Reader body(packet.subspan(8));

  switch (out.version) {
    case kCancelRequestCode:
      if (packet.size() != 16) return malformed("CancelRequest", "length is not 16");
      out.kind = StartupKind::kCancelRequest;
      (void)body.read_i32(&out.cancel_pid);
      (void)body.read_i32(&out.cancel_secret);
      return out;
    case kSslRequestCode:
      if (packet.size() != 8) return malformed("SSLRequest", "length is not 8");
      out.kind = StartupKind::kSslRequest;
      return out;
    case kGssEncRequestCode:
      if (packet.size() != 8) return malformed("GSSENCRequest", "length is not 8");
      out.kind = StartupKind::kGssEncRequest;
      return out;
    default:
      break;
  }

  // Any 3.x is accepted: a newer minor version is the proxy's to negotiate
  // down (NegotiateProtocolVersion), as PostgreSQL does (55.2.1).
  const uint32_t major = out.version >> 16;
  const uint32_t minor = out.version & 0xFFFF;
  if (major != 3) {
    return make_error(std::string(sqlstate::kProtocolViolation),
                      "unsupported frontend protocol " + std::to_string(major) + "." +
                          std::to_string(minor) + ": pgmux supports 3.0");
  }

  out.kind = StartupKind::kStartup;
  bool have_database = false;
  for (;;) {
    std::string_view name;
    std::string_view value;
    if (!body.read_cstring(&name)) {
      return malformed("StartupMessage", "parameter list is missing its terminator");
    }
    if (name.empty()) break;  // The extra NUL that ends the list.
    if (!body.read_cstring(&value)) {
      return malformed("StartupMessage", "parameter value is missing its terminator");
    }
    if (name == "user") out.user = value;
    if (name == "database") {
      out.database = value;
      have_database = true;
    }
    out.params.emplace_back(name, value);
  }
  if (!body.done()) return malformed("StartupMessage", "bytes after the parameter list");
  // Like PostgreSQL, an empty database name also falls back to the user name.
  if (!have_database || out.database.empty()) out.database = out.user;
  return out;
}

Result<ErrorFields> parse_error_response(ByteView message) {
  const bool notice = !message.empty() && message[0] == 'N';
  const std::string_view what = notice ? "NoticeResponse" : "ErrorResponse";
  auto reader = open_message(message, notice ? 'N' : 'E', what);
  if (!reader) return reader.error();
  Reader& body = *reader;

  ErrorFields out;
  std::string_view localised_severity;
  std::string_view severity;
  for (;;) {
    uint8_t code = 0;
    if (!body.read_u8(&code)) return malformed(what, "missing terminator");
    if (code == 0) break;
    std::string_view value;
    if (!body.read_cstring(&value)) return malformed(what, "field value is missing its terminator");
    switch (code) {
      case 'S':
        localised_severity = value;
        break;
      case 'V':
        severity = value;
        break;
      case 'C':
        out.sqlstate = value;
        break;
      case 'M':
        out.message = value;
        break;
      case 'D':
        out.detail = value;
        break;
      case 'H':
        out.hint = value;
        break;
      default:
        break;  // Other fields (position, file, line...) are not needed.
    }
  }
  if (!body.done()) return malformed(what, "bytes after the terminator");
  out.severity = severity.empty() ? localised_severity : severity;
  return out;
}

Result<AuthRequest> parse_authentication(ByteView message) {
  constexpr std::string_view kWhat = "Authentication message";
  auto reader = open_message(message, 'R', kWhat);
  if (!reader) return reader.error();
  AuthRequest out;
  if (!reader->read_i32(&out.code)) return malformed(kWhat, "missing request code");
  out.data = reader->rest();
  // Check the payload sizes of the requests pgmux acts on; others pass through.
  switch (out.code) {
    case kAuthOk:
    case kAuthCleartextPassword:
      if (!out.data.empty()) return malformed(kWhat, "unexpected bytes after the request code");
      break;
    case kAuthMd5Password:
      if (out.data.size() != 4) return malformed(kWhat, "MD5 salt is not 4 bytes");
      break;
    default:
      break;
  }
  return out;
}

Result<std::vector<std::string_view>> parse_sasl_mechanisms(ByteView data) {
  constexpr std::string_view kWhat = "AuthenticationSASL";
  Reader body(data);
  std::vector<std::string_view> out;
  for (;;) {
    std::string_view name;
    if (!body.read_cstring(&name))
      return malformed(kWhat, "mechanism list is missing its terminator");
    if (name.empty()) break;
    out.push_back(name);
  }
  if (!body.done()) return malformed(kWhat, "bytes after the mechanism list");
  return out;
}

Result<ParameterStatus> parse_parameter_status(ByteView message) {
  constexpr std::string_view kWhat = "ParameterStatus";
  auto reader = open_message(message, 'S', kWhat);
  if (!reader) return reader.error();
  ParameterStatus out;
  if (!reader->read_cstring(&out.name)) return malformed(kWhat, "name is missing its terminator");
  if (!reader->read_cstring(&out.value)) return malformed(kWhat, "value is missing its terminator");
  if (!reader->done()) return malformed(kWhat, "bytes after the value");
  return out;
}

Result<std::vector<std::optional<std::string_view>>> parse_data_row(ByteView message) {
  constexpr std::string_view kWhat = "DataRow";
  auto reader = open_message(message, 'D', kWhat);
  if (!reader) return reader.error();
  int16_t count = 0;
  if (!reader->read_i16(&count) || count < 0) return malformed(kWhat, "bad column count");
  std::vector<std::optional<std::string_view>> out;
  out.reserve(static_cast<size_t>(count));
  for (int16_t i = 0; i < count; ++i) {
    int32_t length = 0;
    if (!reader->read_i32(&length)) return malformed(kWhat, "a column length is missing");
    if (length == -1) {
      out.emplace_back(std::nullopt);
      continue;
    }
    ByteView value;
    if (length < 0 || !reader->read_span(static_cast<size_t>(length), &value)) {
      return malformed(kWhat, "a column is longer than the message");
    }
    out.emplace_back(std::string_view(reinterpret_cast<const char*>(value.data()), value.size()));
  }
  if (!reader->done()) return malformed(kWhat, "bytes after the last column");
  return out;
}

Result<BackendKeyData> parse_backend_key_data(ByteView message) {
  constexpr std::string_view kWhat = "BackendKeyData";
  auto reader = open_message(message, 'K', kWhat);
  if (!reader) return reader.error();
  // Protocol 3.0 fixes the secret at 4 bytes; pgmux speaks 3.0 upstream, so
  // the longer keys of protocol 3.2 cannot arrive.
  if (reader->remaining() != 8) return malformed(kWhat, "length is not 12");
  BackendKeyData out;
  (void)reader->read_i32(&out.pid);
  (void)reader->read_i32(&out.secret);
  return out;
}

Result<char> parse_ready_for_query(ByteView message) {
  constexpr std::string_view kWhat = "ReadyForQuery";
  auto reader = open_message(message, 'Z', kWhat);
  if (!reader) return reader.error();
  uint8_t status = 0;
  if (!reader->read_u8(&status) || !reader->done()) return malformed(kWhat, "length is not 5");
  if (status != 'I' && status != 'T' && status != 'E') {
    return malformed(kWhat, "unknown transaction status");
  }
  return static_cast<char>(status);
}

}  // namespace pgmux::protocol
