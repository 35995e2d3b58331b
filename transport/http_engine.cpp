#include "transport/http_engine.hpp"

#include "messages/text.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <deque>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>

namespace ghscale {

namespace {

void init_curl_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
      throw std::runtime_error("libcurl failed to initialise");
  });
}

/// At least 1 ms: libcurl reads 0 as "no timeout", and every call has one.
long as_curl_millis(caf::timespan d) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  return static_cast<long>(std::max<int64_t>(ms, 1));
}

/// "METHOD url" without secrets: what error messages say about a request.
std::string where_of(const http_request& req) {
  return req.method + " " + redacted_url(req.url);
}

bool has_line_break(const std::string& x) {
  return x.find_first_of("\r\n") != std::string::npos;
}

/// One request on its way: the request (libcurl reads its body in place), what
/// came back so far, and the easy handle that carries it.
struct transfer {
  uint64_t id = 0;
  http_request request;
  std::string where; // "METHOD url" without secrets, for error messages
  CURL* easy = nullptr;
  curl_slist* header_list = nullptr;
  http_response response;
  bool too_large = false;
  char curl_message[CURL_ERROR_SIZE] = {};

  transfer(uint64_t id, http_request req)
    : id(id),
      request(std::move(req)),
      where(where_of(request)),
      easy(curl_easy_init()) {
    if (easy == nullptr)
      throw std::bad_alloc();
  }
  ~transfer() {
    curl_easy_cleanup(easy);
    curl_slist_free_all(header_list);
  }
  transfer(const transfer&) = delete;
  transfer& operator=(const transfer&) = delete;

  caf::error fail(errc code, std::string_view what) const {
    return caf::make_error(code, where + ": " + std::string(what));
  }
};

size_t on_body(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<transfer*>(user);
  auto n = size * count;
  auto& body = t->response.body.value;
  if (body.size() + n > t->request.max_response_bytes) {
    t->too_large = true;
    return 0; // aborts the transfer with CURLE_WRITE_ERROR
  }
  body.append(data, n);
  return n;
}

size_t on_header(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<transfer*>(user);
  auto n = size * count;
  std::string_view line{data, n};
  // A status line starts a new header block (after "100 Continue" or a
  // proxy's CONNECT answer): only the final response's headers count.
  if (line.rfind("HTTP/", 0) == 0) {
    t->response.headers.clear();
    return n;
  }
  auto colon = line.find(':');
  if (colon != std::string_view::npos)
    t->response.headers.push_back(
      {ascii_lower(trim_space(line.substr(0, colon))), std::string(trim_space(line.substr(colon + 1)))});
  return n;
}

errc classify(CURLcode code) {
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
      return errc::timeout;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
      return errc::unavailable;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_FILESIZE_EXCEEDED:
      return errc::rejected;
    default:
      return errc::backend_failure;
  }
}

caf::expected<http_response> outcome(transfer& t, CURLcode code) {
  if (code == CURLE_OK) {
    long status = 0;
    curl_easy_getinfo(t.easy, CURLINFO_RESPONSE_CODE, &status);
    t.response.status = static_cast<int32_t>(status);
    return std::move(t.response);
  }
  if (t.too_large || code == CURLE_FILESIZE_EXCEEDED)
    return t.fail(errc::rejected, "response larger than "
                                    + std::to_string(t.request.max_response_bytes)
                                    + " bytes");
  std::string_view what = t.curl_message[0] != '\0' ? t.curl_message
                                                     : curl_easy_strerror(code);
  return t.fail(classify(code), what);
}

/// Applies setopt calls until the first one fails.
class option_setter {
public:
  explicit option_setter(CURL* easy) : easy_(easy) {}
  template <class T>
  option_setter& operator()(CURLoption opt, T value) {
    if (status_ == CURLE_OK)
      status_ = curl_easy_setopt(easy_, opt, value);
    return *this;
  }
  CURLcode status() const { return status_; }

private:
  CURL* easy_;
  CURLcode status_ = CURLE_OK;
};

