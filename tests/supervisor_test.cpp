#include "actors/supervisor.hpp"
#include "tests/actor_test.hpp"

#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

using namespace ghscale;
using namespace std::chrono_literals;

namespace {

// -- a small child to supervise ----------------------------------------------------

using which_atom = caf::atom_constant<caf::atom("which")>; // -> incarnation
using boom_atom = caf::atom_constant<caf::atom("boom")>;   // throws (a bug)
using leave_atom = caf::atom_constant<caf::atom("leave")>; // quits normally

/// Shared between a test and its children: who stopped, in which order.
using stop_record = std::shared_ptr<std::vector<std::string>>;

/// Answers which incarnation it is; `stubborn` ones ignore exit requests.
caf::behavior test_child(caf::event_based_actor* self, int32_t incarnation,
                         std::string name, stop_record stops, bool stubborn) {
  self->attach_functor([=] { stops->push_back(name); });
  if (stubborn)
    self->set_exit_handler([](caf::exit_msg&) {});
  return {
    [=](which_atom) { return incarnation; },
    [](boom_atom) { throw std::runtime_error("boom"); },
    [=](leave_atom) { self->quit(); },
  };
}

class SupervisorTest : public test::actor_test {
protected:
  SupervisorTest() {
    policy.max_restarts = 10;
    policy.within = 60s;
    policy.initial_backoff = 100ms;
    policy.max_backoff = 10s;
    policy.jitter = 0.2;
    policy.seed = 7;
  }

  /// A child spec for a test child with its own relay and start counter.
  child_spec child(const std::string& name,
                   restart_type type = restart_type::permanent,
                   bool stubborn = false) {
    auto starts = starts_of[name] = std::make_shared<int32_t>(0);
    auto relay = relays[name] = spawn_relay(sys, name);
    auto stops = stopped;
    return child_spec{name, type,
                      [=](caf::local_actor* parent) {
                        return parent->spawn(test_child, ++*starts, name, stops,
                                             stubborn);
                      },
                      relay};
  }

  int32_t starts(const std::string& name) { return *starts_of.at(name); }

  /// Requests `xs` from `dest` as a real caller does (during a backoff a
  /// relay drops plain messages but fails requests) and runs everything that
  /// follows; `sec::bad_function_call` means "no answer".
  template <class T, class... Ts>
  caf::expected<T> request(const caf::actor& dest, Ts... xs) {
    auto reply = spawn_requester<T>(dest, 1s, xs...);
    sched.run();
    return reply->value_or(caf::expected<T>{caf::sec::bad_function_call});
  }

  caf::expected<int32_t> which(const std::string& name) {
    return request<int32_t>(relays.at(name), which_atom::value);
  }

  /// Sends a message to a child through its relay and lets it take effect.
  template <class Atom>
  void tell(const std::string& name, Atom x) {
    self->send(relays.at(name), x);
    sched.run();
  }

  void shut_down(const caf::actor& sup) {
    self->send_exit(sup, caf::exit_reason::user_shutdown);
    sched.run();
  }

  test::log_capture captured; // what the supervisor decided
  supervisor_policy policy;
  stop_record stopped = std::make_shared<std::vector<std::string>>();
  std::map<std::string, caf::actor> relays;
  std::map<std::string, std::shared_ptr<int32_t>> starts_of;
};

bool is_unavailable(const caf::expected<int32_t>& x) {
  return !x && x.error() == errc::unavailable;
}

} // namespace

TEST(SupervisorPolicy, FromConfig) {
  supervision_config cfg;
  cfg.max_restarts = 3;
  cfg.within = 10s;
  cfg.initial_backoff = 1s;
  cfg.max_backoff = 30s;
  cfg.jitter = 0.5;
  auto p = supervisor_policy::from(cfg, 99);
  EXPECT_EQ(p.max_restarts, 3);
  EXPECT_EQ(p.within, caf::timespan{10s});
  EXPECT_EQ(p.initial_backoff, caf::timespan{1s});
  EXPECT_EQ(p.max_backoff, caf::timespan{30s});
  EXPECT_EQ(p.jitter, 0.5);
  EXPECT_EQ(p.seed, 99u);
}

