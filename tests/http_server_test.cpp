// transport/http_server over real loopback sockets. The clients are raw
// POSIX sockets so each test controls exactly which bytes reach the server
// and when: half a head, one byte at a time, a body that never comes, a TLS
// handshake that never starts. Limits are small and the timeouts under test
// short (300 ms) so the file runs in seconds; every other timeout is long
// so a loaded machine cannot trip it. Nothing asserts that something took
// less than some time: tests wait (up to `patience`) for a status, a close
// or a count, and a wait that runs out is a failure, not a flake.
#include "transport/http_server.hpp"

#include "transport/httplib.hpp"

#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace ghscale {
namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

/// Only there to turn a hang into a failure.
constexpr auto patience = std::chrono::milliseconds(10'000);
/// Long enough that no test meets it unless it means to.
constexpr auto never_in_a_test = std::chrono::seconds(30);
/// The timeouts under test.
constexpr auto short_timeout = std::chrono::milliseconds(300);

template <class Predicate>
bool eventually(Predicate&& holds, std::chrono::milliseconds within = patience) {
  auto until = steady::now() + within;
  while (!holds()) {
    if (steady::now() >= until)
      return holds();
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

bool contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

/// What a client read: a status ("200", "431", ...) with its head and body,
/// or why there was none: "closed" (the server hung up first), "truncated"
/// (it hung up inside the body) or "no answer" (`patience` ran out).
struct reply {
  std::string status;
  std::string head;
  std::string body;

  bool says_close() const {
    std::string lower = head;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return contains(lower, "\r\nconnection: close\r\n");
  }
};

/// A loopback TCP client that sends exactly the bytes it is given. Reads
/// poll against a deadline; the socket's own send and receive timeouts
/// bound the blocking calls (send, and OpenSSL's reads and writes).
class raw_client {
public:
  /// Connects to 127.0.0.1:`port` from `from` (any 127/8 address works on
  /// Linux's loopback, which is how one machine plays two clients).
  explicit raw_client(uint16_t port, const std::string& from = "127.0.0.1",
                      int receive_buffer = 0) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) {
      error_ = std::string{"socket: "} + std::strerror(errno);
      return;
    }
    timeval bound{static_cast<time_t>(patience.count() / 1000), 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof bound);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &bound, sizeof bound);
    if (receive_buffer > 0) // before connect, so the window stays small
      ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer,
                   sizeof receive_buffer);
    sockaddr_in local{};
    local.sin_family = AF_INET;
    ::inet_pton(AF_INET, from.c_str(), &local.sin_addr);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) {
      error_ = "bind " + from + ": " + std::strerror(errno);
      close();
      return;
    }
    sockaddr_in server{};
    server.sin_family = AF_INET;
    server.sin_port = htons(port);
    ::inet_pton(AF_INET, "127.0.0.1", &server.sin_addr);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&server), sizeof server) != 0) {
      error_ = std::string{"connect: "} + std::strerror(errno);
      close();
    }
  }

  ~raw_client() { close(); }
  raw_client(const raw_client&) = delete;
  raw_client& operator=(const raw_client&) = delete;

  bool connected() const { return fd_ >= 0; }
  const std::string& error() const { return error_; }
  int fd() const { return fd_; }

  void close() {
    if (fd_ >= 0)
      ::close(fd_);
    fd_ = -1;
  }

  /// False once the server has gone (its reset, or our closed socket).
  bool send(std::string_view bytes) {
    while (!bytes.empty()) {
      auto n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        return false;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  /// The next response, read until its head and Content-Length body are in.
  reply read_reply(std::chrono::milliseconds within = patience) {
    auto until = steady::now() + within;
    size_t end;
    while ((end = in_.find("\r\n\r\n")) == std::string::npos) {
      if (auto got = fill(until); got != more)
        return reply{got == gone ? "closed" : "no answer", {}, {}};
    }
    reply out;
    out.head = in_.substr(0, end + 2);
    out.status = out.head.size() >= 12 ? out.head.substr(9, 3) : "garbled";
    size_t length = 0;
    std::string lower = out.head;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (auto at = lower.find("\r\ncontent-length:"); at != std::string::npos)
      length = std::stoul(lower.substr(at + 17));
    while (in_.size() < end + 4 + length) {
      auto got = fill(until);
      if (got == waited) // keep what came for the next call
        return reply{"no answer", {}, {}};
      if (got == gone) {
        out.status = "truncated";
        out.body = in_.substr(end + 4);
        in_.clear();
        return out;
      }
    }
    out.body = in_.substr(end + 4, length);
    in_.erase(0, end + 4 + length);
    return out;
  }

  reply exchange(std::string_view request) {
    if (!send(request))
      return reply{"closed", {}, {}};
    return read_reply();
  }

  /// Whether the server closes the connection (end of stream or reset)
  /// within `within`; whatever it sends first is dropped.
  bool closed_within(std::chrono::milliseconds within = patience) {
    auto until = steady::now() + within;
    for (;;) {
      in_.clear();
      if (auto got = fill(until); got != more)
        return got == gone;
    }
  }

private:
  enum outcome { more, gone, waited };

  outcome fill(steady::time_point until) {
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until
                                                                        - steady::now());
      if (left.count() <= 0)
        return waited;
      pollfd p{fd_, POLLIN, 0};
      auto ready = ::poll(&p, 1, static_cast<int>(left.count()));
      if (ready < 0 && errno == EINTR)
        continue;
      if (ready <= 0)
        return waited;
      char chunk[16 * 1024];
      auto n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n > 0) {
        in_.append(chunk, static_cast<size_t>(n));
        return more;
      }
      if (n < 0 && (errno == EINTR || errno == EAGAIN))
        continue;
      return gone; // end of stream or reset
    }
  }

  int fd_ = -1;
  std::string error_;
  std::string in_; // read, not yet returned
};

