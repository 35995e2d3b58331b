#include "actors/embedded/sim_cloud.hpp"

#include "actors/clock.hpp"
#include "actors/ops/log.hpp"
#include "transport/ec2_event.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace ghscale {

namespace {

using cloud_pointer = sim_cloud_actor::stateful_pointer<sim_cloud_state>;
using state = sim_cloud_state;

/// A booted instance looks for its runner config this often ...
constexpr caf::timespan parameter_poll_interval = std::chrono::seconds(10);
/// ... and this long, then idles as an orphan until someone terminates it.
constexpr caf::timespan parameter_wait_limit = std::chrono::minutes(10);
/// EC2 reclaims a spot instance two minutes after its interruption warning.
constexpr caf::timespan spot_warning_lead = std::chrono::minutes(2);
/// EventBridge gives up on a delivery to its target after this long here.
constexpr caf::timespan event_delivery_timeout = std::chrono::seconds(10);

const char* capacity_code = "InsufficientInstanceCapacity";

void count(cloud_pointer self, const std::string& key, int64_t n = 1) {
  self->state.counters[key] += n;
}

void api_call(cloud_pointer self, const std::string& api) {
  count(self, api);
  self->state.stats->add("ghscale_sim_aws_calls_total", {{"api", api}});
}

std::string instance_id(uint64_t n) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "i-%016llx", static_cast<unsigned long long>(n));
  return buf;
}

// -- instances going away ------------------------------------------------------

/// The pool an instance belongs to, from the tag the launcher sets.
std::string pool_of(const std::vector<tag>& tags) {
  for (auto& t : tags)
    if (t.key == tag_key::pool)
      return t.value;
  return "";
}

std::string parameter_name(const state& st, const std::string& instance) {
  return st.parameter_prefix + "/" + instance;
}

/// Tells sim GitHub that an instance is gone, with the runner config it was
/// handed: a runner registered for it stays behind, offline.
void report_gone(cloud_pointer self, const std::string& id) {
  auto& st = self->state;
  auto config = st.parameters.find(parameter_name(st, id));
  self->send(st.github, atom::terminate_v, id,
             config != st.parameters.end() ? config->second.value
                                           : secret_string{});
}

void shut_down(cloud_pointer self, const std::string& id, state::instance& inst) {
  if (inst.info.state == instance_state::terminated)
    return;
  inst.info.state = instance_state::terminated;
  --self->state.live_instances;
  --self->state.live_by_pool[pool_of(inst.info.tags)];
  report_gone(self, id);
}

// -- spot interruptions ------------------------------------------------------------

/// Puts EC2's events on the connected queue, as EventBridge would.
void deliver_events(cloud_pointer self, std::vector<outgoing_message> events) {
  auto& st = self->state;
  auto n = static_cast<int64_t>(events.size());
  if (n == 0)
    return;
  if (!st.events) {
    count(self, "events_undelivered", n);
    return;
  }
  self->request(st.events, event_delivery_timeout, atom::enqueue_v, std::move(events))
    .then(
      [=](const batch_result& res) {
        count(self, "events_delivered", static_cast<int64_t>(res.succeeded.size()));
        count(self, "events_undelivered", static_cast<int64_t>(res.failed.size()));
      },
      [=](const caf::error& err) {
        log::warn("sim cloud event delivery failed", {{"reason", describe(err)}});
        count(self, "events_undelivered", n);
      });
}

/// Live spot instances not warned yet, of `type` ("" = any), in id order.
std::vector<std::string> spot_candidates(cloud_pointer self, const std::string& type) {
  std::vector<std::string> out;
  for (auto& [id, inst] : self->state.instances)
    if (inst.info.capacity == capacity_type::spot && !inst.warned
        && inst.info.state != instance_state::terminated
        && (type.empty() || inst.info.instance_type == type))
      out.push_back(id);
  return out;
}

