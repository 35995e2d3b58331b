#include "transport/tls_pair.hpp"

#include "transport/files.hpp"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include <memory>

namespace ghscale {

namespace {

/// OpenSSL's reason for the last failure, without its internals.
std::string openssl_reason() {
  auto code = ERR_get_error();
  ERR_clear_error();
  auto reason = code != 0 ? ERR_reason_error_string(code) : nullptr;
  return reason != nullptr ? reason : "not usable";
}

} // namespace

std::optional<tls_pair_problem> load_tls_pair(ssl_ctx_st* ctx,
                                              const std::string& cert_file,
                                              const std::string& key_file) {
  const std::string cert_key = "server.tls_cert_file";
  const std::string key_key = "server.tls_key_file";
  std::string why;
  if (!read_file(cert_file, why))
    return tls_pair_problem{cert_key, why};
  if (!read_file(key_file, why))
    return tls_pair_problem{key_key, why};
  ERR_clear_error();
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1)
    return tls_pair_problem{cert_key, cert_file + ": not a PEM certificate chain ("
                                        + openssl_reason() + ")"};
  std::unique_ptr<BIO, decltype(&BIO_free)> file{BIO_new_file(key_file.c_str(), "r"),
                                                 &BIO_free};
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key{
    file ? PEM_read_bio_PrivateKey(file.get(), nullptr, nullptr, nullptr) : nullptr,
    &EVP_PKEY_free};
  if (!key)
    return tls_pair_problem{key_key, key_file + ": not a PEM private key ("
                                       + openssl_reason() + ")"};
  if (SSL_CTX_use_PrivateKey(ctx, key.get()) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
    ERR_clear_error();
    return tls_pair_problem{key_key, key_file + " does not match the certificate in "
                                       + cert_file};
  }
  return std::nullopt;
}

} // namespace ghscale
