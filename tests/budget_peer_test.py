#!/usr/bin/env python3
"""No job lost, none served twice, while GitHub's write limit makes jobs wait.

`ghscale run` with the shipped example configuration (conf/ghscale.example.toml,
pointed at the test world, with ten poll loops so the burst is in flight at
once; nothing else changed) against moto (SQS with a
dead-letter queue whose redrive sends a message there after 5 receives, the
queue's visibility timeout the default 30 s; EC2; SSM; SigV4 checked) behind
the counting proxy, and the fake GitHub refusing more than 30 content-creating
requests a minute per installation (GitHub's secondary limit), with the App
configured for the same 30. A burst of 100 queued jobs becomes visible at one
instant (a 3 s SQS delay), every fifth job delivered twice (a second message
with the same body). With one registration (one write) per runner, serving
the burst takes at least 100 / 30 a minute = 200 s: most jobs wait for the
write budget, well past the visibility timeout and several receives.

steady:  ghscale runs idle, takes the burst, and is stopped with SIGTERM once
         every job is served and the queue drained. Every job must have
         exactly one live instance holding its runner config in SSM (parameter
         tag ghscale:job = "<job>#1"), the queue must be drained and the
         dead-letter queue empty, no instance terminated (no TerminateInstances
         call, no "runner setup failed" / registration_failed in the log), no
         secondary-limit 403 answered, and ghscale must exit 0.
restart: the same burst, but ghscale is stopped with SIGTERM 60 s in (some
         jobs configured, many waiting for the budget) and must exit 0 within
         60 s; started again with the same configuration it must serve every
         job, each with exactly one live configured instance, leave the
         dead-letter queue empty and exit 0 at a last SIGTERM. Instances the
         first drain terminated (registrations given back) are allowed.

Prints, per scenario: the seconds from the burst becoming visible until every
job's runner config was in SSM, against the floor of 200 s; instances launched
and ChangeMessageVisibility(Batch) calls per job; the fake GitHub's
secondary-limit 403s and JIT configs issued. Everything is bounded: a
scenario waits at most 10 minutes for the jobs (and gives up earlier after
2 minutes without progress), and the whole script stops itself after 14
minutes (ctest's TIMEOUT is 15); every process is stopped on the way out.

  python3 tests/budget_peer_test.py --ghscale build/ghscale [--scenario steady|restart|all]
      [--keep]   (keep each scenario's work directory: logs, config, moto's log)

The example is read when the test runs; GHSCALE_EXAMPLE_CONFIG=FILE uses
another (e.g. `git show REV:conf/ghscale.example.toml` for an older binary,
which refuses keys added since).
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers"))
import harness  # noqa: E402

JOBS = 100
FIRST_JOB = 5000
WRITES_PER_MINUTE = 30       # the fake's secondary limit and the App's budget
MAX_RECEIVE_COUNT = 5        # the jobs queue's redrive policy
DUPLICATE_EVERY = 5          # every fifth job is delivered twice
LOOPS = 10                   # poll loops on the jobs queue
DELAY = 3                    # SQS DelaySeconds: the burst becomes visible at once
FLOOR = JOBS / (WRITES_PER_MINUTE / 60.0)  # 200 s: one write per runner
SERVE_LIMIT = 600            # s a run waits for every job to be served
STALL_LIMIT = 120            # s without any progress after which it stops waiting
RESTART_AFTER = 60           # s after the burst at which "restart" sends SIGTERM
DRAIN_LIMIT = 60             # s ghscale may take to exit after SIGTERM
OVERALL_LIMIT = 840          # s for the whole script (ctest kills it at 900)
FAILED_SETUP = ("runner setup failed", "registration_failed")
EXPECTED = {"%d#1" % j for j in range(FIRST_JOB, FIRST_JOB + JOBS)}

DEADLINE = None              # monotonic time at which every wait gives up


class OverallTimeout(BaseException):
    """Raised by SIGALRM when the script overran OVERALL_LIMIT (a backstop:
    every wait is bounded by DEADLINE first). A BaseException, so that no
    handler below main() mistakes it for a peer's error."""


def on_alarm(signum, frame):
    raise OverallTimeout("the script overran its %d s limit" % OVERALL_LIMIT)