/// EC2 takes back `rate` of the live spot instances (seeded choice): each
/// gets the two-minute warning now and is reclaimed when it is over.
void interrupt_spot(cloud_pointer self, const sim_fault& fault) {
  auto& st = self->state;
  auto candidates = spot_candidates(self, fault.instance_type);
  auto hit = static_cast<size_t>(std::llround(
    std::clamp(fault.rate, 0.0, 1.0) * static_cast<double>(candidates.size())));
  std::shuffle(candidates.begin(), candidates.end(), st.rng);
  candidates.resize(hit);
  log::info("sim cloud spot interruption",
            {{"instances", static_cast<int64_t>(hit)},
             {"instance_type", fault.instance_type}});
  std::vector<outgoing_message> events;
  for (auto& id : candidates) {
    st.instances.at(id).warned = true;
    count(self, "spot_interrupted");
    events.push_back({to_spot_interruption_event(id, now(self)), caf::timespan{0}});
    self->delayed_send(self, spot_warning_lead, atom::interrupt_v, id);
  }
  deliver_events(self, std::move(events));
}

/// The warning's two minutes are over: EC2 reclaims the instance.
void reclaim(cloud_pointer self, const std::string& id) {
  auto i = self->state.instances.find(id);
  if (i == self->state.instances.end()
      || i->second.info.state == instance_state::terminated)
    return;
  log::info("sim cloud spot instance reclaimed", {{"instance", id}});
  count(self, "spot_reclaimed");
  shut_down(self, id, i->second);
}

// -- faults --------------------------------------------------------------------

void inject_fault(cloud_pointer self, const sim_fault& fault) {
  if (fault.kind == "spot_interruption") {
    interrupt_spot(self, fault);
    return;
  }
  static const std::set<std::string> kinds{"ec2_capacity", "ec2_spot_capacity",
                                           "ec2_partial", "ec2_throttle"};
  if (kinds.count(fault.kind) == 0) {
    log::warn("sim cloud ignores unknown fault", {{"kind", fault.kind}});
    return;
  }
  log::info("sim cloud fault on",
            {{"kind", fault.kind}, {"instance_type", fault.instance_type},
             {"rate", fault.rate}});
  self->state.faults.push_back({fault, now(self) + fault.duration});
}

/// The active faults of a kind; expired faults are dropped first.
std::vector<sim_fault> active_faults(cloud_pointer self, const std::string& kind) {
  auto& faults = self->state.faults;
  auto t = now(self);
  faults.erase(std::remove_if(faults.begin(), faults.end(),
                              [&](const auto& f) { return f.until <= t; }),
               faults.end());
  std::vector<sim_fault> out;
  for (auto& f : faults)
    if (f.fault.kind == kind)
      out.push_back(f.fault);
  return out;
}

bool out_of_capacity(cloud_pointer self, const std::string& type,
                     capacity_type capacity) {
  auto hits = [&](const sim_fault& f) {
    return f.instance_type.empty() || f.instance_type == type;
  };
  auto all = active_faults(self, "ec2_capacity");
  auto spot = active_faults(self, "ec2_spot_capacity");
  return std::any_of(all.begin(), all.end(), hits)
         || (capacity == capacity_type::spot
             && std::any_of(spot.begin(), spot.end(), hits));
}

/// How many of `count` instances an instant fleet fills now.
int32_t fillable(cloud_pointer self, int32_t count) {
  auto partial = active_faults(self, "ec2_partial");
  if (partial.empty())
    return count;
  auto rate = std::clamp(partial.back().rate, 0.0, 1.0);
  return static_cast<int32_t>(std::floor(rate * count));
}

// -- EC2 -----------------------------------------------------------------------

/// The CreateFleet token bucket, refilled by the actor clock.
bool take_fleet_token(cloud_pointer self) {
  auto& st = self->state;
  auto t = now(self);
  auto elapsed = std::chrono::duration<double>(t - st.refilled_at).count();
  st.fleet_tokens = std::min<double>(st.cfg.ec2_fleet_burst,
                                     st.fleet_tokens + elapsed * st.cfg.ec2_fleet_refill);
  st.refilled_at = t;
  if (st.fleet_tokens < 1.0)
    return false;
  st.fleet_tokens -= 1.0;
  return true;
}

