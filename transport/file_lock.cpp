#include "transport/file_lock.hpp"

#include "messages/types.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>

namespace ghscale {

namespace {

/// The locks this process holds, by lock file: flock() conflicts between
/// two descriptors of one process too, so holders share one.
std::mutex held_mtx;
std::map<std::string, std::weak_ptr<file_lock>> held;

/// The pid the lock file holds ("?" if it says none).
std::string holder_of(int fd) {
  char buf[32] = {};
  auto n = ::pread(fd, buf, sizeof(buf) - 1, 0);
  std::string pid = n > 0 ? std::string{buf, static_cast<size_t>(n)} : "";
  while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' '))
    pid.pop_back();
  return pid.empty() ? "?" : pid;
}

} // namespace

caf::expected<std::shared_ptr<file_lock>> file_lock::acquire(const std::string& path) {
  // Symlinks resolved: two spellings of one file share one lock.
  std::error_code ec;
  auto canonical = std::filesystem::weakly_canonical(path, ec);
  auto lock_path = (ec ? path : canonical.string()) + ".lock";
  std::lock_guard<std::mutex> guard{held_mtx};
  if (auto mine = held[lock_path].lock())
    return mine;
  int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0)
    return caf::make_error(errc::backend_failure,
                           "cannot create lock file " + lock_path + ": "
                             + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    auto why = errno == EWOULDBLOCK ? "is in use by process " + holder_of(fd)
                                    : std::string{"cannot be locked: "}
                                        + std::strerror(errno);
    ::close(fd);
    return caf::make_error(errc::invalid_config,
                           path + " " + why + " (lock file " + lock_path + ")");
  }
  auto pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0
      || ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    auto why = std::string{std::strerror(errno)};
    ::close(fd);
    return caf::make_error(errc::backend_failure,
                           "cannot write lock file " + lock_path + ": " + why);
  }
  auto lock = std::make_shared<file_lock>(lock_path, fd);
  held[lock_path] = lock;
  return lock;
}

file_lock::~file_lock() {
  // Unlocked as the descriptor closes; the file stays, with a stale pid
  // nobody believes without the lock.
  ::close(fd_);
}

} // namespace ghscale
