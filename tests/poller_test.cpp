// The poll loop against mock queues, scalers and a ledger, in virtual time.
#include "actors/poller.hpp"
#include "tests/actor_test.hpp"
#include "transport/workflow_job.hpp"

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <set>

using namespace ghscale;
using namespace std::chrono_literals;

namespace {

/// A queue that records every call. Receives are answered from `receives`;
/// once that is empty they are held until a `flush`, which answers them
/// with the next scripted batch (or an empty one).
struct queue_script {
  std::deque<caf::expected<received_batch>> receives;
  std::vector<receive_request> receive_calls;
  std::vector<caf::typed_response_promise<received_batch>> held;
  std::vector<std::vector<std::string>> removes;
  std::vector<std::vector<visibility_change>> visibility;
  std::vector<std::vector<outgoing_message>> enqueued;
  std::set<std::string> failing; // entry ids answered as failed
  std::string failing_code = "InternalError";
};

using queue_mock_actor = queue_actor::extend<caf::reacts_to<atom::flush>>;

batch_result answer_entries(const queue_script& script,
                            const std::vector<std::string>& ids) {
  batch_result out;
  for (auto& id : ids)
    if (script.failing.count(id) > 0)
      out.failed.push_back(batch_entry_error{id, script.failing_code, "scripted"});
    else
      out.succeeded.push_back(id);
  return out;
}

queue_mock_actor spawn_queue(caf::actor_system& sys,
                             std::shared_ptr<queue_script> script) {
  // Collaborators are spawn arguments, as CAF 0.17.6 trips UBSan on a
  // function actor spawned without any.
  return sys.spawn([](queue_mock_actor::pointer self,
                      std::shared_ptr<queue_script> script)
                     -> queue_mock_actor::behavior_type {
    auto next = [script]() -> caf::expected<received_batch> {
      if (script->receives.empty())
        return received_batch{};
      auto x = std::move(script->receives.front());
      script->receives.pop_front();
      return x;
    };
    return {
      [=](atom::receive, const receive_request& req) -> caf::result<received_batch> {
        script->receive_calls.push_back(req);
        if (script->receives.empty()) {
          script->held.push_back(self->make_response_promise<received_batch>());
          return script->held.back();
        }
        auto x = next();
        if (!x)
          return x.error();
        return *x;
      },
      [=](atom::remove, const std::vector<std::string>& receipts) {
        script->removes.push_back(receipts);
        return answer_entries(*script, receipts);
      },
      [=](atom::visibility, const std::vector<visibility_change>& changes) {
        script->visibility.push_back(changes);
        std::vector<std::string> ids;
        for (auto& c : changes)
          ids.push_back(c.receipt);
        return answer_entries(*script, ids);
      },
      [=](atom::enqueue, const std::vector<outgoing_message>& msgs) {
        script->enqueued.push_back(msgs);
        std::vector<std::string> ids;
        for (size_t i = 0; i < msgs.size(); ++i)
          ids.push_back(std::to_string(i));
        return answer_entries(*script, ids);
      },
      [](atom::depth) { return queue_depth{}; },
      [=](atom::flush) {
        for (auto& promise : script->held) {
          auto x = next();
          if (x)
            promise.deliver(*x);
          else
            promise.deliver(x.error());
        }
        script->held.clear();
      },
    };
  }, std::move(script));
}

/// A scaler that records requests and answers with `answer`, or holds them
/// until a flush when `answer` is empty.
struct scaler_script {
  std::vector<scale_request> calls;
  std::function<caf::expected<batch_outcome>(const scale_request&)> answer;
  std::vector<std::pair<caf::typed_response_promise<batch_outcome>, scale_request>>
    held;
  std::function<caf::expected<batch_outcome>(const scale_request&)> on_flush;
};

scaler_actor spawn_scaler(caf::actor_system& sys,
                          std::shared_ptr<scaler_script> script) {
  return sys.spawn([](scaler_actor::pointer self,
                      std::shared_ptr<scaler_script> script)
                     -> scaler_actor::behavior_type {
    return {
      [=](atom::scale, const scale_request& req) -> caf::result<batch_outcome> {
        script->calls.push_back(req);
        if (!script->answer) {
          script->held.emplace_back(self->make_response_promise<batch_outcome>(), req);
          return script->held.back().first;
        }
        auto x = script->answer(req);
        if (!x)
          return x.error();
        return *x;
      },
      // The poller never forwards interruptions, nor drains a scaler.
      [](atom::interrupt, const std::string&) { return false; },
      [](atom::drain, caf::timespan) { return true; },
      [](atom::tick) {},
      [](atom::reconcile) {},
      // 0 answers every request held, n > 0 only the n-th of them.
      [=](atom::flush, uint64_t n) {
        auto& held = script->held;
        for (size_t i = 0; i < held.size(); ++i)
          if (n == 0 || i + 1 == n)
            held[i].first.deliver(*script->on_flush(held[i].second));
        if (n == 0)
          held.clear();
        else if (n <= held.size())
          held.erase(held.begin() + static_cast<long>(n - 1));
      },
    };
  }, std::move(script));
}

lifecycle_sink_actor spawn_ledger(caf::actor_system& sys,
                                  std::shared_ptr<std::vector<job_event>> seen) {
  return sys.spawn(
    [](std::shared_ptr<std::vector<job_event>> seen)
      -> lifecycle_sink_actor::behavior_type {
      return {[=](atom::observe, const job_event& ev) { seen->push_back(ev); }};
    },
    std::move(seen));
}

job_event event(job_action action, int64_t job_id,
                std::vector<std::string> labels = {"self-hosted", "linux"}) {
  job_event ev;
  ev.action = action;
  ev.key = job_key{job_id, 1};
  ev.run_id = 100 + job_id;
  ev.repository = repository_ref{"octo", "hello", owner_type::organization};
  ev.installation_id = 7;
  ev.labels = std::move(labels);
  if (action != job_action::queued)
    ev.runner_name = "linux-i-1";
  return ev;
}

queue_message message(std::string receipt, std::string body,
                      int32_t receive_count = 1) {
  return queue_message{"id-" + receipt, std::move(receipt), std::move(body),
                       receive_count, caf::timespan{0}, {}};
}

queue_message message(std::string receipt, const job_event& ev,
                      int32_t receive_count = 1) {
  return message(std::move(receipt), to_webhook_payload(ev), receive_count);
}

/// A registry that records heartbeats and answers each with `verdict`, or
/// with `failure` when that is set.
struct registry_script {
  std::vector<lease> heartbeats;
  heartbeat_verdict verdict = heartbeat_verdict::keep_going;
  std::optional<caf::error> failure;
};

lease_keeper_actor spawn_registry(caf::actor_system& sys,
                                  std::shared_ptr<registry_script> script) {
  return sys.spawn(
    [](std::shared_ptr<registry_script> script)
      -> lease_keeper_actor::behavior_type {
      return {
        [=](atom::heartbeat, const lease& held) -> caf::result<heartbeat_verdict> {
          script->heartbeats.push_back(held);
          if (script->failure)
            return *script->failure;
          return script->verdict;
        },
      };
    },
    std::move(script));
}

/// Answers every job of a request with `kind`.
batch_outcome all(const scale_request& req, outcome_kind kind) {
  batch_outcome out;
  for (auto& job : req.jobs)
    out.outcomes.push_back(message_outcome{job.receipt, kind, 3s, "scripted"});
  return out;
}

class PollerTest : public test::actor_test {
protected:
  PollerTest() {
    queue.name = "jobs";
    queue.batch_size = 10;
    queue.wait_time = 20s;
    queue.visibility_timeout = 30s;
    pool_config linux_pool;
    linux_pool.name = "linux";
    linux_pool.queue = "jobs";
    linux_pool.labels = {"self-hosted", "linux"};
    routes.pools.push_back(linux_pool);
    retry = retry_config{5s, 15min, 0.0};
    timeouts.scale = 10s;
    loops.heartbeat = 5s;
  }