std::string request(std::string_view method, std::string_view target,
                    std::string_view fields = "", std::string_view body = "") {
  std::string out{method};
  out += ' ';
  out += target;
  out += " HTTP/1.1\r\nHost: test\r\n";
  out += fields;
  if (!body.empty())
    out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  out += "\r\n";
  out += body;
  return out;
}

std::string get(std::string_view target = "/", std::string_view fields = "") {
  return request("GET", target, fields);
}

/// `n` header fields of `size` bytes each ("X-Fill-i: aaa...\r\n").
std::string fields(size_t n, size_t size) {
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    auto name = "X-Fill-" + std::to_string(i) + ": ";
    out += name + std::string(size - name.size() - 2, 'a') + "\r\n";
  }
  return out;
}

using header_pairs = std::vector<std::pair<std::string, std::string>>;

header_pairs pairs(const std::vector<http_header>& headers) {
  header_pairs out;
  for (auto& h : headers)
    out.emplace_back(h.name, h.value);
  return out;
}

http_limits test_limits() {
  http_limits x;
  x.max_request_line = 256;
  x.max_headers = 8;
  x.max_header_bytes = 1024;
  x.max_body_bytes = 1024;
  x.head_timeout = never_in_a_test;
  x.body_timeout = never_in_a_test;
  x.keep_alive_timeout = never_in_a_test;
  x.max_connections = 32;
  x.max_connections_per_client = 32;
  return x;
}

/// A server on 127.0.0.1:0 whose handler answers "<method> <target> <body
/// size>", except that it keeps the `http_respond` of every "/hold..."
/// request unanswered (the tests answer them, or never do), answers
/// "/twice" twice and "/big" with `big_body`. It records every request and
/// every refusal.
class HttpServer : public ::testing::Test {
protected:
  http_limits limits = test_limits();
  std::string big_body;

  void start(http_server_options options = {}) {
    if (options.listen.empty())
      options.listen = "127.0.0.1:0";
    options.limits = limits;
    auto bound = http_server::bind(options);
    ASSERT_TRUE(bound) << describe(bound.error());
    server = std::move(*bound);
    server->serve([this](served_request req,
                         http_respond respond) { handle(std::move(req), std::move(respond)); },
                  [this](std::string_view reason) {
                    std::lock_guard<std::mutex> guard{mtx};
                    refusals.emplace_back(reason);
                  });
  }

  void TearDown() override {
    server.reset();
    // Kept answers hold their connection (and so the server's core) alive;
    // with the server gone they only free memory.
    std::lock_guard<std::mutex> guard{mtx};
    held.clear();
  }

  uint16_t port() const { return server->port(); }

  std::vector<std::string> refused() {
    std::lock_guard<std::mutex> guard{mtx};
    return refusals;
  }

  std::vector<served_request> served() {
    std::lock_guard<std::mutex> guard{mtx};
    return requests;
  }

  size_t held_count() {
    std::lock_guard<std::mutex> guard{mtx};
    return held.size();
  }

  /// The oldest kept answer, no longer kept: dropping it frees its
  /// connection's slot.
  http_respond take_held() {
    std::lock_guard<std::mutex> guard{mtx};
    auto out = std::move(held.front());
    held.erase(held.begin());
    return out;
  }

  /// Refusals are reported before the answer or close the client sees, but
  /// waiting for them keeps the tests from depending on that.
  bool refused_eventually(std::vector<std::string> expected) {
    return eventually([&] { return refused() == expected; });
  }

  bool connections_eventually(size_t n) {
    return eventually([&] { return server->connections() == n; });
  }

  std::unique_ptr<http_server> server;

private:
  void handle(served_request req, http_respond respond) {
    std::unique_lock<std::mutex> guard{mtx};
    requests.push_back(req);
    if (req.target.rfind("/hold", 0) == 0) {
      held.push_back(std::move(respond));
      return;
    }
    guard.unlock();
    served_response res;
    if (req.target == "/twice") {
      res.body = "first";
      respond(res);
      res.body = "second";
      respond(res);
      return;
    }
    if (req.target == "/big") {
      res.body = big_body;
      respond(std::move(res));
      return;
    }
    res.body = req.method + " " + req.target + " " + std::to_string(req.body.size());
    respond(std::move(res));
  }

  std::mutex mtx;
  std::vector<served_request> requests;
  std::vector<std::string> refusals;
  std::vector<http_respond> held;
};

// -- serving ------------------------------------------------------------------

TEST_F(HttpServer, ServesAGetAndASecondRequestOnTheKeptAliveConnection) {
  ASSERT_NO_FATAL_FAILURE(start());
  raw_client c{port()};
  ASSERT_TRUE(c.connected()) << c.error();
  auto first = c.exchange(get("/first"));
  EXPECT_EQ(first.status, "200");
  EXPECT_EQ(first.body, "GET /first 0");
  EXPECT_FALSE(first.says_close());
  auto second = c.exchange(request("POST", "/second", "", "hello"));
  EXPECT_EQ(second.status, "200");
  EXPECT_EQ(second.body, "POST /second 5");
  EXPECT_EQ(served().size(), 2u);
  EXPECT_EQ(server->connections(), 1u);
  EXPECT_TRUE(refused().empty());
}

