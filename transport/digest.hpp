#pragma once
// Hashes, MACs and encodings on OpenSSL, shared by SigV4, the GitHub App JWT
// and webhook signatures.
#include <string>
#include <string_view>

namespace ghscale {

/// SHA-256 of `data`, as 32 raw bytes.
std::string sha256(std::string_view data);
/// HMAC-SHA256 of `data` under `key`, as 32 raw bytes.
std::string hmac_sha256(std::string_view key, std::string_view data);
/// Lower-case hexadecimal.
std::string hex(std::string_view bytes);
/// Base64url without padding (RFC 7515, for JWTs).
std::string base64url(std::string_view bytes);
/// Standard base64 with padding.
std::string base64(std::string_view bytes);
/// Compares in time that depends only on the lengths, never on the contents.
bool constant_time_equals(std::string_view a, std::string_view b) noexcept;
/// `n` random bytes from OpenSSL's CSPRNG, hex-encoded (ids, JWT `jti`).
std::string random_hex(size_t n);

} // namespace ghscale