TEST_F(SupervisorTest, CrashedChildRestartsAfterBackoffBehindTheSameRelay) {
  auto sup = spawn_supervisor(sys, "root", {child("a")}, policy);
  sched.run();
  EXPECT_EQ(which("a"), 1);
  tell("a", boom_atom::value);
  // In backoff (100 ms +- 20 %): requests fail fast, async messages drop.
  EXPECT_TRUE(is_unavailable(which("a")));
  tell("a", leave_atom::value);
  EXPECT_EQ(captured.lines_containing("msg=\"dropped\""), 1u);
  EXPECT_TRUE(self->mailbox().empty()); // no error goes back to the sender
  advance(79ms);
  EXPECT_TRUE(is_unavailable(which("a")));
  advance(41ms);
  EXPECT_EQ(which("a"), 2);
  EXPECT_EQ(captured.lines_containing(
              "msg=\"restart\" supervisor=root child=a restarts=1"),
            1u);
  shut_down(sup);
}

TEST_F(SupervisorTest, UnavailableErrorNamesTheChild) {
  auto sup = spawn_supervisor(sys, "root", {child("ledger")}, policy);
  sched.run();
  tell("ledger", boom_atom::value);
  auto answer = which("ledger");
  ASSERT_FALSE(answer);
  EXPECT_EQ(sys.render(answer.error()),
            "ghscale: unavailable: ledger is restarting");
  shut_down(sup);
}

TEST_F(SupervisorTest, NormalExitRestartsOnlyPermanentChildren) {
  auto sup = spawn_supervisor(
    sys, "root",
    {child("perm"), child("trans", restart_type::transient),
     child("temp", restart_type::temporary)},
    policy);
  sched.run();
  for (auto name : {"perm", "trans", "temp"})
    tell(name, leave_atom::value);
  advance(1s);
  EXPECT_EQ(which("perm"), 2);
  EXPECT_TRUE(is_unavailable(which("trans")));
  EXPECT_TRUE(is_unavailable(which("temp")));
  EXPECT_EQ(starts("trans"), 1);
  EXPECT_EQ(starts("temp"), 1);
  shut_down(sup);
}

TEST_F(SupervisorTest, CrashRestartsTransientButNotTemporaryChildren) {
  auto sup = spawn_supervisor(
    sys, "root",
    {child("trans", restart_type::transient),
     child("temp", restart_type::temporary)},
    policy);
  sched.run();
  tell("trans", boom_atom::value);
  tell("temp", boom_atom::value);
  advance(1s);
  EXPECT_EQ(which("trans"), 2);
  EXPECT_TRUE(is_unavailable(which("temp")));
  EXPECT_EQ(starts("temp"), 1);
  shut_down(sup);
}

TEST_F(SupervisorTest, BackoffGrowsExponentiallyWithinJitterBounds) {
  auto sup = spawn_supervisor(sys, "root", {child("a")}, policy);
  sched.run();
  // Attempt n waits 100 ms * 2^(n-1), scaled by a factor in [0.8, 1.2].
  for (int32_t attempt = 1; attempt <= 4; ++attempt) {
    auto nominal = caf::timespan{100ms} * (1 << (attempt - 1));
    auto lower = nominal * 8 / 10;
    auto upper = nominal * 12 / 10;
    tell("a", boom_atom::value);
    advance(lower - 1ms);
    EXPECT_EQ(starts("a"), attempt) << "attempt " << attempt;
    advance(upper - lower + 1ms);
    EXPECT_EQ(starts("a"), attempt + 1) << "attempt " << attempt;
  }
  shut_down(sup);
}