fleet_instance start_instance(cloud_pointer self, const fleet_request& req,
                              const std::string& type, const std::string& subnet) {
  auto& st = self->state;
  state::instance inst;
  inst.info.instance_id = instance_id(st.next_instance++);
  inst.info.instance_type = type;
  inst.info.state = instance_state::pending;
  inst.info.capacity = req.capacity;
  inst.info.launched_at = now(self);
  inst.info.tags = req.tags;
  inst.subnet = subnet;
  auto id = inst.info.instance_id;
  st.instances.emplace(id, std::move(inst));
  ++st.live_instances;
  count(self, "instances_launched");
  st.counters["peak_instances"] = std::max(st.counters["peak_instances"],
                                           st.live_instances);
  auto pool = pool_of(req.tags);
  auto live = ++st.live_by_pool[pool];
  auto& peak = st.counters["peak_instances " + pool];
  peak = std::max(peak, live);
  self->delayed_send(self, st.cfg.boot_delay, atom::online_v, id);
  return {id, type, subnet, req.capacity};
}

fleet_error capacity_error(const std::string& type, capacity_type capacity,
                           std::string message) {
  return {capacity_code, std::move(message), type, "", capacity};
}

/// Instances round-robin over the types that have capacity and over the
/// subnets; every type without capacity, and any shortfall, is in Errors[].
fleet_result launch(cloud_pointer self, const fleet_request& req) {
  fleet_result out;
  // No overrides: the launch template's own type.
  auto types = req.instance_types.empty() ? std::vector<std::string>{""}
                                          : req.instance_types;
  std::vector<std::string> available;
  for (auto& type : types) {
    if (out_of_capacity(self, type, req.capacity))
      out.errors.push_back(capacity_error(
        type, req.capacity,
        "There is no " + to_string(req.capacity) + " capacity available for " + type));
    else
      available.push_back(type);
  }
  auto fill = available.empty() ? 0 : std::max(0, fillable(self, req.count));
  if (!available.empty() && fill < req.count)
    out.errors.push_back(capacity_error(
      available.front(), req.capacity,
      "We currently do not have sufficient capacity: launched "
        + std::to_string(fill) + " of " + std::to_string(req.count)));
  for (int32_t i = 0; i < fill; ++i) {
    auto subnet = req.subnets.empty() ? std::string{}
                                      : req.subnets[i % req.subnets.size()];
    out.instances.push_back(
      start_instance(self, req, available[i % available.size()], subnet));
  }
  log::info("sim cloud fleet", {{"requested", req.count},
                                {"launched", static_cast<int64_t>(out.instances.size())},
                                {"errors", static_cast<int64_t>(out.errors.size())}});
  return out;
}

caf::error throttled(const std::string& api) {
  return caf::make_error(errc::throttled, api + ": RequestLimitExceeded");
}

caf::expected<fleet_result> create_fleet(cloud_pointer self, const fleet_request& req) {
  auto& st = self->state;
  if (!active_faults(self, "ec2_throttle").empty() || !take_fleet_token(self)) {
    api_call(self, "CreateFleet throttled");
    return throttled("CreateFleet");
  }
  api_call(self, "CreateFleet");
  if (req.client_token.empty())
    return launch(self, req);
  if (auto earlier = st.fleets.find(req.client_token); earlier != st.fleets.end())
    return earlier->second; // idempotent: the same answer, nothing launched
  auto result = launch(self, req);
  st.fleets.emplace(req.client_token, result);
  return result;
}

bool has_tags(const std::vector<tag>& have, const std::vector<tag>& want) {
  return std::all_of(want.begin(), want.end(), [&](const tag& w) {
    return std::any_of(have.begin(), have.end(), [&](const tag& h) {
      return h.key == w.key && h.value == w.value;
    });
  });
}

caf::expected<instance_list> describe(cloud_pointer self, const instance_filter& filter) {
  if (!active_faults(self, "ec2_throttle").empty()) {
    api_call(self, "DescribeInstances throttled");
    return throttled("DescribeInstances");
  }
  api_call(self, "DescribeInstances");
  instance_list out;
  for (auto& [id, inst] : self->state.instances) {
    if (!filter.include_terminated && inst.info.state == instance_state::terminated)
      continue;
    if (has_tags(inst.info.tags, filter.tags))
      out.instances.push_back(inst.info);
  }
  return out;
}

