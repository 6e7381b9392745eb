// libFuzzer target: SCRAM-SHA-256 from both ends, and what feeds it. The
// input is split at newlines (no SCRAM message contains one) into pieces:
//  - the client (protocol/auth.h): piece 0 is server-first-message, piece 1
//    server-final-message;
//  - the server (protocol/scram_server.h), with and without channel binding:
//    piece 0 is the mechanism, piece 1 client-first-message, piece 2
//    client-final-message;
//  - every piece as a stored credential (parse_scram_secret, parse_credential)
//    and as base64;
//  - the whole input as SASLInitialResponse and SASLResponse messages
//    (protocol/auth_messages.h) feeding a server, as the proxy does.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/auth.h"
#include "protocol/auth_messages.h"
#include "protocol/crypto.h"
#include "protocol/frame.h"
#include "protocol/scram_server.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using namespace pgmux::protocol;  // NOLINT(google-build-using-namespace)
using pgmux::fuzz::check;

// RFC 7677 section 3: password "pencil", this salt and nonces, 4096 rounds.
constexpr std::string_view kClientNonce = "rOprNGfwEbeRWgbNEkqO";
constexpr std::string_view kServerNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
constexpr std::string_view kSaltBase64 = "W22ZaJ0SNY7soEsUEjb6gQ==";
constexpr std::string_view kChannelBinding = "0123456789abcdef0123456789abcdef";

// PBKDF2 cost grows with the iteration count a hostile peer or a stored
// secret picks; that is a fuzzer timeout, not a bug. Counts above the RFC's
// 4096 are skipped, so the RFC vector itself still runs to the end.
constexpr uint64_t kMaxIterations = 4096;

bool cheap_iterations(std::string_view text, std::string_view marker) {
  for (size_t at = text.find(marker); at != std::string_view::npos;
       at = text.find(marker, at + 1)) {
    uint64_t n = 0;
    for (size_t i = at + marker.size(); i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
      n = n * 10 + static_cast<uint64_t>(text[i] - '0');
      if (n > kMaxIterations) return false;
    }
  }
  return true;
}

const ScramSecret& rfc_secret() {
  // Derived once: 4096 rounds of PBKDF2 per input would dominate the run.
  static const ScramSecret secret = make_scram_secret("pencil", *base64_decode(kSaltBase64), 4096);
  return secret;
}

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> pieces;
  for (;;) {
    const size_t nl = text.find('\n');
    pieces.push_back(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return pieces;
}

void run_client(std::string_view server_first, std::string_view server_final) {
  if (!cheap_iterations(server_first, "i=")) return;
  ScramClient client("user", "pencil", std::string(kClientNonce));
  const std::string first = client.client_first_message();
  check(first.starts_with("n,,n=user,r="));
  auto client_final = client.handle_server_first(server_first);
  // Before server-first, no server-final can be accepted.
  if (!client_final) return;
  check(client_final->starts_with("c=biws,r="));
  (void)client.verify_server_final(server_final);
}

void run_server(std::string_view channel_binding, std::string_view mechanism,
                std::string_view client_first, std::string_view client_final) {
  ScramServer server(rfc_secret(), std::string(channel_binding), std::string(kServerNonce));
  auto server_first = server.handle_client_first(mechanism, client_first);
  if (!server_first) {
    check(!server.handle_client_final(client_final).ok());
    return;
  }
  check(server_first->starts_with("r=") && server_first->find(kServerNonce) != std::string::npos);
  auto server_final = server.handle_client_final(client_final);
  if (!server_final) return;
  // Only a client that knows the password gets here; the answer proves the
  // server knows the secret: "v=" and 32 bytes of base64.
  check(server_final->starts_with("v="));
  auto signature = base64_decode(std::string_view(*server_final).substr(2));
  check(signature.ok() && signature->size() == 32);
}

void inspect_credential(std::string_view text) {
  if (auto secret = parse_scram_secret(text)) {
    check(secret->iterations >= 1 && !secret->salt.empty());
    auto again = parse_scram_secret(format_scram_secret(*secret));
    check(again.ok() && again->iterations == secret->iterations && again->salt == secret->salt &&
          again->stored_key == secret->stored_key && again->server_key == secret->server_key);
  }
  if (!cheap_iterations(text, "$")) return;
  const Credential credential = parse_credential(text);
  (void)verify_cleartext(credential, "user", "pencil");
  (void)verify_md5_response(credential, "user", {1, 2, 3, 4}, text);
}

void inspect_base64(std::string_view text) {
  auto decoded = base64_decode(text);
  if (!decoded) return;
  // Only canonical base64 decodes, so encoding gives back the same text.
  check(base64_encode(*decoded) == text);
}

// The proxy's path: a framed 'p' message carries the mechanism and the
// client-first-message, the next one the client-final-message.
void run_messages(ByteView input) {
  const Frame first = frame_message(input, 1 << 20);
  if (!first.whole_in(input)) return;
  const std::vector<uint8_t> initial_bytes = pgmux::fuzz::isolate(input.first(first.size));
  auto initial = parse_sasl_initial_response(initial_bytes);
  if (!initial) return;
  ByteView rest = input.subspan(first.size);
  const Frame second = frame_message(rest, 1 << 20);
  std::string_view final_data;
  std::vector<uint8_t> response_bytes;
  if (second.whole_in(rest)) {
    response_bytes = pgmux::fuzz::isolate(rest.first(second.size));
    auto response = parse_sasl_response(response_bytes);
    if (response) final_data = *response;
  }
  run_server({}, initial->mechanism, initial->data, final_data);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::vector<std::string_view> pieces = split_lines(input);
  auto piece = [&](size_t i) { return i < pieces.size() ? pieces[i] : std::string_view(); };

  run_client(piece(0), piece(1));
  run_server({}, piece(0), piece(1), piece(2));
  run_server(kChannelBinding, piece(0), piece(1), piece(2));
  for (std::string_view p : pieces) {
    inspect_credential(p);
    inspect_base64(p);
  }
  run_messages(ByteView(data, size));
  return 0;
}