TEST_F(SupervisorTest, BackoffStartsAfreshAfterAStableRun) {
  policy.within = 10s;
  auto sup = spawn_supervisor(sys, "root", {child("a")}, policy);
  sched.run();
  tell("a", boom_atom::value);
  advance(120ms);
  tell("a", boom_atom::value);
  advance(240ms);
  ASSERT_EQ(starts("a"), 3);
  advance(11s); // ran longer than `within`: next wait is the first again
  tell("a", boom_atom::value);
  advance(120ms);
  EXPECT_EQ(starts("a"), 4);
  shut_down(sup);
}

TEST_F(SupervisorTest, TooManyRestartsEscalate) {
  policy.max_restarts = 2;
  policy.within = 10s;
  auto sup = spawn_supervisor(sys, "root", {child("a"), child("b")}, policy);
  self->monitor(sup);
  sched.run();
  for (int i = 0; i < 2; ++i) {
    tell("a", boom_atom::value);
    advance(1s);
  }
  ASSERT_EQ(starts("a"), 3);
  EXPECT_FALSE(down_reason());
  tell("a", boom_atom::value); // the third restart within 10 s
  auto reason = down_reason();
  ASSERT_TRUE(reason);
  EXPECT_EQ(*reason, caf::sec::runtime_error); // the child's own reason
  EXPECT_EQ(*stopped, (std::vector<std::string>{"a", "a", "a", "b"}));
  EXPECT_TRUE(is_unavailable(which("b")));
  EXPECT_EQ(captured.lines_containing("msg=\"escalate\""), 1u);
  EXPECT_EQ(starts("a"), 3);
}

TEST_F(SupervisorTest, NormalExitsPastTheIntensityEscalateAsACrash) {
  policy.max_restarts = 0;
  auto sup = spawn_supervisor(sys, "root", {child("a")}, policy);
  self->monitor(sup);
  sched.run();
  tell("a", leave_atom::value);
  auto reason = down_reason();
  ASSERT_TRUE(reason);
  EXPECT_EQ(*reason, errc::unavailable);
}

TEST_F(SupervisorTest, CrashesSpreadOverTimeDoNotEscalate) {
  policy.max_restarts = 2;
  policy.within = 1s;
  auto sup = spawn_supervisor(sys, "root", {child("a")}, policy);
  self->monitor(sup);
  sched.run();
  for (int i = 0; i < 6; ++i) {
    tell("a", boom_atom::value);
    advance(200ms); // restarted (first backoff: each run was a stable one)
    advance(2s);
  }
  EXPECT_FALSE(down_reason());
  EXPECT_EQ(which("a"), 7);
  shut_down(sup);
  EXPECT_EQ(down_reason(), caf::error{caf::exit_reason::user_shutdown});
}

TEST_F(SupervisorTest, NestedEscalationRestartsTheSubtree) {
  auto inner_policy = policy;
  inner_policy.max_restarts = 0;
  auto worker = child("worker");
  auto sup = spawn_supervisor(
    sys, "root",
    {child_spec{"inner", restart_type::permanent,
                [=](caf::local_actor* parent) {
                  return spawn_supervisor(parent, "inner", {worker},
                                          inner_policy);
                },
                {}}},
    policy);
  self->monitor(sup);
  sched.run();
  EXPECT_EQ(which("worker"), 1);
  tell("worker", boom_atom::value); // the inner supervisor gives up at once
  EXPECT_TRUE(is_unavailable(which("worker")));
  advance(120ms); // the root's backoff for "inner"
  EXPECT_EQ(which("worker"), 2);
  EXPECT_FALSE(down_reason());
  auto status = request<node_status>(sup, atom::status_v);
  ASSERT_TRUE(status);
  ASSERT_EQ(status->children.size(), 1u);
  EXPECT_EQ(status->children[0].name, "inner");
  EXPECT_TRUE(status->children[0].running);
  EXPECT_EQ(status->children[0].restarts, 1);
  // Shutting the root down stops the subtree, innermost child first.
  stopped->clear();
  shut_down(sup);
  EXPECT_EQ(*stopped, std::vector<std::string>{"worker"});
  EXPECT_EQ(down_reason(), caf::error{caf::exit_reason::user_shutdown});
}