batch_result terminate(cloud_pointer self, const instance_ids& ids) {
  api_call(self, "TerminateInstances");
  batch_result out;
  for (auto& id : ids.ids) {
    auto i = self->state.instances.find(id);
    if (i == self->state.instances.end()) {
      out.failed.push_back({id, "InvalidInstanceID.NotFound",
                            "The instance ID '" + id + "' does not exist"});
      continue;
    }
    shut_down(self, id, i->second);
    out.succeeded.push_back(id);
  }
  return out;
}

batch_result add_tags(cloud_pointer self, const instance_tags& req) {
  api_call(self, "CreateTags");
  auto& instances = self->state.instances;
  // Like EC2, one unknown id fails the whole call and tags nothing.
  for (auto& id : req.ids)
    if (instances.count(id) == 0)
      return batch_result{{}, {batch_entry_error{id, "InvalidInstanceID.NotFound",
                                                 "The instance ID '" + id
                                                   + "' does not exist"}}};
  for (auto& id : req.ids) {
    auto& tags = instances.at(id).info.tags;
    for (auto& t : req.tags) {
      auto same = std::find_if(tags.begin(), tags.end(),
                               [&](const tag& x) { return x.key == t.key; });
      if (same != tags.end())
        same->value = t.value;
      else
        tags.push_back(t);
    }
  }
  return batch_result{req.ids, {}};
}

/// The runner on an instance exited: the instance shuts itself down.
void runner_finished(cloud_pointer self, const std::string& id) {
  auto i = self->state.instances.find(id);
  if (i == self->state.instances.end())
    return;
  log::debug("sim cloud runner finished", {{"instance", id}});
  shut_down(self, id, i->second);
}

/// Boot, then the instance's user data: fetch the runner config from SSM
/// and start the runner, polling until it appears or the wait is over.
void boot_step(cloud_pointer self, const std::string& id) {
  auto& st = self->state;
  auto i = st.instances.find(id);
  if (i == st.instances.end())
    return;
  auto& inst = i->second;
  if (inst.info.state == instance_state::terminated || inst.runner_started)
    return;
  if (inst.info.state == instance_state::pending) {
    inst.info.state = instance_state::running;
    inst.gives_up_at = now(self) + parameter_wait_limit;
  }
  auto config = st.parameters.find(parameter_name(st, id));
  if (config != st.parameters.end()) {
    inst.runner_started = true;
    count(self, "runners_started");
    self->send(st.github, atom::online_v, id, config->second.value);
    return;
  }
  if (now(self) + parameter_poll_interval <= inst.gives_up_at) {
    self->delayed_send(self, parameter_poll_interval, atom::online_v, id);
    return;
  }
  log::warn("sim cloud instance got no runner config", {{"instance", id}});
  count(self, "instances_without_config");
}

// -- SSM -----------------------------------------------------------------------

std::string put_parameter(cloud_pointer self, const parameter& p) {
  auto& st = self->state;
  api_call(self, "PutParameter");
  for (auto& t : p.tags)
    if (t.key == tag_key::job)
      st.launches_per_job[t.value].insert(p.name);
  st.parameters[p.name] = p;
  // A config written for an instance already gone still registered a
  // runner: sim GitHub must know it will never come online.
  auto prefix = st.parameter_prefix + "/";
  if (p.name.compare(0, prefix.size(), prefix) == 0) {
    auto i = st.instances.find(p.name.substr(prefix.size()));
    if (i != st.instances.end() && i->second.info.state == instance_state::terminated)
      report_gone(self, i->first);
  }
  return p.name;
}

caf::expected<std::string> delete_parameter(cloud_pointer self, const std::string& name) {
  api_call(self, "DeleteParameter");
  if (self->state.parameters.erase(name) == 0)
    return caf::make_error(errc::not_found, "DeleteParameter: ParameterNotFound " + name);
  return name;
}

// -- latency -------------------------------------------------------------------

