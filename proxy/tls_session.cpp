#include "proxy/tls_session.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cassert>
#include <climits>
#include <cstdlib>

#include "protocol/sqlstate.h"

namespace pgmux::proxy {
namespace {

using protocol::Error;
using protocol::Ok;
using protocol::Result;
using protocol::Status;

// SSL_read/SSL_write/BIO_read take an int length.
constexpr size_t kMaxChunk = INT_MAX;

// Allocation failures inside OpenSSL are an environment failure, not a peer's
// doing (the "impossible" tier in STYLE.md).
[[noreturn]] void die(const char* what) {
  spdlog::critical("OpenSSL: {} failed", what);
  std::abort();
}

// The reason of the oldest queued OpenSSL error ("certificate verify failed"),
// or `fallback` when the queue is empty. Drains the queue so nothing stale is
// left for the next call on this thread.
std::string take_error_reason(const char* fallback) {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return fallback;
  if (const char* reason = ERR_reason_error_string(code); reason != nullptr) return reason;
  char buf[256];
  ERR_error_string_n(code, buf, sizeof(buf));
  return buf;
}

// The full OpenSSL error line, for configuration errors where the library
// and function help the operator ("error:0A080009:SSL routines::PEM lib").
std::string take_error_string() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof(buf));
  return buf;
}

Error config_error(const std::string& what, const std::string& file) {
  return Error{"", what + " " + file + ": " + take_error_string()};
}

Error session_error(const std::string& message) {
  return Error{std::string(protocol::sqlstate::kConnectionFailure), message};
}

// RFC 5929, section 4.1: tls-server-end-point hashes the certificate with the
// digest of its signature algorithm, except that MD5 and SHA-1 are replaced by
// SHA-256. Algorithms without a digest (Ed25519) have no defined binding, so
// the result is empty, as in PostgreSQL (be-secure-openssl.c).
std::string certificate_end_point(X509* cert) {
  if (cert == nullptr) return {};
  int digest_nid = NID_undef;
  if (OBJ_find_sigid_algs(X509_get_signature_nid(cert), &digest_nid, nullptr) == 0) return {};
  if (digest_nid == NID_md5 || digest_nid == NID_sha1) digest_nid = NID_sha256;
  const EVP_MD* digest = EVP_get_digestbynid(digest_nid);
  if (digest == nullptr) return {};
  unsigned char hash[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (X509_digest(cert, digest, hash, &length) != 1) {
    ERR_clear_error();
    return {};
  }
  return std::string(reinterpret_cast<const char*>(hash), length);
}

bool is_ip_literal(const std::string& host) {
  unsigned char addr[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), addr) == 1 ||
         inet_pton(AF_INET6, host.c_str(), addr) == 1;
}

// Settings shared by both roles.
void apply_common(SSL_CTX* ctx) {
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) die("SSL_CTX_set_min_proto_version");
  // No compression (CRIME); no renegotiation, which a pooler has no use for
  // and which would complicate the one-way pumping of the memory BIOs.
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  // Idle pooled connections are the common case; let OpenSSL drop its
  // read and write buffers between records.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
}

}  // namespace

TlsContext::TlsContext(SSL_CTX* ctx, bool server, TlsVerify verify)
    : ctx_(ctx), server_(server), verify_(verify) {}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

Result<std::unique_ptr<TlsContext>> TlsContext::server(const std::string& cert_file,
                                                       const std::string& key_file) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) die("SSL_CTX_new");
  // Owned from here on, so every early return frees the SSL_CTX.
  std::unique_ptr<TlsContext> context(new TlsContext(ctx, true, TlsVerify::kNone));
  apply_common(ctx);
  // Clients connect once and stay in the pool for a long time; resumption
  // buys little. No tickets (TLS 1.2 and 1.3) and no session cache means no
  // ticket keys to rotate and no NewSessionTicket records after the handshake.
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);

  if (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1) {
    return config_error("cannot load the TLS certificate chain", cert_file);
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return config_error("cannot load the TLS private key", key_file);
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return config_error("the TLS private key does not match the certificate in", cert_file);
  }
  context->end_point_ = certificate_end_point(SSL_CTX_get0_certificate(ctx));
  return context;
}

Result<std::unique_ptr<TlsContext>> TlsContext::client(TlsVerify verify,
                                                       const std::string& root_cert_file,
                                                       const std::string& cert_file,
                                                       const std::string& key_file) {
  ERR_clear_error();
  if (cert_file.empty() != key_file.empty()) {
    return Error{"", "a TLS client certificate needs both a certificate file and a key file"};
  }
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) die("SSL_CTX_new");
  std::unique_ptr<TlsContext> context(new TlsContext(ctx, false, verify));
  apply_common(ctx);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);

  if (verify == TlsVerify::kNone) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    if (root_cert_file.empty()) {
      if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        return config_error("cannot load the system CA store", "(default paths)");
      }
    } else if (SSL_CTX_load_verify_locations(ctx, root_cert_file.c_str(), nullptr) != 1) {
      return config_error("cannot load the TLS root certificates", root_cert_file);
    }
  }
  if (!cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1) {
      return config_error("cannot load the TLS client certificate", cert_file);
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      return config_error("cannot load the TLS client key", key_file);
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
      return config_error("the TLS client key does not match the certificate in", cert_file);
    }
  }
  return context;
}

std::string sni_for(const std::string& host, bool sni) {
  if (!sni || is_ip_literal(host)) return {};
  return host;
}

