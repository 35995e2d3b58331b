// The ops server over real loopback HTTP(S): webhook deliveries reach the
// queue exactly once or are refused with the right status, /metrics serves
// the registry, /healthz and /readyz answer, and readiness follows the
// queue. cpp-httplib's threads block, so this uses CAF's normal scheduler
// with in-process mock actors; every step waits on a reply, never on time.
#include "actors/ops/ops_server.hpp"

#include "transport/digest.hpp"
#include "transport/prometheus.hpp"
#include "transport/workflow_job.hpp"

#include "transport/httplib.hpp"

#include <caf/all.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace ghscale {
namespace {

using namespace std::chrono_literals;

/// Only there to turn a hang into a failure.
constexpr auto guard = std::chrono::seconds(30);

const std::string secret = "ops-test-secret";

/// Switches the tests flip to make the mocks fail.
struct faults {
  std::atomic<bool> depth{false};
  std::atomic<bool> enqueue{false};
};

/// A queue that keeps what it is sent and hands all of it out on receive.
queue_actor::behavior_type mock_queue(queue_actor::pointer,
                                      std::shared_ptr<faults> fail) {
  auto kept = std::make_shared<std::vector<std::string>>();
  return {
    [=](atom::receive, const receive_request&) {
      received_batch out;
      for (auto& body : *kept)
        out.messages.push_back(queue_message{"", "", body, 1, {}});
      return out;
    },
    [](atom::remove, const std::vector<std::string>&) { return batch_result{}; },
    [](atom::visibility, const std::vector<visibility_change>&) {
      return batch_result{};
    },
    [=](atom::enqueue, const std::vector<outgoing_message>& xs)
      -> caf::result<batch_result> {
      if (fail->enqueue)
        return caf::make_error(errc::backend_failure, "store unavailable");
      batch_result out;
      for (size_t i = 0; i < xs.size(); ++i) {
        kept->push_back(xs[i].body);
        out.succeeded.push_back(std::to_string(i));
      }
      return out;
    },
    [=](atom::depth) -> caf::result<queue_depth> {
      if (fail->depth)
        return caf::make_error(errc::backend_failure, "depth unavailable");
      return queue_depth{static_cast<int64_t>(kept->size()), 0, 0};
    },
  };
}

node_actor::behavior_type mock_node(node_actor::pointer,
                                    std::shared_ptr<std::atomic<bool>> restarting) {
  return {
    [](atom::drain) { return true; },
    [=](atom::status) {
      return node_status{{{"poller", true, 0}, {"scaler", !*restarting, 1}},
                         false};
    },
    [](atom::inject, const std::string&) {},
  };
}

caf::actor_system_config& prepare(caf::actor_system_config& cfg) {
  register_types(cfg);
  return cfg;
}

job_event queued_job(int64_t id) {
  job_event ev;
  ev.key = job_key{id, 1};
  ev.run_id = 9;
  ev.repository = repository_ref{"octo-org", "hello", owner_type::organization};
  ev.installation_id = 5;
  ev.labels = {"self-hosted"};
  return ev;
}

class OpsServerTest : public ::testing::Test {
protected:
  caf::actor_system_config cfg;
  caf::actor_system sys{prepare(cfg)};
  caf::scoped_actor self{sys};
  std::shared_ptr<faults> fail = std::make_shared<faults>();
  std::shared_ptr<std::atomic<bool>> restarting
    = std::make_shared<std::atomic<bool>>(false);
  queue_actor queue = sys.spawn(mock_queue, fail);
  node_actor node = sys.spawn(mock_node, restarting);
  metrics_ptr stats = std::make_shared<metrics>();
  std::unique_ptr<ops_server> server;

  ops_server_setup setup() {
    ops_server_setup out;
    out.cfg.listen = "127.0.0.1:0";
    out.cfg.webhook_queue = "jobs";
    out.cfg.max_body_bytes = 4096;
    out.cfg.threads = 4;
    out.secrets = {secret_string{"retired-secret"}, secret_string{secret}};
    out.webhook_queue = queue;
    out.readiness = {queue_reachable(sys, "jobs", queue, guard),
                     supervision_up(sys, node, guard)};
    // Every /readyz probes afresh, so a test sees a change at once.
    out.readiness_fresh_for = caf::timespan{0};
    return out;
  }

