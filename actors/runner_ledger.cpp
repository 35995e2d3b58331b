#include "actors/runner_ledger.hpp"

#include "actors/backoff.hpp"
#include "actors/log.hpp"

#include <algorithm>
#include <chrono>
#include <functional>
#include <iterator>
#include <optional>

namespace ghscale {

namespace {

using ledger_pointer = runner_ledger_actor::stateful_pointer<runner_ledger_state>;
using time_point = caf::actor_clock::time_point;

/// How long a served job key is remembered: far longer than any redelivery.
constexpr auto dedupe_memory = std::chrono::hours(24);
/// Grace on top of the launch timeout before a requested slot whose report
/// never came (the launcher crashed) is released.
constexpr auto report_grace = std::chrono::seconds(30);
/// How often the dedupe memory is swept of entries older than a day.
constexpr auto memory_sweep_interval = std::chrono::minutes(1);
/// Periodic reconciliation: instances that died on their own (an ephemeral
/// runner's instance shuts down after its job) leave the ledger this way.
constexpr auto reconcile_interval = std::chrono::minutes(5);
/// Backoff of failed reconciliations.
constexpr auto reconcile_retry_base = std::chrono::seconds(1);
constexpr auto reconcile_retry_max = std::chrono::seconds(60);
constexpr double reconcile_retry_jitter = 0.2;

constexpr runner_state all_states[] = {
  runner_state::requested, runner_state::pending,  runner_state::ready,
  runner_state::running,   runner_state::completed, runner_state::failed,
  runner_state::orphaned,  runner_state::terminated};

double seconds(caf::timespan d) {
  return std::chrono::duration<double>(d).count();
}

ledger_counts count_runners(const runner_ledger_state& st) {
  ledger_counts out;
  for (auto& [id, r] : st.runners) {
    switch (r.state) {
      case runner_state::requested: ++out.requested; break;
      case runner_state::pending: ++out.pending; break;
      case runner_state::ready: ++out.ready; break;
      case runner_state::running: ++out.running; break;
      case runner_state::completed: ++out.completed; break;
      case runner_state::failed: ++out.failed; break;
      case runner_state::orphaned: ++out.orphaned; break;
      case runner_state::terminated: ++out.terminated; break;
    }
  }
  return out;
}

void publish_gauges(const runner_ledger_state& st, const pool_config& pool,
                    metrics& stats) {
  std::map<runner_state, int32_t> by_state;
  for (auto& [id, r] : st.runners)
    ++by_state[r.state];
  for (auto s : all_states)
    stats.set("ghscale_runners", {{"pool", pool.name}, {"state", to_string(s)}},
              by_state[s]);
}

/// Idle runners: ready ones, plus top-up runners on their way (requested or
/// pending), which will be idle when they come online. A pending runner
/// launched for a job is not idle: that job takes it.
int32_t idle_runners(const runner_ledger_state& st) {
  return static_cast<int32_t>(
    std::count_if(st.runners.begin(), st.runners.end(), [](auto& kv) {
      auto& r = kv.second;
      return r.state == runner_state::ready
             || (r.is_topup()
                 && (r.state == runner_state::requested
                     || r.state == runner_state::pending));
    }));
}

int32_t active_runners(const runner_ledger_state& st) {
  return static_cast<int32_t>(
    std::count_if(st.runners.begin(), st.runners.end(),
                  [](auto& kv) { return counts_against_cap(kv.second.state); }));
}

void remember_served(runner_ledger_state& st, const job_key& job,
                     served_by source, time_point now) {
  auto [i, added] = st.served.emplace(job, served_job{source, now});
  // An observation is stronger than a reservation: never downgrade it.
  if (!added && i->second.source == served_by::reservation)
    i->second = served_job{source, now};
}

/// Forgets a job whose reserved slot went unfilled, so a retry may launch
/// for it; jobs seen running on a runner stay remembered.
void forget_reserved(runner_ledger_state& st, const job_key& job) {
  if (job.job_id == 0)
    return;
  auto i = st.served.find(job);
  if (i != st.served.end() && i->second.source == served_by::reservation)
    st.served.erase(i);
}

/// Releases requested slots whose report is overdue (the launcher crashed
/// or the report was lost), so they stop holding capacity.
void release_overdue_slots(ledger_pointer self, const pool_config& pool,
                           const timeouts_config& timeouts) {
  auto& st = self->state;
  auto now = self->clock().now();
  auto deadline = timeouts.launch + report_grace;
  for (auto i = st.runners.begin(); i != st.runners.end();) {
    auto& r = i->second;
    if (r.state == runner_state::requested && now - r.requested_at >= deadline) {
      log::warn("ledger released a slot whose launch was never reported",
                {{"pool", pool.name},
                 {"reservation", r.reservation},
                 {"job", to_string(r.job)}});
      st.expired_reservations.emplace(r.reservation, now);
      forget_reserved(st, r.job);
      i = st.runners.erase(i);
    } else {
      ++i;
    }
  }
}

/// Forgets what the ledger only needs to remember for a day.
void sweep_memory(runner_ledger_state& st, time_point now) {
  if (now - st.memory_swept_at < memory_sweep_interval)
    return;
  st.memory_swept_at = now;
  for (auto i = st.served.begin(); i != st.served.end();)
    i = now - i->second.since >= dedupe_memory ? st.served.erase(i)
                                               : std::next(i);
  for (auto i = st.expired_reservations.begin();
       i != st.expired_reservations.end();)
    i = now - i->second >= dedupe_memory ? st.expired_reservations.erase(i)
                                         : std::next(i);
}

/// Runs whenever the ledger is asked for capacity or counts, so stale
/// entries never matter when they would.
void expire_stale(ledger_pointer self, const pool_config& pool,
                  const timeouts_config& timeouts) {
  release_overdue_slots(self, pool, timeouts);
  sweep_memory(self->state, self->clock().now());
}

void add_requested_slot(runner_ledger_state& st, uint64_t reservation,
                        int32_t index, const runner_spec& spec, time_point now) {
  runner_record r;
  r.id = "slot-" + std::to_string(reservation) + "-" + std::to_string(index);
  r.state = runner_state::requested;
  r.job = spec.job;
  r.target = spec.target;
  r.installation_id = spec.installation_id;
  r.reservation = reservation;
  r.requested_at = now;
  st.runners.emplace(r.id, std::move(r));
}

reservation reserve(ledger_pointer self, const pool_config& pool,
                    const reservation_request& req) {
  auto& st = self->state;
  auto now = self->clock().now();
  reservation out;
  out.id = st.next_reservation++;
  out.cap = pool.max_runners;
  out.active = active_runners(st);
  auto free_slots = [&] {
    return std::max(0, pool.max_runners - out.active
                         - static_cast<int32_t>(out.granted.size())
                         - static_cast<int32_t>(out.replacements.size())
                         - out.idle_topup);
  };
  int32_t index = 0;
  // Jobs that lost their runner to another job waited longest: first.
  for (auto i = st.needs_runner.begin();
       i != st.needs_runner.end() && free_slots() > 0;) {
    out.replacements.push_back(i->second);
    add_requested_slot(st, out.id, index++, i->second, now);
    st.replacing.insert(*i);
    i = st.needs_runner.erase(i);
  }
  for (auto& spec : req.jobs) {
    if (st.served.count(spec.job) > 0) {
      out.already_served.push_back(spec.job);
    } else if (free_slots() > 0) {
      out.granted.push_back(spec.job);
      remember_served(st, spec.job, served_by::reservation, now);
      add_requested_slot(st, out.id, index++, spec, now);
    }
  }
  if (req.idle_topup) {
    auto missing = std::max(0, pool.min_idle - idle_runners(st));
    out.idle_topup = std::min(missing, free_slots());
    for (int32_t n = 0; n < out.idle_topup; ++n)
      add_requested_slot(st, out.id, index++, runner_spec{}, now);
  }
  // Replacements the cap holds back must not vanish with the last message
  // that could trigger them: keep that many served messages on the queue.
  for (auto unmet = st.needs_runner.size();
       unmet > 0 && !out.already_served.empty(); --unmet) {
    out.held.push_back(out.already_served.back());
    out.already_served.pop_back();
  }
  return out;
}

/// Turns a requested slot (or nothing, for a report that outlived its
/// slots) into a pending runner for the instance that came up.
void record_launch(runner_ledger_state& st, const pool_config& pool,
                   metrics& stats, const launched_runner& up,
                   std::optional<runner_record> slot, time_point now) {
  runner_record r = slot ? std::move(*slot) : runner_record{};
  if (slot)
    stats.observe("ghscale_launch_seconds", {{"pool", pool.name}},
                  seconds(now - r.requested_at));
  else
    r.requested_at = now;
  r.id = up.instance_id;
  r.state = runner_state::pending;
  r.job = up.job;
  r.runner_name = up.runner_name;
  r.reservation = 0;
  r.launched_at = now;
  st.runners[r.id] = std::move(r);
}

/// Takes the requested slot of `reservation` meant for `job` (any top-up
/// slot for a top-up runner) out of the ledger.
std::optional<runner_record> take_slot(runner_ledger_state& st,
                                       uint64_t reservation,
                                       const job_key& job) {
  auto i = std::find_if(st.runners.begin(), st.runners.end(), [&](auto& kv) {
    auto& r = kv.second;
    return r.state == runner_state::requested && r.reservation == reservation
           && (job.job_id == 0 ? r.is_topup() : r.job == job);
  });
  if (i == st.runners.end())
    return std::nullopt;
  auto slot = std::move(i->second);
  st.runners.erase(i);
  return slot;
}

/// A runner that came up for a job another runner already took serves a
/// job that lost its runner instead, if one waits.
void adopt_waiting_job(runner_ledger_state& st, runner_record& r) {
  if (r.is_topup() || st.needs_runner.empty())
    return;
  auto served = st.served.find(r.job);
  if (served == st.served.end() || served->second.source != served_by::observed)
    return;
  auto waiting = st.needs_runner.begin();
  r.job = waiting->first;
  r.target = waiting->second.target;
  r.installation_id = waiting->second.installation_id;
  st.needs_runner.erase(waiting);
}

/// Runner `r`, launched for job `r.job`, was taken by job `taker`. The job
/// it was launched for keeps a runner if the taker had an unstarted one of
/// its own; otherwise it needs a replacement.
void runner_taken(runner_ledger_state& st, const pool_config& pool,
                  metrics& stats, runner_record& r, const job_key& taker) {
  if (r.is_topup() || r.job == taker)
    return;
  auto unstarted = [](runner_state s) {
    return s == runner_state::pending || s == runner_state::ready;
  };
  auto own = std::find_if(st.runners.begin(), st.runners.end(), [&](auto& kv) {
    return &kv.second != &r && kv.second.job == taker && unstarted(kv.second.state);
  });
  if (own != st.runners.end()) {
    own->second.job = r.job;
    own->second.target = r.target;
    own->second.installation_id = r.installation_id;
  } else {
    st.needs_runner.emplace(r.job,
                            runner_spec{r.job, r.target, r.installation_id});
    stats.add("ghscale_runner_taken_total", {{"pool", pool.name}});
    log::info("runner taken by another job",
              {{"pool", pool.name},
               {"runner", r.runner_name},
               {"launched_for", to_string(r.job)},
               {"taken_by", to_string(taker)}});
  }
  r.job = taker;
}

caf::result<ledger_counts> apply_report(ledger_pointer self,
                                        const pool_config& pool,
                                        metrics& stats,
                                        const launch_report& rep) {
  auto& st = self->state;
  auto now = self->clock().now();
  auto is_slot_of_report = [&](auto& kv) {
    return kv.second.state == runner_state::requested
           && kv.second.reservation == rep.reservation_id;
  };
  bool known = std::any_of(st.runners.begin(), st.runners.end(),
                           is_slot_of_report)
               || st.expired_reservations.count(rep.reservation_id) > 0;
  if (!known)
    return caf::make_error(errc::rejected,
                           "runner_ledger " + pool.name
                             + ": report for unknown reservation "
                             + std::to_string(rep.reservation_id));
  for (auto& up : rep.launched) {
    auto slot = take_slot(st, rep.reservation_id, up.job);
    st.replacing.erase(up.job);
    if (up.job.job_id != 0)
      remember_served(st, up.job, served_by::reservation, now);
    record_launch(st, pool, stats, up, std::move(slot), now);
    adopt_waiting_job(st, st.runners[up.instance_id]);
  }
  int32_t released = 0;
  for (auto i = st.runners.begin(); i != st.runners.end();) {
    if (is_slot_of_report(*i)) {
      auto& job = i->second.job;
      auto replacing = st.replacing.find(job);
      if (replacing != st.replacing.end()) {
        // Its replacement did not come up: it still needs one.
        st.needs_runner.insert(*replacing);
        st.replacing.erase(replacing);
      } else {
        forget_reserved(st, job);
      }
      i = st.runners.erase(i);
      ++released;
    } else {
      ++i;
    }
  }
  log::info("ledger recorded launch",
            {{"pool", pool.name},
             {"reservation", rep.reservation_id},
             {"launched", static_cast<int64_t>(rep.launched.size())},
             {"failed", rep.failed},
             {"released", released}});
  publish_gauges(st, pool, stats);
  return count_runners(st);
}

runner_record* find_by_name(runner_ledger_state& st, const std::string& name) {
  if (name.empty())
    return nullptr;
  for (auto& [id, r] : st.runners)
    if (r.runner_name == name)
      return &r;
  return nullptr;
}

void observe(ledger_pointer self, const pool_config& pool, metrics& stats,
             const job_event& ev) {
  if (ev.action != job_action::in_progress
      && ev.action != job_action::completed)
    return;
  auto& st = self->state;
  auto now = self->clock().now();
  // Whoever runs it, a job seen in progress or completed needs no runner.
  remember_served(st, ev.key, served_by::observed, now);
  if (ev.action == job_action::in_progress) {
    st.needs_runner.erase(ev.key); // it got one after all
    st.replacing.erase(ev.key);
  }
  auto* runner = find_by_name(st, ev.runner_name);
  if (runner == nullptr) {
    stats.add("ghscale_ledger_unknown_runner_total", {{"pool", pool.name}});
    log::debug("ledger ignored event of unknown runner",
               {{"pool", pool.name},
                {"runner", ev.runner_name},
                {"action", to_string(ev.action)}});
    return;
  }
  if (ev.action == job_action::in_progress) {
    runner_taken(st, pool, stats, *runner, ev.key);
    runner->state = runner_state::running;
    runner->started_at = now;
  } else {
    runner->state = pool.mode == runner_mode::ephemeral ? runner_state::completed
                                                        : runner_state::ready;
  }
  publish_gauges(st, pool, stats);
}

bool instance_gone(instance_state s) {
  return s == instance_state::terminated || s == instance_state::shutting_down;
}

/// Brings launched runners in line with EC2: runners whose instance is gone
/// become terminated (those already terminated at the previous pass are
/// dropped), unknown instances become pending runners. Runners launched
/// after the describe call was sent are left alone: EC2 could not list them.
void apply_inventory(ledger_pointer self, const pool_config& pool,
                     const instance_list& inventory, time_point asked_at) {
  auto& st = self->state;
  auto now = self->clock().now();
  std::map<std::string, const instance_info*> alive;
  for (auto& inst : inventory.instances)
    if (!instance_gone(inst.state))
      alive.emplace(inst.instance_id, &inst);
  int32_t gone = 0;
  for (auto i = st.runners.begin(); i != st.runners.end();) {
    auto& r = i->second;
    if (r.state == runner_state::terminated) {
      i = st.runners.erase(i);
      continue;
    }
    if (r.state != runner_state::requested && alive.count(r.id) == 0
        && r.launched_at <= asked_at) {
      r.state = runner_state::terminated;
      ++gone;
    }
    ++i;
  }
  int32_t added = 0;
  for (auto& [id, inst] : alive) {
    if (st.runners.count(id) > 0)
      continue;
    runner_record r;
    r.id = id;
    r.state = runner_state::pending;
    r.runner_name = pool.name + "-" + id;
    r.requested_at = now;
    r.launched_at = now;
    st.runners.emplace(id, std::move(r));
    ++added;
  }
  log::info("ledger reconciled with EC2",
            {{"pool", pool.name},
             {"instances", static_cast<int64_t>(alive.size())},
             {"added", added},
             {"gone", gone}});
}

void reconcile(ledger_pointer self, const pool_config& pool,
               const timeouts_config& timeouts, const ec2_actor& ec2,
               const metrics_ptr& stats) {
  auto& st = self->state;
  if (st.reconciling)
    return;
  st.reconciling = true;
  auto asked_at = self->clock().now();
  instance_filter filter{{tag{"ghscale:pool", pool.name}}, false};
  self->request(ec2, timeouts.aws_call, atom::describe_v, std::move(filter))
    .then(
      [=](const instance_list& inventory) {
        auto& st = self->state;
        st.reconciling = false;
        st.reconciled = true;
        st.reconcile_failures = 0;
        apply_inventory(self, pool, inventory, asked_at);
        expire_stale(self, pool, timeouts);
        publish_gauges(st, pool, *stats);
        // Reconciliations asked from outside must not start more timers.
        auto now = self->clock().now();
        if (st.next_periodic_reconcile <= now) {
          st.next_periodic_reconcile = now + reconcile_interval;
          self->delayed_send(self, reconcile_interval, atom::reconcile_v);
        }
      },
      [=](const caf::error& err) {
        auto& st = self->state;
        st.reconciling = false;
        auto delay = jittered_backoff(reconcile_retry_base, reconcile_retry_max,
                                      ++st.reconcile_failures,
                                      reconcile_retry_jitter, st.rng);
        log::warn("ledger reconciliation failed, retrying",
                  {{"pool", pool.name},
                   {"error", self->system().render(err)},
                   {"retry_in_s", seconds(delay)}});
        self->delayed_send(self, delay, atom::reconcile_v);
      });
}

} // namespace

runner_ledger_actor::behavior_type
runner_ledger(runner_ledger_actor::stateful_pointer<runner_ledger_state> self,
              pool_config pool, timeouts_config timeouts, ec2_actor ec2,
              metrics_ptr stats) {
  self->state.rng.seed(std::hash<std::string>{}(pool.name));
  // Reservation ids name idempotent launches (client tokens): starting from
  // the clock keeps a restarted ledger from reusing its predecessor's ids.
  self->state.next_reservation
    = static_cast<uint64_t>(self->clock().now().time_since_epoch().count()) + 1;
  reconcile(self, pool, timeouts, ec2, stats);
  return {
    [=](atom::observe, const job_event& ev) {
      observe(self, pool, *stats, ev);
    },
    [=](atom::reserve,
        const reservation_request& req) -> caf::result<reservation> {
      if (!self->state.reconciled)
        return caf::make_error(errc::not_ready,
                               "runner_ledger " + pool.name
                                 + ": reconciling with EC2");
      expire_stale(self, pool, timeouts);
      auto out = reserve(self, pool, req);
      publish_gauges(self->state, pool, *stats);
      return out;
    },
    [=](atom::report, const launch_report& rep) -> caf::result<ledger_counts> {
      expire_stale(self, pool, timeouts);
      return apply_report(self, pool, *stats, rep);
    },
    [=](atom::counts) {
      expire_stale(self, pool, timeouts);
      publish_gauges(self->state, pool, *stats);
      return count_runners(self->state);
    },
    [=](atom::reconcile) { reconcile(self, pool, timeouts, ec2, stats); },
  };
}

} // namespace ghscale