TlsSession::TlsSession(const TlsContext& context, const std::string& host, bool sni) {
  ERR_clear_error();
  ssl_ = SSL_new(context.get());
  in_ = BIO_new(BIO_s_mem());
  out_ = BIO_new(BIO_s_mem());
  if (ssl_ == nullptr || in_ == nullptr || out_ == nullptr) die("SSL_new/BIO_new");
  // An empty memory BIO reports "retry" rather than EOF (this is BIO_s_mem's
  // default; set explicitly because SSL_ERROR_WANT_READ depends on it).
  BIO_set_mem_eof_return(in_, -1);
  BIO_set_mem_eof_return(out_, -1);
  // The SSL takes ownership of both BIOs.
  SSL_set_bio(ssl_, in_, out_);

  if (context.is_server()) {
    SSL_set_accept_state(ssl_);
    return;
  }
  SSL_set_connect_state(ssl_);
  const bool ip = is_ip_literal(host);
  if (const std::string name = sni_for(host, sni);
      !name.empty() && SSL_set_tlsext_host_name(ssl_, name.c_str()) != 1) {
    die("SSL_set_tlsext_host_name");
  }
  if (context.verify() == TlsVerify::kFull) {
    // REQUIRES a host for verify-full. Without one, check against a name no
    // certificate can carry, so the handshake fails with "hostname mismatch"
    // rather than silently skipping the name check.
    assert(!host.empty());
    if (ip) {
      if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), host.c_str()) != 1) {
        die("X509_VERIFY_PARAM_set1_ip_asc");
      }
    } else if (SSL_set1_host(ssl_, host.empty() ? "no-host-given.invalid" : host.c_str()) != 1) {
      die("SSL_set1_host");
    }
  }
}

TlsSession::~TlsSession() { SSL_free(ssl_); }

void TlsSession::feed(std::span<const uint8_t> ciphertext) {
  while (!ciphertext.empty()) {
    const size_t chunk = std::min(ciphertext.size(), kMaxChunk);
    // A memory BIO grows as needed; a failed write is an allocation failure.
    const int n = BIO_write(in_, ciphertext.data(), static_cast<int>(chunk));
    if (n <= 0) die("BIO_write");
    ciphertext = ciphertext.subspan(static_cast<size_t>(n));
  }
}

Result<bool> TlsSession::handshake() {
  if (done_) return true;
  ERR_clear_error();
  const int rc = SSL_do_handshake(ssl_);
  if (rc == 1) {
    done_ = true;
    return true;
  }
  const int err = SSL_get_error(ssl_, rc);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return false;

  std::string message = "TLS handshake failed: ";
  message += take_error_reason(err == SSL_ERROR_ZERO_RETURN ? "the peer closed the TLS session"
                                                            : "unexpected end of the TLS stream");
  // With SSL_VERIFY_NONE the chain is still checked and its result stored, so
  // the X.509 reason is only relevant when verification was asked for.
  if ((SSL_get_verify_mode(ssl_) & SSL_VERIFY_PEER) != 0) {
    const long verify = SSL_get_verify_result(ssl_);
    if (verify != X509_V_OK) {
      message += " (";
      message += X509_verify_cert_error_string(verify);
      message += ")";
    }
  }
  return session_error(message);
}

Result<size_t> TlsSession::read(std::span<uint8_t> out) {
  size_t total = 0;
  while (total < out.size()) {
    ERR_clear_error();
    const size_t want = std::min(out.size() - total, kMaxChunk);
    const int n = SSL_read(ssl_, out.data() + total, static_cast<int>(want));
    if (n > 0) {
      total += static_cast<size_t>(n);
      continue;
    }
    const int err = SSL_get_error(ssl_, n);
    // WANT_WRITE cannot happen with a memory BIO for output, but if it did,
    // the caller's next take_output would unblock it just the same.
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) break;
    if (err == SSL_ERROR_ZERO_RETURN) return session_error("the peer closed the TLS session");
    return session_error("TLS read failed: " +
                         take_error_reason("unexpected end of the TLS stream"));
  }
  // A failed read may have left a fatal alert in out_ for the caller to send;
  // a successful one may have left post-handshake records (KeyUpdate replies).
  if (!done_ && SSL_is_init_finished(ssl_) == 1) done_ = true;
  return total;
}

Status TlsSession::write(std::span<const uint8_t> plaintext) {
  assert(done_);
  while (!plaintext.empty()) {
    ERR_clear_error();
    const size_t chunk = std::min(plaintext.size(), kMaxChunk);
    size_t written = 0;
    const int rc = SSL_write_ex(ssl_, plaintext.data(), chunk, &written);
    if (rc != 1) {
      const int err = SSL_get_error(ssl_, rc);
      if (err == SSL_ERROR_ZERO_RETURN) return session_error("the peer closed the TLS session");
      return session_error("TLS write failed: " + take_error_reason("the TLS session is broken"));
    }
    plaintext = plaintext.subspan(written);
  }
  return Ok{};
}

void TlsSession::take_output(std::string& out) {
  const size_t pending = BIO_ctrl_pending(out_);
  if (pending == 0) return;
  const size_t old_size = out.size();
  out.resize(old_size + pending);
  size_t done = 0;
  while (done < pending) {
    const size_t chunk = std::min(pending - done, kMaxChunk);
    const int n = BIO_read(out_, out.data() + old_size + done, static_cast<int>(chunk));
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  out.resize(old_size + done);
}

bool TlsSession::has_output() const { return BIO_ctrl_pending(out_) > 0; }

std::string TlsSession::end_point() const {
  if (SSL_is_server(ssl_) == 1) return certificate_end_point(SSL_get_certificate(ssl_));
  return certificate_end_point(SSL_get0_peer_certificate(ssl_));
}

}  // namespace pgmux::proxy