  void start(ops_server_setup s) {
    auto started = start_ops_server(sys, std::move(s), stats);
    ASSERT_TRUE(started) << describe(started.error());
    server = std::move(*started);
    ASSERT_NE(server->port(), 0);
  }

  void SetUp() override {
    start(setup());
  }

  void TearDown() override {
    server.reset(); // joins the server threads before the actors go
    self->send_exit(queue, caf::exit_reason::user_shutdown);
    self->send_exit(node, caf::exit_reason::user_shutdown);
  }

  httplib::Client client() {
    httplib::Client cli{"127.0.0.1", server->port()};
    cli.set_read_timeout(guard);
    cli.set_tcp_nodelay(true); // else Nagle holds the body back 40 ms
    return cli;
  }

  httplib::Result deliver(const std::string& body, const std::string& sig,
                          const std::string& event = "workflow_job") {
    httplib::Headers headers{{"X-GitHub-Event", event},
                             {"X-GitHub-Delivery", "d-1"}};
    if (!sig.empty())
      headers.emplace("X-Hub-Signature-256", sig);
    return client().Post("/webhook", headers, body, "application/json");
  }

  static std::string sign(const std::string& key, const std::string& body) {
    return "sha256=" + hex(hmac_sha256(key, body));
  }

  std::vector<std::string> enqueued() {
    std::vector<std::string> out;
    self->request(queue, guard, atom::receive_v, receive_request{})
      .receive(
        [&](received_batch& batch) {
          for (auto& m : batch.messages)
            out.push_back(m.body);
        },
        [&](caf::error& err) { ADD_FAILURE() << describe(err); });
    return out;
  }

  int64_t deliveries(const std::string& outcome) {
    return stats->count("ghscale_webhook_deliveries_total",
                        {{"outcome", outcome}});
  }
};

TEST_F(OpsServerTest, SignedDeliveryIsEnqueuedExactlyOnceThenAccepted) {
  auto body = to_webhook_payload(queued_job(31));
  auto res = deliver(body, sign(secret, body));
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 202);
  EXPECT_EQ(res->body, "accepted\n");
  auto got = enqueued();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], to_lambda_message(queued_job(31)));
  EXPECT_EQ(deliveries("accepted"), 1);
  auto hist = stats->histograms();
  ASSERT_EQ(hist.size(), 1u);
  EXPECT_EQ(hist[0].first, "ghscale_webhook_seconds");
  EXPECT_EQ(hist[0].second.count, 1);
}

TEST_F(OpsServerTest, ConcurrentDeliveriesEachLandOnce) {
  constexpr int senders = 4;
  constexpr int per_sender = 25;
  std::vector<std::thread> threads;
  std::atomic<int> accepted{0};
  for (int t = 0; t < senders; ++t)
    threads.emplace_back([&, t] {
      auto cli = client(); // one keep-alive connection per sender
      cli.set_keep_alive(true);
      for (int i = 0; i < per_sender; ++i) {
        auto body = to_webhook_payload(queued_job(1000 + t * per_sender + i));
        auto res = cli.Post("/webhook",
                            {{"X-GitHub-Event", "workflow_job"},
                             {"X-Hub-Signature-256", sign(secret, body)}},
                            body, "application/json");
        if (res && res->status == 202)
          ++accepted;
      }
    });
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(accepted, senders * per_sender);
  std::set<int64_t> ids;
  for (auto& body : enqueued()) {
    auto ev = parse_job_event(body);
    ASSERT_TRUE(ev);
    EXPECT_TRUE(ids.insert(ev->key.job_id).second) << "twice: " << ev->key.job_id;
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(senders * per_sender));
  EXPECT_EQ(deliveries("accepted"), senders * per_sender);
}

