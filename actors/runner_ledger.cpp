#include "actors/runner_ledger.hpp"

#include "actors/backoff.hpp"
#include "actors/ops/log.hpp"

#include <algorithm>
#include <chrono>
#include <functional>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

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

using runner_iterator = std::map<std::string, runner_record>::iterator;

size_t state_index(runner_state s) {
  return static_cast<size_t>(s);
}

/// A runner a job can still take: it has not started one.
bool unstarted(runner_state s) {
  return s == runner_state::pending || s == runner_state::ready;
}

/// The key of a requested slot's job in `slots_by_reservation`: all top-up
/// slots are alike, whatever run attempt their spec carried.
job_key slot_job(const job_key& job) {
  return job.job_id == 0 ? job_key{0, 0} : job;
}

/// Adds `r` to (`sign` +1) or removes it from (`sign` -1) every index.
void index_runner(runner_indexes& index, const runner_record& r, int32_t sign) {
  auto update = [sign](auto& set, auto entry) {
    if (sign > 0)
      set.insert(std::move(entry));
    else
      set.erase(entry);
  };
  index.by_state[state_index(r.state)] += sign;
  if (r.is_topup())
    index.topups_by_state[state_index(r.state)] += sign;
  if (r.state == runner_state::requested) {
    auto& slots = index.slots_by_reservation[r.reservation];
    update(slots, std::make_pair(slot_job(r.job), r.id));
    if (slots.empty())
      index.slots_by_reservation.erase(r.reservation);
    update(index.slots_by_age, std::make_pair(r.requested_at, r.id));
    if (!r.is_topup())
      update(index.requested_by_job, std::make_pair(r.job, r.id));
  }
  if (!r.runner_name.empty())
    update(index.ids_by_name, std::make_pair(r.runner_name, r.id));
  if (unstarted(r.state))
    update(index.unstarted_by_job, std::make_pair(r.job, r.id));
}

// Every change to `st.runners` goes through the next three functions, so the
// indexes always describe the runners exactly.

/// Adds `r`, replacing a runner with the same id.
runner_record& put_runner(runner_ledger_state& st, runner_record r) {
  auto [i, added] = st.runners.try_emplace(r.id);
  if (!added)
    index_runner(st.index, i->second, -1);
  i->second = std::move(r);
  index_runner(st.index, i->second, +1);
  return i->second;
}

runner_iterator erase_runner(runner_ledger_state& st, runner_iterator i) {
  index_runner(st.index, i->second, -1);
  return st.runners.erase(i);
}

/// Applies `change` to `r`; `change` must keep `r.id`, the runner's key.
template <class Change>
void change_runner(runner_ledger_state& st, runner_record& r, Change change) {
  index_runner(st.index, r, -1);
  change(r);
  index_runner(st.index, r, +1);
}

int32_t runners_in(const runner_ledger_state& st, runner_state s) {
  return st.index.by_state[state_index(s)];
}

ledger_counts count_runners(const runner_ledger_state& st) {
  ledger_counts out;
  out.requested = runners_in(st, runner_state::requested);
  out.pending = runners_in(st, runner_state::pending);
  out.ready = runners_in(st, runner_state::ready);
  out.running = runners_in(st, runner_state::running);
  out.completed = runners_in(st, runner_state::completed);
  out.failed = runners_in(st, runner_state::failed);
  out.orphaned = runners_in(st, runner_state::orphaned);
  out.terminated = runners_in(st, runner_state::terminated);
  out.waiting = static_cast<int32_t>(st.needs_runner.size());
  return out;
}

void publish_gauges(const runner_ledger_state& st, const pool_config& pool,
                    metrics& stats) {
  for (auto s : all_states)
    stats.set("ghscale_runners", {{"pool", pool.name}, {"state", to_string(s)}},
              runners_in(st, s));
}

/// Idle runners: ready ones, plus top-up runners on their way (requested or
/// pending), which will be idle when they come online. A pending runner
/// launched for a job is not idle: that job takes it.
int32_t idle_runners(const runner_ledger_state& st) {
  auto& topups = st.index.topups_by_state;
  return runners_in(st, runner_state::ready)
         + topups[state_index(runner_state::requested)]
         + topups[state_index(runner_state::pending)];
}