TEST_F(HttpServer, HandsTheHandlerMethodTargetHeadersInOrderBodyAndClient) {
  ASSERT_NO_FATAL_FAILURE(start());
  raw_client c{port()};
  auto res = c.exchange("PUT /path/x?q=1&r=%20 HTTP/1.1\r\n"
                        "Host: test\r\n"
                        "X-Zulu: last letter\r\n"
                        "X-Zulu: again\r\n"
                        "x-alpha: first letter, sent lowercase\r\n"
                        "Content-Length: 11\r\n"
                        "\r\n"
                        "hello world");
  EXPECT_EQ(res.status, "200");
  auto got = served();
  ASSERT_EQ(got.size(), 1u);
  auto& req = got[0];
  EXPECT_EQ(req.method, "PUT");
  EXPECT_EQ(req.target, "/path/x?q=1&r=%20");
  EXPECT_EQ(req.body, "hello world");
  EXPECT_EQ(req.client, "127.0.0.1");
  // Arrival order, names as sent, a repeated field kept as two.
  EXPECT_EQ(pairs(req.headers), (header_pairs{
                                  {"Host", "test"},
                                  {"X-Zulu", "last letter"},
                                  {"X-Zulu", "again"},
                                  {"x-alpha", "first letter, sent lowercase"},
                                  {"Content-Length", "11"},
                                }));
}

TEST_F(HttpServer, AnswersPipelinedRequestsInOrder) {
  ASSERT_NO_FATAL_FAILURE(start());
  raw_client c{port()};
  ASSERT_TRUE(c.send(get("/a") + request("POST", "/b", "", "xyz") + get("/c")));
  EXPECT_EQ(c.read_reply().body, "GET /a 0");
  EXPECT_EQ(c.read_reply().body, "POST /b 3");
  EXPECT_EQ(c.read_reply().body, "GET /c 0");
}

TEST_F(HttpServer, ClosesAfterAnsweringARequestThatAsksForClose) {
  ASSERT_NO_FATAL_FAILURE(start());
  raw_client c{port()};
  auto res = c.exchange(get("/", "Connection: close\r\n"));
  EXPECT_EQ(res.status, "200");
  EXPECT_TRUE(res.says_close());
  EXPECT_TRUE(c.closed_within());
  EXPECT_TRUE(connections_eventually(0));
}

TEST_F(HttpServer, ReadsAChunkedBodyWithinTheLimit) {
  ASSERT_NO_FATAL_FAILURE(start());
  raw_client c{port()};
  auto res = c.exchange("POST /chunked HTTP/1.1\r\nHost: test\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n"
                        "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
  EXPECT_EQ(res.status, "200");
  auto got = served();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].body, "hello world");
}

TEST_F(HttpServer, DoesNotCountAClientThatLeavesWithoutAWordAsRefused) {
  ASSERT_NO_FATAL_FAILURE(start());
  {
    raw_client c{port()};
    ASSERT_TRUE(connections_eventually(1));
  }
  EXPECT_TRUE(connections_eventually(0));
  EXPECT_TRUE(refused().empty());
}

// -- limits on what a client sends --------------------------------------------

TEST_F(HttpServer, RefusesMoreHeaderFieldsThanMaxHeadersWith431AndCloses) {
  ASSERT_NO_FATAL_FAILURE(start());
  raw_client c{port()};
  // Host and 8 more: 9 fields against a limit of 8, in few bytes.
  auto res = c.exchange(get("/", fields(8, 20)));
  EXPECT_EQ(res.status, "431");
  EXPECT_TRUE(res.says_close());
  EXPECT_TRUE(c.closed_within());
  EXPECT_TRUE(refused_eventually({"headers_too_large"}));
  EXPECT_TRUE(served().empty());
}

TEST_F(HttpServer, ServesExactlyMaxHeadersFields) {
  ASSERT_NO_FATAL_FAILURE(start());
  raw_client c{port()};
  EXPECT_EQ(c.exchange(get("/", fields(7, 20))).status, "200");
}

TEST_F(HttpServer, RefusesHeaderBytesOverTheLimitWith431) {
  ASSERT_NO_FATAL_FAILURE(start());
  raw_client c{port()};
  // 2 fields of 800 bytes: over max_header_bytes and over what the parser
  // allows the whole head (max_request_line + max_header_bytes).
  auto res = c.exchange(get("/", fields(2, 800)));
  EXPECT_EQ(res.status, "431");
  EXPECT_TRUE(c.closed_within());
  EXPECT_TRUE(refused_eventually({"headers_too_large"}));
  EXPECT_TRUE(served().empty());
}

TEST_F(HttpServer, RefusesATargetOverMaxRequestLineWith414) {
  ASSERT_NO_FATAL_FAILURE(start());
  raw_client c{port()};
  // The head fits the parser's limit; the target alone is too long.
  auto res = c.exchange(get("/" + std::string(300, 'a')));
  EXPECT_EQ(res.status, "414");
  EXPECT_TRUE(c.closed_within());
  EXPECT_TRUE(refused_eventually({"request_line_too_long"}));
  EXPECT_TRUE(served().empty());
}

TEST_F(HttpServer, RefusesARequestLineThatNeverEndsWith414) {
  ASSERT_NO_FATAL_FAILURE(start());
  raw_client c{port()};
  // No line end within the whole head's limit.
  auto res = c.exchange("GET /" + std::string(2000, 'a'));
  EXPECT_EQ(res.status, "414");
  EXPECT_TRUE(c.closed_within());
  EXPECT_TRUE(refused_eventually({"request_line_too_long"}));
}

