#pragma once
// The GitHub App credential: its RSA private key, and the RS256 JWTs signed
// with it that authenticate the App when it mints installation tokens.
#include "messages/secret.hpp"

#include <caf/expected.hpp>
#include <caf/timespan.hpp>
#include <openssl/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace ghscale {

/// An RSA private key held by OpenSSL; copies share the one key.
class app_private_key {
public:
  explicit app_private_key(std::shared_ptr<EVP_PKEY> key) : key_(std::move(key)) {}
  EVP_PKEY* get() const noexcept { return key_.get(); }

private:
  std::shared_ptr<EVP_PKEY> key_;
};

/// Reads a PEM RSA private key, PKCS#1 ("BEGIN RSA PRIVATE KEY", as GitHub
/// hands it out) or PKCS#8 ("BEGIN PRIVATE KEY"). Anything else is
/// `errc::invalid_config`, whose text never quotes the input.
caf::expected<app_private_key> load_app_private_key(const secret_string& pem);

/// An RS256 App JWT valid from `wall_now` (time since the Unix epoch): `iat`
/// backdated 60 s for clock drift, `exp` 9 minutes ahead (GitHub refuses more
/// than 10), `iss` the App id, and `jti` to make it unique.
caf::expected<secret_string> sign_app_jwt(const app_private_key& key,
                                          int64_t app_id, caf::timespan wall_now,
                                          const std::string& jti);

/// The `jwt_minter` of actors/github_app.hpp for a real App: ignores the
/// actor-clock time it is given (JWT claims are checked against GitHub's wall
/// clock) and signs with wall_now() and a fresh random `jti`.
std::function<caf::expected<secret_string>(caf::timespan)>
rs256_jwt_minter(app_private_key key, int64_t app_id);

} // namespace ghscale