TEST_F(OpsServerTest, BadOrMissingSignatureIsRefusedAndNothingEnqueued) {
  auto body = to_webhook_payload(queued_job(32));
  auto bad = deliver(body, sign("not-the-secret", body));
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 401);
  auto missing = deliver(body, "");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 401);
  EXPECT_TRUE(enqueued().empty());
  EXPECT_EQ(deliveries("bad_signature"), 1);
  EXPECT_EQ(deliveries("unsigned"), 1);
  EXPECT_EQ(deliveries("accepted"), 0);
}

TEST_F(OpsServerTest, BodyOverTheLimitIsRefusedWith413) {
  std::string body(4097, ' ');
  auto res = deliver(body, sign(secret, body));
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 413);
  EXPECT_EQ(res->body, "body over 4096 bytes\n");
  EXPECT_TRUE(enqueued().empty());
  EXPECT_EQ(stats->count("ghscale_http_refused_total", {{"reason", "body_too_large"}}), 1);
}

TEST_F(OpsServerTest, ReadyzFloodRunsTheProbesOncePerFreshPeriod) {
  server.reset();
  auto probes = std::make_shared<std::atomic<int>>(0);
  auto s = setup();
  s.readiness = {readiness_check{"counted", [probes] {
                                   ++*probes;
                                   std::this_thread::sleep_for(
                                     std::chrono::milliseconds(50));
                                   return caf::error{};
                                 }}};
  s.readiness_fresh_for = std::chrono::hours(1);
  start(std::move(s));
  std::vector<std::thread> askers;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; ++i)
    askers.emplace_back([&] {
      for (int j = 0; j < 10; ++j)
        if (auto res = client().Get("/readyz"); res && res->status == 200)
          ++ok;
    });
  for (auto& t : askers)
    t.join();
  EXPECT_EQ(ok, 80);
  EXPECT_EQ(*probes, 1) << "80 requests within the fresh period probe once";
}

TEST_F(OpsServerTest, QueueFailureAnswers503SoGitHubCanRedeliver) {
  fail->enqueue = true;
  auto body = to_webhook_payload(queued_job(33));
  auto res = deliver(body, sign(secret, body));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_EQ(deliveries("queue_failed"), 1);
  fail->enqueue = false;
  EXPECT_TRUE(enqueued().empty());
}

TEST_F(OpsServerTest, PingIsAnswered) {
  std::string body = R"({"zen":"Keep it logically awesome."})";
  auto res = deliver(body, sign(secret, body), "ping");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "pong\n");
  EXPECT_EQ(deliveries("ping"), 1);
}

TEST_F(OpsServerTest, MetricsServesTheRegistryInTextFormat) {
  auto body = to_webhook_payload(queued_job(34));
  ASSERT_TRUE(deliver(body, sign(secret, body)));
  auto res = client().Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), prometheus_content_type);
  // The rendering itself is checked by prometheus_test, with two parsers.
  EXPECT_EQ(res->body, render_prometheus(stats->snapshot()));
  EXPECT_NE(res->body.find(
              "ghscale_webhook_deliveries_total{outcome=\"accepted\"} 1\n"),
            std::string::npos);
  EXPECT_NE(res->body.find("ghscale_webhook_seconds_count 1\n"),
            std::string::npos);
}

TEST_F(OpsServerTest, HealthzAnswersOk) {
  auto res = client().Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "ok\n");
}

TEST_F(OpsServerTest, ReadyzFollowsTheQueue) {
  auto ready = client().Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
  EXPECT_EQ(ready->body, "ok configuration\nok queue jobs\nok supervision\n");
  fail->depth = true;
  auto unready = client().Get("/readyz");
  ASSERT_TRUE(unready);
  EXPECT_EQ(unready->status, 503);
  EXPECT_EQ(unready->body, "ok configuration\n"
                           "failed queue jobs: backend_failure: depth unavailable\n"
                           "ok supervision\n");
  fail->depth = false;
  auto again = client().Get("/readyz");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200);
}

TEST_F(OpsServerTest, ReadyzFailsWhileAChildRestarts) {
  *restarting = true;
  auto res = client().Get("/readyz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_NE(res->body.find("failed supervision: unavailable: not running: scaler"),
            std::string::npos)
    << res->body;
}