TEST_F(HttpServer, RefusesAContentLengthOverMaxBodyWith413BeforeTheBodyIsSent) {
  ASSERT_NO_FATAL_FAILURE(start());
  raw_client c{port()};
  // Only the head goes out; the answer cannot be waiting for the body.
  auto res = c.exchange("POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 5000\r\n\r\n");
  EXPECT_EQ(res.status, "413");
  EXPECT_TRUE(res.says_close());
  EXPECT_TRUE(c.closed_within());
  EXPECT_TRUE(refused_eventually({"body_too_large"}));
  EXPECT_TRUE(served().empty());
}

TEST_F(HttpServer, ServesABodyOfExactlyMaxBodyBytes) {
  ASSERT_NO_FATAL_FAILURE(start());
  raw_client c{port()};
  auto res = c.exchange(request("POST", "/", "", std::string(1024, 'b')));
  EXPECT_EQ(res.status, "200");
  EXPECT_EQ(res.body, "POST / 1024");
}

TEST_F(HttpServer, RefusesAChunkedBodyGrowingPastMaxBodyWith413) {
  ASSERT_NO_FATAL_FAILURE(start());
  raw_client c{port()};
  std::string chunk = "200\r\n" + std::string(512, 'c') + "\r\n"; // 512 bytes
  ASSERT_TRUE(c.send("POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + chunk + chunk));
  // 1024 bytes so far, at the limit; the next chunk is one too many.
  ASSERT_TRUE(c.send(chunk));
  auto res = c.read_reply();
  EXPECT_EQ(res.status, "413");
  EXPECT_TRUE(c.closed_within());
  EXPECT_TRUE(refused_eventually({"body_too_large"}));
  EXPECT_TRUE(served().empty());
}

TEST_F(HttpServer, RefusesAGarbageRequestLineWith400) {
  ASSERT_NO_FATAL_FAILURE(start());
  raw_client c{port()};
  auto res = c.exchange("this is not http\r\n\r\n");
  EXPECT_EQ(res.status, "400");
  EXPECT_TRUE(c.closed_within());
  EXPECT_TRUE(refused_eventually({"bad_request"}));
  EXPECT_TRUE(served().empty());
}

// -- deadlines ----------------------------------------------------------------

TEST_F(HttpServer, AnswersAHeadNotCompleteByHeadTimeoutWith408) {
  limits.head_timeout = short_timeout;
  ASSERT_NO_FATAL_FAILURE(start());
  raw_client c{port()};
  ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nHost: te"));
  auto res = c.read_reply();
  EXPECT_EQ(res.status, "408");
  EXPECT_TRUE(c.closed_within());
  EXPECT_TRUE(refused_eventually({"head_timeout"}));
  EXPECT_TRUE(connections_eventually(0));
}

TEST_F(HttpServer, CutsAClientDrippingItsHeadAtTheHeadDeadline) {
  limits.head_timeout = short_timeout;
  ASSERT_NO_FATAL_FAILURE(start());
  raw_client c{port()};
  // Each byte arrives well inside the head timeout, but the head would take
  // 50 ms x its length (~20 s) in all: the deadline is for the whole head.
  auto head = get("/", fields(4, 100));
  size_t sent = 0;
  reply res;
  for (; sent < head.size(); ++sent) {
    if (!c.send(head.substr(sent, 1)))
      break;
    res = c.read_reply(50ms);
    if (res.status != "no answer")
      break;
  }
  if (res.status == "no answer" || res.status.empty())
    res = c.read_reply();
  EXPECT_EQ(res.status, "408");
  EXPECT_LT(sent, head.size());
  EXPECT_TRUE(c.closed_within());
  EXPECT_TRUE(refused_eventually({"head_timeout"}));
  EXPECT_TRUE(served().empty());
}

TEST_F(HttpServer, AnswersABodyNotCompleteByBodyTimeoutWith408) {
  limits.body_timeout = short_timeout;
  ASSERT_NO_FATAL_FAILURE(start());
  raw_client c{port()};
  ASSERT_TRUE(c.send("POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n0123456789"));
  auto res = c.read_reply();
  EXPECT_EQ(res.status, "408");
  EXPECT_TRUE(c.closed_within());
  EXPECT_TRUE(refused_eventually({"body_timeout"}));
  EXPECT_TRUE(served().empty());
}

TEST_F(HttpServer, ClosesAnIdleKeptAliveConnectionAfterKeepAliveTimeout) {
  limits.keep_alive_timeout = short_timeout;
  ASSERT_NO_FATAL_FAILURE(start());
  raw_client c{port()};
  EXPECT_EQ(c.exchange(get()).status, "200");
  EXPECT_TRUE(c.closed_within());
  EXPECT_TRUE(connections_eventually(0));
  // Idling between requests is allowed: nothing to report.
  EXPECT_TRUE(refused().empty());
}

TEST_F(HttpServer, StartsAKeptAliveRequestsHeadDeadlineAtItsFirstByte) {
  limits.head_timeout = short_timeout;
  ASSERT_NO_FATAL_FAILURE(start());
  raw_client c{port()};
  EXPECT_EQ(c.exchange(get("/1")).status, "200");
  // Idle for longer than a head may take: only keep_alive_timeout (30 s)
  // runs while no byte of the next request has come.
  std::this_thread::sleep_for(3 * short_timeout);
  EXPECT_EQ(c.exchange(get("/2")).status, "200");
  EXPECT_TRUE(refused().empty());
}

// -- connection slots ---------------------------------------------------------

TEST_F(HttpServer, ClosesTheConnectionOverMaxPerClientButServesAnotherClient) {
  limits.max_connections_per_client = 3;
  ASSERT_NO_FATAL_FAILURE(start());
  std::vector<std::unique_ptr<raw_client>> mine;
  for (int i = 0; i < 3; ++i) {
    mine.push_back(std::make_unique<raw_client>(port()));
    // One at a time: the server admits in the order it accepts.
    ASSERT_TRUE(connections_eventually(mine.size()));
  }
  raw_client fourth{port()};
  ASSERT_TRUE(fourth.connected()) << fourth.error(); // the kernel accepted it
  EXPECT_TRUE(fourth.closed_within());
  EXPECT_TRUE(refused_eventually({"too_many_from_client"}));

  raw_client other{port(), "127.0.0.2"};
  if (!other.connected())
    GTEST_SKIP() << "cannot connect from 127.0.0.2: " << other.error();
  auto res = other.exchange(get("/other"));
  EXPECT_EQ(res.status, "200");
  auto got = served();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].client, "127.0.0.2");
  // The three admitted ones are untouched.
  for (auto& c : mine)
    EXPECT_EQ(c->exchange(get()).status, "200");
}