  /// Spawns the poller; it receives `batches` first, then waits.
  void start(std::vector<std::vector<queue_message>> batches,
             bool with_dead_letter = true) {
    for (auto& b : batches)
      source_script->receives.push_back(received_batch{std::move(b)});
    auto source = stop_at_teardown(spawn_queue(sys, source_script));
    auto dlq = stop_at_teardown(spawn_queue(sys, dlq_script));
    auto scaler = stop_at_teardown(spawn_scaler(sys, scaler_calls));
    auto ledger = stop_at_teardown(spawn_ledger(sys, observed));
    routes.scalers.emplace("linux", scaler);
    routes.ledgers.emplace("linux", ledger);
    queue_actor dead_letter;
    if (with_dead_letter)
      dead_letter = dlq;
    auto registry = stop_at_teardown(spawn_registry(sys, registry_calls));
    poller_setup setup{queue, source, dead_letter, routes, retry, timeouts, loops};
    loop = stop_at_teardown(
      sys.spawn(poller, setup, held, registry, stats, uint64_t{1}));
    source_handle = source;
    scaler_handle = scaler;
    sched.run();
  }

  /// The scaler mock answers "done" to its n-th held request (0: all).
  void answer(uint64_t n) {
    scaler_calls->on_flush = [](const scale_request& req) {
      return caf::expected<batch_outcome>{all(req, outcome_kind::done)};
    };
    self->send(scaler_handle, atom::flush_v, n);
    sched.run();
  }

