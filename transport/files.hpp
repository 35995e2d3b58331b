#pragma once
// Reading a whole file (configuration, traces, keys, AWS shared files).
#include <cerrno>
#include <cstring>
#include <filesystem>
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

/// The file's bytes, or why it cannot be read ("cannot read PATH: REASON").
inline std::optional<std::string> read_file(const std::string& path,
                                            std::string& why_not) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    why_not = "cannot read " + path + ": is a directory";
    return std::nullopt;
  }
  errno = 0;
  auto text = read_file(path);
  if (!text)
    why_not = "cannot read " + path + ": "
              + (errno != 0 ? std::strerror(errno) : "unknown error");
  return text;
}

} // namespace ghscale
