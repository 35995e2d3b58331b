#pragma once
// Reading a whole file (configuration, traces, keys, AWS shared files).
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

namespace ghscale {

/// The file's bytes, or nullopt if it cannot be opened (errno says why).
inline std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  if (!in)
    return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

} // namespace ghscale