  /// Outcomes go out in batches, at most 100 ms after they come.
  void settle() { advance(100ms); }

  /// Every receipt of every visibility call, in order.
  std::vector<std::string> extended(size_t call) const {
    std::vector<std::string> out;
    for (auto& change : source_script->visibility.at(call))
      out.push_back(change.receipt);
    return out;
  }

  int64_t messages(const std::string& outcome) {
    return stats->count("ghscale_messages_total",
                        {{"queue", "jobs"}, {"outcome", outcome}});
  }

  metrics_ptr stats = std::make_shared<metrics>();
  queue_config queue;
  poller_routes routes;
  retry_config retry;
  timeouts_config timeouts;
  poll_loops_config loops;
  lease held{"jobs", "token-1", 7};
  std::shared_ptr<registry_script> registry_calls
    = std::make_shared<registry_script>();
  std::shared_ptr<queue_script> source_script = std::make_shared<queue_script>();
  std::shared_ptr<queue_script> dlq_script = std::make_shared<queue_script>();
  std::shared_ptr<scaler_script> scaler_calls = std::make_shared<scaler_script>();
  std::shared_ptr<std::vector<job_event>> observed
    = std::make_shared<std::vector<job_event>>();
  poller_actor loop;
  queue_mock_actor source_handle;
  scaler_actor scaler_handle;
};

} // namespace

TEST_F(PollerTest, ReceivesWithTheQueuesSettings) {
  start({});
  ASSERT_EQ(source_script->receive_calls.size(), 1u);
  auto& req = source_script->receive_calls[0];
  EXPECT_EQ(req.max_messages, 10);
  EXPECT_EQ(req.wait, caf::timespan{20s});
  EXPECT_EQ(req.visibility, caf::timespan{30s});
}

TEST_F(PollerTest, DeadLettersMalformedMessagesThenDeletesThem) {
  start({{message("m1", "not json at all")}});
  settle();
  ASSERT_EQ(dlq_script->enqueued.size(), 1u);
  ASSERT_EQ(dlq_script->enqueued[0].size(), 1u);
  auto& letter = dlq_script->enqueued[0][0];
  EXPECT_EQ(letter.body, "not json at all");
  // Whoever reads the dead-letter queue sees why and from where.
  EXPECT_NE(letter.attributes.at("ghscale.reason"), "");
  EXPECT_EQ(letter.attributes.at("ghscale.source-queue"), "jobs");
  EXPECT_EQ(letter.attributes.at("ghscale.source-message-id"), "id-m1");
  EXPECT_EQ(letter.attributes.at("ghscale.receive-count"), "1");
  ASSERT_EQ(source_script->removes.size(), 1u);
  EXPECT_EQ(source_script->removes[0], std::vector<std::string>{"m1"});
  EXPECT_TRUE(source_script->visibility.empty());
  EXPECT_EQ(messages("dead_lettered"), 1);
  EXPECT_TRUE(scaler_calls->calls.empty());
  // The loop went on to the next receive.
  EXPECT_EQ(source_script->receive_calls.size(), 2u);
}

