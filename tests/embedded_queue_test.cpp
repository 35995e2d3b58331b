#include "actors/embedded/embedded_queue.hpp"
#include "tests/actor_test.hpp"

#include <sqlite3.h>

#include <cstdlib>
#include <filesystem>

using namespace ghscale;
using namespace std::chrono_literals;

namespace {

/// A dead-letter queue that refuses every message with error `code`.
queue_actor::behavior_type refusing_queue(queue_actor::pointer, std::string code) {
  return {
    [](atom::receive, const receive_request&) { return received_batch{}; },
    [](atom::remove, const std::vector<std::string>&) { return batch_result{}; },
    [](atom::visibility, const std::vector<visibility_change>&) {
      return batch_result{};
    },
    [code](atom::enqueue, const std::vector<outgoing_message>&) {
      return batch_result{{}, {{"0", code, "refused"}}};
    },
    [](atom::depth) { return queue_depth{}; },
  };
}

class EmbeddedQueueTest : public test::actor_test {
protected:
  queue_actor spawn_queue(queue_config qc, queue_actor dlq = {}) {
    return stop_at_teardown(
      sys.spawn(embedded_queue, std::move(qc), std::move(dlq), stats));
  }

  queue_config config(std::string name = "jobs") {
    queue_config qc;
    qc.name = std::move(name);
    qc.visibility_timeout = 30s;
    qc.max_receive_count = 3;
    return qc;
  }

  batch_result send(const queue_actor& q, std::vector<outgoing_message> xs) {
    return ask<batch_result>(q, atom::enqueue_v, std::move(xs));
  }

  received_batch receive(const queue_actor& q, int32_t max = 10,
                         caf::timespan visibility = 30s) {
    return ask<received_batch>(q, atom::receive_v,
                               receive_request{max, 0s, visibility});
  }

  static std::vector<std::string> bodies(const received_batch& b) {
    std::vector<std::string> out;
    for (auto& m : b.messages)
      out.push_back(m.body);
    return out;
  }

