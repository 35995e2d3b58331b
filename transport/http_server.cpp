#include "transport/http_server.hpp"

#include "transport/tls_pair.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

namespace ghscale {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

caf::error config_error(std::string what) {
  return caf::make_error(errc::invalid_config, std::move(what));
}

/// Bytes read at a time while waiting for a kept-alive connection's next
/// request.
constexpr size_t read_chunk = 4096;
/// A refusal's answer and a response each get this long to be written.
constexpr auto write_timeout = std::chrono::seconds(5);

std::chrono::steady_clock::duration steady(caf::timespan d) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(d);
}

} // namespace

caf::expected<listen_address> parse_listen(const std::string& text) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size())
    return config_error("listen must be host:port, got '" + text + "'");
  listen_address out;
  out.host = text.substr(0, colon);
  if (out.host.size() > 2 && out.host.front() == '[' && out.host.back() == ']')
    out.host = out.host.substr(1, out.host.size() - 2);
  auto digits = text.substr(colon + 1);
  if (digits.size() > 5
      || !std::all_of(digits.begin(), digits.end(),
                      [](char c) { return c >= '0' && c <= '9'; })
      || std::stoi(digits) > 65535)
    return config_error("bad port in listen '" + text + "' (0..65535)");
  out.port = static_cast<uint16_t>(std::stoi(digits));
  return out;
}

namespace {

/// What a connection does when the server stops.
struct session_base {
  virtual ~session_base() = default;
  /// Close now, unless a handler's answer is awaited and `force` is off.
  virtual void halt(bool force) = 0;
};

} // namespace

struct http_server::core : std::enable_shared_from_this<http_server::core> {
  // One io_context per thread, connections dealt out in turn: a connection
  // lives on one thread (no strand, no lock), and answering one wakes only
  // its own thread.
  explicit core(size_t threads) : contexts(make_contexts(threads)) {}
  static std::vector<std::unique_ptr<net::io_context>> make_contexts(size_t n) {
    std::vector<std::unique_ptr<net::io_context>> out;
    for (size_t i = 0; i < n; ++i)
      out.push_back(std::make_unique<net::io_context>(1));
    return out;
  }
  std::vector<std::unique_ptr<net::io_context>> contexts; // before the acceptor
  size_t next_context = 0; // touched by the accepting thread only
  std::optional<net::ssl::context> tls;
  tcp::acceptor acceptor{*contexts.front()};
  http_limits limits;
  http_handler handler;
  http_refusal_sink refused;
  std::vector<std::thread> threads;
  // Keeps the threads running while a connection waits for its handler with
  // no I/O pending, so that an answer given during stop's grace is written
  // (and stop's force-close runs); released once everything is closed.
  std::vector<net::executor_work_guard<net::io_context::executor_type>> work;
  uint16_t port = 0;
  std::atomic<bool> stopping{false};

  mutable std::mutex mtx;
  size_t open = 0;
  std::map<std::string, size_t> per_client;
  std::vector<std::weak_ptr<session_base>> sessions;
  bool stopped = false; // no more answers are posted

  void refuse(std::string_view reason) {
    if (refused)
      refused(reason);
  }

  /// Takes a connection slot for `client`, or says why not.
  std::optional<std::string_view> admit(const std::string& client) {
    std::lock_guard<std::mutex> guard{mtx};
    if (stopping)
      return std::string_view{"stopping"};
    if (open >= limits.max_connections)
      return std::string_view{"too_many_connections"};
    auto& mine = per_client[client];
    if (mine >= limits.max_connections_per_client)
      return std::string_view{"too_many_from_client"};
    ++mine;
    ++open;
    return std::nullopt;
  }

  void release(const std::string& client) {
    std::lock_guard<std::mutex> guard{mtx};
    --open;
    auto i = per_client.find(client);
    if (i != per_client.end() && --i->second == 0)
      per_client.erase(i);
  }

  void track(std::weak_ptr<session_base> s) {
    std::lock_guard<std::mutex> guard{mtx};
    sessions.erase(std::remove_if(sessions.begin(), sessions.end(),
                                  [](auto& w) { return w.expired(); }),
                   sessions.end());
    sessions.push_back(std::move(s));
  }