TEST_F(HttpServer, ClosesTheConnectionOverMaxConnectionsFromAnyClient) {
  limits.max_connections = 3;
  ASSERT_NO_FATAL_FAILURE(start());
  std::vector<std::unique_ptr<raw_client>> open;
  for (int i = 0; i < 3; ++i) {
    open.push_back(std::make_unique<raw_client>(port()));
    ASSERT_TRUE(connections_eventually(open.size()));
  }
  raw_client other{port(), "127.0.0.2"};
  if (!other.connected())
    GTEST_SKIP() << "cannot connect from 127.0.0.2: " << other.error();
  EXPECT_TRUE(other.closed_within());
  EXPECT_TRUE(refused_eventually({"too_many_connections"}));
  EXPECT_EQ(server->connections(), 3u);
}

TEST_F(HttpServer, GivesASlotBackWhenItsConnectionCloses) {
  limits.max_connections_per_client = 3;
  ASSERT_NO_FATAL_FAILURE(start());
  std::vector<std::unique_ptr<raw_client>> mine;
  for (int i = 0; i < 3; ++i) {
    mine.push_back(std::make_unique<raw_client>(port()));
    ASSERT_TRUE(connections_eventually(mine.size()));
  }
  for (int i = 0; i < 2; ++i) {
    raw_client over{port()};
    EXPECT_TRUE(over.closed_within());
  }
  EXPECT_TRUE(refused_eventually({"too_many_from_client", "too_many_from_client"}));
  EXPECT_EQ(server->connections(), 3u);

  // A slot comes back however its connection ends: closed by the client
  // while the server waits for a first head, or while it is kept alive.
  EXPECT_EQ(mine[1]->exchange(get()).status, "200");
  mine[0].reset();
  ASSERT_TRUE(connections_eventually(2));
  raw_client again{port()};
  EXPECT_EQ(again.exchange(get("/again")).status, "200");
  EXPECT_EQ(server->connections(), 3u);

  mine.clear();
  again.close();
  EXPECT_TRUE(connections_eventually(0));
  raw_client later{port()};
  EXPECT_EQ(later.exchange(get("/later")).status, "200");
}

// -- stop(grace) --------------------------------------------------------------

TEST_F(HttpServer, StopClosesIdleAndMidHeadConnectionsAndStopsListening) {
  ASSERT_NO_FATAL_FAILURE(start());
  raw_client idle{port()};
  EXPECT_EQ(idle.exchange(get()).status, "200");
  raw_client mid_head{port()};
  ASSERT_TRUE(mid_head.send("GET / HTTP/1.1\r\nHos"));
  ASSERT_TRUE(connections_eventually(2));

  // Neither waits for a handler: stop need not use its grace.
  auto stopped = std::async(std::launch::async, [&] { server->stop(patience); });
  EXPECT_TRUE(idle.closed_within());
  EXPECT_TRUE(mid_head.closed_within());
  ASSERT_EQ(stopped.wait_for(patience), std::future_status::ready);
  EXPECT_EQ(server->connections(), 0u);
  raw_client late{port()};
  EXPECT_FALSE(late.connected());
  EXPECT_TRUE(refused().empty()) << refused().front();
}

TEST_F(HttpServer, StopBeforeServeAndTwiceIsHarmless) {
  auto bound = http_server::bind(http_server_options{"127.0.0.1:0", "", "", limits, 2});
  ASSERT_TRUE(bound) << describe(bound.error());
  auto unserved = (*bound)->port();
  (*bound)->stop(0s);
  raw_client late{unserved};
  EXPECT_FALSE(late.connected());
  (*bound)->stop(0s);
  (*bound)->serve([](served_request, http_respond) {}, nullptr); // stopped: no-op
  raw_client later{unserved};
  EXPECT_FALSE(later.connected());

  ASSERT_NO_FATAL_FAILURE(start());
  EXPECT_EQ(raw_client{port()}.exchange(get()).status, "200");
  server->stop(0s);
  server->stop(0s);
}

// -- respond misuse -----------------------------------------------------------

