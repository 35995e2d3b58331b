#pragma once
// Loading a listener's certificate chain and private key into an OpenSSL
// context: one place that says which of the two files is wrong and why, for
// the listener at start and for `check-config`.
#include <optional>
#include <string>

struct ssl_ctx_st; // OpenSSL's SSL_CTX

namespace ghscale {

struct tls_pair_problem {
  std::string key;  // "server.tls_cert_file" or "server.tls_key_file"
  std::string what; // names the file and what is wrong with it
};

/// Loads `cert_file` (a PEM chain) and `key_file` (a PEM private key that
/// matches it) into `ctx`; nothing when both are usable.
std::optional<tls_pair_problem> load_tls_pair(ssl_ctx_st* ctx,
                                              const std::string& cert_file,
                                              const std::string& key_file);

} // namespace ghscale