TEST_F(PollerTest, KeepsPoisonTheDeadLetterQueueRefused) {
  dlq_script->failing = {"0"};
  start({{message("m1", "{"), message("m2", "[]")}});
  settle();
  ASSERT_EQ(dlq_script->enqueued.size(), 1u);
  EXPECT_EQ(dlq_script->enqueued[0].size(), 2u);
  ASSERT_EQ(source_script->removes.size(), 1u);
  EXPECT_EQ(source_script->removes[0], std::vector<std::string>{"m2"});
  EXPECT_EQ(stats->count("ghscale_queue_action_failures_total",
                         {{"queue", "jobs"}, {"action", "dead_letter"}}),
            1);
}

TEST_F(PollerTest, ParksPoisonForTwelveHoursWithoutADeadLetterQueue) {
  start({{message("m1", "garbage")}}, false);
  settle();
  EXPECT_TRUE(source_script->removes.empty());
  ASSERT_EQ(source_script->visibility.size(), 1u);
  ASSERT_EQ(source_script->visibility[0].size(), 1u);
  EXPECT_EQ(source_script->visibility[0][0].receipt, "m1");
  EXPECT_EQ(source_script->visibility[0][0].delay, caf::timespan{12h});
}

TEST_F(PollerTest, DeletesAndCountsUnroutedJobs) {
  start({{message("m1", event(job_action::queued, 1, {"windows"}))}});
  settle();
  EXPECT_TRUE(scaler_calls->calls.empty());
  ASSERT_EQ(source_script->removes.size(), 1u);
  EXPECT_EQ(source_script->removes[0], std::vector<std::string>{"m1"});
  EXPECT_EQ(stats->count("ghscale_jobs_unrouted_total", {{"queue", "jobs"}}), 1);
  EXPECT_EQ(messages("acked"), 1);
}

TEST_F(PollerTest, AsksForEachJobOnItsOwnAndAppliesTheOutcomesTogether) {
  scaler_calls->answer = [](const scale_request& req) {
    batch_outcome out;
    auto& receipt = req.jobs.at(0).receipt;
    if (receipt == "m1")
      out.outcomes.push_back(message_outcome{"m1", outcome_kind::done, 0s, "launched"});
    if (receipt == "m2")
      out.outcomes.push_back(message_outcome{"m2", outcome_kind::retry, 7s, "cap"});
    // An outcome for a receipt it was never sent is ignored.
    out.outcomes.push_back(message_outcome{"bogus", outcome_kind::done, 0s, ""});
    return caf::expected<batch_outcome>{std::move(out)};
  };
  start({{message("m1", event(job_action::queued, 1)),
          message("m2", event(job_action::queued, 2)),
          message("m3", event(job_action::queued, 3), 2)}});
  ASSERT_EQ(scaler_calls->calls.size(), 3u);
  for (auto& call : scaler_calls->calls)
    EXPECT_EQ(call.jobs.size(), 1u);
  auto& first = scaler_calls->calls[0].jobs[0];
  EXPECT_EQ(first.receipt, "m1");
  EXPECT_EQ(first.event.key, (job_key{1, 1}));
  EXPECT_EQ(scaler_calls->calls[2].jobs[0].receive_count, 2);
  EXPECT_TRUE(source_script->removes.empty()); // gathered for one call each
  settle();
  ASSERT_EQ(source_script->removes.size(), 1u);
  EXPECT_EQ(source_script->removes[0], std::vector<std::string>{"m1"});
  ASSERT_EQ(source_script->visibility.size(), 1u);
  auto& changes = source_script->visibility[0];
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[0].receipt, "m2");
  EXPECT_EQ(changes[0].delay, caf::timespan{7s});
  // No outcome for m3: retried after the backoff of its second receive.
  EXPECT_EQ(changes[1].receipt, "m3");
  EXPECT_EQ(changes[1].delay, caf::timespan{10s});
  EXPECT_EQ(messages("acked"), 1);
  EXPECT_EQ(messages("retried"), 2);
  EXPECT_TRUE(dlq_script->enqueued.empty());
}