int32_t active_runners(const runner_ledger_state& st) {
  int32_t out = 0;
  for (auto s : all_states)
    if (counts_against_cap(s))
      out += runners_in(st, s);
  return out;
}

void remember_served(runner_ledger_state& st, const job_key& job,
                     served_by source, time_point now) {
  auto [i, added] = st.served.emplace(job, served_job{source, now});
  // Never downgrade: an observation beats a configuration beats a slot.
  if (!added && i->second.source < source)
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

/// The launch for `taker` did not come up: the job whose runner it took
/// needs a replacement after all.
void hand_back_swap(runner_ledger_state& st, const job_key& taker) {
  auto swap = st.swaps.find(taker);
  if (swap == st.swaps.end())
    return;
  st.needs_runner.emplace(swap->second.job, swap->second);
  st.swaps.erase(swap);
}

/// Releases requested slots whose report is overdue (the launcher crashed
/// or the report was lost), so they stop holding capacity.
void release_overdue_slots(ledger_pointer self, const pool_config& pool,
                           const timeouts_config& timeouts) {
  auto& st = self->state;
  auto now = self->clock().now();
  auto deadline = timeouts.launch + report_grace;
  std::vector<std::string> overdue;
  for (auto& [requested_at, id] : st.index.slots_by_age) {
    if (now - requested_at < deadline)
      break;
    overdue.push_back(id);
  }
  // In id order, as the runners are: the log lines come in a stable order.
  std::sort(overdue.begin(), overdue.end());
  for (auto& id : overdue) {
    auto i = st.runners.find(id);
    auto& r = i->second;
    log::warn("ledger released a slot whose launch was never reported",
              {{"pool", pool.name},
               {"reservation", r.reservation},
               {"job", to_string(r.job)}});
    st.expired_reservations.emplace(r.reservation, now);
    forget_reserved(st, r.job);
    hand_back_swap(st, r.job);
    erase_runner(st, i);
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
  r.repository = spec.repository;
  r.reservation = reservation;
  r.requested_at = now;
  put_runner(st, std::move(r));
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
    auto served = st.served.find(spec.job);
    if (served != st.served.end()) {
      // A runner still being set up does not serve the job yet: the other
      // delivery waits until that settles, either way.
      if (served->second.source == served_by::reservation)
        out.in_flight.push_back(spec.job);
      else
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
runner_record& record_launch(runner_ledger_state& st, const pool_config& pool,
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
  r.runner_id = up.runner_id;
  r.reservation = 0;
  r.launched_at = now;
  return put_runner(st, std::move(r));
}

/// Takes the requested slot of `reservation` meant for `job` (any top-up
/// slot for a top-up runner) out of the ledger.
std::optional<runner_record> take_slot(runner_ledger_state& st,
                                       uint64_t reservation,
                                       const job_key& job) {
  auto slots = st.index.slots_by_reservation.find(reservation);
  if (slots == st.index.slots_by_reservation.end())
    return std::nullopt;
  auto key = slot_job(job);
  auto first = slots->second.lower_bound(std::make_pair(key, std::string{}));
  if (first == slots->second.end() || first->first != key)
    return std::nullopt;
  auto i = st.runners.find(first->second);
  auto slot = i->second;
  erase_runner(st, i);
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
  change_runner(st, r, [&](runner_record& x) {
    x.job = waiting->first;
    x.target = waiting->second.target;
    x.installation_id = waiting->second.installation_id;
    x.repository = waiting->second.repository;
  });
  st.needs_runner.erase(waiting);
}

/// Whether `index` holds an entry for `job`.
bool has_job(const std::set<std::pair<job_key, std::string>>& index,
             const job_key& job) {
  auto i = index.lower_bound(std::make_pair(job, std::string{}));
  return i != index.end() && i->first == job;
}

/// Runner `r`, launched for job `r.job`, was taken by job `taker`. The job
/// it was launched for keeps a runner if the taker had one of its own on its
/// way: an unstarted one is handed over now, one still being launched when
/// its launch reports. Otherwise it needs a replacement.
void runner_taken(runner_ledger_state& st, const pool_config& pool,
                  metrics& stats, runner_record& r, const job_key& taker) {
  if (r.is_topup() || r.job == taker)
    return;
  // `r` is not among them: its job is not the taker.
  auto& unstarted_runners = st.index.unstarted_by_job;
  auto own = unstarted_runners.lower_bound(std::make_pair(taker, std::string{}));
  runner_spec lost{r.job, r.target, r.installation_id, 0, r.repository};
  auto served = st.served.find(r.job);
  auto trace = [&](const char* what) {
    log::debug(what, {{"pool", pool.name},
                      {"runner", r.runner_name},
                      {"launched_for", to_string(r.job)},
                      {"taken_by", to_string(taker)}});
  };
  if (served != st.served.end() && served->second.source == served_by::observed) {
    trace("runner taken; the job it was launched for started elsewhere");
  } else if (own != unstarted_runners.end() && own->first == taker) {
    trace("runner taken; the taker's unstarted runner is handed over");
    change_runner(st, st.runners.at(own->second), [&](runner_record& x) {
      x.job = r.job;
      x.target = r.target;
      x.installation_id = r.installation_id;
      x.repository = r.repository;
    });
  } else if (auto meant = std::find_if(st.swaps.begin(), st.swaps.end(),
                                       [&](auto& s) { return s.second.job == taker; });
             meant != st.swaps.end()) {
    // A runner being launched was to serve the taker, which needs it no
    // more: it serves the job the taker displaced instead.
    trace("runner taken; the runner being launched for the taker goes to its job");
    meant->second = lost;
  } else if (has_job(st.index.requested_by_job, taker) && st.swaps.count(taker) == 0) {
    trace("runner taken; the taker's runner being launched is handed over");
    st.swaps.emplace(taker, lost);
  } else {
    st.needs_runner.emplace(r.job, lost);
    stats.add("ghscale_runner_taken_total", {{"pool", pool.name}});
    log::info("runner taken by another job",
              {{"pool", pool.name},
               {"runner", r.runner_name},
               {"launched_for", to_string(r.job)},
               {"taken_by", to_string(taker)}});
  }
  change_runner(st, r, [&](runner_record& x) { x.job = taker; });
}

bool known_reservation(const runner_ledger_state& st, uint64_t id) {
  return st.index.slots_by_reservation.count(id) > 0
         || st.expired_reservations.count(id) > 0
         || st.configured_early.count(id) > 0;
}

/// A runner of `reservation` is configured: it fills its slot, and its job
/// is served from now on.
void record_configured(runner_ledger_state& st, const pool_config& pool,
                       metrics& stats, uint64_t reservation,
                       const launched_runner& up, time_point now) {
  auto slot = take_slot(st, reservation, up.job);
  st.replacing.erase(up.job);
  if (up.job.job_id != 0)
    remember_served(st, up.job, served_by::configured, now);
  auto& launched = record_launch(st, pool, stats, up, std::move(slot), now);
  if (auto swap = st.swaps.find(up.job); swap != st.swaps.end()) {
    // Its job started on another job's runner meanwhile: this one is that
    // other job's now.
    change_runner(st, launched, [&](runner_record& x) {
      x.job = swap->second.job;
      x.target = swap->second.target;
      x.installation_id = swap->second.installation_id;
      x.repository = swap->second.repository;
    });
    st.swaps.erase(swap);
  } else {
    adopt_waiting_job(st, launched);
  }
}

caf::result<ledger_counts> apply_report(ledger_pointer self,
                                        const pool_config& pool,
                                        metrics& stats,
                                        const launch_report& rep) {
  auto& st = self->state;
  auto now = self->clock().now();
  if (!known_reservation(st, rep.reservation_id))
    return caf::make_error(errc::rejected,
                           "runner_ledger " + pool.name
                             + ": report for unknown reservation "
                             + std::to_string(rep.reservation_id));
  auto early = st.configured_early.extract(rep.reservation_id);
  for (auto& up : rep.launched)
    if (early.empty() || early.mapped().count(up.instance_id) == 0)
      record_configured(st, pool, stats, rep.reservation_id, up, now);
  int32_t released = 0;
  auto unfilled = st.index.slots_by_reservation.find(rep.reservation_id);
  if (unfilled != st.index.slots_by_reservation.end()) {
    // A copy: releasing the slots empties the index entry.
    auto slots = unfilled->second;
    for (auto& [key, id] : slots) {
      auto i = st.runners.find(id);
      auto& job = i->second.job;
      auto replacing = st.replacing.find(job);
      if (replacing != st.replacing.end()) {
        // Its replacement did not come up: it still needs one.
        st.needs_runner.insert(*replacing);
        st.replacing.erase(replacing);
      } else {
        forget_reserved(st, job);
      }
      hand_back_swap(st, job);
      erase_runner(st, i);
      ++released;
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
  auto& names = st.index.ids_by_name;
  auto i = names.lower_bound(std::make_pair(name, std::string{}));
  if (i == names.end() || i->first != name)
    return nullptr;
  return &st.runners.at(i->second);
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
    // GitHub's own queued-to-started time, whichever runner took the job.
    if (ev.created_at.count() > 0 && ev.started_at >= ev.created_at)
      stats.observe("ghscale_time_to_start_seconds", {{"pool", pool.name}},
                    seconds(ev.started_at - ev.created_at));
  }
  auto* runner = find_by_name(st, ev.runner_name);
  // A runner being launched for this job (another's handed over) is no
  // longer needed by it, unless the job displaced someone who gets it.
  auto drop_swaps = [&] {
    if (ev.action != job_action::in_progress)
      return;
    for (auto i = st.swaps.begin(); i != st.swaps.end();)
      i = i->second.job == ev.key ? st.swaps.erase(i) : std::next(i);
  };
  if (runner == nullptr) {
    drop_swaps();
    stats.add("ghscale_ledger_unknown_runner_total", {{"pool", pool.name}});
    log::debug("ledger ignored event of unknown runner",
               {{"pool", pool.name},
                {"runner", ev.runner_name},
                {"action", to_string(ev.action)}});
    return;
  }
  if (ev.action == job_action::in_progress) {
    runner_taken(st, pool, stats, *runner, ev.key);
    drop_swaps();
    change_runner(st, *runner, [&](runner_record& r) {
      r.state = runner_state::running;
      r.started_at = now;
    });
  } else {
    auto done = pool.mode == runner_mode::ephemeral ? runner_state::completed
                                                    : runner_state::ready;
    change_runner(st, *runner, [&](runner_record& r) {
      r.state = done;
      r.ready_at = now;
    });
  }
  publish_gauges(st, pool, stats);
}

bool instance_gone(instance_state s) {
  return s == instance_state::terminated || s == instance_state::shutting_down;
}

/// Where an instance's runner registers, from the tags the launcher wrote.
void read_target_tags(runner_record& r, const std::vector<tag>& tags) {
  auto owner = find_tag(tags, tag_key::owner);
  auto installation = find_tag(tags, tag_key::installation);
  if (owner == nullptr || installation == nullptr || !r.target.owner.empty())
    return;
  auto slash = owner->find('/');
  r.target.owner = owner->substr(0, slash);
  r.target.repo = slash == std::string::npos ? "" : owner->substr(slash + 1);
  auto type = find_tag(tags, tag_key::owner_type);
  r.target.type = type != nullptr && *type == "User" ? owner_type::user
                                                      : owner_type::organization;
  r.installation_id = std::strtoll(installation->c_str(), nullptr, 10);
}

/// What the tags of an instance say about its runner.
void read_instance_tags(runner_record& r, const std::vector<tag>& tags) {
  r.orphan_tagged = find_tag(tags, tag_key::orphan) != nullptr;
  r.bypass_removal = find_tag(tags, tag_key::bypass_removal) != nullptr;
  read_target_tags(r, tags);
}

/// Brings launched runners in line with EC2: runners whose instance is gone
/// become terminated (those already terminated at the previous pass are
/// dropped), unknown instances become pending runners. Runners launched
/// after the describe call was sent are left alone: EC2 could not list them.
/// Answers the instances alive, by id.
std::map<std::string, const instance_info*>
apply_instances(ledger_pointer self, const pool_config& pool,
                const std::vector<instance_info>& instances, time_point asked_at) {
  auto& st = self->state;
  auto now = self->clock().now();
  std::map<std::string, const instance_info*> alive;
  for (auto& inst : instances)
    if (!instance_gone(inst.state))
      alive.emplace(inst.instance_id, &inst);
  int32_t gone = 0;
  for (auto i = st.runners.begin(); i != st.runners.end();) {
    auto& r = i->second;
    if (r.state == runner_state::terminated) {
      i = erase_runner(st, i);
      continue;
    }
    if (r.state != runner_state::requested && alive.count(r.id) == 0
        && r.launched_at <= asked_at) {
      change_runner(st, r, [](runner_record& x) {
        x.state = runner_state::terminated;
      });
      ++gone;
    }
    ++i;
  }
  int32_t added = 0;
  for (auto& [id, inst] : alive) {
    auto known = st.runners.find(id);
    if (known != st.runners.end()) {
      read_instance_tags(known->second, inst->tags);
      continue;
    }
    runner_record r;
    r.id = id;
    r.state = runner_state::pending;
    r.runner_name = pool.name + "-" + id;
    r.requested_at = now;
    r.launched_at = now;
    read_instance_tags(r, inst->tags);
    put_runner(st, std::move(r));
    ++added;
  }
  log::info("ledger reconciled with EC2",
            {{"pool", pool.name},
             {"instances", static_cast<int64_t>(alive.size())},
             {"added", added},
             {"gone", gone}});
  return alive;
}

/// A runner's registration as GitHub lists it: busy runners run a job,
/// online idle ones are ready; a registration that vanished means an
/// ephemeral runner finished.
void apply_registration(runner_ledger_state& st, const pool_config& pool,
                        metrics& stats, runner_record& r,
                        const registration_seen* seen, bool complete,
                        time_point now) {
  if (seen == nullptr) {
    if (!complete)
      return;
    bool was_registered = r.registered;
    r.registered = false;
    // The reaper tagged it at an earlier pass: no registration since.
    if (r.orphan_tagged && r.state == runner_state::pending)
      change_runner(st, r, [](runner_record& x) { x.state = runner_state::orphaned; });
    if (was_registered && pool.mode == runner_mode::ephemeral
        && (r.state == runner_state::ready || r.state == runner_state::running))
      change_runner(st, r, [](runner_record& x) { x.state = runner_state::completed; });
    return;
  }
  r.registered = true;
  r.runner_id = seen->runner.id;
  if (r.target.owner.empty()) {
    r.target = seen->target;
    r.installation_id = seen->installation_id;
  }
  auto unregistered = r.state == runner_state::pending
                      || r.state == runner_state::orphaned;
  if (seen->runner.busy) {
    if (unregistered || r.state == runner_state::ready)
      change_runner(st, r, [&](runner_record& x) {
        x.state = runner_state::running;
        x.started_at = now;
      });
    return;
  }
  if (seen->runner.status != "online")
    return;
  if (unregistered) {
    stats.observe("ghscale_time_to_ready_seconds", {{"pool", pool.name}},
                  seconds(now - r.launched_at));
    change_runner(st, r, [&](runner_record& x) {
      x.state = runner_state::ready;
      x.ready_at = now;
    });
  } else if (r.state == runner_state::running) {
    auto done = pool.mode == runner_mode::ephemeral ? runner_state::completed
                                                    : runner_state::ready;
    change_runner(st, r, [&](runner_record& x) {
      x.state = done;
      x.ready_at = now;
    });
  }
}

runner_view view_of(const runner_record& r) {
  runner_view v;
  v.instance_id = r.id;
  v.runner_name = r.runner_name;
  v.state = r.state;
  v.job = r.job;
  v.target = r.target;
  v.installation_id = r.installation_id;
  v.runner_id = r.runner_id;
  v.launched_at = r.launched_at.time_since_epoch();
  v.idle_since = r.ready_at.time_since_epoch();
  v.registered = r.registered;
  v.orphan_tagged = r.orphan_tagged;
  v.bypass_removal = r.bypass_removal;
  return v;
}

/// Applies a reaper pass's inventory; answers the runners and the ghosts:
/// registrations of this pool whose instance is neither alive on EC2 nor
/// launched after the inventory was taken.
pool_view apply_pool_inventory(ledger_pointer self, const pool_config& pool,
                               metrics& stats, const pool_inventory& inv) {
  auto& st = self->state;
  auto now = self->clock().now();
  auto asked_at = time_point{inv.asked_at};
  auto alive = apply_instances(self, pool, inv.instances, asked_at);
  std::map<std::string, const registration_seen*> by_name;
  for (auto& seen : inv.registrations)
    by_name.emplace(seen.runner.name, &seen);
  pool_view out;
  for (auto& [id, r] : st.runners) {
    if (r.state == runner_state::requested || r.state == runner_state::terminated)
      continue;
    auto seen = by_name.find(r.runner_name);
    apply_registration(st, pool, stats, r,
                       seen == by_name.end() ? nullptr : seen->second,
                       inv.registrations_complete, now);
    out.runners.push_back(view_of(r));
  }
  auto prefix = pool.name + "-";
  for (auto& seen : inv.registrations) {
    auto& name = seen.runner.name;
    if (name.rfind(prefix, 0) != 0)
      continue;
    auto instance = name.substr(prefix.size());
    if (alive.count(instance) > 0)
      continue;
    auto known = st.runners.find(instance);
    bool launched_since = known != st.runners.end()
                          && known->second.state != runner_state::terminated
                          && known->second.launched_at > asked_at;
    if (!launched_since)
      out.ghosts.push_back(seen);
  }
  publish_gauges(st, pool, stats);
  return out;
}

/// The reaper terminated these instances: they stop counting at once.
void mark_terminated(runner_ledger_state& st, const instance_ids& ids) {
  for (auto& id : ids.ids) {
    auto i = st.runners.find(id);
    if (i != st.runners.end())
      change_runner(st, i->second, [](runner_record& x) {
        x.state = runner_state::terminated;
      });
  }
}

/// Whether `job` has a runner requested, launched or running for it. A
/// reusable pool's runners take any job: any runner not yet busy counts.
bool runner_on_its_way(const runner_ledger_state& st, const pool_config& pool,
                       const job_key& job) {
  if (pool.mode == runner_mode::reusable)
    return runners_in(st, runner_state::requested)
             + runners_in(st, runner_state::pending)
             + runners_in(st, runner_state::ready)
           > 0;
  return st.served.count(job) > 0 && st.needs_runner.count(job) == 0;
}

/// A spot interruption warning: the runner is marked (the scaler
/// deregisters it) and, if the job it was launched for has not started, a
/// replacement slot is reserved for it now, or queued for the next
/// reservation when the pool is at its cap.
interruption interrupt_runner(ledger_pointer self, const pool_config& pool,
                              metrics& stats, const std::string& instance_id) {
  auto& st = self->state;
  interruption out;
  auto i = st.runners.find(instance_id);
  if (i == st.runners.end() || i->second.interrupted)
    return out;
  auto& r = i->second;
  r.interrupted = true;
  out.known = true;
  out.runner_name = r.runner_name;
  out.runner_id = r.runner_id;
  out.target = r.target;
  out.installation_id = r.installation_id;
  stats.add("ghscale_spot_interruptions_total", {{"pool", pool.name}});
  if (r.is_topup() || !unstarted(r.state) || r.target.owner.empty())
    return out;
  runner_spec spec{r.job, r.target, r.installation_id, 0, r.repository};
  // The job no longer counts on this runner: make its unstarted runner an
  // idle one, so the replacement is what serves it.
  change_runner(st, r, [](runner_record& x) { x.job = job_key{0, 0}; });
  if (active_runners(st) < pool.max_runners) {
    out.reservation = st.next_reservation++;
    add_requested_slot(st, out.reservation, 0, spec, self->clock().now());
    st.replacing.emplace(spec.job, spec);
    out.replacement = spec;
  } else {
    st.needs_runner.emplace(spec.job, spec);
  }
  log::info("spot interruption",
            {{"pool", pool.name},
             {"runner", r.runner_name},
             {"replacement", out.reservation != 0 ? "launching" : "waiting for capacity"},
             {"job", to_string(spec.job)}});
  publish_gauges(st, pool, stats);
  return out;
}

/// The jobs waiting for a replacement runner, as the queued events that
/// would bring them back: the pool's labels route them to this pool again.
std::vector<job_event> unmet_jobs(const runner_ledger_state& st,
                                  const pool_config& pool) {
  std::vector<job_event> out;
  for (auto& [key, spec] : st.needs_runner) {
    job_event ev;
    ev.action = job_action::queued;
    ev.key = key;
    ev.repository = spec.repository;
    ev.installation_id = spec.installation_id;
    ev.labels = pool.labels;
    out.push_back(std::move(ev));
  }
  return out;
}

void reconcile(ledger_pointer self, const pool_config& pool,
               const timeouts_config& timeouts, const ec2_actor& ec2,
               const metrics_ptr& stats) {
  auto& st = self->state;
  if (st.reconciling)
    return;
  st.reconciling = true;
  auto asked_at = self->clock().now();
  instance_filter filter{{tag{tag_key::pool, pool.name}}, false};
  self->request(ec2, timeouts.aws_call, atom::describe_v, std::move(filter))
    .then(
      [=](const instance_list& inventory) {
        auto& st = self->state;
        st.reconciling = false;
        st.reconciled = true;
        st.reconcile_failures = 0;
        apply_instances(self, pool, inventory.instances, asked_at);
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

caf::error check_runner_indexes(const runner_ledger_state& st) {
  runner_indexes recounted;
  for (auto& [id, r] : st.runners)
    index_runner(recounted, r, +1);
  if (recounted == st.index)
    return caf::none;
  auto& have = st.index;
  auto& want = recounted;
  const char* drifted
    = have.by_state != want.by_state               ? "by_state"
      : have.topups_by_state != want.topups_by_state ? "topups_by_state"
      : have.slots_by_reservation != want.slots_by_reservation
        ? "slots_by_reservation"
      : have.slots_by_age != want.slots_by_age ? "slots_by_age"
      : have.ids_by_name != want.ids_by_name   ? "ids_by_name"
      : have.unstarted_by_job != want.unstarted_by_job ? "unstarted_by_job"
                                                      : "requested_by_job";
  return caf::make_error(errc::rejected,
                         std::string{"runner_ledger: index "} + drifted
                           + " does not match the runners");
}

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
    [=](atom::observe, uint64_t reservation, const launched_runner& up) {
      auto& st = self->state;
      if (!known_reservation(st, reservation))
        return;
      record_configured(st, pool, *stats, reservation, up, self->clock().now());
      st.configured_early[reservation].insert(up.instance_id);
      publish_gauges(st, pool, *stats);
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
    [=](atom::drain) { return unmet_jobs(self->state, pool); },
    [=](atom::reconcile) { reconcile(self, pool, timeouts, ec2, stats); },
    [=](atom::reconcile, const pool_inventory& inv) {
      return apply_pool_inventory(self, pool, *stats, inv);
    },
    [=](atom::terminate, const instance_ids& ids) {
      mark_terminated(self->state, ids);
      publish_gauges(self->state, pool, *stats);
    },
    [=](atom::recheck, const job_key& job) {
      expire_stale(self, pool, timeouts);
      return runner_on_its_way(self->state, pool, job);
    },
    [=](atom::interrupt, const std::string& instance_id) {
      return interrupt_runner(self, pool, *stats, instance_id);
    },
  };
}

} // namespace ghscale