class Watch:
    """The burst as the test sees it, polled from moto and the fake GitHub:
    the jobs whose runner config is in SSM (and since when, counted from the
    instant the burst became visible), the jobs served (their config belongs
    to a live instance), the queues' depths, the JIT configs GitHub issued."""

    def __init__(self, world, start):
        self.world, self.start = world, start
        self.tag_cache = {}            # parameter -> ghscale:job, see parameter_jobs
        self.configured_at = None      # s until every job had its config in SSM
        self.served_at = None          # s until every job had a live configured instance
        self.jobs, self.live, self.orphans = {}, set(), []
        self.configured, self.served = set(), set()
        self.depth = self.dlq = self.jit = 0

    def poll(self):
        w = self.world
        self.jobs, self.live, self.orphans = harness.served_jobs(w, self.tag_cache)
        self.configured = EXPECTED & set(self.tag_cache.values())
        self.served = EXPECTED & set(self.jobs)
        self.depth = w.queue_depth(w.queue_url)
        self.dlq = w.queue_depth(w.dlq_url)
        self.jit = w.github_state()["jit_configs_issued"]
        elapsed = time.monotonic() - self.start
        if self.configured_at is None and self.configured == EXPECTED:
            self.configured_at = elapsed
        if self.served_at is None and self.served == EXPECTED:
            self.served_at = elapsed
        return (len(self.configured), len(self.served), self.depth, self.dlq, self.jit)

    def done(self):
        return self.served == EXPECTED and self.depth == 0

    def summary(self):
        return "%d of %d jobs configured, %d served by a live instance, queue depth %d, " \
               "dead-letter queue depth %d, JIT configs issued %d" % (
                   len(self.configured), JOBS, len(self.served), self.depth, self.dlq, self.jit)


def watch_until(watch, until, stop_when_done=True, interval=1.0):
    """Polls `watch` until `until` (monotonic, never past DEADLINE); with
    `stop_when_done` also until every job is served and the queue drained,
    or nothing moved for STALL_LIMIT s. Returns None when done, else why it
    stopped (ghscale exiting on its own is one reason)."""
    until = min(until, DEADLINE)
    last_state, last_change = None, time.monotonic()
    while True:
        code = watch.world.ghscale.poll()
        if code is not None:
            watch.poll()
            return "ghscale exited with %d on its own (%s)" % (code, watch.summary())
        state = watch.poll()
        now = time.monotonic()
        if stop_when_done and watch.done():
            return None
        if state != last_state:
            last_state, last_change = state, now
        elif stop_when_done and now - last_change >= STALL_LIMIT:
            return "no progress for %d s: %s" % (STALL_LIMIT, watch.summary())
        if now >= until:
            return "waited %.0f s after the burst: %s" % (now - watch.start, watch.summary())
        time.sleep(interval)


def ghscale_log(world, offset=0):
    with open(world.ghscale_log.name, errors="replace") as f:
        f.seek(offset)
        return f.read()


def wait_started(world, offset=0):
    """Until ghscale (whose log starts at `offset`) reconciled its ledger."""
    harness.wait_until(
        lambda: world.ghscale.poll() is not None
        or "ledger reconciled" in ghscale_log(world, offset), 60, "ghscale to start")
    if world.ghscale.poll() is not None:
        raise RuntimeError("ghscale exited with %d at startup" % world.ghscale.returncode)


def check_config(binary, path):
    """`ghscale check-config` accepts the generated file, or the failure."""
    res = subprocess.run([binary, "check-config", path], capture_output=True, text=True,
                         timeout=60)
    if res.returncode != 0:
        return ["check-config refused %s (exit %d): %s" % (
            path, res.returncode, (res.stderr or res.stdout).strip()[-2000:])]
    return []


def send_burst(world):
    """The burst's webhooks with a DELAY s SQS delay; returns the monotonic
    instant they became visible (the clock's start)."""
    start = time.monotonic() + DELAY
    world.send_webhooks(FIRST_JOB, JOBS, delay=DELAY, duplicate_every=DUPLICATE_EVERY)
    if time.monotonic() > start:
        print("note: sending the burst took longer than its %d s delay" % DELAY)
        start = time.monotonic()
    return start


def stop(world, label, failures):
    """SIGTERM; the exit code must be 0 within DRAIN_LIMIT s. Returns the
    seconds the drain took (None if ghscale had to be killed)."""
    began = time.monotonic()
    try:
        code = world.stop_ghscale(timeout=DRAIN_LIMIT)
    except subprocess.TimeoutExpired:
        failures.append("%s: ghscale did not exit within %d s of SIGTERM" % (label, DRAIN_LIMIT))
        world.ghscale.kill()
        world.ghscale.wait()
        return None
    took = time.monotonic() - began
    if code != 0:
        failures.append("%s: ghscale exited %d after SIGTERM (%.1f s)" % (label, code, took))
    return took


