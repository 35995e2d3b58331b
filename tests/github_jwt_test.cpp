// The App JWT, checked by an independent verifier (Python's `cryptography`,
// tests/peers/verify_jwt.py) with the public half of a key made here.
#include "transport/github_jwt.hpp"

#include "messages/types.hpp"
#include "transport/digest.hpp"
#include "transport/wall_clock.hpp"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#ifndef GHSCALE_SOURCE_DIR
#  error "GHSCALE_SOURCE_DIR must name the repository root"
#endif

namespace ghscale {
namespace {

using std::chrono::seconds;

constexpr int64_t app_id = 424242;
// 2026-11-22T13:00:00Z: a fixed instant, so the claims are exact.
constexpr caf::timespan fixed_now = seconds{1795352400};

using pkey_ptr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

std::string pem_of(EVP_PKEY* key,
                   int (*write)(BIO*, const EVP_PKEY*, const EVP_CIPHER*,
                                const unsigned char*, int, pem_password_cb*,
                                void*)) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio{BIO_new(BIO_s_mem()), BIO_free};
  if (write(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1)
    throw std::runtime_error("cannot write PEM");
  char* data = nullptr;
  auto len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

std::string public_pem_of(EVP_PKEY* key) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio{BIO_new(BIO_s_mem()), BIO_free};
  if (PEM_write_bio_PUBKEY(bio.get(), key) != 1)
    throw std::runtime_error("cannot write public PEM");
  char* data = nullptr;
  auto len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

class github_jwt : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    key_ = new pkey_ptr{EVP_RSA_gen(2048), EVP_PKEY_free};
    public_pem_path_ = ::testing::TempDir() + "ghscale_app_key_"
                       + std::to_string(::getpid()) + ".pub.pem";
    std::ofstream{public_pem_path_} << public_pem_of(key_->get());
  }

  static void TearDownTestSuite() {
    std::remove(public_pem_path_.c_str());
    delete key_;
    key_ = nullptr;
  }

  static std::string pkcs1_pem() {
    return pem_of(key_->get(), PEM_write_bio_PrivateKey_traditional);
  }

  static std::string pkcs8_pem() {
    return pem_of(key_->get(), PEM_write_bio_PrivateKey);
  }

  /// Runs the Python verifier on `jwt` with the claims expected for a
  /// signer that read the wall clock within [now_lo, now_hi]; the `jti` it
  /// saw when it accepts every check, nothing when it rejects the token.
  static std::optional<std::string>
  python_verifies(const secret_string& jwt, caf::timespan now_lo,
                  caf::timespan now_hi, const std::string& jti) {
    // A test key's token: fine in a temporary file, the verifier reads stdin.
    auto jwt_path = ::testing::TempDir() + "ghscale_jwt_" + std::to_string(::getpid());
    std::ofstream{jwt_path} << jwt.value;
    auto cmd = std::string{"python3 " GHSCALE_SOURCE_DIR "/tests/peers/verify_jwt.py "}
               + public_pem_path_ + " " + std::to_string(app_id) + " "
               + std::to_string(unix_seconds(now_lo)) + ".."
               + std::to_string(unix_seconds(now_hi)) + " " + jti + " < " + jwt_path;
    FILE* verifier = ::popen(cmd.c_str(), "r");
    std::string out;
    char buf[128];
    while (verifier != nullptr && std::fgets(buf, sizeof buf, verifier) != nullptr)
      out += buf;
    bool accepted = verifier != nullptr && ::pclose(verifier) == 0;
    std::remove(jwt_path.c_str());
    if (!accepted)
      return std::nullopt;
    return out;
  }

  static bool python_accepts(const secret_string& jwt, caf::timespan now,
                             const std::string& jti) {
    return python_verifies(jwt, now, now, jti).has_value();
  }

  static int64_t unix_seconds(caf::timespan t) {
    return std::chrono::duration_cast<seconds>(t).count();
  }

