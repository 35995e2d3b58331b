#pragma once
// ASCII case folding (HTTP header names, GitHub logins and labels, AWS
// settings compare that way) and whitespace trimming: the one copy every
// part of ghscale uses.
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

/// Without leading and trailing whitespace.
inline std::string_view trim_space(std::string_view s) {
  auto space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  while (!s.empty() && space(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && space(s.back()))
    s.remove_suffix(1);
  return s;
}

inline bool iequals(std::string_view a, std::string_view b) noexcept {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x))
           == std::tolower(static_cast<unsigned char>(y));
  });
}

} // namespace ghscale