TEST_F(PollerTest, AJobSettlesWithoutWaitingForTheOthersOfItsBatch) {
  start({{message("m1", event(job_action::queued, 1)),
          message("m2", event(job_action::queued, 2))}});
  ASSERT_EQ(scaler_calls->held.size(), 2u);
  answer(1);
  settle();
  ASSERT_EQ(source_script->removes.size(), 1u);
  EXPECT_EQ(source_script->removes[0], std::vector<std::string>{"m1"});
}

TEST_F(PollerTest, PoisonIsDeadLetteredWithoutWaitingForItsBatchsJobs) {
  start({{message("m1", event(job_action::queued, 1)), message("m2", "{\"action\":")}});
  ASSERT_EQ(scaler_calls->held.size(), 1u); // m1's scaler has not answered
  settle();
  ASSERT_EQ(dlq_script->enqueued.size(), 1u);
  EXPECT_EQ(dlq_script->enqueued[0].at(0).body, "{\"action\":");
  ASSERT_EQ(source_script->removes.size(), 1u);
  EXPECT_EQ(source_script->removes[0], std::vector<std::string>{"m2"});
  answer(1);
  settle();
  ASSERT_EQ(source_script->removes.size(), 2u);
  EXPECT_EQ(source_script->removes[1], std::vector<std::string>{"m1"});
}

TEST_F(PollerTest, KeepsReceivingWhileItHoldsFewerThanItsBound) {
  queue.max_in_flight = 25;
  std::vector<queue_message> first;
  std::vector<queue_message> second;
  for (int i = 0; i < 10; ++i) {
    first.push_back(message("a" + std::to_string(i), event(job_action::queued, 1 + i)));
    second.push_back(
      message("b" + std::to_string(i), event(job_action::queued, 100 + i)));
  }
  start({first, second});
  // Two batches held (20), the third receive asks for the 5 left ...
  ASSERT_EQ(source_script->receive_calls.size(), 3u);
  EXPECT_EQ(source_script->receive_calls[2].max_messages, 5);
  source_script->receives.push_back(received_batch{
    {message("c0", event(job_action::queued, 200)),
     message("c1", event(job_action::queued, 201)),
     message("c2", event(job_action::queued, 202)),
     message("c3", event(job_action::queued, 203)),
     message("c4", event(job_action::queued, 204))}});
  self->send(source_handle, atom::flush_v);
  sched.run();
  // ... and with 25 held it receives no more until some settle.
  EXPECT_EQ(source_script->receive_calls.size(), 3u);
  EXPECT_EQ(scaler_calls->held.size(), 25u);
  answer(1);
  settle();
  EXPECT_EQ(source_script->receive_calls.size(), 4u);
  EXPECT_EQ(source_script->receive_calls[3].max_messages, 1);
}

TEST_F(PollerTest, KeepsWhatItHoldsHiddenWithOneCallForAll) {
  timeouts.scale = 5min; // the scaler takes its time
  start({{message("m1", event(job_action::queued, 1)),
          message("m2", event(job_action::queued, 2))}});
  ASSERT_EQ(scaler_calls->held.size(), 2u);
  advance(14s);
  EXPECT_TRUE(source_script->visibility.empty());
  // Half a visibility timeout before they would reappear: both, in one call,
  // for another whole visibility timeout.
  advance(1s);
  ASSERT_EQ(source_script->visibility.size(), 1u);
  EXPECT_EQ(extended(0), (std::vector<std::string>{"m1", "m2"}));
  EXPECT_EQ(source_script->visibility[0][0].delay, caf::timespan{30s});
  advance(15s);
  ASSERT_EQ(source_script->visibility.size(), 2u);
  // A settled message is no longer extended.
  answer(1);
  settle();
  advance(15s);
  ASSERT_EQ(source_script->visibility.size(), 3u);
  EXPECT_EQ(extended(2), std::vector<std::string>{"m2"});
  EXPECT_EQ(stats->count("ghscale_visibility_extended_total", {{"queue", "jobs"}}), 5);
}

