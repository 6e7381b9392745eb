// Builders and inspectors for the v3 messages pgmux generates or reads.
//
// Builders (`append_*`) append one whole message to the caller's byte buffer.
// Inspectors (`parse_*`) take one whole message, header included (as framed by
// frame.h), and return views into it: the views stay valid only as long as the
// caller's bytes do. Inspectors validate what they read and return an Error
// with SQLSTATE 08P01 for malformed input; they never allocate except where a
// vector of views is returned.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "protocol/frame.h"
#include "protocol/result.h"

namespace pgmux::protocol {

// Generated messages are built in a std::string used as a byte buffer.
using Bytes = std::string;

// Request codes carried in place of a protocol version (55.7).
inline constexpr uint32_t kProtocolVersion3 = 196608;  // 3.0
inline constexpr uint32_t kCancelRequestCode = 80877102;
inline constexpr uint32_t kSslRequestCode = 80877103;
inline constexpr uint32_t kGssEncRequestCode = 80877104;

// Authentication request codes (the Int32 after an 'R' header).
enum AuthCode : int32_t {
  kAuthOk = 0,
  kAuthCleartextPassword = 3,
  kAuthMd5Password = 5,
  kAuthSasl = 10,
  kAuthSaslContinue = 11,
  kAuthSaslFinal = 12,
};

// ---- Builders ---------------------------------------------------------------

// ErrorResponse ('E') or NoticeResponse ('N'). `severity` is e.g. "ERROR",
// "FATAL", "NOTICE"; it is sent both as the localised (S) and the
// non-localised (V) field. Empty `detail`/`hint` are omitted.
void append_error_response(Bytes& out, std::string_view severity, std::string_view sqlstate,
                           std::string_view message, std::string_view detail = {},
                           std::string_view hint = {});
void append_notice_response(Bytes& out, std::string_view severity, std::string_view sqlstate,
                            std::string_view message, std::string_view detail = {},
                            std::string_view hint = {});
void append_ready_for_query(Bytes& out, char status);  // 'I', 'T' or 'E'
void append_parameter_status(Bytes& out, std::string_view name, std::string_view value);
void append_backend_key_data(Bytes& out, int32_t pid, int32_t secret);
void append_data_row(Bytes& out, const std::vector<std::optional<std::string_view>>& values);
void append_authentication_ok(Bytes& out);

// StartupMessage for protocol 3.0 with the given name/value pairs.
void append_startup_message(Bytes& out,
                            const std::vector<std::pair<std::string, std::string>>& params);
void append_cancel_request(Bytes& out, int32_t pid, int32_t secret);
void append_ssl_request(Bytes& out);
void append_terminate(Bytes& out);
void append_query(Bytes& out, std::string_view sql);
void append_sync(Bytes& out);
// PasswordMessage ('p') carrying a NUL-terminated password or md5 hash.
void append_password_message(Bytes& out, std::string_view password);
// SASLInitialResponse and SASLResponse (both 'p').
void append_sasl_initial_response(Bytes& out, std::string_view mechanism, std::string_view data);
void append_sasl_response(Bytes& out, std::string_view data);

// ---- Inspectors -------------------------------------------------------------

enum class StartupKind { kStartup, kSslRequest, kGssEncRequest, kCancelRequest };

struct StartupPacket {
  StartupKind kind = StartupKind::kStartup;
  uint32_t version = 0;  // Protocol version or request code as sent.
  // kStartup: every name/value pair in order, including user and database.
  std::vector<std::pair<std::string_view, std::string_view>> params;
  std::string_view user;      // kStartup: empty if absent.
  std::string_view database;  // kStartup: defaults to user when absent.
  int32_t cancel_pid = 0;     // kCancelRequest only.
  int32_t cancel_secret = 0;  // kCancelRequest only.
};

// Parses a whole startup-type packet. Errors: 08P01 for malformed packets or
// protocol versions other than 3.x. A missing user is NOT an error here (the
// proxy answers it with 28000).
Result<StartupPacket> parse_startup_packet(ByteView packet);

struct ErrorFields {
  std::string_view severity;  // Non-localised (V) if present, else S.
  std::string_view sqlstate;  // C
  std::string_view message;   // M
  std::string_view detail;    // D
  std::string_view hint;      // H
};
// Parses an ErrorResponse ('E') or NoticeResponse ('N').
Result<ErrorFields> parse_error_response(ByteView message);

struct AuthRequest {
  int32_t code = 0;
  ByteView data;  // Bytes after the code: md5 salt (4), SASL payload, ...
};
Result<AuthRequest> parse_authentication(ByteView message);  // 'R'

// The mechanism names in an AuthenticationSASL payload (NUL-terminated list).
Result<std::vector<std::string_view>> parse_sasl_mechanisms(ByteView data);

struct ParameterStatus {
  std::string_view name;
  std::string_view value;
};
Result<ParameterStatus> parse_parameter_status(ByteView message);  // 'S' from a server

struct BackendKeyData {
  int32_t pid = 0;
  int32_t secret = 0;
};
Result<BackendKeyData> parse_backend_key_data(ByteView message);  // 'K'

// Returns the transaction status byte ('I', 'T' or 'E').
Result<char> parse_ready_for_query(ByteView message);  // 'Z'

// The columns of a DataRow ('D'), as text or binary bytes; nullopt is NULL.
Result<std::vector<std::optional<std::string_view>>> parse_data_row(ByteView message);

}  // namespace pgmux::protocol
