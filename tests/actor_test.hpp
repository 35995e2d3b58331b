#pragma once
// The GoogleTest fixture every actor test derives from, on CAF's test
// coordinator: with the testing scheduler nothing runs until `sched.run()`, and timers
// fire only when a test moves the virtual clock, so tests are deterministic.
#include "actors/ops/log.hpp"
#include "actors/embedded/virtual_time.hpp"
#include "messages/actors.hpp"

#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ghscale::test {

/// What a spawned requester got back so far: nothing yet, a value or an error.
template <class T>
using reply_slot = std::shared_ptr<std::optional<caf::expected<T>>>;

class actor_test : public ::testing::Test {
protected:
  static caf::actor_system_config& prepare(caf::actor_system_config& cfg) {
    register_types(cfg);
    cfg.set("scheduler.policy", caf::atom("testing"));
    cfg.set("logger.inline-output", true);
    return cfg;
  }

  /// Pending timers keep actors alive: stop them so the system can shut down.
  ~actor_test() override {
    stop_all();
    sched.run();
  }

  /// Registers `x` to be stopped by `stop_all()` (and at teardown).
  template <class Handle>
  Handle stop_at_teardown(Handle x) {
    to_stop_.push_back(caf::actor_cast<caf::actor>(x));
    return x;
  }

  /// Sends an exit to every registered actor; run the scheduler afterwards.
  void stop_all() {
    for (auto& x : to_stop_)
      self->send_exit(x, caf::exit_reason::user_shutdown);
    to_stop_.clear();
  }

  /// Non-blocking pop of the next reply of type T from `who`'s mailbox;
  /// `sec::bad_function_call` means "nothing there".
  template <class T>
  caf::expected<T> next_reply(caf::scoped_actor& who) {
    return scenario::receive_now<T>(who);
  }

  template <class T>
  caf::expected<T> next_reply() {
    return next_reply<T>(self);
  }

  /// The next reply, which must be a T (the test fails otherwise).
  template <class T>
  T expect_reply() {
    auto reply = next_reply<T>();
    EXPECT_TRUE(reply) << sys.render(reply.error());
    return reply ? std::move(*reply) : T{};
  }

  /// Sends `xs` to `dest`, runs everything that follows and returns the reply.
  template <class T, class Handle, class... Ts>
  caf::expected<T> try_ask(const Handle& dest, Ts&&... xs) {
    return scenario::ask_now<T>(sched, self, dest, std::forward<Ts>(xs)...);
  }

  /// As try_ask, for a reply that must be a T (the test fails otherwise).
  template <class T, class Handle, class... Ts>
  T ask(const Handle& dest, Ts&&... xs) {
    auto reply = try_ask<T>(dest, std::forward<Ts>(xs)...);
    EXPECT_TRUE(reply) << sys.render(reply.error());
    return reply ? std::move(*reply) : T{};
  }

  /// Spawns a client that requests `xs` from `dest` as a real caller does (a
  /// request with a timeout); the slot shows whether the answer has arrived.
  template <class T, class Handle, class... Ts>
  reply_slot<T> spawn_requester(const Handle& dest, caf::timespan timeout,
                                Ts... xs) {
    auto slot = std::make_shared<std::optional<caf::expected<T>>>();
    // The slot is a spawn argument: CAF 0.17.6 dereferences a null argument
    // tuple for functions spawned without arguments (UBSan reports it).
    auto requester = [=](caf::event_based_actor* client, reply_slot<T> out) {
      client->request(dest, timeout, xs...)
        .then([out](T& x) { out->emplace(std::move(x)); },
              [out](caf::error& err) { out->emplace(std::move(err)); });
    };
    sys.spawn(requester, slot);
    return slot;
  }

  /// Runs every message and timer due within `d` of virtual time.
  void advance(caf::timespan d) {
    scenario::advance(sched, d);
  }

  /// The exit reason of an actor `self` monitors, if it has gone down.
  std::optional<caf::error> down_reason() {
    std::optional<caf::error> out;
    self->receive([&](caf::down_msg& msg) { out = std::move(msg.reason); },
                  caf::after(std::chrono::seconds(0)) >> [] {});
    return out;
  }

  caf::actor_system_config cfg;
  caf::actor_system sys{prepare(cfg)};
  caf::scheduler::test_coordinator& sched
    = dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler());
  caf::scoped_actor self{sys, true};

private:
  std::vector<caf::actor> to_stop_;
};

/// Routes the service's log lines into `lines()` while it lives, so tests can
/// check what actors decided. One at a time: the log has a single sink.
class log_capture {
public:
  log_capture() {
    lines().clear();
    log::capture(&append);
  }

  ~log_capture() { log::capture(nullptr); }

  log_capture(const log_capture&) = delete;
  log_capture& operator=(const log_capture&) = delete;

  static std::vector<std::string>& lines() {
    static std::vector<std::string> captured;
    return captured;
  }

  static size_t lines_containing(const std::string& what) {
    size_t n = 0;
    for (auto& line : lines())
      n += line.find(what) != std::string::npos ? 1 : 0;
    return n;
  }

private:
  static void append(const std::string& line) { lines().push_back(line); }
};

} // namespace ghscale::test
