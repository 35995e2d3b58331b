#!/usr/bin/env python3
"""End to end: `ghscale run` against moto (SQS with a dead-letter queue, EC2
with a launch template, SSM; SigV4 checked) and the fake GitHub.

Jobs sent to the queue must get exactly one live instance each and one JIT
config per instance in SSM; the queue drains, nothing is dead-lettered, and
the CreateFleet calls per launched runner stay well under 1 (batched). The
fault case adds partial CreateFleet fills, GitHub 5xx bursts (some after
GitHub applied the JIT config) and secondary-limit 403s with retry-after,
and must still lose nothing, launch no duplicate and leave no registration
without an instance.

  python3 tests/e2e_peer_test.py --ghscale build/ghscale
"""
import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers"))
import harness  # noqa: E402
from harness import served_jobs  # noqa: E402  (job -> live instances with its config)


def check_run(world, first_job, count, label):
    expected = {"%d#1" % j for j in range(first_job, first_job + count)}

    def done():
        jobs, _, _ = served_jobs(world)
        return expected <= set(jobs) and world.queue_depth(world.queue_url) == 0

    harness.wait_until(done, 180, "%s: %d jobs served and the queue drained" % (label, count))
    jobs, live, orphans = served_jobs(world)
    failures = []
    mine = {j: v for j, v in jobs.items() if j in expected}
    duplicates = {j: v for j, v in mine.items() if len(v) != 1}
    if duplicates:
        failures.append("jobs with more than one instance: %s" % duplicates)
    missing = expected - set(mine)
    if missing:
        failures.append("jobs without a runner: %s" % sorted(missing))
    dlq = world.queue_depth(world.dlq_url)
    if dlq:
        failures.append("%d messages in the dead-letter queue" % dlq)
    if orphans:
        failures.append("runner configs of instances that are gone: %s" % orphans)
    # Every registration on GitHub belongs to a live instance (runner names
    # are "<pool>-<instance id>"): no ghost was left behind.
    ghosts = [r["name"] for r in world.github_state()["runners"]
              if r["name"].split("-", 1)[-1] not in live]
    if ghosts:
        failures.append("registrations without an instance: %s" % ghosts)
    return failures, len(live)


def report(world, label, jobs, runners):
    calls = world.aws_calls()
    gh = world.github_state()
    fleets = sum(v for k, v in calls.items() if k.startswith("CreateFleet 200"))
    print("%s: jobs %d, live runners %d, CreateFleet calls %d (%.2f per runner), "
          "dropped by partial fills %d" % (
              label, jobs, runners, fleets, fleets / max(1, runners),
              calls.get("CreateFleet dropped", 0)))
    print("%s: AWS calls %s" % (label, dict(sorted(calls.items()))))
    print("%s: GitHub requests %s, JIT configs %d, tokens minted %d, faults %s" % (
        label, gh["requests"], gh["jit_configs_issued"], gh["tokens_minted"],
        gh["faults_injected"]))
    return fleets, gh


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ghscale", required=True)
    args = p.parse_args()
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with harness.World(tmp, latency_ms=10) as world:
                world.start_ghscale(os.path.abspath(args.ghscale))
                # A clean burst, then one with faults on the same service.
                world.queue_jobs(1000, 40)
                f, runners = check_run(world, 1000, 40, "clean")
                failures += ["clean: " + x for x in f]
                fleets, gh = report(world, "clean", 40, runners)
                if runners != 40:
                    failures.append("clean: %d live runners for 40 jobs" % runners)
                if fleets >= 40:
                    failures.append("clean: CreateFleet was not batched (%d calls)" % fleets)
                for counter in ("header_violations_total", "jwt_failures_total",
                                "secondary_403s", "primary_403s"):
                    if gh.get(counter):
                        failures.append("clean: fake GitHub counted %s=%s" % (counter, gh[counter]))

                world.partial_fills(rate=0.5, count=3)
                world.github_fault({"kind": "5xx", "count": 15})
                world.github_fault({"kind": "5xx", "count": 10, "op": "generate_jitconfig_org"})
                # JIT configs GitHub creates but whose answer is lost: the retry
                # meets 409, and the lost registration must be replaced.
                world.github_fault({"kind": "5xx", "count": 3, "op": "generate_jitconfig_org",
                                    "applied": True})
                # GitHub's secondary limit: 403 with retry-after, to be waited out.
                world.github_fault({"kind": "rate_limit", "which": "secondary",
                                    "retry_after": 2, "count": 3})
                world.queue_jobs(2000, 40)
                f, runners = check_run(world, 2000, 40, "faults")
                failures += ["faults: " + x for x in f]
                report(world, "faults", 40, runners)
                if runners != 80:
                    failures.append("faults: %d live runners for 80 jobs" % runners)
                code = world.stop_ghscale()
                if code != 0:
                    failures.append("ghscale exited %d after SIGTERM" % code)
        except Exception as e:  # a peer or ghscale misbehaved: show its log
            failures.append("%s: %s" % (type(e).__name__, e))
        if failures:
            for name in ("ghscale.log", "peers.log"):
                path = os.path.join(tmp, name)
                if os.path.exists(path):
                    print("---- %s (last 60 lines)" % name)
                    print("".join(open(path).readlines()[-60:]))
    return harness.verdict("e2e", failures)


if __name__ == "__main__":
    sys.exit(main())
