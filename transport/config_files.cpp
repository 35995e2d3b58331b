#include "transport/config_files.hpp"

#include "transport/files.hpp"
#include "transport/github_jwt.hpp"
#include "transport/tls_pair.hpp"
#include "transport/webhook.hpp"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>

namespace ghscale {

namespace {

using report_fn = std::function<void(const std::string&, const std::string&)>;

/// The file's content, or a report of why it cannot be read.
std::optional<std::string> readable(const std::string& key, const std::string& path,
                                    const report_fn& report) {
  std::string why;
  auto text = read_file(path, why);
  if (!text)
    report(key, why);
  return text;
}

void check_app_keys(const config& cfg, const report_fn& report) {
  for (size_t i = 0; i < cfg.github_apps.size(); ++i) {
    auto& app = cfg.github_apps[i];
    if (app.backend != backend_kind::remote || app.private_key_file.empty())
      continue;
    auto key = "github_apps[" + std::to_string(i) + "].private_key_file";
    auto pem = readable(key, app.private_key_file, report);
    if (!pem)
      continue;
    if (auto parsed = load_app_private_key(secret_string{std::move(*pem)}); !parsed)
      report(key, app.private_key_file + ": " + context_of(parsed.error()));
  }
}

void check_webhook_secrets(const server_config& srv, const report_fn& report) {
  if (srv.listen.empty() || srv.webhook_queue.empty())
    return;
  for (size_t i = 0; i < srv.webhook_secret_files.size(); ++i) {
    auto key = "server.webhook_secret_files[" + std::to_string(i) + "]";
    if (auto loaded = load_webhook_secrets({srv.webhook_secret_files[i]}); !loaded)
      report(key, context_of(loaded.error()));
  }
}

void check_tls_pair(const server_config& srv, const report_fn& report) {
  if (srv.listen.empty() || srv.tls_cert_file.empty() || srv.tls_key_file.empty())
    return;
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx{SSL_CTX_new(TLS_server_method()),
                                                        &SSL_CTX_free};
  if (auto problem = load_tls_pair(ctx.get(), srv.tls_cert_file, srv.tls_key_file))
    report(problem->key, problem->what);
}

void check_ca_bundle(const http_config& http, const report_fn& report) {
  if (http.ca_bundle.empty())
    return;
  auto pem = readable("http.ca_bundle", http.ca_bundle, report);
  if (!pem)
    return;
  std::unique_ptr<BIO, decltype(&BIO_free)> bio{
    BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())), &BIO_free};
  std::unique_ptr<X509, decltype(&X509_free)> first{
    PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr), &X509_free};
  ERR_clear_error();
  if (!first)
    report("http.ca_bundle", http.ca_bundle + ": no PEM certificate in it");
}

/// The store is created in its directory at the first start: that must be
/// writable, and an existing file readable and writable.
void check_storage(const config& cfg, const report_fn& report) {
  for (size_t i = 0; i < cfg.queues.size(); ++i) {
    auto& q = cfg.queues[i];
    if (q.backend != backend_kind::embedded || q.storage.empty())
      continue;
    auto key = "queues[" + std::to_string(i) + "].storage";
    std::error_code ec;
    std::filesystem::path file{q.storage};
    auto dir = file.has_parent_path() ? file.parent_path() : std::filesystem::path{"."};
    if (!std::filesystem::is_directory(dir, ec)) {
      report(key, "directory " + dir.string() + " of " + q.storage + " does not exist");
      continue;
    }
    if (::access(dir.c_str(), W_OK | X_OK) != 0) {
      report(key, "directory " + dir.string() + " is not writable: "
                    + std::strerror(errno));
      continue;
    }
    if (std::filesystem::exists(file, ec) && ::access(file.c_str(), R_OK | W_OK) != 0)
      report(key, q.storage + " is not readable and writable: " + std::strerror(errno));
  }
}

} // namespace

void check_referenced_files(const config& cfg, const report_fn& report) {
  check_app_keys(cfg, report);
  check_webhook_secrets(cfg.server, report);
  check_tls_pair(cfg.server, report);
  check_ca_bundle(cfg.http, report);
  check_storage(cfg, report);
}

} // namespace ghscale
