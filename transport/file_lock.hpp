#pragma once
// One writer per file: an exclusive advisory lock (flock) on "<path>.lock",
// which holds the pid of the process that has it. The lock is the process's:
// every holder in one process shares it, and it goes when the last one does
// (or with the process, however it ends). A second process is refused with
// the holder's pid.
#include <caf/expected.hpp>

#include <memory>
#include <string>

namespace ghscale {

class file_lock {
public:
  /// Locks `path` for this process, or shares the lock it already holds.
  /// errc::invalid_config when another process holds it ("... is in use by
  /// process 1234"), errc::backend_failure when the lock file cannot be
  /// made.
  static caf::expected<std::shared_ptr<file_lock>> acquire(const std::string& path);

  file_lock(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~file_lock();
  file_lock(const file_lock&) = delete;
  file_lock& operator=(const file_lock&) = delete;

  /// The lock file.
  const std::string& path() const noexcept { return path_; }

private:
  std::string path_;
  int fd_;
};

} // namespace ghscale