  void halt_all(bool force) {
    std::vector<std::shared_ptr<session_base>> live;
    {
      std::lock_guard<std::mutex> guard{mtx};
      for (auto& w : sessions)
        if (auto s = w.lock())
          live.push_back(std::move(s));
    }
    for (auto& s : live)
      s->halt(force);
  }

  size_t connections() const {
    std::lock_guard<std::mutex> guard{mtx};
    return open;
  }
};

namespace {

using core_ptr = std::shared_ptr<http_server::core>;

/// A connection slot, given back when its connection is gone.
struct slot {
  core_ptr core;
  std::string client;
  slot(core_ptr c, std::string who) : core(std::move(c)), client(std::move(who)) {}
  slot(const slot&) = delete;
  slot& operator=(const slot&) = delete;
  ~slot() { core->release(client); }
};

template <class Stream>
class session : public session_base,
                public std::enable_shared_from_this<session<Stream>> {
public:
  session(core_ptr core, Stream stream, std::string client)
    : core_(std::move(core)),
      stream_(std::move(stream)),
      deadline_(stream_.get_executor()),
      buffer_(core_->limits.max_request_line + core_->limits.max_header_bytes
              + read_chunk),
      slot_(core_, client),
      client_(std::move(client)) {}

  void start() {
    if constexpr (is_tls) {
      arm(core_->limits.head_timeout, "tls_handshake");
      stream_.async_handshake(net::ssl::stream_base::server,
                              [self = this->shared_from_this()](beast::error_code ec) {
                                self->disarm();
                                if (ec) {
                                  self->core_->refuse("tls_handshake");
                                  self->close();
                                  return;
                                }
                                self->read_head();
                              });
    } else {
      read_head();
    }
  }

  void halt(bool force) override {
    net::post(stream_.get_executor(), [self = this->shared_from_this(), force] {
      self->closing_ = true;
      if (force || (!self->answering_ && !self->writing_))
        self->close();
    });
  }

private:
  static constexpr bool is_tls
    = std::is_same_v<Stream, beast::ssl_stream<beast::tcp_stream>>;

  beast::tcp_stream& tcp() { return beast::get_lowest_layer(stream_); }

  /// A kept-alive connection: wait for the next request's first byte no
  /// longer than the keep-alive timeout, then give the head its deadline.
  void next_request() {
    if (closing_ || core_->stopping) {
      close();
      return;
    }
    if (buffer_.size() > 0) {
      read_head();
      return;
    }
    arm(core_->limits.keep_alive_timeout, "keep_alive");
    stream_.async_read_some(
      buffer_.prepare(read_chunk),
      [self = this->shared_from_this()](beast::error_code ec, size_t n) {
        self->disarm();
        if (ec) {
          self->close();
          return;
        }
        self->buffer_.commit(n);
        self->read_head();
      });
  }

  void read_head() {
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(core_->limits.max_request_line
                                                + core_->limits.max_header_bytes));
    parser_->body_limit(core_->limits.max_body_bytes);
    arm(core_->limits.head_timeout, "head_timeout");
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = this->shared_from_this()](beast::error_code ec,
                                                              size_t) {
                              self->on_head(ec);
                            });
  }

  /// Whether the request line is too long for its limit: beast passes the
  /// request line to the message (and consumes it) as soon as it is whole,
  /// so an empty target means it never ended within the parser's limit.
  bool request_line_too_long() {
    auto& req = parser_->get();
    constexpr size_t version_and_spaces = 11; // " " target " HTTP/1.1"
    return req.target().empty()
           || req.method_string().size() + req.target().size() + version_and_spaces
                > core_->limits.max_request_line;
  }

  /// Leaving mid-request, or cut by stop: nothing to answer.
  static bool client_left(beast::error_code ec) {
    return ec == http::error::end_of_stream || ec == http::error::partial_message
           || ec == net::error::eof || ec == net::error::connection_reset
           || ec == net::error::operation_aborted || ec == net::error::bad_descriptor
           // a TLS client that closes without close_notify, as most do
           || ec == net::ssl::error::stream_truncated;
  }

  std::string body_over() const {
    return "body over " + std::to_string(core_->limits.max_body_bytes) + " bytes";
  }

  /// A deadline for what is being read or written: when it passes, the
  /// operation is cancelled (a stream's own expiry would close the socket,
  /// leaving no way to answer 408), and its handler sees why in
  /// `disarm()`. One timer for every phase: arming it is a system call.
  void arm(caf::timespan timeout, std::string_view reason) {
    auto generation = ++deadline_generation_;
    deadline_.expires_after(steady(timeout));
    deadline_.async_wait([self = this->shared_from_this(), generation,
                          reason](beast::error_code ec) {
      if (ec || generation != self->deadline_generation_)
        return;
      self->timed_out_ = reason;
      beast::error_code ignored;
      self->tcp().socket().cancel(ignored);
    });
  }

  /// Ends the current deadline; what it cut short, if it did.
  std::string_view disarm() {
    ++deadline_generation_;
    deadline_.cancel();
    return std::exchange(timed_out_, std::string_view{});
  }

  void on_head(beast::error_code ec) {
    auto& limits = core_->limits;
    auto late = disarm();
    if (ec && closing_) { // stop closed it
      close();
      return;
    }
    if (ec && !late.empty())
      return refuse(408, late, "request head not complete in time");
    if (ec == http::error::header_limit) {
      if (request_line_too_long())
        return refuse(414, "request_line_too_long", "request line too long");
      return refuse(431, "headers_too_large", "request header fields too large");
    }
    if (ec == http::error::body_limit)
      return refuse(413, "body_too_large", body_over());
    // Half a head and then the end of the stream is a malformed request (a
    // client may half-close and read the answer); half a body is a client
    // that left.
    if (ec != http::error::partial_message && client_left(ec)) {
      close();
      return;
    }
    if (ec)
      return refuse(400, "bad_request", "malformed request");
    auto& req = parser_->get();
    // The parser bounds the whole head; each part has its own limit.
    size_t fields = 0;
    size_t field_bytes = 0;
    for (auto& field : req) {
      ++fields;
      field_bytes += field.name_string().size() + field.value().size() + 4; // ": ", CRLF
    }
    if (fields > limits.max_headers)
      return refuse(431, "headers_too_large", "too many request header fields");
    if (field_bytes > limits.max_header_bytes)
      return refuse(431, "headers_too_large", "request header fields too large");
    if (request_line_too_long())
      return refuse(414, "request_line_too_long", "request line too long");
    if (auto length = parser_->content_length(); length && *length > limits.max_body_bytes)
      return refuse(413, "body_too_large", body_over());
    if (parser_->is_done()) {
      dispatch();
      return;
    }
    arm(limits.body_timeout, "body_timeout");
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](beast::error_code ec, size_t) {
                       self->on_body(ec);
                     });
  }

  void on_body(beast::error_code ec) {
    auto late = disarm();
    if (ec && closing_) { // stop closed it
      close();
      return;
    }
    if (ec && !late.empty())
      return refuse(408, late, "request body not complete in time");
    if (ec == http::error::body_limit)
      return refuse(413, "body_too_large", body_over());
    if (client_left(ec)) {
      close();
      return;
    }
    if (ec)
      return refuse(400, "bad_request", "malformed request body");
    dispatch();
  }

  void dispatch() {
    auto req = parser_->release();
    parser_.reset();
    served_request out;
    out.method = std::string{req.method_string()};
    out.target = std::string{req.target()};
    for (auto& field : req)
      out.headers.push_back(http_header{std::string{field.name_string()},
                                        std::string{field.value()}});
    out.body = std::move(req.body());
    out.client = client_;
    keep_alive_ = req.keep_alive();
    answering_ = true;
    // The handler bounds its own wait; a stop bounds it by its grace.
    auto answered = std::make_shared<std::atomic<bool>>(false);
    auto respond = [self = this->shared_from_this(), answered](served_response res) {
      if (answered->exchange(true))
        return;
      {
        // Queued under the lock, so that stop, once it set `stopped`, has
        // every queued answer run before its threads end.
        std::lock_guard<std::mutex> guard{self->core_->mtx};
        if (self->core_->stopped)
          return;
        if (!self->on_own_thread()) {
          net::post(self->stream_.get_executor(),
                    [self, res = std::move(res)]() mutable { self->write(std::move(res)); });
          return;
        }
      }
      // An answer given at once, on the connection's thread, is written at
      // once, outside the lock (the write starts with a send).
      self->write(std::move(res));
    };
    core_->handler(std::move(out), std::move(respond));
  }

  /// Whether this runs on the thread that serves the connection.
  bool on_own_thread() {
    auto ex = stream_.get_executor(); // target() points into it
    auto* home = ex.template target<net::io_context::executor_type>();
    return home != nullptr && home->running_in_this_thread();
  }

  void write(served_response res) {
    answering_ = false;
    writing_ = true;
    auto out = std::make_shared<http::response<http::string_body>>(
      static_cast<http::status>(res.status), 11);
    out->set(http::field::content_type, res.content_type);
    for (auto& h : res.headers)
      out->set(h.name, h.value);
    out->body() = std::move(res.body);
    out->keep_alive(keep_alive_ && !closing_ && !core_->stopping);
    out->prepare_payload();
    arm(write_timeout, "write_timeout");
    http::async_write(stream_, *out,
                      [self = this->shared_from_this(), out](beast::error_code ec, size_t) {
                        self->disarm();
                        self->writing_ = false;
                        if (ec || !out->keep_alive())
                          self->close();
                        else
                          self->next_request();
                      });
  }

  /// Answers `status` and closes: the client broke a limit or the protocol.
  void refuse(int status, std::string_view reason, std::string text) {
    core_->refuse(reason);
    keep_alive_ = false;
    closing_ = true;
    served_response res;
    res.status = status;
    res.body = std::move(text) + "\n";
    write(std::move(res));
  }

  void close() {
    disarm();
    beast::error_code ignored;
    tcp().socket().shutdown(tcp::socket::shutdown_both, ignored);
    tcp().close();
  }

  core_ptr core_;
  Stream stream_;
  net::steady_timer deadline_;
  uint64_t deadline_generation_ = 0;
  std::string_view timed_out_; // the deadline that cancelled the read
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  slot slot_;
  std::string client_;
  bool keep_alive_ = false;
  bool answering_ = false; // a handler has the request
  bool writing_ = false;   // an answer is being written: stop lets it finish
  bool closing_ = false;
};