TEST_F(PollerTest, NeverHidesAMessageBeyondTwelveHoursFromItsReceive) {
  timeouts.scale = 13h;
  queue.visibility_timeout = 5h;
  start({{message("m1", event(job_action::queued, 1))}});
  advance(2h + 30min); // extended to 7.5 h
  advance(2h + 30min); // to 10 h
  advance(2h + 30min); // only up to 12 h
  ASSERT_EQ(source_script->visibility.size(), 3u);
  EXPECT_EQ(source_script->visibility[2][0].delay, caf::timespan{4h + 30min});
  advance(3h);
  EXPECT_EQ(source_script->visibility.size(), 3u);
}

TEST_F(PollerTest, StopsExtendingAReceiptTheQueueNoLongerTakes) {
  timeouts.scale = 5min; // the scaler takes its time
  source_script->failing = {"m1"};
  source_script->failing_code = "ReceiptHandleIsInvalid";
  start({{message("m1", event(job_action::queued, 1)),
          message("m2", event(job_action::queued, 2))}});
  advance(15s);
  ASSERT_EQ(source_script->visibility.size(), 1u);
  advance(15s);
  ASSERT_EQ(source_script->visibility.size(), 2u);
  EXPECT_EQ(extended(1), std::vector<std::string>{"m2"});
  // Its outcome still goes out when it comes.
  answer(0);
  settle();
  ASSERT_EQ(source_script->removes.size(), 1u);
  EXPECT_EQ(source_script->removes[0], (std::vector<std::string>{"m1", "m2"}));
}

TEST_F(PollerTest, RetriesEverythingAScalerFailedOn) {
  scaler_calls->answer = [](const scale_request&) -> caf::expected<batch_outcome> {
    return caf::make_error(errc::unavailable, "scaler restarting");
  };
  start({{message("m1", event(job_action::queued, 1), 1),
          message("m2", event(job_action::queued, 2), 3)}});
  settle();
  EXPECT_TRUE(source_script->removes.empty());
  ASSERT_EQ(source_script->visibility.size(), 1u);
  auto& changes = source_script->visibility[0];
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[0].delay, caf::timespan{5s});
  EXPECT_EQ(changes[1].delay, caf::timespan{20s});
}

TEST_F(PollerTest, RetriesEverythingWhenTheScalerTimesOut) {
  start({{message("m1", event(job_action::queued, 1))}});
  ASSERT_EQ(scaler_calls->held.size(), 1u);
  EXPECT_TRUE(source_script->visibility.empty());
  advance(timeouts.scale);
  settle();
  ASSERT_FALSE(source_script->visibility.empty());
  auto& last = source_script->visibility.back();
  EXPECT_EQ(last.at(0).receipt, "m1");
  EXPECT_EQ(last.at(0).delay, caf::timespan{5s});
  EXPECT_TRUE(source_script->removes.empty());
}

TEST_F(PollerTest, HandsLifecycleEventsToTheLedger) {
  start({{message("m1", event(job_action::in_progress, 1)),
          message("m2", event(job_action::waiting, 2)),
          message("m3", event(job_action::completed, 3, {"windows"}))}});
  settle();
  ASSERT_EQ(observed->size(), 1u);
  EXPECT_EQ((*observed)[0].action, job_action::in_progress);
  EXPECT_EQ((*observed)[0].runner_name, "linux-i-1");
  ASSERT_EQ(source_script->removes.size(), 1u);
  EXPECT_EQ(source_script->removes[0], (std::vector<std::string>{"m1", "m2", "m3"}));
  EXPECT_TRUE(scaler_calls->calls.empty());
  // Only queued jobs that match no pool are "unrouted".
  EXPECT_EQ(stats->count("ghscale_jobs_unrouted_total", {{"queue", "jobs"}}), 0);
}