void set_method_and_body(option_setter& set, const http_request& req) {
  const auto& method = req.method;
  const auto& body = req.body.value;
  if (method == "HEAD") {
    set(CURLOPT_NOBODY, 1L);
  } else if (method == "GET" && body.empty()) {
    set(CURLOPT_HTTPGET, 1L);
  } else {
    // libcurl does not copy POSTFIELDS: the transfer owns the request.
    set(CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    set(CURLOPT_POSTFIELDS, body.data());
    if (method != "POST")
      set(CURLOPT_CUSTOMREQUEST, method.c_str());
  }
}

/// Builds the header list; an empty value needs libcurl's "Name;" form.
/// "Expect:" turns off the 100-continue round trip libcurl adds to large
/// bodies: the services ghscale talks to answer at once.
curl_slist* make_header_list(const std::vector<http_header>& headers) {
  curl_slist* list = nullptr;
  auto append = [&](const std::string& line) {
    auto* next = curl_slist_append(list, line.c_str());
    if (next == nullptr) {
      curl_slist_free_all(list);
      throw std::bad_alloc();
    }
    list = next;
  };
  for (const auto& h : headers)
    append(h.value.empty() ? h.name + ";" : h.name + ": " + h.value);
  if (find_header(headers, "expect") == nullptr)
    append("Expect:");
  return list;
}

} // namespace

std::string redacted_url(const std::string& url) {
  auto scheme_end = url.find("://");
  auto authority_begin = scheme_end == std::string::npos ? 0 : scheme_end + 3;
  auto path_begin = url.find_first_of("/?#", authority_begin);
  auto authority = url.substr(authority_begin, path_begin - authority_begin);
  if (auto at = authority.rfind('@'); at != std::string::npos)
    authority.erase(0, at + 1);
  std::string path;
  if (path_begin != std::string::npos)
    path = url.substr(path_begin, url.find_first_of("?#", path_begin) - path_begin);
  return url.substr(0, authority_begin) + authority + path;
}

struct http_engine::impl {
  http_engine_options opts;
  completion on_done;
  CURLM* multi = nullptr;
  CURLSH* share = nullptr;

  std::mutex mtx;                                       // guards the two below
  std::deque<std::pair<uint64_t, http_request>> waiting; // FIFO
  bool stopping = false;

  /// Touched by the engine thread only.
  std::unordered_map<CURL*, std::unique_ptr<transfer>> running;
  std::thread worker;

