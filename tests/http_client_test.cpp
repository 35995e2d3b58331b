// The HTTP engine and its actor against in-process cpp-httplib servers on
// loopback: real sockets, so the real scheduler. Receives carry a generous
// timeout as a failure guard only; nothing waits on the clock for a result.

#include "transport/httplib.hpp"

#include "actors/clients/http_client.hpp"
#include "messages/actors.hpp"
#include "transport/http_engine.hpp"

#include <caf/all.hpp>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace ghscale {
namespace {

using namespace std::chrono_literals;

/// Only there to turn a hang into a failure.
constexpr auto guard = std::chrono::seconds(30);

/// A cpp-httplib server (plain or TLS) on a free loopback port, serving from
/// its own thread, with enough workers for every keep-alive connection the
/// tests open.
class loopback_server {
public:
  explicit loopback_server(std::unique_ptr<httplib::Server> server
                           = std::make_unique<httplib::Server>())
    : server_(std::move(server)) {
    server_->new_task_queue = [] { return new httplib::ThreadPool(64); };
    server_->set_keep_alive_max_count(1000);
    // Headers and body leave in separate writes: without TCP_NODELAY, Nagle
    // and delayed ACKs add 40 ms to every response.
    server_->set_socket_options([](socket_t sock) {
      int on = 1;
      ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
      ::setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    });
  }

  ~loopback_server() {
    if (!thread_.joinable())
      return;
    server_->stop();
    thread_.join();
  }

  httplib::Server& routes() { return *server_; }

  /// Binds, serves, and answers the base URL ("http://127.0.0.1:PORT").
  std::string start(const std::string& scheme = "http") {
    auto port = server_->bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    // stop() is a no-op until the accept loop runs: wait for it to start.
    while (!server_->is_running())
      std::this_thread::yield();
    return scheme + "://127.0.0.1:" + std::to_string(port);
  }

private:
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

/// Handlers block on this until the test ends (or for the guard at most).
class gate {
public:
  std::shared_future<void> waiter() const { return opened_; }
  /// Handlers call this to tell the test they are inside.
  void arrive() {
    std::call_once(first_, [this] { arrived_.set_value(); });
  }
  bool wait_for_arrival() {
    return arrived_future_.wait_for(guard) == std::future_status::ready;
  }
  ~gate() { open_.set_value(); }

private:
  std::promise<void> open_;
  std::shared_future<void> opened_ = open_.get_future().share();
  std::once_flag first_;
  std::promise<void> arrived_;
  std::future<void> arrived_future_ = arrived_.get_future();
};

bool all_lower_case(const std::vector<http_header>& headers) {
  return std::all_of(headers.begin(), headers.end(), [](const http_header& h) {
    return std::none_of(h.name.begin(), h.name.end(),
                        [](unsigned char c) { return std::isupper(c) != 0; });
  });
}

http_request make_request(std::string method, std::string url,
                          std::vector<http_header> headers = {},
                          std::string body = {}) {
  http_request req;
  req.method = std::move(method);
  req.url = std::move(url);
  req.headers = std::move(headers);
  req.body.value = std::move(body);
  return req;
}

std::string header_or_empty(const http_response& r, const std::string& name) {
  auto* value = find_header(r.headers, name);
  return value != nullptr ? *value : std::string{};
}

errc code_of(const caf::error& err) {
  EXPECT_EQ(err.category(), caf::atom("ghscale")) << describe(err);
  return static_cast<errc>(err.code());
}

// -- a self-signed certificate for 127.0.0.1 and localhost --------------------

struct pkey_deleter {
  void operator()(EVP_PKEY* x) const { EVP_PKEY_free(x); }
};
struct x509_deleter {
  void operator()(X509* x) const { X509_free(x); }
};

void add_extension(X509* cert, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  ASSERT_NE(ext, nullptr);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

struct self_signed {
  std::unique_ptr<EVP_PKEY, pkey_deleter> key{EVP_RSA_gen(2048)};
  std::unique_ptr<X509, x509_deleter> cert{X509_new()};
  std::string pem_path = ::testing::TempDir() + "ghscale-http-test-"
                         + std::to_string(::getpid()) + ".pem";

  self_signed() {
    auto* x = cert.get();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 24 * 3600);
    X509_set_pubkey(x, key.get());
    auto* name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("127.0.0.1"),
                               -1, -1, 0);
    X509_set_issuer_name(x, name);
    add_extension(x, NID_basic_constraints, "critical,CA:TRUE");
    add_extension(x, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
    X509_sign(x, key.get(), EVP_sha256());
    auto* out = std::fopen(pem_path.c_str(), "w");
    PEM_write_X509(out, x);
    std::fclose(out);
  }
  ~self_signed() { std::remove(pem_path.c_str()); }
};

// -- fixture ------------------------------------------------------------------

class http_client_test : public ::testing::Test {
protected:
  static caf::actor_system_config& prepare(caf::actor_system_config& cfg) {
    register_types(cfg);
    return cfg;
  }