TEST_F(PollerTest, BacksOffAfterAFailedReceive) {
  source_script->receives.push_back(caf::make_error(caf::sec::request_timeout));
  start({});
  EXPECT_EQ(source_script->receive_calls.size(), 1u);
  sched.advance_time(500ms);
  sched.run();
  EXPECT_EQ(source_script->receive_calls.size(), 1u);
  sched.advance_time(1s); // first backoff: 1 s +- jitter (0 here)
  sched.run();
  EXPECT_EQ(source_script->receive_calls.size(), 2u);
}

TEST_F(PollerTest, DrainKeepsWhatItHoldsHiddenUntilItsOutcomeComes) {
  timeouts.scale = 5min; // the scaler takes its time
  scaler_calls->on_flush = [](const scale_request& req) {
    return caf::expected<batch_outcome>{all(req, outcome_kind::done)};
  };
  start({{message("m1", event(job_action::queued, 1))}});
  ASSERT_EQ(scaler_calls->held.size(), 1u);
  auto receives = source_script->receive_calls.size();
  self->send(loop, atom::drain_v);
  sched.run();
  EXPECT_FALSE(next_reply<bool>()) << "answered before the message was settled";
  // Still being served after a while: still kept hidden.
  advance(15s);
  ASSERT_EQ(source_script->visibility.size(), 1u);
  EXPECT_EQ(extended(0), std::vector<std::string>{"m1"});
  self->send(scaler_handle, atom::flush_v, uint64_t{0});
  sched.run();
  ASSERT_EQ(source_script->removes.size(), 1u);
  EXPECT_EQ(source_script->removes[0], std::vector<std::string>{"m1"});
  // The long poll it kept receiving with is still out: it ends it first.
  EXPECT_FALSE(next_reply<bool>());
  self->send(source_handle, atom::flush_v);
  sched.run();
  auto reply = next_reply<bool>();
  ASSERT_TRUE(reply);
  EXPECT_TRUE(*reply);
  EXPECT_EQ(source_script->receive_calls.size(), receives);
}

TEST_F(PollerTest, DrainWhileWaitingReleasesWhatTheReceiveReturns) {
  start({});
  ASSERT_EQ(source_script->held.size(), 1u);
  self->send(loop, atom::drain_v);
  sched.run();
  EXPECT_FALSE(next_reply<bool>());
  source_script->receives.push_back(received_batch{
    {message("m1", event(job_action::queued, 1)), message("m2", "garbage")}});
  self->send(source_handle, atom::flush_v);
  sched.run();
  EXPECT_TRUE(scaler_calls->calls.empty());
  EXPECT_TRUE(source_script->removes.empty());
  EXPECT_TRUE(dlq_script->enqueued.empty());
  ASSERT_FALSE(source_script->visibility.empty());
  std::vector<visibility_change> changes;
  for (auto& call : source_script->visibility)
    changes.insert(changes.end(), call.begin(), call.end());
  ASSERT_EQ(changes.size(), 2u);
  // Hidden until any other loop's long poll (20 s) has returned: a draining
  // loop would receive them again, and each receive counts.
  EXPECT_EQ(changes[0].delay, caf::timespan{21s});
  EXPECT_EQ(changes[1].delay, caf::timespan{21s});
  auto reply = next_reply<bool>();
  ASSERT_TRUE(reply);
  EXPECT_TRUE(*reply);
  EXPECT_EQ(source_script->receive_calls.size(), 1u);
}

TEST_F(PollerTest, DrainWhenIdleStopsAtOnce) {
  source_script->receives.push_back(caf::make_error(caf::sec::request_timeout));
  start({}); // now waiting out the receive backoff
  self->send(loop, atom::drain_v);
  sched.run();
  auto reply = next_reply<bool>();
  ASSERT_TRUE(reply);
  EXPECT_TRUE(*reply);
  sched.advance_time(5s);
  sched.run();
  EXPECT_EQ(source_script->receive_calls.size(), 1u);
}