def some(items, n=20):
    """The first `n` of `items`, and how many more there are."""
    items = list(items)
    return ", ".join(map(str, items[:n])) + (" and %d more" % (len(items) - n)
                                               if len(items) > n else "")


def by_job_id(job):
    return int(job.split("#")[0])


def check_jobs(watch, label, failures):
    """Every job: exactly one live instance holding its runner config. The
    queue drained and nothing dead-lettered."""
    mine = {j: v for j, v in watch.jobs.items() if j in EXPECTED}
    twice = sorted((j for j, v in mine.items() if len(v) != 1), key=by_job_id)
    if twice:
        failures.append("%s: %d jobs with more than one live configured instance: %s" % (
            label, len(twice), some("%s %s" % (j, mine[j]) for j in twice)))
    missing = sorted(EXPECTED - set(mine), key=by_job_id)
    if missing:
        configured_only = set(missing) & watch.configured
        failures.append("%s: %d of %d jobs have no live instance configured for them: %s%s" % (
            label, len(missing), JOBS, some(missing),
            " (%d of them had a config whose instance is gone)" % len(configured_only)
            if configured_only else ""))
    if watch.depth:
        failures.append("%s: the queue was not drained: %d messages left" % (label, watch.depth))
    if watch.dlq:
        failures.append("%s: %d messages in the dead-letter queue" % (label, watch.dlq))


def failed_setups(text):
    return [line for line in text.splitlines() if any(s in line for s in FAILED_SETUP)]


def report(world, watch, label):
    """The scenario's figures; returns (AWS call counts, fake GitHub state)."""
    calls = world.aws_calls()
    gh = world.github_state()
    launched = calls.get("instances launched", 0)
    visibility = sum(v for k, v in calls.items() if k.startswith("ChangeMessageVisibility"))
    terminations = sum(v for k, v in calls.items() if k.startswith("TerminateInstances"))
    if watch.configured_at is not None:
        print("%s: every job configured %.1f s after the burst became visible; floor %.0f s "
              "(%d jobs / %d writes a minute), ratio %.2f" % (
                  label, watch.configured_at, FLOOR, JOBS, WRITES_PER_MINUTE,
                  watch.configured_at / FLOOR))
    else:
        print("%s: not every job configured (%d of %d); floor %.0f s (%d jobs / %d writes "
              "a minute)" % (label, len(watch.configured), JOBS, FLOOR, JOBS, WRITES_PER_MINUTE))
    if watch.served_at is not None and watch.served_at != watch.configured_at:
        print("%s: every job served by a live instance %.1f s after the burst" % (
            label, watch.served_at))
    with_config = {i for instances in watch.jobs.values() for i in instances}
    print("%s: instances launched %d (%.2f per job), ChangeMessageVisibility(Batch) calls %d "
          "(%.2f per job), TerminateInstances calls %d; live instances %d, %d of them without "
          "a runner config; configs of gone instances %d" % (
              label, launched, launched / JOBS, visibility, visibility / JOBS, terminations,
              len(watch.live), len(watch.live - with_config), len(watch.orphans)))
    print("%s: GitHub: secondary-limit 403s %d, JIT configs issued %d, requests %s" % (
        label, gh["secondary_403s"], gh["jit_configs_issued"], gh["requests"]))
    print("%s: AWS calls %s" % (label, dict(sorted(calls.items()))))
    return calls, gh


def start_burst(world, binary, config, label, failures):
    """ghscale started idle on a checked configuration, then the burst sent;
    the watch over it, or None if the configuration was refused."""
    failures += ["%s: %s" % (label, f) for f in check_config(binary, world.write_config(config))]
    if failures:
        return None
    world.start_ghscale(binary, config)
    wait_started(world)
    return Watch(world, send_burst(world))


def steady(world, binary, config, failures):
    label = "steady"
    watch = start_burst(world, binary, config, label, failures)
    if watch is None:
        return
    why = watch_until(watch, watch.start + SERVE_LIMIT)
    if why is None:
        # Nothing still on its way may launch a second runner for a job.
        time.sleep(5)
        watch.poll()
    else:
        failures.append("%s: %s" % (label, why))
    if world.ghscale.poll() is None:
        stop(world, label, failures)
    check_jobs(watch, label, failures)
    calls, gh = report(world, watch, label)
    terminations = {k: v for k, v in calls.items() if k.startswith("TerminateInstances")}
    if terminations:
        failures.append("%s: instances were terminated: %s" % (label, terminations))
    lines = failed_setups(ghscale_log(world))
    if lines:
        failures.append("%s: %d failed runner setups in the log, e.g. %s" % (
            label, len(lines), lines[0].strip()))
    if gh["secondary_403s"]:
        failures.append("%s: the fake GitHub answered %d secondary-limit 403s" % (
            label, gh["secondary_403s"]))