/// An answer as the caller sees it: at once, or `ec2_latency` later. The
/// answer is computed on arrival either way, so state changes happen then.
template <class T>
caf::result<T> after_latency(cloud_pointer self, caf::expected<T> answer) {
  auto& st = self->state;
  if (st.cfg.ec2_latency <= caf::timespan{0})
    return answer;
  auto promise = self->make_response_promise<T>();
  auto id = st.next_delayed_answer++;
  st.delayed_answers.emplace(id, [promise, answer = std::move(answer)]() mutable {
    if (answer)
      promise.deliver(std::move(*answer));
    else
      promise.deliver(std::move(answer.error()));
  });
  self->delayed_send(self, st.cfg.ec2_latency, atom::flush_v, id);
  return promise;
}

void deliver_delayed(cloud_pointer self, uint64_t id) {
  auto& pending = self->state.delayed_answers;
  auto i = pending.find(id);
  if (i == pending.end())
    return;
  auto deliver = std::move(i->second);
  pending.erase(i);
  deliver();
}

api_calls report(cloud_pointer self) {
  auto& st = self->state;
  auto out = st.counters;
  out["instances_running"] = st.live_instances;
  int64_t duplicates = 0;
  for (auto& [job, names] : st.launches_per_job)
    duplicates += static_cast<int64_t>(names.size()) - 1;
  // Launches tagged with a job some earlier launch was tagged with: a
  // replacement for a runner another job took, or a duplicate.
  out["job_tag_repeats"] = duplicates;
  for (auto& [id, inst] : st.instances) {
    auto launched = to_ms(inst.info.launched_at);
    out["launched_ms " + id] = launched;
    // Instances still alive, for orphans at the end (ground truth).
    if (inst.info.state != instance_state::terminated)
      out["alive_ms " + id] = launched;
  }
  return api_calls{{out.begin(), out.end()}};
}

} // namespace

sim_cloud_actor::behavior_type
sim_cloud(sim_cloud_actor::stateful_pointer<sim_cloud_state> self,
          simulation_config cfg, std::string parameter_prefix,
          sim_github_actor github, metrics_ptr stats) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  while (!parameter_prefix.empty() && parameter_prefix.back() == '/')
    parameter_prefix.pop_back();
  st.parameter_prefix = std::move(parameter_prefix);
  st.github = std::move(github);
  st.stats = std::move(stats);
  st.rng.seed(st.cfg.seed);
  st.fleet_tokens = st.cfg.ec2_fleet_burst;
  st.refilled_at = now(self);
  // Ground truth the simulation report reads, present even when zero.
  for (auto key : {"instances_launched", "peak_instances", "runners_started",
                   "instances_without_config", "spot_interrupted",
                   "spot_reclaimed"})
    st.counters[key] = 0;
  return {
    [=](atom::fleet, const fleet_request& req) {
      return after_latency<fleet_result>(self, create_fleet(self, req));
    },
    [=](atom::describe, const instance_filter& filter) {
      return after_latency<instance_list>(self, describe(self, filter));
    },
    [=](atom::terminate, const instance_ids& ids) {
      return after_latency<batch_result>(self, terminate(self, ids));
    },
    [=](atom::add_tags, const instance_tags& req) {
      return after_latency<batch_result>(self, add_tags(self, req));
    },
    [=](atom::put_param, const parameter& p) {
      return after_latency<std::string>(self, put_parameter(self, p));
    },
    [=](atom::del_param, const std::string& name) {
      return after_latency<std::string>(self, delete_parameter(self, name));
    },
    [=](atom::inject, const sim_fault& fault) { inject_fault(self, fault); },
    [=](atom::connect, queue_actor events) {
      self->state.events = std::move(events);
    },
    [=](atom::interrupt, const std::string& id) { reclaim(self, id); },
    [=](atom::online, const std::string& id) { boot_step(self, id); },
    [=](atom::finished, const std::string& id) { runner_finished(self, id); },
    [=](atom::stats) { return report(self); },
    [=](atom::flush, uint64_t id) { deliver_delayed(self, id); },
  };
}

} // namespace ghscale