  http_engine_actor spawn_client(http_engine_options opts = {}) {
    return sys.spawn(http_client, std::move(opts));
  }

  caf::expected<http_response> call(const http_engine_actor& client,
                                    http_request req) {
    caf::expected<http_response> out{caf::sec::bad_function_call};
    self->request(client, guard, atom::http_v, std::move(req))
      .receive([&](http_response& r) { out = std::move(r); },
               [&](caf::error& e) { out = std::move(e); });
    return out;
  }

  // Destroyed in reverse order: the actor system (and with it every client
  // and its connections) first, then the gate frees blocked handlers, then
  // the server stops.
  loopback_server server;
  gate held;
  caf::actor_system_config cfg;
  caf::actor_system sys{prepare(cfg)};
  caf::scoped_actor self{sys};
};

TEST(redacted_url, drops_credentials_query_and_fragment) {
  EXPECT_EQ(redacted_url("https://user:pw@host:8443/a/b?token=x#frag"),
            "https://host:8443/a/b");
  EXPECT_EQ(redacted_url("http://host?x=1"), "http://host");
  EXPECT_EQ(redacted_url("http://host"), "http://host");
}

TEST_F(http_client_test, get_and_post_round_trip_with_headers_and_body) {
  server.routes().Get("/hello", [](const httplib::Request& req, httplib::Response& res) {
    res.set_header("X-Custom-Header", "Value");
    res.set_content("hi:" + req.get_header_value("X-Test"), "text/plain");
  });
  auto echo = [](const httplib::Request& req, httplib::Response& res) {
    res.set_header("X-Method", req.method);
    res.set_header("X-Content-Type", req.get_header_value("Content-Type"));
    res.set_content(req.body, "application/octet-stream");
  };
  server.routes().Post("/echo", echo).Put("/echo", echo).Delete("/echo", echo);
  auto base = server.start();
  auto client = spawn_client();

  auto got = call(client, make_request("GET", base + "/hello", {{"X-Test", "abc"}}));
  ASSERT_TRUE(got) << describe(got.error());
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(got->body.value, "hi:abc");
  EXPECT_EQ(header_or_empty(*got, "x-custom-header"), "Value");
  EXPECT_TRUE(all_lower_case(got->headers));
  EXPECT_NE(std::find_if(got->headers.begin(), got->headers.end(),
                         [](const http_header& h) { return h.name == "content-type"; }),
            got->headers.end());

  for (std::string method : {"POST", "PUT", "DELETE"}) {
    auto echoed = call(client, make_request(method, base + "/echo",
                                            {{"Content-Type", "application/json"}},
                                            "{\"method\":\"" + method + "\"}"));
    ASSERT_TRUE(echoed) << describe(echoed.error());
    EXPECT_EQ(echoed->status, 200);
    EXPECT_EQ(header_or_empty(*echoed, "x-method"), method);
    EXPECT_EQ(header_or_empty(*echoed, "x-content-type"), "application/json");
    EXPECT_EQ(echoed->body.value, "{\"method\":\"" + method + "\"}");
  }
}

TEST_F(http_client_test, error_status_is_a_response) {
  server.routes().Get("/missing", [](const httplib::Request&, httplib::Response& res) {
    res.status = 404;
    res.set_content("nope", "text/plain");
  });
  auto base = server.start();
  auto got = call(spawn_client(), make_request("GET", base + "/missing"));
  ASSERT_TRUE(got) << describe(got.error());
  EXPECT_EQ(got->status, 404);
  EXPECT_EQ(got->body.value, "nope");
}

TEST_F(http_client_test, sequential_requests_reuse_connections) {
  std::mutex mtx;
  std::set<int> client_ports;
  server.routes().Get("/ping", [&](const httplib::Request& req, httplib::Response& res) {
    {
      std::lock_guard<std::mutex> lock{mtx};
      client_ports.insert(req.remote_port);
    }
    res.set_content("pong", "text/plain");
  });
  auto base = server.start();
  auto client = spawn_client();
  for (int i = 0; i < 50; ++i) {
    auto got = call(client, make_request("GET", base + "/ping"));
    ASSERT_TRUE(got) << describe(got.error());
    ASSERT_EQ(got->status, 200);
  }
  std::lock_guard<std::mutex> lock{mtx};
  EXPECT_GE(client_ports.size(), 1u);
  EXPECT_LE(client_ports.size(), 2u);
}

TEST_F(http_client_test, bounds_transfers_in_flight_and_completes_all) {
  constexpr int total = 40;
  constexpr int bound = 4;
  std::mutex mtx;
  std::condition_variable changed;
  int arrived = 0;
  int current = 0;
  int peak = 0;
  // Each handler holds until `bound - 1` later requests have arrived: with a
  // correct bound the server sees exactly `bound` at once, never more.
  server.routes().Get("/hold", [&](const httplib::Request&, httplib::Response& res) {
    std::unique_lock<std::mutex> lock{mtx};
    auto me = arrived++;
    peak = std::max(peak, ++current);
    changed.notify_all();
    changed.wait_for(lock, guard, [&] { return arrived >= std::min(me + bound, total); });
    --current;
    res.set_content("ok", "text/plain");
  });
  auto base = server.start();
  http_engine_options opts;
  opts.max_in_flight = bound;
  auto client = spawn_client(opts);
  using handle = decltype(self->request(client, guard, atom::http_v, http_request{}));
  std::vector<handle> pending;
  for (int i = 0; i < total; ++i)
    pending.push_back(self->request(client, guard, atom::http_v,
                                    make_request("GET", base + "/hold")));
  int completed = 0;
  for (auto& reply : pending)
    reply.receive([&](http_response& r) { completed += r.status == 200 ? 1 : 0; },
                  [&](caf::error& e) { ADD_FAILURE() << describe(e); });
  EXPECT_EQ(completed, total);
  std::lock_guard<std::mutex> lock{mtx};
  EXPECT_EQ(peak, bound);
}

TEST_F(http_client_test, slow_response_times_out) {
  server.routes().Get("/slow", [waiter = held.waiter()](const httplib::Request&,
                                                        httplib::Response& res) {
    waiter.wait_for(guard);
    res.set_content("late", "text/plain");
  });
  auto base = server.start();
  auto req = make_request("GET", base + "/slow?token=abc");
  req.timeout = 200ms;
  auto got = call(spawn_client(), std::move(req));
  ASSERT_FALSE(got);
  EXPECT_EQ(code_of(got.error()), errc::timeout);
  auto text = describe(got.error());
  EXPECT_NE(text.find("GET " + base + "/slow"), std::string::npos) << text;
  EXPECT_EQ(text.find("token"), std::string::npos) << text;
}

TEST_F(http_client_test, oversized_responses_are_rejected) {
  std::string big(10000, 'x');
  // Handlers copy what they send: an aborted response may still be writing
  // when the test body has returned.
  server.routes().Get("/sized", [big](const httplib::Request&, httplib::Response& res) {
    res.set_content(big, "text/plain");
  });
  server.routes().Get("/chunked", [big](const httplib::Request&, httplib::Response& res) {
    res.set_chunked_content_provider("text/plain", [big](size_t, httplib::DataSink& sink) {
      for (int i = 0; i < 10; ++i)
        sink.write(big.data(), 1000);
      sink.done();
      return true;
    });
  });
  auto base = server.start();
  auto client = spawn_client();
  for (std::string path : {"/sized", "/chunked"}) {
    auto req = make_request("GET", base + path);
    req.max_response_bytes = 5000;
    auto got = call(client, req);
    ASSERT_FALSE(got) << path;
    EXPECT_EQ(code_of(got.error()), errc::rejected) << describe(got.error());
    req.max_response_bytes = 10000;
    auto fits = call(client, req);
    ASSERT_TRUE(fits) << describe(fits.error());
    EXPECT_EQ(fits->body.value, big);
  }
}

TEST_F(http_client_test, refused_connection_is_unavailable_without_secrets) {
  // A bound socket that does not listen: connecting to it is refused.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  auto port = std::to_string(ntohs(addr.sin_port));
  auto got = call(spawn_client(),
                  make_request("GET", "http://user:hunter2@127.0.0.1:" + port
                                        + "/path?token=abc",
                               {{"Authorization", "Bearer sekrit"}}));
  ::close(fd);
  ASSERT_FALSE(got);
  EXPECT_EQ(code_of(got.error()), errc::unavailable);
  auto text = describe(got.error());
  EXPECT_NE(text.find("GET http://127.0.0.1:" + port + "/path"), std::string::npos)
    << text;
  for (auto secret : {"hunter2", "token", "sekrit"})
    EXPECT_EQ(text.find(secret), std::string::npos) << text;
}

TEST_F(http_client_test, stopping_the_client_fails_open_requests) {
  server.routes().Get("/slow", [this, waiter = held.waiter()](const httplib::Request&,
                                                              httplib::Response& res) {
    held.arrive();
    waiter.wait_for(guard);
    res.set_content("late", "text/plain");
  });
  auto base = server.start();
  auto client = spawn_client();
  auto reply = self->request(client, guard, atom::http_v, make_request("GET", base + "/slow"));
  ASSERT_TRUE(held.wait_for_arrival());
  self->send_exit(client, caf::exit_reason::user_shutdown);
  caf::error err;
  reply.receive([](http_response&) { ADD_FAILURE() << "expected an error"; },
                [&](caf::error& e) { err = std::move(e); });
  EXPECT_EQ(code_of(err), errc::shutting_down) << describe(err);
}

TEST_F(http_client_test, engine_destructor_completes_running_and_waiting) {
  server.routes().Get("/slow", [this, waiter = held.waiter()](const httplib::Request&,
                                                              httplib::Response& res) {
    held.arrive();
    waiter.wait_for(guard);
    res.set_content("late", "text/plain");
  });
  auto base = server.start();
  std::mutex mtx;
  std::vector<std::pair<uint64_t, errc>> reports;
  {
    http_engine_options opts;
    opts.max_in_flight = 1;
    http_engine engine{opts, [&](uint64_t id, caf::expected<http_response> r) {
                         std::lock_guard<std::mutex> lock{mtx};
                         reports.emplace_back(id, r ? errc::none : code_of(r.error()));
                       }};
    for (uint64_t id = 1; id <= 3; ++id)
      engine.submit(id, make_request("GET", base + "/slow"));
    ASSERT_TRUE(held.wait_for_arrival());
  }
  std::vector<std::pair<uint64_t, errc>> expected{
    {1, errc::shutting_down}, {2, errc::shutting_down}, {3, errc::shutting_down}};
  EXPECT_EQ(reports, expected);
}

TEST_F(http_client_test, engine_may_be_destroyed_from_its_own_callback) {
  // What happens when an actor's last reference is the engine's report.
  server.routes().Get("/ok", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok", "text/plain");
  });
  auto base = server.start();
  std::unique_ptr<http_engine> engine;
  std::promise<int32_t> status;
  engine = std::make_unique<http_engine>(
    http_engine_options{}, [&](uint64_t, caf::expected<http_response> r) {
      engine.reset();
      status.set_value(r ? r->status : 0);
    });
  engine->submit(1, make_request("GET", base + "/ok"));
  auto reported = status.get_future();
  ASSERT_EQ(reported.wait_for(guard), std::future_status::ready);
  EXPECT_EQ(reported.get(), 200);
}

TEST_F(http_client_test, tls_verification_uses_the_configured_ca_bundle) {
  self_signed credentials;
  loopback_server tls{std::make_unique<httplib::SSLServer>(credentials.cert.get(),
                                                           credentials.key.get())};
  tls.routes().Get("/secure", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("private", "text/plain");
  });
  auto base = tls.start("https");

  auto untrusted = call(spawn_client(), make_request("GET", base + "/secure"));
  ASSERT_FALSE(untrusted);
  EXPECT_EQ(code_of(untrusted.error()), errc::rejected) << describe(untrusted.error());

  http_engine_options opts;
  opts.ca_bundle = credentials.pem_path;
  auto trusted = call(spawn_client(opts), make_request("GET", base + "/secure"));
  ASSERT_TRUE(trusted) << describe(trusted.error());
  EXPECT_EQ(trusted->status, 200);
  EXPECT_EQ(trusted->body.value, "private");
}

} // namespace
} // namespace ghscale