void accept(const core_ptr& core);

void serve(const core_ptr& core, tcp::socket socket) {
  beast::error_code ec;
  auto remote = socket.remote_endpoint(ec);
  if (ec)
    return;
  auto client = remote.address().to_string();
  if (auto why = core->admit(client)) {
    if (*why != "stopping")
      core->refuse(*why);
    socket.close(ec);
    return;
  }
  socket.set_option(tcp::no_delay{true}, ec);
  if (core->tls) {
    using stream = beast::ssl_stream<beast::tcp_stream>;
    auto s = std::make_shared<session<stream>>(
      core, stream{beast::tcp_stream{std::move(socket)}, *core->tls}, client);
    core->track(s);
    s->start();
  } else {
    auto s = std::make_shared<session<beast::tcp_stream>>(
      core, beast::tcp_stream{std::move(socket)}, client);
    core->track(s);
    s->start();
  }
}

void accept(const core_ptr& core) {
  auto& context = *core->contexts[core->next_context++ % core->contexts.size()];
  core->acceptor.async_accept(context,
                              [core](beast::error_code ec, tcp::socket socket) {
                                if (ec) {
                                  if (!core->stopping && ec != net::error::operation_aborted)
                                    accept(core);
                                  return;
                                }
                                serve(core, std::move(socket));
                                accept(core);
                              });
}