  static inline pkey_ptr* key_ = nullptr;
  static inline std::string public_pem_path_;
};

TEST_F(github_jwt, pkcs1_key_signs_a_jwt_the_public_key_verifies) {
  auto pem = pkcs1_pem();
  ASSERT_NE(pem.find("BEGIN RSA PRIVATE KEY"), std::string::npos);
  auto key = load_app_private_key(secret_string{pem});
  ASSERT_TRUE(key) << describe(key.error());
  auto jwt = sign_app_jwt(*key, app_id, fixed_now, "jti-pkcs1");
  ASSERT_TRUE(jwt) << describe(jwt.error());
  EXPECT_TRUE(python_accepts(*jwt, fixed_now, "jti-pkcs1"));
}

TEST_F(github_jwt, pkcs8_key_signs_a_jwt_the_public_key_verifies) {
  auto pem = pkcs8_pem();
  ASSERT_NE(pem.find("BEGIN PRIVATE KEY"), std::string::npos);
  auto key = load_app_private_key(secret_string{pem});
  ASSERT_TRUE(key) << describe(key.error());
  auto jwt = sign_app_jwt(*key, app_id, fixed_now, "jti-pkcs8");
  ASSERT_TRUE(jwt) << describe(jwt.error());
  EXPECT_TRUE(python_accepts(*jwt, fixed_now, "jti-pkcs8"));
}

TEST_F(github_jwt, verifier_rejects_a_wrong_claim_or_a_tampered_token) {
  auto key = load_app_private_key(secret_string{pkcs1_pem()});
  ASSERT_TRUE(key);
  auto jwt = sign_app_jwt(*key, app_id, fixed_now, "jti-a");
  ASSERT_TRUE(jwt);
  EXPECT_FALSE(python_accepts(*jwt, fixed_now + seconds{1}, "jti-a"));
  EXPECT_FALSE(python_accepts(*jwt, fixed_now, "jti-b"));
  auto tampered = jwt->value;
  tampered[tampered.size() - 2] = tampered[tampered.size() - 2] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(python_accepts(secret_string{tampered}, fixed_now, "jti-a"));
}

TEST_F(github_jwt, minter_uses_wall_time_and_a_fresh_jti_each_call) {
  auto key = load_app_private_key(secret_string{pkcs8_pem()});
  ASSERT_TRUE(key);
  auto mint = rs256_jwt_minter(*key, app_id);
  // The actor-clock argument is ignored: claims follow GitHub's wall clock.
  auto before = wall_now();
  auto first = mint(caf::timespan{0});
  auto second = mint(caf::timespan{0});
  auto after = wall_now();
  ASSERT_TRUE(first && second);
  auto jti1 = python_verifies(*first, before, after, "any");
  auto jti2 = python_verifies(*second, before, after, "any");
  ASSERT_TRUE(jti1 && jti2);
  EXPECT_EQ(jti1->size(), 32u); // 128 random bits, hex
  EXPECT_NE(*jti1, *jti2);
}

TEST_F(github_jwt, garbage_pem_is_a_clear_error_without_its_content) {
  const std::string garbage = "-----BEGIN RSA PRIVATE KEY-----\n"
                              "c2VjcmV0LWtleS1tYXRlcmlhbA==\n"
                              "-----END RSA PRIVATE KEY-----\n";
  for (const auto& input : {garbage, std::string{"not a key at all"}, std::string{}}) {
    auto key = load_app_private_key(secret_string{input});
    ASSERT_FALSE(key);
    EXPECT_EQ(key.error(), errc::invalid_config);
    auto text = describe(key.error());
    EXPECT_NE(text.find("GitHub App private key: not a PEM RSA key"),
              std::string::npos)
      << text;
    EXPECT_EQ(text.find("c2VjcmV0"), std::string::npos) << text;
    EXPECT_EQ(text.find("not a key at all"), std::string::npos) << text;
  }
}

TEST_F(github_jwt, a_non_rsa_key_is_refused) {
  pkey_ptr ec{EVP_EC_gen("P-256"), EVP_PKEY_free};
  auto pem = pem_of(ec.get(), PEM_write_bio_PrivateKey);
  auto key = load_app_private_key(secret_string{pem});
  ASSERT_FALSE(key);
  EXPECT_EQ(key.error(), errc::invalid_config);
}

} // namespace
} // namespace ghscale
