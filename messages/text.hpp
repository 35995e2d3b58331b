#pragma once
// ASCII case folding, as HTTP header names, GitHub logins and labels, and
// AWS settings compare: the one copy every part of ghscale uses.
#include <algorithm>
#include <cctype>
#include <string>
#include <string_view>

namespace ghscale {

inline std::string ascii_lower(std::string_view s) {
  std::string out{s};
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

inline bool iequals(std::string_view a, std::string_view b) noexcept {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x))
           == std::tolower(static_cast<unsigned char>(y));
  });
}

} // namespace ghscale