caf::error listen_on(http_server::core& core, const std::string& listen) {
  auto addr = parse_listen(listen);
  if (!addr)
    return config_error("server: " + describe(addr.error()));
  beast::error_code ec;
  tcp::resolver resolver{*core.contexts.front()};
  auto found = resolver.resolve(addr->host, std::to_string(addr->port),
                                tcp::resolver::passive, ec);
  if (ec || found.empty())
    return config_error("server: cannot listen on " + listen + ": " + ec.message());
  auto endpoint = found.begin()->endpoint();
  auto fail = [&](const char* step) {
    return config_error("server: cannot listen on " + listen + ": " + step + ": "
                        + ec.message());
  };
  if (core.acceptor.open(endpoint.protocol(), ec); ec)
    return fail("open");
  // A quick restart over TIME_WAIT connections, but never SO_REUSEPORT: a
  // second instance on the same port must fail to start.
  if (core.acceptor.set_option(net::socket_base::reuse_address(true), ec); ec)
    return fail("SO_REUSEADDR");
  if (core.acceptor.bind(endpoint, ec); ec)
    return fail("bind");
  if (core.acceptor.listen(net::socket_base::max_listen_connections, ec); ec)
    return fail("listen");
  core.port = core.acceptor.local_endpoint(ec).port();
  return caf::none;
}

