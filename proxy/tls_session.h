// TLS over memory BIOs (OpenSSL 3): no sockets. The caller feeds ciphertext
// that arrived from the peer, takes ciphertext to send, and reads and writes
// plaintext. The same class serves both roles: pgmux as a TLS server to its
// clients and as a TLS client to upstreams. Unit-testable as an in-memory
// pair.
#pragma once

#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "protocol/result.h"

namespace pgmux::proxy {

enum class TlsVerify {
  kNone,  // Encrypt only (sslmode prefer/require).
  kCa,    // The chain must lead to a trusted root (verify-ca).
  kFull,  // ... and the certificate must name the host (verify-full).
};

// An SSL_CTX with pgmux's settings: TLS 1.2 or newer, OpenSSL's default
// secure ciphers. Keep it alive as long as any session made from it.
class TlsContext {
 public:
  // Server role: a certificate chain file and its key (PEM).
  static protocol::Result<std::unique_ptr<TlsContext>> server(const std::string& cert_file,
                                                              const std::string& key_file);
  // Client role. An empty `root_cert_file` means the system CA store. A
  // client certificate and key are optional (both or neither).
  static protocol::Result<std::unique_ptr<TlsContext>> client(TlsVerify verify,
                                                              const std::string& root_cert_file,
                                                              const std::string& cert_file = {},
                                                              const std::string& key_file = {});
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  SSL_CTX* get() const { return ctx_; }
  bool is_server() const { return server_; }
  TlsVerify verify() const { return verify_; }
  // Server role: the tls-server-end-point channel binding data (RFC 5929):
  // the hash of our certificate with its signature's digest, SHA-256 for
  // MD5 and SHA-1. Empty in the client role.
  const std::string& server_end_point() const { return end_point_; }

 private:
  TlsContext(SSL_CTX* ctx, bool server, TlsVerify verify);
  SSL_CTX* ctx_;
  bool server_;
  TlsVerify verify_;
  std::string end_point_;
};

// The Server Name Indication a TLS client sends for `host`: the host itself,
// or nothing (empty) when `sni` is false (the URL's sslsni=0) or the host is
// an IP address literal (RFC 6066, section 3: SNI carries DNS names only),
// as libpq does.
std::string sni_for(const std::string& host, bool sni);

class TlsSession {
 public:
  // `host`: client role only: checked against the certificate with
  // TlsVerify::kFull, and sent as sni_for(host, sni).
  TlsSession(const TlsContext& context, const std::string& host = {}, bool sni = true);
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // Ciphertext from the peer.
  void feed(std::span<const uint8_t> ciphertext);

  // Advances the handshake. Returns true once it is complete, false while it
  // needs more input. Error 08006 with OpenSSL's reason, and for a failed
  // verification the X.509 reason ("certificate verify failed: unable to get
  // local issuer certificate", "hostname mismatch", ...).
  protocol::Result<bool> handshake();
  bool handshake_done() const { return done_; }

  // Decrypts into `out`; returns the bytes written, 0 when nothing is ready.
  // Error 08006 for a TLS alert or a closed session (close_notify).
  protocol::Result<size_t> read(std::span<uint8_t> out);

  // Encrypts `plaintext` (all of it; the ciphertext waits in take_output).
  // REQUIRES: handshake_done().
  protocol::Status write(std::span<const uint8_t> plaintext);

  // Appends the ciphertext waiting to be sent to `out`.
  void take_output(std::string& out);
  bool has_output() const;

  // Client role after the handshake: the peer certificate's end point hash,
  // for tests of channel binding. Server role: our own.
  std::string end_point() const;

 private:
  SSL* ssl_ = nullptr;
  BIO* in_ = nullptr;   // Ciphertext from the peer (SSL reads it).
  BIO* out_ = nullptr;  // Ciphertext to the peer (SSL writes it).
  bool done_ = false;
};

}  // namespace pgmux::proxy
