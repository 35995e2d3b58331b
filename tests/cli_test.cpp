// End-to-end tests of the `ghscale` executable: each case runs the real binary
// as a child process (posix_spawn, no shell), captures its stdout and stderr
// through pipes, and bounds how long it may run. A child still running at the
// bound is killed with SIGKILL and the test fails: the bound catches hangs, it
// is not a timing assertion.
#include "transport/files.hpp"

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

extern char** environ;

namespace {

namespace fs = std::filesystem;

/// The longest any one child may run before it is killed and the test fails.
constexpr std::chrono::seconds run_bound{60};

std::string source_file(const std::string& relative) {
  return std::string{GHSCALE_SOURCE_DIR} + "/" + relative;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

/// How a child ended.
struct outcome {
  std::string start_error; // why the child could not be started
  bool timed_out = false; // killed at the run bound
  int exit_code = -1;     // -1 unless it exited on its own
  int signal = 0;         // the signal that ended it, if one did
  std::string out;
  std::string err;

  /// For failure messages: how it ended and what it said on stderr.
  std::string describe() const {
    std::ostringstream text;
    if (!start_error.empty())
      text << "not started: " << start_error;
    else if (timed_out)
      text << "still running after " << run_bound.count() << " s, killed";
    else if (signal != 0)
      text << "killed by signal " << signal;
    else
      text << "exited " << exit_code;
    text << "\n--- stderr ---\n" << err << "--- end of stderr ---";
    return text.str();
  }
};

/// A running `ghscale`. Every wait is bounded by a deadline fixed at start;
/// the destructor kills (SIGKILL) and reaps a child that is still running.
class child_process {
public:
  explicit child_process(const std::vector<std::string>& args)
    : deadline_(std::chrono::steady_clock::now() + run_bound) {
    int out_pipe[2] = {-1, -1};
    int err_pipe[2] = {-1, -1};
    if (pipe2(out_pipe, O_CLOEXEC) == 0 && pipe2(err_pipe, O_CLOEXEC) == 0)
      spawn(args, out_pipe[1], err_pipe[1]);
    else
      result_.start_error = std::string{"pipe2: "} + std::strerror(errno);
    out_fd_ = out_pipe[0];
    err_fd_ = err_pipe[0];
    for (int write_end : {out_pipe[1], err_pipe[1]})
      if (write_end >= 0)
        close(write_end);
    if (!running())
      return;
    // The exit of the child wakes poll() through this descriptor, so no wait
    // needs a sleep loop.
    pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
    if (pidfd_ < 0) {
      result_.start_error = std::string{"pidfd_open: "} + std::strerror(errno);
      kill(pid_, SIGKILL);
      reap(0);
    }
  }

  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  ~child_process() {
    if (running()) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    for (int fd : {out_fd_, err_fd_, pidfd_})
      if (fd >= 0)
        close(fd);
  }

  /// Empty if the child runs; else why it could not be started.
  const std::string& start_error() const {
    return result_.start_error;
  }

  const std::string& err() const {
    return result_.err;
  }

  /// Reads output until `ready(stderr so far)` holds. False if the child
  /// ended or the deadline passed first.
  bool wait_for_stderr(const std::function<bool(const std::string&)>& ready) {
    while (!ready(result_.err))
      if (pump() != progress::more)
        return ready(result_.err);
    return true;
  }

  void send(int sig) {
    if (running())
      kill(pid_, sig);
  }

  /// Reads all output and reaps the child, killing it at the deadline.
  outcome finish() {
    auto last = pump();
    while (last == progress::more)
      last = pump();
    if (last == progress::timed_out && running()) {
      kill(pid_, SIGKILL);
      reap(0);
      result_.timed_out = true;
    }
    return result_;
  }

private:
  enum class progress { more, ended, timed_out };

  /// Never signal pid -1 (that would be every process we may signal).
  bool running() const {
    return pid_ > 0 && !reaped_;
  }

  void spawn(const std::vector<std::string>& args, int out_end, int err_end) {
    std::vector<char*> argv;
    for (auto& arg : args)
      argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    posix_spawn_file_actions_t files;
    posix_spawn_file_actions_init(&files);
    posix_spawn_file_actions_addopen(&files, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&files, out_end, STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&files, err_end, STDERR_FILENO);
    // Whatever the test runner blocked or ignored, the child starts with the
    // default dispositions a service manager gives it.
    posix_spawnattr_t attrs;
    posix_spawnattr_init(&attrs);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attrs, &none);
    sigset_t defaults;
    sigemptyset(&defaults);
    for (int sig : {SIGTERM, SIGINT, SIGPIPE})
      sigaddset(&defaults, sig);
    posix_spawnattr_setsigdefault(&attrs, &defaults);
    posix_spawnattr_setflags(&attrs, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    int rc = posix_spawn(&pid_, argv[0], &files, &attrs, argv.data(), environ);
    if (rc != 0) {
      pid_ = -1;
      result_.start_error = "posix_spawn " + args[0] + ": " + std::strerror(rc);
    }
    posix_spawnattr_destroy(&attrs);
    posix_spawn_file_actions_destroy(&files);
  }

  /// Waits (bounded) for output or the child's exit and takes what came.
  progress pump() {
    if (out_fd_ < 0 && err_fd_ < 0 && !running())
      return progress::ended;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline_ - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return progress::timed_out;
    std::vector<pollfd> fds;
    for (int fd : {out_fd_, err_fd_})
      if (fd >= 0)
        fds.push_back(pollfd{fd, POLLIN, 0});
    if (running())
      fds.push_back(pollfd{pidfd_, POLLIN, 0});
    int rc = poll(fds.data(), fds.size(), static_cast<int>(left.count()));
    if (rc == 0)
      return progress::timed_out;
    if (rc < 0)
      return errno == EINTR ? progress::more : progress::timed_out;
    for (auto& p : fds) {
      if (p.revents == 0)
        continue;
      if (p.fd == pidfd_)
        reap(WNOHANG);
      else if (p.fd == out_fd_)
        drain_pipe(out_fd_, result_.out);
      else
        drain_pipe(err_fd_, result_.err);
    }
    return progress::more;
  }

  void drain_pipe(int& fd, std::string& into) {
    char buf[4096];
    auto n = read(fd, buf, sizeof(buf));
    if (n > 0) {
      into.append(buf, static_cast<size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      close(fd);
      fd = -1;
    }
  }

  void reap(int options) {
    int status = 0;
    if (waitpid(pid_, &status, options) != pid_)
      return;
    reaped_ = true;
    if (WIFEXITED(status))
      result_.exit_code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
      result_.signal = WTERMSIG(status);
  }

  std::chrono::steady_clock::time_point deadline_;
  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  int pidfd_ = -1;
  bool reaped_ = false;
  outcome result_;
};

std::vector<std::string> ghscale_args(std::vector<std::string> args) {
  args.insert(args.begin(), GHSCALE_BINARY);
  return args;
}

/// Runs `ghscale ARGS...` to its end (bounded).
outcome run_ghscale(std::vector<std::string> args) {
  return child_process{ghscale_args(std::move(args))}.finish();
}

/// A fresh mkdtemp directory, removed with everything in it at the end.
class scratch_dir {
public:
  scratch_dir() {
    auto pattern = (fs::temp_directory_path() / "ghscale-cli-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr)
      throw std::runtime_error("mkdtemp: " + std::string{std::strerror(errno)});
    path_ = pattern;
  }

  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;

  ~scratch_dir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }

  /// Writes `text` to `name` in the directory and returns its path.
  std::string write(const std::string& name, const std::string& text) const {
    auto file = (path_ / name).string();
    std::ofstream out{file, std::ios::binary};
    out << text;
    if (!out)
      throw std::runtime_error("cannot write " + file);
    return file;
  }

  std::string path(const std::string& name) const {
    return (path_ / name).string();
  }

private:
  fs::path path_;
};

// -- configurations and traces --------------------------------------------------

/// Which part of the service configuration names a remote backend.
enum class remote_part { none, github_app_key_file, github_app_key_parameter };

/// One queue of the service configuration, on the embedded or remote backend.
std::string queue_table(const std::string& name, const std::string& dead_letter,
                        bool remote) {
  std::string text = "[[queues]]\nname = \"" + name + "\"\n";
  if (remote)
    text += "backend = \"remote\"\nurl = \"https://sqs.us-east-1.amazonaws.com/"
            "123456789012/" + name + "\"\n";
  else
    text += "backend = \"embedded\"\n";
  if (!dead_letter.empty())
    text += "dead_letter = \"" + dead_letter + "\"\n"
            "visibility_timeout = \"1m\"\n"
            "max_receive_count = 100\n"
            // A short long-poll, so a drain does not wait 20 s for it.
            "wait_time = \"1s\"\n";
  return text + "\n";
}

/// A one-node service like conf/embedded.toml, logging at info in logfmt;
/// `extra` adds whole tables (e.g. [supervision]).
std::string service_config(remote_part remote = remote_part::none,
                           const std::string& extra = "",
                           const std::string& key_file = "") {
  std::string app_backend = "backend = \"embedded\"\n";
  if (remote == remote_part::github_app_key_file)
    app_backend = "backend = \"remote\"\napp_id = 12345\n"
                  "private_key_file = \"" + key_file + "\"\n";
  if (remote == remote_part::github_app_key_parameter)
    app_backend = "backend = \"remote\"\napp_id = 12345\n"
                  "private_key_parameter = \"/ghscale/app-key\"\n";
  return "[aws]\nregion = \"us-east-1\"\nbackend = \"embedded\"\n\n"
         + queue_table("webhook-jobs", "webhook-jobs-dlq", false)
         + queue_table("webhook-jobs-dlq", "", false)
         + "[[github_apps]]\nname = \"local-app\"\n" + app_backend + "\n"
         + "[[pools]]\n"
           "name = \"linux\"\n"
           "queue = \"webhook-jobs\"\n"
           "github_app = \"local-app\"\n"
           "labels = [\"self-hosted\", \"linux\", \"x64\"]\n"
           "match = \"subset\"\n"
           "mode = \"ephemeral\"\n"
           "max_runners = 10\n"
           "min_idle = 1\n"
           "instance_types = [\"m5.large\"]\n"
           "subnets = [\"subnet-local\"]\n"
           "launch_template = \"lt-ghscale-local\"\n"
           "capacity = \"on-demand\"\n\n"
           "[timeouts]\ndrain = \"10s\"\n\n"
           "[logging]\nlevel = \"info\"\nformat = \"logfmt\"\n\n"
         + extra;
}

/// A trace line queueing one job, in the shape of conf/traces/burst-500.jsonl.
std::string job_line(const std::string& at, int64_t job_id) {
  return "{\"at\":" + at + ",\"event\":{\"action\":\"queued\",\"workflow_job\":{"
         "\"id\":" + std::to_string(job_id) + ",\"run_id\":60001,\"run_attempt\":1,"
         "\"status\":\"queued\",\"labels\":[\"self-hosted\",\"linux\",\"x64\"],"
         "\"runner_name\":null,\"name\":\"build\"},\"repository\":{\"name\":"
         "\"monorepo\",\"full_name\":\"acme/monorepo\",\"owner\":{\"login\":"
         "\"acme\",\"type\":\"Organization\"}},\"organization\":{\"login\":"
         "\"acme\"},\"installation\":{\"id\":4242}},\"run_for\":600}\n";
}

std::string few_jobs_trace() {
  return job_line("0", 2000001) + job_line("0.5", 2000002) + job_line("1", 2000003);
}

/// Two restarts of anything within a minute are tolerated, the third escalates.
const std::string strict_supervision = "[supervision]\n"
                                       "max_restarts = 2\n"
                                       "within = \"60s\"\n"
                                       "initial_backoff = \"10ms\"\n"
                                       "max_backoff = \"50ms\"\n";

std::string launcher_crashes(std::initializer_list<const char*> times) {
  std::string lines;
  for (auto at : times)
    lines += std::string{"{\"at\":"} + at + ",\"crash\":\"fleet_launcher\"}\n";
  return lines;
}

size_t occurrences(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (auto at = text.find(part); at != std::string::npos;
       at = text.find(part, at + 1))
    ++n;
  return n;
}

/// Secrets the simulated GitHub hands out (installation tokens "ghs_sim_N",
/// JIT configs "jit_N", registration tokens "reg_N") and the App JWT
/// (base64url of {"alg":"none",...} starts "eyJhbGci").
const std::regex secret_pattern{R"(ghs_sim_|\bjit_[0-9]|\breg_[0-9]|eyJhbGci)"};

bool shows_secret(const std::string& text) {
  return std::regex_search(text, secret_pattern);
}

// -- check-config ---------------------------------------------------------------

TEST(Cli, CheckConfigPrintsTomlThatReadsBackTheSame) {
  scratch_dir dir;
  auto first = run_ghscale({"check-config", "--values-only",
                            source_file("conf/ghscale.example.toml")});
  ASSERT_EQ(first.exit_code, 0) << first.describe();
  EXPECT_TRUE(first.err.empty()) << first.err;
  ASSERT_TRUE(contains(first.out, "[[pools]]")) << first.out;
  auto again = run_ghscale({"check-config", "--values-only",
                            dir.write("resolved.toml", first.out)});
  ASSERT_EQ(again.exit_code, 0) << again.describe();
  EXPECT_EQ(again.out, first.out);
}

/// The 1-based line of `file`'s text on which `key = ` is set.
int line_of(const std::string& text, const std::string& key) {
  auto at = text.find("\n" + key + " = ");
  if (at == std::string::npos)
    throw std::runtime_error("no key " + key);
  return 2 + static_cast<int>(std::count(text.begin(),
                                         text.begin() + static_cast<std::ptrdiff_t>(at),
                                         '\n'));
}

TEST(Cli, CheckConfigReadsTheFilesTheExampleNames) {
  // The example names /etc/ghscale files this machine lacks: only
  // --values-only passes it, and the plain check names the first one.
  auto example = source_file("conf/ghscale.example.toml");
  auto text = ghscale::read_file(example).value_or("");
  auto result = run_ghscale({"check-config", example});
  EXPECT_EQ(result.exit_code, 2) << result.describe();
  auto where = example + ":" + std::to_string(line_of(text, "tls_cert_file")) + ":";
  EXPECT_TRUE(contains(result.err, where + "1: server.tls_cert_file: cannot read "
                                           "/etc/ghscale/tls/cert.pem"))
    << where << "\n" << result.err;
  EXPECT_TRUE(result.out.empty()) << result.out;
}

/// A listener serving the webhook into the service config's queue.
std::string server_table(const std::string& secret_file, const std::string& tls = "",
                         const std::string& listen = "127.0.0.1:0") {
  return "[server]\nlisten = \"" + listen + "\"\n" + tls
         + "webhook_queue = \"webhook-jobs\"\n"
           "webhook_secret_files = [\"" + secret_file + "\"]\n";
}

/// A self-signed certificate and its key, or nothing if the openssl
/// command cannot make one.
std::optional<std::pair<std::string, std::string>>
make_certificate(const scratch_dir& dir, const std::string& name) {
  auto cert = dir.path(name + "-cert.pem");
  auto key = dir.path(name + "-key.pem");
  auto cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
             "-keyout " + key + " -out " + cert + " >/dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0)
    return std::nullopt;
  return std::pair{cert, key};
}

TEST(Cli, CheckConfigAndRunRefuseTheSameFilesWithFileAndLine) {
  scratch_dir dir;
  auto secret = dir.write("webhook-secret", "s3cret-webhook\n");
  auto not_a_key = dir.write("bad.pem", "-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0LWJ5dGVz\n"
                                        "-----END RSA PRIVATE KEY-----\n");
  auto first = make_certificate(dir, "first");
  auto second = make_certificate(dir, "second");
  if (!first || !second)
    GTEST_SKIP() << "the openssl command cannot make a test certificate";
  auto tls = [](const std::string& cert, const std::string& key) {
    return "tls_cert_file = \"" + cert + "\"\ntls_key_file = \"" + key + "\"\n";
  };
  struct bad_case {
    std::string config;
    std::string key;     // the key whose line the error names
    std::string message; // what it says about it
  };
  auto missing = dir.path("nowhere/file");
  std::vector<bad_case> cases{
    {service_config(remote_part::github_app_key_file, "", missing), "private_key_file",
     "github_apps[0].private_key_file: cannot read " + missing
       + ": No such file or directory"},
    {service_config(remote_part::github_app_key_file, "", not_a_key), "private_key_file",
     "github_apps[0].private_key_file: " + not_a_key + ": GitHub App private key: "
       "not a PEM RSA key"},
    {service_config(remote_part::github_app_key_file, "", dir.path("")),
     "private_key_file", "is a directory"},
    {service_config(remote_part::none, server_table(missing)), "webhook_secret_files",
     "server.webhook_secret_files[0]: webhook secret file " + missing + ": cannot read"},
    {service_config(remote_part::none,
                    server_table(secret, tls(missing, first->second))),
     "tls_cert_file", "server.tls_cert_file: cannot read " + missing},
    {service_config(remote_part::none,
                    server_table(secret, tls(first->first, not_a_key))),
     "tls_key_file", "server.tls_key_file: " + not_a_key + ": not a PEM private key"},
    {service_config(remote_part::none,
                    server_table(secret, tls(first->first, second->second))),
     "tls_key_file",
     "server.tls_key_file: " + second->second + " does not match the certificate in "
       + first->first},
    {service_config(remote_part::none, "[http]\nca_bundle = \"" + not_a_key + "\"\n"),
     "ca_bundle", "http.ca_bundle: " + not_a_key + ": no PEM certificate in it"},
    {service_config(remote_part::none, server_table(secret, "", "127.0.0.1:99999")),
     "listen", "server.listen"},
  };
  // A durable queue whose directory is missing.
  auto storage = service_config();
  auto embedded = std::string{"name = \"webhook-jobs\"\nbackend = \"embedded\"\n"};
  storage.insert(storage.find(embedded) + embedded.size(),
                 "storage = \"" + dir.path("no-dir/jobs.db") + "\"\n");
  cases.push_back({storage, "storage",
                   "directory " + dir.path("no-dir") + " of " + dir.path("no-dir/jobs.db")
                     + " does not exist"});
  for (auto& c : cases) {
    SCOPED_TRACE(c.message);
    auto file = dir.write("bad.toml", c.config);
    auto where = file + ":" + std::to_string(line_of(c.config, c.key)) + ":";
    auto check = run_ghscale({"check-config", file});
    EXPECT_EQ(check.exit_code, 2) << check.describe();
    EXPECT_TRUE(contains(check.err, where)) << where << "\n" << check.describe();
    EXPECT_TRUE(contains(check.err, c.message)) << check.describe();
    EXPECT_TRUE(check.out.empty()) << check.out;
    auto run = run_ghscale({"run", "--config", file});
    EXPECT_EQ(run.exit_code, 2) << run.describe();
    EXPECT_EQ(run.err, check.err) << "run and check-config disagree";
    EXPECT_FALSE(contains(check.err + run.err, "c2VjcmV0LWJ5dGVz")) << run.describe();
    EXPECT_FALSE(contains(check.err + run.err, "s3cret-webhook")) << run.describe();
  }
}

TEST(Cli, CheckConfigPassesWhatRunStartsWith) {
  scratch_dir dir;
  auto secret = dir.write("webhook-secret", "s3cret-webhook\n");
  auto cert = make_certificate(dir, "tls");
  if (!cert)
    GTEST_SKIP() << "the openssl command cannot make a test certificate";
  auto text = service_config(remote_part::none,
                             server_table(secret, "tls_cert_file = \"" + cert->first
                                                    + "\"\ntls_key_file = \""
                                                    + cert->second + "\"\n"));
  auto embedded = std::string{"name = \"webhook-jobs\"\nbackend = \"embedded\"\n"};
  text.insert(text.find(embedded) + embedded.size(),
              "storage = \"" + dir.path("jobs.db") + "\"\n");
  auto cfg = dir.write("good.toml", text);
  auto check = run_ghscale({"check-config", cfg});
  ASSERT_EQ(check.exit_code, 0) << check.describe();
  child_process service{ghscale_args({"run", "--config", cfg})};
  ASSERT_EQ(service.start_error(), "");
  ASSERT_TRUE(service.wait_for_stderr([](const std::string& log) {
    return contains(log, "msg=\"running\"");
  })) << service.err();
  service.send(SIGTERM);
  auto result = service.finish();
  EXPECT_EQ(result.exit_code, 0) << result.describe();
  EXPECT_FALSE(contains(result.err, "s3cret-webhook")) << result.describe();
}

TEST(Cli, CheckConfigNamesFileLineAndUnknownKey) {
  scratch_dir dir;
  auto text = service_config();
  // The unknown key goes right after `name = "linux"` in [[pools]].
  auto at = text.find("name = \"linux\"\n") + std::string{"name = \"linux\"\n"}.size();
  text.insert(at, "max_runnerz = 3\n");
  auto line = 1 + std::count(text.begin(),
                             text.begin() + static_cast<std::ptrdiff_t>(at), '\n');
  auto file = dir.write("typo.toml", text);
  auto result = run_ghscale({"check-config", file});
  EXPECT_EQ(result.exit_code, 2) << result.describe();
  EXPECT_TRUE(contains(result.err, file + ":" + std::to_string(line) + ":"))
    << "expected " << file << ":" << line << " in:\n" << result.err;
  EXPECT_TRUE(contains(result.err, "unknown key 'max_runnerz'")) << result.err;
  EXPECT_TRUE(result.out.empty()) << result.out;
}

TEST(Cli, CheckConfigNamesMissingFile) {
  scratch_dir dir;
  auto missing = dir.path("no-such.toml");
  auto result = run_ghscale({"check-config", missing});
  EXPECT_EQ(result.exit_code, 2) << result.describe();
  EXPECT_TRUE(contains(result.err, missing)) << result.err;
  EXPECT_TRUE(result.out.empty()) << result.out;
}

TEST(Cli, CheckConfigWithoutFileIsUsageError) {
  auto result = run_ghscale({"check-config"});
  EXPECT_EQ(result.exit_code, 2) << result.describe();
  EXPECT_TRUE(contains(result.err, "usage:")) << result.err;
}

// -- simulate -------------------------------------------------------------------

TEST(Cli, SimulateEmbeddedDefaultsLosesNoJob) {
  auto result = run_ghscale({"simulate"});
  ASSERT_EQ(result.exit_code, 0) << result.describe();
  EXPECT_TRUE(contains(result.out, "jobs lost               0\n")) << result.out;
  EXPECT_TRUE(contains(result.out, "result                  OK\n")) << result.out;
}

TEST(Cli, SimulateJsonPrintsOneObject) {
  auto result = run_ghscale({"simulate", "--json"});
  ASSERT_EQ(result.exit_code, 0) << result.describe();
  // Without kParseStopWhenDoneFlag, anything but whitespace after the first
  // value is a parse error: the output is exactly one JSON value.
  rapidjson::Document report;
  report.Parse(result.out.c_str());
  ASSERT_FALSE(report.HasParseError())
    << "error " << report.GetParseError() << " at offset "
    << report.GetErrorOffset() << " of:\n" << result.out;
  ASSERT_TRUE(report.IsObject()) << result.out;
  ASSERT_TRUE(report.HasMember("jobs_lost") && report["jobs_lost"].IsInt64())
    << result.out;
  EXPECT_EQ(report["jobs_lost"].GetInt64(), 0);
  ASSERT_TRUE(report.HasMember("ok") && report["ok"].IsBool()) << result.out;
  EXPECT_TRUE(report["ok"].GetBool());
}

// -- usage ----------------------------------------------------------------------

TEST(Cli, UnknownCommandIsUsageError) {
  auto result = run_ghscale({"frobnicate"});
  EXPECT_EQ(result.exit_code, 2) << result.describe();
  EXPECT_TRUE(contains(result.err, "'frobnicate'")) << result.err;
  EXPECT_TRUE(contains(result.err, "usage:")) << result.err;
  EXPECT_TRUE(result.out.empty()) << result.out;
}

TEST(Cli, UnknownFlagIsUsageError) {
  auto result = run_ghscale({"simulate", "--frobnicate"});
  EXPECT_EQ(result.exit_code, 2) << result.describe();
  EXPECT_TRUE(contains(result.err, "'--frobnicate'")) << result.err;
  EXPECT_TRUE(contains(result.err, "usage:")) << result.err;
  EXPECT_TRUE(result.out.empty()) << result.out;
}

TEST(Cli, FlagWithoutValueIsUsageError) {
  auto result = run_ghscale({"run", "--config"});
  EXPECT_EQ(result.exit_code, 2) << result.describe();
  EXPECT_TRUE(contains(result.err, "usage:")) << result.err;
}

TEST(Cli, NoCommandIsUsageErrorAndHelpIsNot) {
  auto bare = run_ghscale({});
  EXPECT_EQ(bare.exit_code, 2) << bare.describe();
  EXPECT_TRUE(contains(bare.err, "usage:")) << bare.err;
  auto help = run_ghscale({"--help"});
  EXPECT_EQ(help.exit_code, 0) << help.describe();
  EXPECT_TRUE(contains(help.err, "usage:")) << help.err;
}

// -- run ------------------------------------------------------------------------

bool launched(const std::string& log) {
  return contains(log, "msg=\"running\"") && contains(log, "msg=\"launch settled\"");
}

/// Starts the service on a few jobs, waits until it launched runners, stops
/// it with `sig` and expects a clean drain that leaked no secret.
void expect_graceful_drain(int sig) {
  scratch_dir dir;
  auto cfg = dir.write("ghscale.toml", service_config());
  auto trace = dir.write("jobs.jsonl", few_jobs_trace());
  child_process service{ghscale_args({"run", "--config", cfg, "--trace", trace})};
  ASSERT_EQ(service.start_error(), "");
  ASSERT_TRUE(service.wait_for_stderr(launched))
    << "no launch before the service ended or the bound passed:\n" << service.err();
  service.send(sig);
  auto result = service.finish();
  EXPECT_EQ(result.exit_code, 0) << result.describe();
  EXPECT_TRUE(contains(result.err, "msg=\"drained\"")) << result.describe();
  EXPECT_FALSE(contains(result.err, "level=error")) << result.describe();
  EXPECT_FALSE(shows_secret(result.err)) << "a secret in the log:\n" << result.err;
  EXPECT_FALSE(shows_secret(result.out)) << "a secret on stdout:\n" << result.out;
}

TEST(Cli, RunDrainsOnSigterm) {
  expect_graceful_drain(SIGTERM);
}

TEST(Cli, RunDrainsOnSigint) {
  expect_graceful_drain(SIGINT);
}

TEST(Cli, SecretPatternRecognisesSimulatedSecrets) {
  // The leak check above must be able to fail.
  EXPECT_TRUE(shows_secret("token=ghs_sim_1"));
  EXPECT_TRUE(shows_secret("config=jit_12"));
  EXPECT_TRUE(shows_secret("token=reg_3"));
  EXPECT_TRUE(shows_secret("jwt=eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.x."));
  EXPECT_FALSE(shows_secret("msg=\"launch settled\" token=linux-3647876866187"));
}

TEST(Cli, RunRestartsWithinTheLimitAndStillDrains) {
  scratch_dir dir;
  auto cfg = dir.write("ghscale.toml",
                       service_config(remote_part::none, strict_supervision));
  auto trace = dir.write("crashes.jsonl", launcher_crashes({"0.2", "0.4"}));
  child_process service{ghscale_args({"run", "--config", cfg, "--trace", trace})};
  ASSERT_EQ(service.start_error(), "");
  ASSERT_TRUE(service.wait_for_stderr([](const std::string& log) {
    return occurrences(log, "msg=\"restart\"") == 2;
  })) << "no second restart before the service ended or the bound passed:\n"
      << service.err();
  service.send(SIGTERM);
  auto result = service.finish();
  EXPECT_EQ(result.exit_code, 0) << result.describe();
  EXPECT_TRUE(contains(result.err, "msg=\"drained\"")) << result.describe();
  EXPECT_FALSE(contains(result.err, "msg=\"escalate\"")) << result.describe();
}

TEST(Cli, RunLogsOneJsonObjectPerLine) {
  scratch_dir dir;
  auto text = service_config();
  const std::string logfmt = "format = \"logfmt\"";
  text.replace(text.find(logfmt), logfmt.size(), "format = \"json\"");
  auto cfg = dir.write("ghscale.toml", text);
  auto trace = dir.write("jobs.jsonl", few_jobs_trace());
  child_process service{ghscale_args({"run", "--config", cfg, "--trace", trace})};
  ASSERT_EQ(service.start_error(), "");
  ASSERT_TRUE(service.wait_for_stderr([](const std::string& log) {
    return contains(log, "\"msg\":\"launch settled\"");
  })) << service.err();
  service.send(SIGTERM);
  auto result = service.finish();
  EXPECT_EQ(result.exit_code, 0) << result.describe();
  std::istringstream lines{result.err};
  std::vector<std::string> messages;
  for (std::string line; std::getline(lines, line);) {
    rapidjson::Document entry;
    entry.Parse(line.c_str());
    ASSERT_FALSE(entry.HasParseError()) << "not JSON: " << line;
    ASSERT_TRUE(entry.IsObject() && entry.HasMember("msg") && entry["msg"].IsString()
                && entry.HasMember("level") && entry.HasMember("ts"))
      << line;
    messages.emplace_back(entry["msg"].GetString());
  }
  EXPECT_NE(std::find(messages.begin(), messages.end(), "running"), messages.end());
  EXPECT_NE(std::find(messages.begin(), messages.end(), "drained"), messages.end());
  EXPECT_FALSE(shows_secret(result.err)) << "a secret in the log:\n" << result.err;
}

TEST(Cli, RunExitsOneWhenTheSupervisionTreeGivesUp) {
  scratch_dir dir;
  auto cfg = dir.write("ghscale.toml",
                       service_config(remote_part::none, strict_supervision));
  auto trace = dir.write("crashes.jsonl",
                         launcher_crashes({"0.2", "0.4", "0.6", "0.8", "1.0"}));
  auto result = run_ghscale({"run", "--config", cfg, "--trace", trace});
  EXPECT_EQ(result.exit_code, 1) << result.describe();
  EXPECT_TRUE(contains(result.err, "msg=\"escalate\"")) << result.describe();
  EXPECT_TRUE(contains(result.err, "child=fleet_launcher")) << result.describe();
  EXPECT_TRUE(contains(result.err, "supervision tree gave up")) << result.describe();
  EXPECT_FALSE(contains(result.err, "msg=\"drained\"")) << result.describe();
}

TEST(Cli, RunWithoutConfigIsUsageError) {
  auto result = run_ghscale({"run"});
  EXPECT_EQ(result.exit_code, 2) << result.describe();
  EXPECT_TRUE(contains(result.err, "--config")) << result.err;
  EXPECT_TRUE(contains(result.err, "usage:")) << result.err;
}

TEST(Cli, RunRefusesToStartWithoutCredentialsForAnAppKeyInSsm) {
  // No AWS credential anywhere: not in the environment, no shared files
  // (HOME is the scratch directory), no instance metadata. check-config
  // passes (it reads files, it does not call AWS); run names what it tried.
  // (Key files check-config refuses as run does: see
  // CheckConfigAndRunRefuseTheSameFilesWithFileAndLine.)
  scratch_dir dir;
  for (auto var : {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                   "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"})
    unsetenv(var);
  setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
  setenv("HOME", (dir.write("marker", "") + "-no-home").c_str(), 1);
  auto cfg = dir.write("remote.toml",
                       service_config(remote_part::github_app_key_parameter));
  auto check = run_ghscale({"check-config", cfg});
  EXPECT_EQ(check.exit_code, 0) << check.describe();
  auto result = run_ghscale({"run", "--config", cfg});
  EXPECT_EQ(result.exit_code, 2) << result.describe();
  for (auto message : {"private_key_parameter /ghscale/app-key", "no AWS credentials",
                       "AWS_ACCESS_KEY_ID", "IMDS"})
    EXPECT_TRUE(contains(result.err, message)) << message << "\n" << result.describe();
  EXPECT_FALSE(contains(result.err, "msg=\"running\"")) << result.describe();
}

TEST(Cli, RunNamesAnUnreadableTrace) {
  scratch_dir dir;
  auto cfg = dir.write("ghscale.toml", service_config());
  auto missing = dir.path("no-such.jsonl");
  auto result = run_ghscale({"run", "--config", cfg, "--trace", missing});
  EXPECT_EQ(result.exit_code, 2) << result.describe();
  EXPECT_TRUE(contains(result.err, missing)) << result.describe();
}

} // namespace