TEST_F(HttpServer, IgnoresASecondCallToRespond) {
  ASSERT_NO_FATAL_FAILURE(start());
  raw_client c{port()};
  auto res = c.exchange(get("/twice"));
  EXPECT_EQ(res.status, "200");
  EXPECT_EQ(res.body, "first");
  // Had "second" gone out too, it would be read here instead.
  EXPECT_EQ(c.exchange(get("/next")).body, "GET /next 0");
}

// -- TLS ----------------------------------------------------------------------

/// A self-signed certificate for 127.0.0.1, made once for the TLS tests.
class HttpsServer : public HttpServer {
protected:
  static void SetUpTestSuite() {
    char dir_template[] = "/tmp/http_server_tls_XXXXXX";
    if (::mkdtemp(dir_template) == nullptr)
      return;
    dir = dir_template;
    auto cmd = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
               "-nodes -days 1 -subj /CN=127.0.0.1 -keyout "
               + dir + "/key.pem -out " + dir + "/cert.pem >/dev/null 2>&1";
    made = std::system(cmd.c_str()) == 0;
  }

  static void TearDownTestSuite() {
    if (dir.empty())
      return;
    std::remove((dir + "/key.pem").c_str());
    std::remove((dir + "/cert.pem").c_str());
    ::rmdir(dir.c_str());
  }

  void SetUp() override {
    if (!made)
      GTEST_SKIP() << "the openssl command cannot make a test certificate";
  }

  void start_tls() {
    http_server_options options;
    options.tls_cert_file = dir + "/cert.pem";
    options.tls_key_file = dir + "/key.pem";
    start(options);
  }

  static void configure(httplib::SSLClient& client) {
    client.enable_server_certificate_verification(false); // self-signed
    client.set_connection_timeout(patience.count() / 1000);
    client.set_read_timeout(patience.count() / 1000);
    client.set_write_timeout(patience.count() / 1000);
  }

  static inline std::string dir;
  static inline bool made = false;
};

/// OpenSSL on a raw_client's socket, for what cpp-httplib will not do:
/// finish the handshake and then say nothing. Blocking calls are bounded by
/// the socket's timeouts.
class tls_client {
public:
  explicit tls_client(raw_client& tcp)
    : ctx_(SSL_CTX_new(TLS_client_method())), ssl_(SSL_new(ctx_)) {
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr); // self-signed
    SSL_set_fd(ssl_, tcp.fd());
  }
  ~tls_client() {
    SSL_free(ssl_);
    SSL_CTX_free(ctx_);
  }
  tls_client(const tls_client&) = delete;
  tls_client& operator=(const tls_client&) = delete;

  bool handshake() { return SSL_connect(ssl_) == 1; }

  bool send(std::string_view bytes) {
    return SSL_write(ssl_, bytes.data(), static_cast<int>(bytes.size()))
           == static_cast<int>(bytes.size());
  }

  /// Everything until the server closes (or the socket's timeout).
  std::string read_all() {
    std::string out;
    char chunk[4096];
    int n;
    while ((n = SSL_read(ssl_, chunk, sizeof chunk)) > 0)
      out.append(chunk, static_cast<size_t>(n));
    return out;
  }

private:
  SSL_CTX* ctx_;
  SSL* ssl_;
};

TEST_F(HttpsServer, ServesRequestsOverTls) {
  ASSERT_NO_FATAL_FAILURE(start_tls());
  httplib::SSLClient tls{"127.0.0.1", port()};
  configure(tls);
  auto res = tls.Get("/secure");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "GET /secure 0");
  auto posted = tls.Post("/secure", "payload", "text/plain");
  ASSERT_TRUE(posted) << httplib::to_string(posted.error());
  EXPECT_EQ(posted->body, "POST /secure 7");
  auto got = served();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1].body, "payload");
  EXPECT_EQ(got[1].client, "127.0.0.1");
}

TEST_F(HttpsServer, RefusesAPlainHttpRequestOnTheTlsPort) {
  ASSERT_NO_FATAL_FAILURE(start_tls());
  raw_client c{port()};
  auto res = c.exchange(get());
  EXPECT_EQ(res.status, "closed");
  EXPECT_TRUE(refused_eventually({"tls_handshake"}));
  EXPECT_TRUE(served().empty());
}

TEST_F(HttpsServer, CutsAClientThatNeverStartsTheHandshakeWhileServingOthers) {
  // Long enough for the request below to finish its own handshake and head
  // without hurry, short enough to wait for.
  limits.head_timeout = 1s;
  ASSERT_NO_FATAL_FAILURE(start_tls());
  raw_client silent{port()};
  ASSERT_TRUE(connections_eventually(1));
  httplib::SSLClient other{"127.0.0.1", port()};
  configure(other);
  auto res = other.Get("/meanwhile");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_TRUE(silent.closed_within());
  EXPECT_TRUE(refused_eventually({"tls_handshake"}));
  EXPECT_TRUE(connections_eventually(0));
}

TEST_F(HttpsServer, AnswersATlsClientThatSendsNoRequestWith408) {
  limits.head_timeout = short_timeout;
  ASSERT_NO_FATAL_FAILURE(start_tls());
  raw_client tcp{port()};
  tls_client tls{tcp};
  // Past the handshake the head has a deadline of its own, and the 408
  // goes out over TLS.
  ASSERT_TRUE(tls.handshake());
  auto answer = tls.read_all();
  EXPECT_EQ(answer.substr(0, 12), "HTTP/1.1 408") << answer;
  EXPECT_TRUE(refused_eventually({"head_timeout"}));
  EXPECT_TRUE(connections_eventually(0));
}