  metrics_ptr stats = std::make_shared<metrics>();
};

TEST_F(EmbeddedQueueTest, DeliversInOrderWithIdsReceiptsAndCounts) {
  auto q = spawn_queue(config());
  auto sent = send(q, {{"a", 0s}, {"b", 0s}, {"c", 0s}});
  EXPECT_EQ(sent.succeeded, (std::vector<std::string>{"0", "1", "2"}));
  EXPECT_TRUE(sent.failed.empty());
  auto first = receive(q, 2);
  ASSERT_EQ(first.messages.size(), 2u);
  EXPECT_EQ(first.messages[0].message_id, "m-1");
  EXPECT_EQ(first.messages[0].receipt, "r-1");
  EXPECT_EQ(first.messages[0].receive_count, 1);
  EXPECT_EQ(first.messages[0].sent_at, sys.clock().now().time_since_epoch());
  EXPECT_EQ(bodies(first), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(bodies(receive(q)), (std::vector<std::string>{"c"}));
  EXPECT_TRUE(receive(q).messages.empty());
  EXPECT_EQ(stats->count("ghscale_queue_sent_total", {{"queue", "jobs"}}), 3);
  EXPECT_EQ(stats->count("ghscale_queue_received_total", {{"queue", "jobs"}}), 3);
}

TEST_F(EmbeddedQueueTest, RedeliversAfterVisibilityTimeoutAndInvalidatesOldReceipt) {
  auto q = spawn_queue(config());
  send(q, {{"job", 0s}});
  auto first = receive(q, 10, 30s);
  ASSERT_EQ(first.messages.size(), 1u);
  sched.advance_time(29s);
  EXPECT_TRUE(receive(q).messages.empty());
  sched.advance_time(1s);
  auto second = receive(q, 10, 30s);
  ASSERT_EQ(second.messages.size(), 1u);
  EXPECT_EQ(second.messages[0].message_id, first.messages[0].message_id);
  EXPECT_EQ(second.messages[0].receive_count, 2);
  EXPECT_NE(second.messages[0].receipt, first.messages[0].receipt);
  auto removed = ask<batch_result>(
    q, atom::remove_v,
    std::vector<std::string>{first.messages[0].receipt, second.messages[0].receipt,
                             "r-unknown"});
  EXPECT_EQ(removed.succeeded, std::vector<std::string>{second.messages[0].receipt});
  ASSERT_EQ(removed.failed.size(), 2u);
  EXPECT_EQ(removed.failed[0].id, first.messages[0].receipt);
  EXPECT_EQ(removed.failed[0].code, "ReceiptHandleIsInvalid");
  EXPECT_EQ(removed.failed[1].id, "r-unknown");
  EXPECT_EQ(removed.failed[1].code, "ReceiptHandleIsInvalid");
  sched.advance_time(60s);
  EXPECT_TRUE(receive(q).messages.empty());
  EXPECT_EQ(stats->count("ghscale_queue_deleted_total", {{"queue", "jobs"}}), 1);
}

TEST_F(EmbeddedQueueTest, ZeroVisibilityInRequestUsesQueueDefault) {
  auto qc = config();
  qc.visibility_timeout = 45s;
  auto q = spawn_queue(qc);
  send(q, {{"job", 0s}});
  EXPECT_EQ(receive(q, 10, 0s).messages.size(), 1u);
  sched.advance_time(44s);
  EXPECT_TRUE(receive(q).messages.empty());
  sched.advance_time(1s);
  EXPECT_EQ(receive(q).messages.size(), 1u);
}

TEST_F(EmbeddedQueueTest, VisibilityChangesPerEntry) {
  auto q = spawn_queue(config());
  send(q, {{"a", 0s}, {"b", 0s}});
  auto got = receive(q);
  ASSERT_EQ(got.messages.size(), 2u);
  auto changed = ask<batch_result>(
    q, atom::visibility_v,
    std::vector<visibility_change>{{got.messages[0].receipt, 0s},
                                   {"r-stale", 0s},
                                   {got.messages[1].receipt, 10s}});
  EXPECT_EQ(changed.succeeded, (std::vector<std::string>{got.messages[0].receipt,
                                                         got.messages[1].receipt}));
  ASSERT_EQ(changed.failed.size(), 1u);
  EXPECT_EQ(changed.failed[0].id, "r-stale");
  EXPECT_EQ(changed.failed[0].code, "ReceiptHandleIsInvalid");
  EXPECT_EQ(bodies(receive(q)), std::vector<std::string>{"a"});
  sched.advance_time(10s);
  EXPECT_EQ(bodies(receive(q)), std::vector<std::string>{"b"});
}

TEST_F(EmbeddedQueueTest, DelayedMessagesAppearLater) {
  auto q = spawn_queue(config());
  send(q, {{"later", 10s}, {"now", 0s}});
  auto d = ask<queue_depth>(q, atom::depth_v);
  EXPECT_EQ(d.visible, 1);
  EXPECT_EQ(d.delayed, 1);
  EXPECT_EQ(d.in_flight, 0);
  EXPECT_EQ(bodies(receive(q)), std::vector<std::string>{"now"});
  sched.advance_time(9s);
  EXPECT_TRUE(receive(q).messages.empty());
  sched.advance_time(1s);
  EXPECT_EQ(bodies(receive(q)), std::vector<std::string>{"later"});
}

TEST_F(EmbeddedQueueTest, DepthCountsVisibleInFlightAndDelayed) {
  auto q = spawn_queue(config());
  send(q, {{"a", 0s}, {"b", 0s}, {"c", 0s}, {"d", 5s}});
  receive(q, 1);
  auto d = ask<queue_depth>(q, atom::depth_v);
  EXPECT_EQ(d.visible, 2);
  EXPECT_EQ(d.in_flight, 1);
  EXPECT_EQ(d.delayed, 1);
  sched.advance_time(30s);
  d = ask<queue_depth>(q, atom::depth_v);
  EXPECT_EQ(d.visible, 4);
  EXPECT_EQ(d.in_flight, 0);
  EXPECT_EQ(d.delayed, 0);
}

TEST_F(EmbeddedQueueTest, LongPollIsAnsweredByALaterSend) {
  auto q = spawn_queue(config());
  self->send(q, atom::receive_v, receive_request{10, 20s, 30s});
  sched.run();
  EXPECT_FALSE(next_reply<received_batch>());
  sched.advance_time(5s);
  caf::scoped_actor producer{sys, true};
  producer->send(q, atom::enqueue_v, std::vector<outgoing_message>{{"hello", 0s}});
  sched.run();
  auto batch = next_reply<received_batch>();
  ASSERT_TRUE(batch);
  EXPECT_EQ(bodies(*batch), std::vector<std::string>{"hello"});
  EXPECT_TRUE(next_reply<batch_result>(producer));
}

TEST_F(EmbeddedQueueTest, LongPollIsAnsweredWhenADelayEnds) {
  auto q = spawn_queue(config());
  send(q, {{"delayed", 8s}});
  self->send(q, atom::receive_v, receive_request{10, 20s, 30s});
  sched.run();
  sched.advance_time(7s);
  sched.run();
  EXPECT_FALSE(next_reply<received_batch>());
  sched.advance_time(1s);
  sched.run();
  auto batch = next_reply<received_batch>();
  ASSERT_TRUE(batch);
  EXPECT_EQ(bodies(*batch), std::vector<std::string>{"delayed"});
}

TEST_F(EmbeddedQueueTest, LongPollEndsEmptyAfterItsWait) {
  auto q = spawn_queue(config());
  self->send(q, atom::receive_v, receive_request{10, 20s, 30s});
  sched.run();
  sched.advance_time(19s);
  sched.run();
  EXPECT_FALSE(next_reply<received_batch>());
  sched.advance_time(1s);
  sched.run();
  auto batch = next_reply<received_batch>();
  ASSERT_TRUE(batch);
  EXPECT_TRUE(batch->messages.empty());
}

TEST_F(EmbeddedQueueTest, WaitingReceiversAreServedInArrivalOrder) {
  auto q = spawn_queue(config());
  caf::scoped_actor second{sys, true};
  self->send(q, atom::receive_v, receive_request{1, 20s, 30s});
  second->send(q, atom::receive_v, receive_request{1, 20s, 30s});
  sched.run();
  caf::scoped_actor producer{sys, true};
  producer->send(q, atom::enqueue_v,
                 std::vector<outgoing_message>{{"one", 0s}, {"two", 0s}});
  sched.run();
  auto a = next_reply<received_batch>();
  auto b = next_reply<received_batch>(second);
  ASSERT_TRUE(a);
  ASSERT_TRUE(b);
  EXPECT_EQ(bodies(*a), std::vector<std::string>{"one"});
  EXPECT_EQ(bodies(*b), std::vector<std::string>{"two"});
}

TEST_F(EmbeddedQueueTest, RedrivesToDeadLetterQueueAfterMaxReceiveCount) {
  auto dlq = spawn_queue(config("jobs-dlq"));
  auto qc = config();
  qc.max_receive_count = 2;
  auto q = spawn_queue(qc, dlq);
  send(q, {{"poison", 0s}});
  for (int32_t attempt = 1; attempt <= 2; ++attempt) {
    auto got = receive(q);
    ASSERT_EQ(got.messages.size(), 1u);
    EXPECT_EQ(got.messages[0].receive_count, attempt);
    sched.advance_time(30s);
  }
  EXPECT_TRUE(receive(q).messages.empty());
  auto d = ask<queue_depth>(q, atom::depth_v);
  EXPECT_EQ(d.visible + d.in_flight + d.delayed, 0);
  auto dead = receive(dlq);
  EXPECT_EQ(bodies(dead), std::vector<std::string>{"poison"});
  ASSERT_EQ(dead.messages.size(), 1u);
  auto& attrs = dead.messages[0].attributes;
  EXPECT_EQ(attrs[dead_letter_attribute::source_queue], "jobs");
  EXPECT_EQ(attrs[dead_letter_attribute::receive_count], "2");
  EXPECT_FALSE(attrs[dead_letter_attribute::source_message_id].empty());
  EXPECT_NE(attrs[dead_letter_attribute::reason].find("max_receive_count 2"), std::string::npos)
    << attrs[dead_letter_attribute::reason];
  EXPECT_EQ(stats->count("ghscale_queue_redriven_total", {{"queue", "jobs"}}), 1);
}

TEST_F(EmbeddedQueueTest, MessageStaysWhenTheDeadLetterQueueRefusesIt) {
  queue_actor refusing = sys.spawn(refusing_queue, std::string{"InternalError"});
  auto qc = config();
  qc.max_receive_count = 1;
  auto q = spawn_queue(qc, refusing);
  send(q, {{"poison", 0s}});
  receive(q);
  sched.advance_time(30s);
  EXPECT_TRUE(receive(q).messages.empty()); // handed to the DLQ, which refuses
  auto d = ask<queue_depth>(q, atom::depth_v);
  EXPECT_EQ(d.visible, 1);
  EXPECT_EQ(stats->count("ghscale_queue_redriven_total", {{"queue", "jobs"}}), 0);
}

TEST_F(EmbeddedQueueTest, WithoutDeadLetterQueueMessagesKeepComingBack) {
  auto qc = config();
  qc.max_receive_count = 1;
  auto q = spawn_queue(qc);
  send(q, {{"stubborn", 0s}});
  receive(q);
  sched.advance_time(30s);
  auto again = receive(q);
  ASSERT_EQ(again.messages.size(), 1u);
  EXPECT_EQ(again.messages[0].receive_count, 2);
}

/// Durable queues on a SQLite file in a fresh directory. A "crash" kills the
/// actor (exit_reason::kill: no cleanup, no final writes) and a new actor
/// starts from the same file, as the process would after a restart.
class DurableQueueTest : public EmbeddedQueueTest {
protected:
  DurableQueueTest() {
    auto pattern = (std::filesystem::temp_directory_path() / "durable-queue-XXXXXX").string();
    dir_ = mkdtemp(pattern.data());
    EXPECT_FALSE(dir_.empty());
  }

  ~DurableQueueTest() override {
    stop_all();
    sched.run();
    std::filesystem::remove_all(dir_);
  }

  queue_config durable(std::string name = "jobs") {
    auto qc = config(name);
    qc.storage = dir_ + "/" + name + ".db";
    return qc;
  }

  /// Wall time that follows the virtual clock from a whole Unix second at
  /// the test's start: the store's millisecond times then convert back to
  /// exactly the virtual times they came from, across "restarts".
  clock_bridge bridge() {
    auto virtual_now = sys.clock().now().time_since_epoch();
    return {unix_start + (virtual_now - virtual_start), virtual_now};
  }

  const caf::timespan unix_start = std::chrono::hours{24 * 20779};
  const caf::timespan virtual_start = sys.clock().now().time_since_epoch();

  queue_actor start(const queue_config& qc, queue_actor dlq = {}) {
    auto q = spawn_embedded_queue(sys, qc, std::move(dlq), stats, bridge());
    EXPECT_TRUE(q) << describe(q.error());
    return q ? stop_at_teardown(queue_actor{*q}) : queue_actor{};
  }

  void crash(const queue_actor& q) {
    self->send_exit(q, caf::exit_reason::kill);
    sched.run();
  }

  queue_actor restart(const queue_actor& q, const queue_config& qc,
                      queue_actor dlq = {}) {
    crash(q);
    return start(qc, std::move(dlq));
  }

  batch_result remove(const queue_actor& q, std::vector<std::string> receipts) {
    return ask<batch_result>(q, atom::remove_v, std::move(receipts));
  }

  std::string dir_;
};

TEST_F(DurableQueueTest, AcceptedMessagesSurviveACrash) {
  auto qc = durable();
  auto q = start(qc);
  auto sent_at = sys.clock().now().time_since_epoch();
  send(q, {{"a", 0s}, {"b", 0s}, {"later", 10s}});
  sched.advance_time(3s);
  q = restart(q, qc);
  auto got = receive(q);
  ASSERT_EQ(got.messages.size(), 2u);
  EXPECT_EQ(bodies(got), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(got.messages[0].message_id, "m-1");
  EXPECT_EQ(got.messages[0].receive_count, 1);
  EXPECT_EQ(got.messages[0].sent_at, sent_at);
  sched.advance_time(6s);
  EXPECT_TRUE(receive(q).messages.empty());
  sched.advance_time(1s);
  EXPECT_EQ(bodies(receive(q)), std::vector<std::string>{"later"});
}

TEST_F(DurableQueueTest, InFlightMessagesReturnAfterTheirVisibilityTimeout) {
  auto qc = durable();
  auto q = start(qc);
  send(q, {{"job", 0s}});
  ASSERT_EQ(receive(q, 10, 30s).messages.size(), 1u);
  sched.advance_time(10s);
  q = restart(q, qc);
  auto d = ask<queue_depth>(q, atom::depth_v);
  EXPECT_EQ(d.in_flight, 1);
  EXPECT_EQ(d.visible, 0);
  sched.advance_time(19s);
  EXPECT_TRUE(receive(q).messages.empty());
  sched.advance_time(1s);
  auto again = receive(q);
  ASSERT_EQ(again.messages.size(), 1u);
  EXPECT_EQ(again.messages[0].body, "job");
  EXPECT_EQ(again.messages[0].receive_count, 2);
}

TEST_F(DurableQueueTest, ReceiptsStayValidAcrossARestartAndNeverRepeat) {
  auto qc = durable();
  auto q = start(qc);
  send(q, {{"a", 0s}, {"b", 0s}});
  auto before = receive(q, 1);
  ASSERT_EQ(before.messages.size(), 1u);
  EXPECT_EQ(before.messages[0].receipt, "r-1-1");
  q = restart(q, qc);
  auto after = receive(q, 1);
  ASSERT_EQ(after.messages.size(), 1u);
  EXPECT_EQ(after.messages[0].body, "b");
  EXPECT_EQ(after.messages[0].receipt, "r-2-1");
  auto removed = remove(q, {before.messages[0].receipt, after.messages[0].receipt});
  EXPECT_EQ(removed.succeeded.size(), 2u);
  EXPECT_TRUE(removed.failed.empty());
}

TEST_F(DurableQueueTest, DeletedMessagesStayDeleted) {
  auto qc = durable();
  auto q = start(qc);
  send(q, {{"a", 0s}, {"b", 0s}});
  auto got = receive(q);
  ASSERT_EQ(got.messages.size(), 2u);
  auto removed = remove(q, {got.messages[0].receipt, got.messages[0].receipt});
  EXPECT_EQ(removed.succeeded, std::vector<std::string>{got.messages[0].receipt});
  ASSERT_EQ(removed.failed.size(), 1u); // the same receipt twice deletes once
  q = restart(q, qc);
  sched.advance_time(30s);
  auto again = receive(q);
  EXPECT_EQ(bodies(again), std::vector<std::string>{"b"});
  ASSERT_EQ(again.messages.size(), 1u);
  EXPECT_EQ(again.messages[0].receive_count, 2);
}

TEST_F(DurableQueueTest, VisibilityChangesSurviveACrash) {
  auto qc = durable();
  auto q = start(qc);
  send(q, {{"now", 0s}, {"later", 0s}});
  auto got = receive(q);
  ASSERT_EQ(got.messages.size(), 2u);
  auto changed = ask<batch_result>(
    q, atom::visibility_v,
    std::vector<visibility_change>{{got.messages[0].receipt, 0s},
                                   {got.messages[1].receipt, 100s}});
  EXPECT_EQ(changed.succeeded.size(), 2u);
  q = restart(q, qc);
  auto first = receive(q);
  ASSERT_EQ(bodies(first), std::vector<std::string>{"now"});
  EXPECT_EQ(remove(q, {first.messages[0].receipt}).succeeded.size(), 1u);
  sched.advance_time(99s);
  EXPECT_TRUE(receive(q).messages.empty());
  sched.advance_time(1s);
  EXPECT_EQ(bodies(receive(q)), std::vector<std::string>{"later"});
}

TEST_F(DurableQueueTest, DeadLetteredMessagesSurviveARestart) {
  auto dlq_config = durable("jobs-dlq");
  auto qc = durable();
  qc.max_receive_count = 2;
  auto dlq = start(dlq_config);
  auto q = start(qc, dlq);
  send(q, {{"poison", 0s}});
  for (int32_t attempt = 1; attempt <= 2; ++attempt) {
    ASSERT_EQ(receive(q).messages.size(), 1u);
    sched.advance_time(30s);
  }
  EXPECT_TRUE(receive(q).messages.empty()); // redriven
  crash(q);
  dlq = restart(dlq, dlq_config);
  q = start(qc, dlq);
  sched.advance_time(60s);
  EXPECT_TRUE(receive(q).messages.empty());
  EXPECT_EQ(bodies(receive(dlq)), std::vector<std::string>{"poison"});
}

TEST_F(DurableQueueTest, ACrashDuringRedriveDuplicatesIntoTheDeadLetterQueue) {
  auto dlq_config = durable("jobs-dlq");
  auto qc = durable();
  qc.max_receive_count = 1;
  auto dlq = start(dlq_config);
  auto q = start(qc, dlq);
  send(q, {{"poison", 0s}});
  ASSERT_EQ(receive(q).messages.size(), 1u);
  sched.advance_time(30s);
  // The queue hands the message to the dead-letter queue, which commits it;
  // the queue dies before it hears back, so its own copy is never deleted.
  self->send(q, atom::receive_v, receive_request{10, 0s, 30s});
  sched.run_once();
  auto handed_over = next_reply<received_batch>();
  ASSERT_TRUE(handed_over);
  EXPECT_TRUE(handed_over->messages.empty());
  self->send_exit(q, caf::exit_reason::kill);
  sched.run();
  q = start(qc, dlq);
  EXPECT_TRUE(receive(q).messages.empty()); // redriven again
  EXPECT_TRUE(receive(q).messages.empty());
  auto d = ask<queue_depth>(q, atom::depth_v);
  EXPECT_EQ(d.visible + d.in_flight + d.delayed, 0);
  EXPECT_EQ(bodies(receive(dlq)), (std::vector<std::string>{"poison", "poison"}));
}

TEST_F(DurableQueueTest, WithoutStorageTheFactorySpawnsAQueueInMemory) {
  auto q = start(config());
  send(q, {{"a", 0s}});
  auto got = receive(q);
  ASSERT_EQ(got.messages.size(), 1u);
  EXPECT_EQ(got.messages[0].receipt, "r-1");
  EXPECT_TRUE(std::filesystem::is_empty(dir_));
}

TEST_F(DurableQueueTest, AStoreThatCannotBeOpenedFailsTheSpawn) {
  auto qc = config();
  qc.storage = dir_ + "/missing-directory/jobs.db";
  auto q = spawn_embedded_queue(sys, qc, {}, stats, bridge());
  ASSERT_FALSE(q);
  EXPECT_EQ(q.error(), errc::backend_failure);
  EXPECT_NE(describe(q.error()).find("queue store '" + qc.storage
                                     + "', queue 'jobs': open: cannot create lock file"),
            std::string::npos)
    << describe(q.error());
}

TEST_F(DurableQueueTest, AFailedWriteIsAnErrorAndChangesNothing) {
  auto qc = durable();
  auto q = start(qc);
  send(q, {{"kept", 0s}});
  // Another program breaks the file under the running queue.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(qc.storage.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "ALTER TABLE messages RENAME TO gone", nullptr, nullptr,
                         nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  auto sent = try_ask<batch_result>(q, atom::enqueue_v,
                                    std::vector<outgoing_message>{{"lost", 0s}});
  ASSERT_FALSE(sent);
  EXPECT_EQ(sent.error(), errc::backend_failure);
  EXPECT_NE(describe(sent.error()).find(qc.storage), std::string::npos);
  auto got = try_ask<received_batch>(q, atom::receive_v, receive_request{10, 0s, 30s});
  ASSERT_FALSE(got);
  auto d = ask<queue_depth>(q, atom::depth_v);
  EXPECT_EQ(d.visible, 1); // "kept" was not handed out, "lost" not taken
  EXPECT_EQ(d.in_flight + d.delayed, 0);
  EXPECT_EQ(stats->count("ghscale_queue_store_errors_total", {{"queue", "jobs"}}), 2);
}

} // namespace
