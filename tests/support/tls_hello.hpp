#pragma once

// Header-only on purpose: it uses OpenSSL, which pb_test_support (linked into every test
// executable) must not depend on. Include it only from tests that link OpenSSL::SSL.

#include <openssl/bio.h>
#include <openssl/ssl.h>

#include <cstdint>
#include <string>
#include <vector>

namespace pb::test {

// The bytes a real TLS client (OpenSSL) sends first: SSL_connect on a memory BIO pair, then
// whatever it wrote to the network side. `server_name` empty: no SNI extension.
inline std::vector<std::uint8_t> real_client_hello(const std::string& server_name,
                                                   long max_version = TLS1_3_VERSION) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) return {};
  SSL_CTX_set_max_proto_version(ctx, max_version);
  SSL* ssl = SSL_new(ctx);
  BIO* internal = nullptr;
  BIO* network = nullptr;
  BIO_new_bio_pair(&internal, 0, &network, 0);
  SSL_set_bio(ssl, internal, internal);
  if (!server_name.empty()) SSL_set_tlsext_host_name(ssl, server_name.c_str());
  SSL_set_connect_state(ssl);
  const int rc = SSL_do_handshake(ssl);  // wants to read the ServerHello: -1, WANT_READ
  std::vector<std::uint8_t> out;
  if (rc == -1 && SSL_get_error(ssl, rc) == SSL_ERROR_WANT_READ) {
    out.resize(BIO_ctrl_pending(network));
    const int n = BIO_read(network, out.data(), static_cast<int>(out.size()));
    out.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  }
  BIO_free(network);
  SSL_free(ssl);  // frees `internal`
  SSL_CTX_free(ctx);
  return out;
}

}  // namespace pb::test