// -- bind and parse_listen ----------------------------------------------------

TEST(ParseListen, ReadsHostAndPort) {
  auto v4 = parse_listen("127.0.0.1:8080");
  ASSERT_TRUE(v4) << describe(v4.error());
  EXPECT_EQ(v4->host, "127.0.0.1");
  EXPECT_EQ(v4->port, 8080);
  auto v6 = parse_listen("[::1]:0");
  ASSERT_TRUE(v6) << describe(v6.error());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 0);
  auto any = parse_listen("0.0.0.0:65535");
  ASSERT_TRUE(any) << describe(any.error());
  EXPECT_EQ(any->host, "0.0.0.0");
  EXPECT_EQ(any->port, 65535);
}

TEST(ParseListen, RejectsWhatIsNotHostColonPortNamingTheText) {
  for (std::string bad : {":80", "host", "host:", "host:99999", "host:65536", "host:12a",
                          "host:-1", "host: 80", "host:123456", ""}) {
    auto parsed = parse_listen(bad);
    ASSERT_FALSE(parsed) << bad;
    EXPECT_TRUE(contains(describe(parsed.error()), "'" + bad + "'"))
      << bad << ": " << describe(parsed.error());
  }
}

TEST_F(HttpServer, RefusesToBindAnAddressAlreadyBound) {
  ASSERT_NO_FATAL_FAILURE(start());
  auto listen = "127.0.0.1:" + std::to_string(port());
  auto second = http_server::bind(http_server_options{listen, "", "", limits, 1});
  ASSERT_FALSE(second);
  EXPECT_TRUE(contains(describe(second.error()), "cannot listen on " + listen))
    << describe(second.error());
  // The first is unharmed.
  EXPECT_EQ(raw_client{port()}.exchange(get()).status, "200");
}

TEST(HttpServerBind, RefusesABadListenAddress) {
  auto bound = http_server::bind(http_server_options{"nowhere", "", "", {}, 1});
  ASSERT_FALSE(bound);
  EXPECT_TRUE(contains(describe(bound.error()), "'nowhere'")) << describe(bound.error());
}

TEST(HttpServerBind, RefusesACertificateWithoutItsKey) {
  http_server_options options;
  options.listen = "127.0.0.1:0";
  options.tls_cert_file = "/nonexistent/cert.pem";
  auto bound = http_server::bind(options);
  ASSERT_FALSE(bound);
  EXPECT_TRUE(contains(describe(bound.error()), "tls_cert_file and tls_key_file"))
    << describe(bound.error());
  options.tls_cert_file.clear();
  options.tls_key_file = "/nonexistent/key.pem";
  EXPECT_FALSE(http_server::bind(options));
}

TEST(HttpServerBind, RefusesTlsFilesThatCannotBeRead) {
  http_server_options options;
  options.listen = "127.0.0.1:0";
  options.tls_cert_file = "/nonexistent/cert.pem";
  options.tls_key_file = "/nonexistent/key.pem";
  auto bound = http_server::bind(options);
  ASSERT_FALSE(bound);
  EXPECT_TRUE(contains(describe(bound.error()), "/nonexistent/cert.pem"))
    << describe(bound.error());
}

// -- stop with answers outstanding --------------------------------------------
//
// A connection waiting for its handler has no I/O pending: without the
// server's work guard its threads would return as soon as everything else
// is closed, the force-close would never run, and the session would leak
// (LeakSanitizer would report it).
TEST_F(HttpServer, StopClosesAConnectionWhoseHandlerNeverAnswers) {
  ASSERT_NO_FATAL_FAILURE(start());
  raw_client waiting{port()};
  ASSERT_TRUE(waiting.send(get("/hold")));
  ASSERT_TRUE(eventually([&] { return held_count() == 1; }));
  auto stopped = std::async(std::launch::async, [&] { server->stop(short_timeout); });
  ASSERT_EQ(stopped.wait_for(patience), std::future_status::ready);
  auto res = waiting.read_reply();
  EXPECT_EQ(res.status, "closed");
  raw_client late{port()};
  EXPECT_FALSE(late.connected());
}

// An answer given during the grace is written, and stop returns as soon as
// its connection is closed.
TEST_F(HttpServer, StopDeliversAnAnswerGivenWithinTheGrace) {
  ASSERT_NO_FATAL_FAILURE(start());
  raw_client waiting{port()};
  ASSERT_TRUE(waiting.send(get("/hold")));
  ASSERT_TRUE(eventually([&] { return held_count() == 1; }));
  auto stopped = std::async(std::launch::async, [&] { server->stop(patience); });
  // Once the listener is closed stop is inside its grace; the pause lets
  // the server threads go idle, as they would while a real handler works.
  ASSERT_TRUE(eventually([&] { return !raw_client{port()}.connected(); }));
  std::this_thread::sleep_for(200ms);
  {
    auto respond = take_held();
    served_response res;
    res.body = "late but in time";
    respond(std::move(res));
  } // dropped, so its connection can end and stop need not wait on it
  auto res = waiting.read_reply();
  EXPECT_EQ(res.status, "200");
  EXPECT_EQ(res.body, "late but in time");
  EXPECT_TRUE(res.says_close());
  EXPECT_TRUE(waiting.closed_within());
  ASSERT_EQ(stopped.wait_for(patience), std::future_status::ready);
  EXPECT_EQ(server->connections(), 0u);
}