  impl(http_engine_options options, completion callback)
    : opts(std::move(options)), on_done(std::move(callback)) {
    init_curl_once();
    multi = curl_multi_init();
    share = curl_share_init();
    if (multi == nullptr || share == nullptr)
      throw std::bad_alloc();
    // New connections to a host resume its TLS session. One thread uses the
    // share, so it needs no lock callbacks.
    curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                      static_cast<long>(opts.max_host_connections));
    // Idle connections kept for reuse: enough for every transfer in flight,
    // so a burst does not reconnect on its next round.
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS,
                      static_cast<long>(std::max(opts.max_in_flight,
                                                 opts.max_host_connections)));
  }

  ~impl() {
    curl_multi_cleanup(multi); // closes the cached connections
    curl_share_cleanup(share);
  }

  void stop() {
    {
      std::lock_guard<std::mutex> guard{mtx};
      stopping = true;
    }
    curl_multi_wakeup(multi);
  }

  void submit(uint64_t id, http_request req) {
    {
      std::lock_guard<std::mutex> guard{mtx};
      waiting.emplace_back(id, std::move(req));
    }
    curl_multi_wakeup(multi);
  }

  void run() {
    while (admit_waiting()) {
      int active = 0;
      curl_multi_perform(multi, &active);
      finish_completed();
      if (!admit_waiting())
        break;
      // Returns on socket activity, libcurl's next timer, or a wakeup from
      // submit() or the destructor; newly added handles are due at once.
      curl_multi_poll(multi, nullptr, 0, 1000, nullptr);
    }
    abandon_all();
  }

  /// Starts waiting requests while there is room; false once stopping.
  bool admit_waiting() {
    for (;;) {
      std::optional<std::pair<uint64_t, http_request>> next;
      {
        std::lock_guard<std::mutex> guard{mtx};
        if (stopping)
          return false;
        if (waiting.empty()
            || running.size() >= static_cast<size_t>(std::max(opts.max_in_flight, 1)))
          return true;
        next = std::move(waiting.front());
        waiting.pop_front();
      }
      start(next->first, std::move(next->second));
    }
  }

  void start(uint64_t id, http_request req) {
    auto t = std::make_unique<transfer>(id, std::move(req));
    if (auto err = configure(*t)) {
      on_done(id, std::move(err));
      return;
    }
    auto* easy = t->easy;
    if (auto code = curl_multi_add_handle(multi, easy); code != CURLM_OK) {
      on_done(id, t->fail(errc::backend_failure, curl_multi_strerror(code)));
      return;
    }
    running.emplace(easy, std::move(t));
  }

  caf::error configure(transfer& t) {
    const auto& req = t.request;
    for (const auto& h : req.headers)
      if (has_line_break(h.name) || has_line_break(h.value))
        return t.fail(errc::rejected, "header " + h.name + " contains a line break");
    t.header_list = make_header_list(req.headers);
    option_setter set{t.easy};
    set(CURLOPT_URL, req.url.c_str())
      (CURLOPT_PROTOCOLS_STR, "http,https")
      (CURLOPT_ERRORBUFFER, t.curl_message)
      (CURLOPT_NOSIGNAL, 1L)
      (CURLOPT_HTTPHEADER, t.header_list)
      (CURLOPT_WRITEFUNCTION, on_body)
      (CURLOPT_WRITEDATA, static_cast<void*>(&t))
      (CURLOPT_HEADERFUNCTION, on_header)
      (CURLOPT_HEADERDATA, static_cast<void*>(&t))
      (CURLOPT_ACCEPT_ENCODING, "") // every encoding libcurl can decode
      (CURLOPT_TIMEOUT_MS, as_curl_millis(req.timeout))
      (CURLOPT_CONNECTTIMEOUT_MS,
       as_curl_millis(std::min(opts.connect_timeout, req.timeout)))
      (CURLOPT_TCP_KEEPALIVE, 1L)
      // Refuses a response whose Content-Length is over the limit before
      // reading it; on_body enforces the limit on bodies without one.
      (CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(req.max_response_bytes))
      // Peer verification is never turned off.
      (CURLOPT_SSL_VERIFYPEER, 1L)
      (CURLOPT_SSL_VERIFYHOST, 2L)
      (CURLOPT_SHARE, share);
    if (!opts.ca_bundle.empty())
      set(CURLOPT_CAINFO, opts.ca_bundle.c_str());
    // No CURLOPT_PROXY on purpose: libcurl then takes http_proxy,
    // https_proxy and no_proxy from the environment.
    set_method_and_body(set, req);
    if (set.status() != CURLE_OK)
      return t.fail(errc::backend_failure, curl_easy_strerror(set.status()));
    return caf::none;
  }

  void finish_completed() {
    int left = 0;
    while (auto* msg = curl_multi_info_read(multi, &left)) {
      if (msg->msg != CURLMSG_DONE)
        continue;
      // Copy out before remove_handle invalidates the message.
      auto* easy = msg->easy_handle;
      auto code = msg->data.result;
      curl_multi_remove_handle(multi, easy);
      auto node = running.extract(easy);
      auto& t = *node.mapped();
      on_done(t.id, outcome(t, code));
    }
  }

  void abandon_all() {
    for (auto& [easy, t] : running) {
      curl_multi_remove_handle(multi, easy);
      on_done(t->id, t->fail(errc::shutting_down, "HTTP engine shutting down"));
    }
    running.clear();
    std::deque<std::pair<uint64_t, http_request>> left;
    {
      std::lock_guard<std::mutex> guard{mtx};
      left.swap(waiting);
    }
    for (auto& [id, req] : left)
      on_done(id, caf::make_error(errc::shutting_down,
                                  where_of(req) + ": HTTP engine shutting down"));
  }
};

http_engine::http_engine(http_engine_options opts, completion on_done)
  : impl_(std::make_shared<impl>(std::move(opts), std::move(on_done))) {
  impl_->worker = std::thread([engine = impl_] { engine->run(); });
}

http_engine::~http_engine() {
  impl_->stop();
  if (impl_->worker.get_id() != std::this_thread::get_id()) {
    impl_->worker.join();
    return;
  }
  // Destroyed from a completion callback (whoever owns the engine released
  // it there): the thread cannot join itself. It fails what is left once the
  // callback returns, then frees the engine through its own reference.
  impl_->worker.detach();
}

void http_engine::submit(uint64_t id, http_request req) {
  impl_->submit(id, std::move(req));
}

} // namespace ghscale