TEST_F(PollerTest, HeartbeatsItsLeaseOnItsOwnTimer) {
  start({});
  // The first receive went out at once, without waiting for a heartbeat.
  EXPECT_EQ(source_script->receive_calls.size(), 1u);
  EXPECT_TRUE(registry_calls->heartbeats.empty());
  advance(5s);
  ASSERT_EQ(registry_calls->heartbeats.size(), 1u);
  EXPECT_EQ(registry_calls->heartbeats[0].queue, "jobs");
  EXPECT_EQ(registry_calls->heartbeats[0].token, "token-1");
  EXPECT_EQ(registry_calls->heartbeats[0].loop_id, 7u);
  advance(5s);
  EXPECT_EQ(registry_calls->heartbeats.size(), 2u);
  EXPECT_EQ(source_script->receive_calls.size(), 1u);
}

TEST_F(PollerTest, StopVerdictSettlesWhatItHoldsThenStops) {
  scaler_calls->on_flush = [](const scale_request& req) {
    return caf::expected<batch_outcome>{all(req, outcome_kind::done)};
  };
  registry_calls->verdict = heartbeat_verdict::stop;
  start({{message("m1", event(job_action::queued, 1))}});
  self->monitor(loop);
  ASSERT_EQ(scaler_calls->held.size(), 1u);
  auto receives = source_script->receive_calls.size();
  advance(5s);
  ASSERT_EQ(registry_calls->heartbeats.size(), 1u);
  EXPECT_FALSE(down_reason()) << "stopped before its message was settled";
  EXPECT_TRUE(source_script->removes.empty());
  self->send(scaler_handle, atom::flush_v, uint64_t{0});
  sched.run();
  ASSERT_EQ(source_script->removes.size(), 1u);
  EXPECT_EQ(source_script->removes[0], std::vector<std::string>{"m1"});
  self->send(source_handle, atom::flush_v); // ends the long poll still out
  sched.run();
  auto reason = down_reason();
  ASSERT_TRUE(reason) << "still running after settling";
  EXPECT_FALSE(*reason) << "stopped with " << sys.render(*reason);
  EXPECT_EQ(source_script->receive_calls.size(), receives);
  EXPECT_EQ(registry_calls->heartbeats.size(), 1u);
}

TEST_F(PollerTest, StopVerdictDuringAReceiveReleasesWhatItReturns) {
  registry_calls->verdict = heartbeat_verdict::stop;
  start({});
  self->monitor(loop);
  advance(5s);
  EXPECT_FALSE(down_reason());
  source_script->receives.push_back(
    received_batch{{message("m1", event(job_action::queued, 1))}});
  self->send(source_handle, atom::flush_v);
  sched.run();
  EXPECT_TRUE(scaler_calls->calls.empty());
  ASSERT_EQ(source_script->visibility.size(), 1u);
  EXPECT_EQ(source_script->visibility[0].at(0).delay, caf::timespan{21s});
  auto reason = down_reason();
  ASSERT_TRUE(reason);
  EXPECT_FALSE(*reason);
}

TEST_F(PollerTest, IgnoresFailedHeartbeats) {
  registry_calls->failure = caf::make_error(errc::unavailable, "registry restarting");
  scaler_calls->answer = [](const scale_request& req) {
    return caf::expected<batch_outcome>{all(req, outcome_kind::done)};
  };
  start({});
  self->monitor(loop);
  advance(15s);
  EXPECT_EQ(registry_calls->heartbeats.size(), 3u);
  EXPECT_FALSE(down_reason());
  source_script->receives.push_back(
    received_batch{{message("m1", event(job_action::queued, 1))}});
  self->send(source_handle, atom::flush_v);
  sched.run();
  settle();
  ASSERT_EQ(source_script->removes.size(), 1u);
  EXPECT_EQ(source_script->receive_calls.size(), 2u);
  EXPECT_FALSE(down_reason());
}

TEST_F(PollerTest, EmptyReceivesAreNotLoggedAtInfo) {
  test::log_capture captured;
  start({{}, {}, {}});
  EXPECT_GE(source_script->receive_calls.size(), 3u);
  EXPECT_EQ(test::log_capture::lines_containing("empty receive"), 0u);
  EXPECT_EQ(test::log_capture::lines_containing("messages settled"), 0u);
}
