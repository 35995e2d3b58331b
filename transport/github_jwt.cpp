#include "transport/github_jwt.hpp"

#include "messages/types.hpp"
#include "transport/digest.hpp"
#include "transport/wall_clock.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <chrono>
#include <utility>

namespace ghscale {

namespace {

/// Bytes of randomness in a `jti`: 128 bits, so two JWTs never share one.
constexpr size_t jti_bytes = 16;

constexpr std::chrono::seconds iat_backdate{60};
constexpr std::chrono::seconds lifetime{9 * 60};

/// Refuses to prompt for a passphrase: an encrypted key is a config error,
/// not a reason to block on the terminal.
int no_passphrase(char*, int, int, void*) {
  return 0;
}

caf::error not_an_rsa_key() {
  return caf::make_error(errc::invalid_config,
                         "GitHub App private key: not a PEM RSA key");
}

std::string jwt_claims(int64_t app_id, caf::timespan wall_now,
                       const std::string& jti) {
  auto now_s = std::chrono::duration_cast<std::chrono::seconds>(wall_now);
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w{buf};
  w.StartObject();
  w.Key("iat");
  w.Int64((now_s - iat_backdate).count());
  w.Key("exp");
  w.Int64((now_s + lifetime).count());
  w.Key("iss");
  w.String(std::to_string(app_id).c_str());
  w.Key("jti");
  w.String(jti.c_str(), static_cast<rapidjson::SizeType>(jti.size()));
  w.EndObject();
  return buf.GetString();
}

/// RSASSA-PKCS1-v1_5 over SHA-256 of `input`, or an error naming the step.
caf::expected<std::string> rs256(EVP_PKEY* key, const std::string& input) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx{EVP_MD_CTX_new(),
                                                              EVP_MD_CTX_free};
  size_t len = 0;
  if (!ctx
      || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) != 1
      || EVP_DigestSign(ctx.get(), nullptr, &len,
                        reinterpret_cast<const unsigned char*>(input.data()),
                        input.size())
           != 1) {
    ERR_clear_error();
    return caf::make_error(errc::invalid_config,
                           "GitHub App JWT: RS256 signing setup failed");
  }
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()),
                     &len, reinterpret_cast<const unsigned char*>(input.data()),
                     input.size())
      != 1) {
    ERR_clear_error();
    return caf::make_error(errc::invalid_config,
                           "GitHub App JWT: RS256 signing failed");
  }
  sig.resize(len);
  return sig;
}

} // namespace

caf::expected<app_private_key> load_app_private_key(const secret_string& pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio{
    BIO_new_mem_buf(pem.value.data(), static_cast<int>(pem.value.size())),
    BIO_free};
  EVP_PKEY* raw = bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr,
                                                no_passphrase, nullptr)
                      : nullptr;
  // OpenSSL's queued errors may describe the input; never let them linger.
  ERR_clear_error();
  std::shared_ptr<EVP_PKEY> key{raw, EVP_PKEY_free};
  if (!key || EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_RSA)
    return not_an_rsa_key();
  return app_private_key{std::move(key)};
}

caf::expected<secret_string> sign_app_jwt(const app_private_key& key,
                                          int64_t app_id, caf::timespan wall_now,
                                          const std::string& jti) {
  static const std::string header = base64url(R"({"alg":"RS256","typ":"JWT"})");
  auto signing_input = header + "." + base64url(jwt_claims(app_id, wall_now, jti));
  auto sig = rs256(key.get(), signing_input);
  if (!sig)
    return std::move(sig.error());
  return secret_string{signing_input + "." + base64url(*sig)};
}

std::function<caf::expected<secret_string>(caf::timespan)>
rs256_jwt_minter(app_private_key key, int64_t app_id) {
  return [key = std::move(key), app_id](caf::timespan) {
    return sign_app_jwt(key, app_id, wall_now(), random_hex(jti_bytes));
  };
}

} // namespace ghscale