TEST_F(OpsServerTest, ReadyzRunsGivenProbes) {
  server.reset();
  auto s = setup();
  s.readiness.push_back(readiness_check{"credentials", [] {
    return caf::make_error(errc::rejected, "no credential source");
  }});
  start(std::move(s));
  auto res = client().Get("/readyz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_NE(res->body.find("failed credentials: rejected: no credential source\n"),
            std::string::npos)
    << res->body;
}

TEST_F(OpsServerTest, WebhookPathIsMatchedLiterally) {
  server.reset();
  auto s = setup();
  s.cfg.webhook_path = "/hooks/github.v1";
  start(std::move(s));
  auto body = to_webhook_payload(queued_job(37));
  httplib::Headers headers{{"X-GitHub-Event", "workflow_job"},
                           {"X-Hub-Signature-256", sign(secret, body)}};
  auto cli = client();
  auto near = cli.Post("/hooks/githubXv1", headers, body, "application/json");
  ASSERT_TRUE(near);
  EXPECT_EQ(near->status, 404);
  auto exact = cli.Post("/hooks/github.v1", headers, body, "application/json");
  ASSERT_TRUE(exact);
  EXPECT_EQ(exact->status, 202);
  EXPECT_EQ(enqueued().size(), 1u);
}

TEST_F(OpsServerTest, TakenPortIsAnError) {
  auto s = setup();
  auto listen = "127.0.0.1:" + std::to_string(server->port());
  s.cfg.listen = listen;
  auto second = start_ops_server(sys, std::move(s), stats);
  ASSERT_FALSE(second);
  EXPECT_EQ(describe(second.error()), "invalid_config: server: cannot listen on "
                                        + listen + ": bind: Address already in use");
}

TEST_F(OpsServerTest, WebhookWithoutSecretsIsRefusedAtStart) {
  auto s = setup();
  s.secrets.clear();
  auto started = start_ops_server(sys, std::move(s), stats);
  ASSERT_FALSE(started);
  EXPECT_EQ(describe(started.error()),
            "invalid_config: server: the webhook needs at least one secret");
}

TEST_F(OpsServerTest, WithoutAQueueThereIsNoWebhookRoute) {
  server.reset();
  auto s = setup();
  s.webhook_queue = nullptr;
  s.secrets.clear();
  start(std::move(s));
  auto body = to_webhook_payload(queued_job(35));
  auto res = deliver(body, sign(secret, body));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  EXPECT_EQ(client().Get("/healthz")->status, 200);
}

TEST_F(OpsServerTest, ServesHttpsWithACertificate) {
  char dir_template[] = "/tmp/ops_tls_XXXXXX";
  std::string dir = ::mkdtemp(dir_template);
  auto cert = dir + "/cert.pem";
  auto key = dir + "/key.pem";
  auto cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "
             "/CN=127.0.0.1 -keyout " + key + " -out " + cert
             + " >/dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0)
    GTEST_SKIP() << "the openssl command cannot make a test certificate";
  server.reset();
  auto s = setup();
  s.cfg.tls_cert_file = cert;
  s.cfg.tls_key_file = key;
  start(std::move(s));
  httplib::SSLClient tls{"127.0.0.1", server->port()};
  tls.enable_server_certificate_verification(false); // self-signed
  auto body = to_webhook_payload(queued_job(36));
  auto res = tls.Post("/webhook",
                      httplib::Headers{{"X-GitHub-Event", "workflow_job"},
                                       {"X-Hub-Signature-256", sign(secret, body)}},
                      body, "application/json");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 202);
  EXPECT_EQ(enqueued().size(), 1u);
  std::remove(cert.c_str());
  std::remove(key.c_str());
  ::rmdir(dir.c_str());

  auto broken = setup();
  broken.cfg.tls_cert_file = cert; // removed above
  broken.cfg.tls_key_file = key;
  auto refused = start_ops_server(sys, std::move(broken), stats);
  ASSERT_FALSE(refused);
  EXPECT_EQ(describe(refused.error()),
            "invalid_config: server: cannot read " + cert + ": No such file or directory");
}

} // namespace
} // namespace ghscale