def restart(world, binary, config, failures):
    label = "restart"
    watch = start_burst(world, binary, config, label, failures)
    if watch is None:
        return
    why = watch_until(watch, watch.start + RESTART_AFTER, stop_when_done=False)
    if world.ghscale.poll() is not None:
        failures.append("%s: before the SIGTERM: %s" % (label, why))
        return
    at_stop = len(watch.configured)
    drain = stop(world, label, failures)
    print("%s: SIGTERM %.0f s after the burst, with %d of %d jobs configured; %s" % (
        label, time.monotonic() - watch.start - (drain or 0), at_stop, JOBS,
        "exited after %.1f s" % drain if drain is not None else "killed"))
    if at_stop in (0, JOBS):
        print("%s: note: the SIGTERM did not come mid-burst" % label)
    offset = os.path.getsize(world.ghscale_log.name)
    world.start_ghscale(binary, config)
    wait_started(world, offset)
    why = watch_until(watch, watch.start + RESTART_AFTER + DRAIN_LIMIT + SERVE_LIMIT)
    if why is None:
        time.sleep(5)
        watch.poll()
    else:
        failures.append("%s: after the restart: %s" % (label, why))
    if world.ghscale.poll() is None:
        stop(world, label + " (final)", failures)
    check_jobs(watch, label, failures)
    report(world, watch, label)
    lines = failed_setups(ghscale_log(world))
    print("%s: failed runner setups in the log (allowed here): %d" % (label, len(lines)))


SCENARIOS = {"steady": steady, "restart": restart}


def main():
    global DEADLINE
    p = argparse.ArgumentParser()
    p.add_argument("--ghscale", required=True)
    p.add_argument("--scenario", choices=["steady", "restart", "all"], default="all")
    p.add_argument("--keep", action="store_true", help="keep the work directories")
    args = p.parse_args()
    binary = os.path.abspath(args.ghscale)
    DEADLINE = time.monotonic() + OVERALL_LIMIT
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(OVERALL_LIMIT + 30)
    names = ["steady", "restart"] if args.scenario == "all" else [args.scenario]
    failures = []
    for name in names:
        if time.monotonic() >= DEADLINE:
            failures.append("%s: not run, the script's %d s were up" % (name, OVERALL_LIMIT))
            continue
        mine = []
        print("== %s" % name, flush=True)
        tmp = tempfile.mkdtemp(prefix="budget-%s-" % name)
        try:
            try:
                with harness.World(tmp, latency_ms=10, writes_per_minute=WRITES_PER_MINUTE,
                                   max_receive_count=MAX_RECEIVE_COUNT) as world:
                    config = world.example_config(writes_per_minute=WRITES_PER_MINUTE)
                    # The whole burst in flight at once, as ten poll loops
                    # hold it (the example scales to 4 only after a depth
                    # sample): every registration then waits in the budget,
                    # most far past the 30 s visibility timeout.
                    for queue in config["queues"]:
                        if queue["name"] == "jobs":
                            queue["min_loops"] = queue["max_loops"] = LOOPS
                    world.create_jobs(FIRST_JOB, JOBS)
                    SCENARIOS[name](world, binary, config, mine)
            except Exception as e:  # a peer or ghscale misbehaved: show its log
                mine.append("%s: %s: %s" % (name, type(e).__name__, e))
            except OverallTimeout as e:
                mine.append("%s: %s" % (name, e))
            if mine:
                for log in ("ghscale.log", "peers.log"):
                    path = os.path.join(tmp, log)
                    if os.path.exists(path):
                        print("---- %s (last 80 lines)" % log)
                        with open(path, errors="replace") as f:
                            print("".join(f.readlines()[-80:]))
        finally:
            if args.keep:
                print("%s: work directory %s" % (name, tmp))
            else:
                shutil.rmtree(tmp, ignore_errors=True)
        sys.stdout.flush()
        failures += mine
    signal.alarm(0)
    return harness.verdict("budget", failures)


if __name__ == "__main__":
    sys.exit(main())