// After stop (and after the server is gone) respond does nothing, and the
// connection is already closed.
TEST_F(HttpServer, IgnoresRespondAfterStopAndAfterTheServerIsGone) {
  ASSERT_NO_FATAL_FAILURE(start());
  raw_client first{port()};
  ASSERT_TRUE(first.send(get("/hold/1")));
  raw_client second{port()};
  ASSERT_TRUE(second.send(get("/hold/2")));
  ASSERT_TRUE(eventually([&] { return held_count() == 2; }));
  server->stop(short_timeout);
  take_held()(served_response{});
  EXPECT_EQ(first.read_reply().status, "closed");
  server.reset();
  auto last = take_held();
  last(served_response{});
  last(served_response{});
  EXPECT_EQ(second.read_reply().status, "closed");
}

// An answer already being written to a slow reader is finished within the
// grace, not cut when stop begins.
TEST_F(HttpServer, StopLetsAnAnswerAlreadyBeingWrittenFinish) {
  big_body = std::string(16 << 20, 'z'); // far more than both sockets buffer
  ASSERT_NO_FATAL_FAILURE(start());
  raw_client slow{port(), "127.0.0.1", 4096};
  ASSERT_TRUE(slow.send(get("/big")));
  ASSERT_TRUE(eventually([&] { return served().size() == 1; }));
  std::this_thread::sleep_for(100ms); // the write has filled the buffers
  auto stopped = std::async(std::launch::async, [&] { server->stop(patience); });
  auto res = slow.read_reply();
  EXPECT_EQ(res.status, "200");
  EXPECT_EQ(res.body.size(), big_body.size());
  ASSERT_EQ(stopped.wait_for(patience), std::future_status::ready);
}

// The read pending on a mid-head connection that stop closes can complete
// with end of stream (beast's partial_message), which from a client would
// be a malformed request: from stop it is no refusal and gets no 400. A
// race, so many connections make it show.
TEST_F(HttpServer, StopReportsNoRefusalForTheMidHeadConnectionsItCloses) {
  ASSERT_NO_FATAL_FAILURE(start());
  std::vector<std::unique_ptr<raw_client>> mid_head;
  for (int i = 0; i < 20; ++i) {
    mid_head.push_back(std::make_unique<raw_client>(port()));
    ASSERT_TRUE(mid_head.back()->send("GET / HTTP/1.1\r\nHos"));
  }
  ASSERT_TRUE(connections_eventually(mid_head.size()));
  server->stop(patience);
  EXPECT_EQ(refused(), std::vector<std::string>{});
}

// beast files a repeated field after the last field of the same name, as
// the header says; the webhook's signature check sees every value.
TEST_F(HttpServer, HandsTheHandlerRepeatedFieldsAfterTheFirstOfTheirName) {
  ASSERT_NO_FATAL_FAILURE(start());
  raw_client c{port()};
  EXPECT_EQ(c.exchange(get("/", "X-A: 1\r\nX-B: 2\r\nX-A: 3\r\n")).status, "200");
  auto got = served();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(pairs(got[0].headers),
            (header_pairs{{"Host", "test"}, {"X-A", "1"}, {"X-A", "3"}, {"X-B", "2"}}));
}

// The parser's single limit is max_request_line + max_header_bytes for the
// whole head; each part is then held to its own: fields of 1200 bytes after
// a short request line are over max_header_bytes (1024) ...
TEST_F(HttpServer, RefusesFieldsOverMaxHeaderBytesAfterAShortRequestLine) {
  ASSERT_NO_FATAL_FAILURE(start());
  raw_client c{port()};
  EXPECT_EQ(c.exchange(get("/", fields(2, 600))).status, "431");
  EXPECT_TRUE(refused_eventually({"headers_too_large"}));
}

// ... and a 400-byte method makes a request line over max_request_line
// (256), whatever the target.
TEST_F(HttpServer, RefusesALongMethodAsRequestLineTooLong) {
  ASSERT_NO_FATAL_FAILURE(start());
  raw_client c{port()};
  EXPECT_EQ(c.exchange(request(std::string(400, 'M'), "/")).status, "414");
  EXPECT_TRUE(refused_eventually({"request_line_too_long"}));
}

// When the head runs over the parser's limit, 414 or 431 is chosen by
// where the request line ends: a long URL sent with its fields in one
// write (as any client does), a little longer than the whole head's limit,
// is a request line too long, wherever the read that crossed the limit
// ended.
TEST_F(HttpServer, RefusesALongTargetSentWithItsFieldsWith414) {
  ASSERT_NO_FATAL_FAILURE(start());
  raw_client c{port()};
  EXPECT_EQ(c.exchange(get("/" + std::string(1400, 'a'))).status, "414");
  EXPECT_TRUE(refused_eventually({"request_line_too_long"}));
}

// A plain client that connects and leaves is not a refusal (see
// DoesNotCountAClientThatLeavesWithoutAWordAsRefused); nor is a TLS client
// that leaves after the handshake without close_notify (as most clients
// and probes do: the read fails with ssl::error::stream_truncated).
TEST_F(HttpsServer, DoesNotCountAClientThatLeavesAfterTheHandshakeAsRefused) {
  ASSERT_NO_FATAL_FAILURE(start_tls());
  {
    raw_client tcp{port()};
    tls_client tls{tcp};
    ASSERT_TRUE(tls.handshake());
    ASSERT_TRUE(connections_eventually(1));
  } // closes the socket, with no close_notify
  EXPECT_TRUE(connections_eventually(0));
  EXPECT_TRUE(refused().empty()) << refused().front();
}

} // namespace
} // namespace ghscale
