#pragma once
// Real peers for integration tests: a child process (moto_server, prism, the
// fake GitHub) started on a free loopback port and stopped when the test is
// done. Header-only so each test binary stays one file.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace ghscale::testing {

/// A port the kernel just handed out on 127.0.0.1 (free right now).
inline int free_loopback_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0
      || ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    throw std::runtime_error("no free loopback port");
  ::close(fd);
  return ntohs(addr.sin_port);
}

inline bool accepts_connections(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

/// A child process serving on `port`; killed (and reaped) on destruction.
class peer_process {
public:
  /// Starts `argv` with `extra_env` added to this process's environment and
  /// waits (up to `startup`) until it accepts connections on `port`.
  peer_process(std::vector<std::string> argv, int port,
               std::vector<std::string> extra_env = {},
               std::chrono::seconds startup = std::chrono::seconds{120})
    : port_(port) {
    std::vector<char*> args;
    for (auto& a : argv)
      args.push_back(a.data());
    args.push_back(nullptr);
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e)
      env_strings.emplace_back(*e);
    for (auto& e : extra_env)
      env_strings.push_back(e);
    std::vector<char*> env;
    for (auto& e : env_strings)
      env.push_back(e.data());
    env.push_back(nullptr);
    if (::posix_spawnp(&pid_, args[0], nullptr, nullptr, args.data(), env.data()) != 0)
      throw std::runtime_error("cannot start " + argv[0]);
    // Polling for readiness is not a timing assertion: a peer that never
    // comes up fails the test with a clear message instead of hanging.
    auto deadline = std::chrono::steady_clock::now() + startup;
    while (!accepts_connections(port_)) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error(argv[0] + " exited before serving on port "
                                 + std::to_string(port_));
      }
      if (std::chrono::steady_clock::now() > deadline)
        throw std::runtime_error(argv[0] + " did not serve on port "
                                 + std::to_string(port_));
      std::this_thread::sleep_for(std::chrono::milliseconds{50});
    }
  }
  peer_process(const peer_process&) = delete;
  peer_process& operator=(const peer_process&) = delete;
  ~peer_process() { stop(); }

  int port() const noexcept { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  void stop() {
    if (pid_ <= 0)
      return;
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 100; ++i) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds{20});
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

private:
  pid_t pid_ = -1;
  int port_;
};

} // namespace ghscale::testing