caf::error load_tls(http_server::core& core, const http_server_options& options) {
  if (options.tls_cert_file.empty() != options.tls_key_file.empty())
    return config_error("server: tls_cert_file and tls_key_file go together");
  if (options.tls_cert_file.empty())
    return caf::none;
  core.tls.emplace(net::ssl::context::tls_server);
  auto& ctx = *core.tls;
  ctx.set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2
                  | net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1
                  | net::ssl::context::no_tlsv1_1);
  if (auto problem = load_tls_pair(ctx.native_handle(), options.tls_cert_file,
                                  options.tls_key_file))
    return config_error("server: " + problem->what);
  return caf::none;
}

} // namespace

caf::expected<std::unique_ptr<http_server>>
http_server::bind(const http_server_options& options) {
  auto core = std::make_shared<http_server::core>(std::max<size_t>(options.threads, 1));
  core->limits = options.limits;
  if (auto err = load_tls(*core, options))
    return err;
  if (auto err = listen_on(*core, options.listen))
    return err;
  return std::make_unique<http_server>(std::move(core));
}

void http_server::serve(http_handler handler, http_refusal_sink refused) {
  auto& core = core_;
  if (!core->threads.empty() || core->stopping)
    return;
  core->handler = std::move(handler);
  core->refused = std::move(refused);
  for (auto& context : core->contexts)
    core->work.push_back(net::make_work_guard(*context));
  accept(core);
  for (auto& context : core->contexts)
    core->threads.emplace_back([core, ioc = context.get()] { ioc->run(); });
}

http_server::http_server(std::shared_ptr<core> x) : core_(std::move(x)) {
}

http_server::~http_server() {
  stop(caf::timespan{0});
}

uint16_t http_server::port() const {
  return core_->port;
}

size_t http_server::connections() const {
  return core_->connections();
}

void http_server::stop(caf::timespan grace) {
  if (core_->threads.empty()) {
    core_->stopping = true; // bound, never served: just close
    beast::error_code ignored;
    core_->acceptor.close(ignored);
    return;
  }
  core_->stopping = true;
  net::post(core_->acceptor.get_executor(), [c = core_] {
    beast::error_code ignored;
    c->acceptor.close(ignored);
  });
  core_->halt_all(false);
  auto until = std::chrono::steady_clock::now() + steady(grace);
  while (core_->connections() > 0 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  {
    std::lock_guard<std::mutex> guard{core_->mtx};
    core_->stopped = true;
  }
  core_->halt_all(true);
  // Every socket is closed and nothing new starts or is posted: the threads
  // finish what is queued, run out of work and end.
  core_->work.clear();
  for (auto& t : core_->threads)
    t.join();
  core_->threads.clear();
}

} // namespace ghscale