TEST_F(SupervisorTest, ShutdownStopsChildrenInReverseStartOrder) {
  auto sup = spawn_supervisor(sys, "root",
                              {child("a"), child("b"), child("c")}, policy);
  self->monitor(sup);
  sched.run();
  shut_down(sup);
  EXPECT_EQ(*stopped, (std::vector<std::string>{"c", "b", "a"}));
  EXPECT_EQ(down_reason(), caf::error{caf::exit_reason::user_shutdown});
  EXPECT_EQ(captured.lines_containing("msg=\"restart\""), 0u);
  EXPECT_TRUE(is_unavailable(which("a")));
}

TEST_F(SupervisorTest, ShutdownKillsAChildThatIgnoresIt) {
  auto sup = spawn_supervisor(
    sys, "root",
    {child("a"), child("stubborn", restart_type::permanent, true), child("c")},
    policy);
  self->monitor(sup);
  sched.run();
  shut_down(sup);
  // "a" waits until "stubborn" is gone.
  EXPECT_EQ(*stopped, std::vector<std::string>{"c"});
  advance(4900ms);
  EXPECT_EQ(*stopped, std::vector<std::string>{"c"});
  EXPECT_FALSE(down_reason());
  advance(100ms);
  EXPECT_EQ(*stopped, (std::vector<std::string>{"c", "stubborn", "a"}));
  EXPECT_EQ(down_reason(), caf::error{caf::exit_reason::user_shutdown});
}

TEST_F(SupervisorTest, AbnormalOutsideExitIsKept) {
  auto sup = spawn_supervisor(sys, "root", {child("a")}, policy);
  self->monitor(sup);
  sched.run();
  self->send_exit(sup, caf::make_error(errc::backend_failure, "test"));
  sched.run();
  EXPECT_EQ(*stopped, std::vector<std::string>{"a"});
  auto reason = down_reason();
  ASSERT_TRUE(reason);
  EXPECT_EQ(*reason, errc::backend_failure);
}

TEST_F(SupervisorTest, StatusReportsRestartsPerChild) {
  auto sup = spawn_supervisor(sys, "root", {child("a"), child("b")}, policy);
  sched.run();
  tell("a", boom_atom::value);
  advance(1s);
  tell("a", boom_atom::value);
  auto status = request<node_status>(sup, atom::status_v);
  ASSERT_TRUE(status);
  ASSERT_EQ(status->children.size(), 2u);
  EXPECT_EQ(status->children[0].name, "a");
  EXPECT_FALSE(status->children[0].running); // in backoff
  EXPECT_EQ(status->children[0].restarts, 2);
  EXPECT_EQ(status->children[1].name, "b");
  EXPECT_TRUE(status->children[1].running);
  EXPECT_EQ(status->children[1].restarts, 0);
  EXPECT_FALSE(status->draining);
  shut_down(sup);
}

TEST_F(SupervisorTest, InjectedCrashRestartsTheNamedChild) {
  auto sup = spawn_supervisor(sys, "root", {child("a"), child("b")}, policy);
  sched.run();
  self->send(sup, atom::inject_v, std::string{"b"});
  sched.run();
  EXPECT_TRUE(is_unavailable(which("b")));
  EXPECT_EQ(which("a"), 1);
  advance(1s);
  EXPECT_EQ(which("b"), 2);
  shut_down(sup);
}

TEST_F(SupervisorTest, ChildThatFailsToStartIsRetried) {
  auto attempts = std::make_shared<int32_t>(0);
  auto real = child("a");
  auto flaky = real;
  flaky.start = [=](caf::local_actor* parent) {
    return ++*attempts == 1 ? caf::actor{} : real.start(parent);
  };
  auto sup = spawn_supervisor(sys, "root", {flaky}, policy);
  sched.run();
  EXPECT_TRUE(is_unavailable(which("a")));
  advance(1s);
  EXPECT_EQ(which("a"), 1);
  EXPECT_EQ(*attempts, 2);
  shut_down(sup);
}
