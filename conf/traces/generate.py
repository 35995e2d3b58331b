#!/usr/bin/env python3
"""Generates the shipped workload traces for `ghscale simulate`.

A trace is JSON lines, ordered by time. Each line is one of:
  {"at": S, "event": BODY, "run_for": S, "duplicates": N}
      a job is queued on GitHub at second S; BODY is the queue message its
      webhook delivers (a raw workflow_job payload or the terraform-aws-
      github-runner Lambda's message); the job runs `run_for` seconds once a
      runner takes it; `duplicates` extra copies of the delivery arrive.
  {"at": S, "fault": {"kind": K, "rate": R, "duration": D, "instance_type": T}}
      a backend fault (see messages/types.hpp, sim_fault).
  {"at": S, "crash": CHILD}
      the supervised actor CHILD (e.g. "fleet_launcher", "scaler/linux-x64")
      is killed, as a crash would.
  {"at": S, "kill_loop": QUEUE}
      one poll loop of QUEUE, chosen at random, is killed, as a crash would;
      the token registry must replace it within its stale threshold.
  {"at": S, "restart": true}
      the service is stopped as SIGTERM stops it (an ordered drain) and a
      new node starts on the same world, with none of the old one's memory
      (`ghscale simulate` only).
  Spot interruptions are a fault: {"kind": "spot_interruption", "rate": R}
  warns R of the live spot instances (EC2's event on the queue) and
  reclaims them two minutes later.

Deterministic: `python3 conf/traces/generate.py` rewrites the same files.
"""
import json
import math
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
ORG = "acme"
INSTALLATION = 4242
POOLS = {
    "x64": ["self-hosted", "linux", "x64"],
    "arm64": ["self-hosted", "linux", "arm64"],
}


def webhook(job_id, run_id, labels, repo, attempt=1):
    return {
        "action": "queued",
        "workflow_job": {
            "id": job_id, "run_id": run_id, "run_attempt": attempt,
            "status": "queued", "labels": labels, "runner_name": None,
            "name": "build",
        },
        "repository": {"name": repo, "full_name": f"{ORG}/{repo}",
                       "owner": {"login": ORG, "type": "Organization"}},
        "organization": {"login": ORG},
        "installation": {"id": INSTALLATION},
    }


def lambda_message(job_id, labels, repo):
    return {"id": job_id, "eventType": "workflow_job", "repositoryName": repo,
            "repositoryOwner": ORG, "installationId": INSTALLATION,
            "repoOwnerType": "Organization", "labels": labels,
            "retryCounter": 0}


def job_line(at, job_id, run_id, labels, repo, run_for, duplicates=0,
             lambda_format=False):
    body = (lambda_message(job_id, labels, repo) if lambda_format
            else webhook(job_id, run_id, labels, repo))
    line = {"at": round(at, 3), "event": body, "run_for": run_for}
    if duplicates:
        line["duplicates"] = duplicates
    return line


def write(name, lines, header):
    lines.sort(key=lambda l: l["at"])
    with open(os.path.join(HERE, name), "w") as out:
        for line in lines:
            out.write(json.dumps(line, separators=(",", ":")) + "\n")
    print(f"{name}: {len(lines)} lines ({header})")


def steady_day(rng):
    """24 h of office-hours load: ~2,000 jobs, a diurnal curve, both pools,
    a fifth of the messages in the Lambda format, a few redeliveries."""
    lines, job_id, run_id, t = [], 1_000_000, 50_000, 0.0
    while t < 24 * 3600:
        hour = t / 3600
        rate_per_hour = 15 + 160 * max(0.0, math.sin(math.pi * (hour - 7) / 12))
        t += rng.expovariate(rate_per_hour / 3600)
        run_id += 1
        for _ in range(rng.choice([1, 1, 2, 3])):
            job_id += 1
            labels = POOLS["arm64" if rng.random() < 0.2 else "x64"]
            lines.append(job_line(
                t + rng.random(), job_id, run_id, labels,
                f"svc-{rng.randrange(12)}", rng.randint(120, 900),
                duplicates=1 if rng.random() < 0.03 else 0,
                lambda_format=rng.random() < 0.2))
    return lines


def burst(rng):
    """500 jobs queued within 5 s (a monorepo fan-out) on the x64 pool,
    whose cap of 100 makes most of them wait for earlier runners."""
    lines = []
    for i in range(500):
        lines.append(job_line(rng.random() * 5, 2_000_000 + i, 60_000 + i // 50,
                              POOLS["x64"], "monorepo", rng.randint(120, 240)))
    return lines


def matrix_storm(rng):
    """Matrix builds with duplicate deliveries and injected faults: GitHub 5xx
    and transient 404s, spot shortage, partial fills, EC2 throttling, and
    crashes of the launcher and a scaler in the middle of it."""
    lines, job_id = [], 3_000_000
    for run in range(40):
        start = run * 15 + rng.random() * 10
        labels = POOLS["arm64" if run % 4 == 3 else "x64"]
        for cell in range(12):
            job_id += 1
            lines.append(job_line(start + rng.random(), job_id, 70_000 + run,
                                  labels, f"lib-{run % 5}",
                                  rng.randint(60, 300),
                                  duplicates=rng.choice([0, 0, 1, 2]),
                                  lambda_format=cell % 3 == 0))
    faults = [
        (20, {"kind": "github_5xx", "rate": 0.5, "duration": 40}),
        (90, {"kind": "ec2_spot_capacity", "instance_type": "m5.large",
              "rate": 1.0, "duration": 300}),
        (150, {"kind": "ec2_partial", "rate": 0.5, "duration": 90}),
        (260, {"kind": "github_404", "rate": 0.3, "duration": 30}),
        (330, {"kind": "ec2_throttle", "rate": 1.0, "duration": 15}),
        (400, {"kind": "github_5xx", "rate": 1.0, "duration": 20}),
    ]
    for at, fault in faults:
        lines.append({"at": at, "fault": fault})
    lines.append({"at": 120.5, "crash": "fleet_launcher"})
    lines.append({"at": 310.25, "crash": "scaler/linux-x64"})
    return lines


def chaos_spot(rng):
    """30 minutes of pollers killed at random and spot runners reclaimed: a
    steady trickle of jobs with a burst at minute 6 that piles up on the
    queue (loops scale up, then back down), 14 kills of a poll loop, and
    six spot interruptions of 10-20% of the spot instances, some of them
    running jobs. Runs with conf/simulate-chaos-spot.toml."""
    lines, job_id, run_id = [], 4_000_000, 80_000
    # Steady load: a job every ~10 s for 30 minutes.
    t = 0.0
    while t < 30 * 60:
        t += rng.expovariate(1 / 10)
        job_id += 1
        run_id += 1
        labels = POOLS["arm64" if rng.random() < 0.15 else "x64"]
        lines.append(job_line(t, job_id, run_id, labels,
                              f"svc-{rng.randrange(8)}", rng.randint(90, 480),
                              duplicates=1 if rng.random() < 0.05 else 0))
    # The burst: 150 x64 jobs within 20 s, over the pool's cap.
    for i in range(150):
        job_id += 1
        lines.append(job_line(360 + rng.random() * 20, job_id, 90_000 + i // 25,
                              POOLS["x64"], "monorepo", rng.randint(120, 300)))
    for _ in range(14):
        lines.append({"at": round(rng.uniform(30, 29 * 60), 3),
                      "kill_loop": "jobs"})
    for at in (240, 420, 600, 900, 1200, 1500):
        lines.append({"at": at + round(rng.random() * 30, 3),
                      "fault": {"kind": "spot_interruption",
                                "rate": round(rng.uniform(0.1, 0.2), 3)}})
    return lines


def budget_storm(rng):
    """The job-loss conditions of GitHub's write limit: 240 jobs in two
    bursts on an installation that can register 30 runners a minute, queue
    messages hidden for 30 s only (registrations wait far longer), every
    fifth job delivered twice, 5xx answers to a share of the registrations,
    and the service drained and restarted in the middle of the first burst.
    Runs with conf/simulate-budget-storm.toml."""
    lines, job_id = [], 5_000_000
    for burst_at, jobs in ((0, 150), (420, 90)):
        for i in range(jobs):
            job_id += 1
            lines.append(job_line(burst_at + rng.random() * 10, job_id,
                                  95_000 + job_id // 30, POOLS["x64"],
                                  f"svc-{rng.randrange(6)}", rng.randint(60, 240),
                                  duplicates=1 if i % 5 == 4 else 0))
    lines.append({"at": 30, "fault": {"kind": "github_5xx", "rate": 0.2,
                                      "duration": 90}})
    lines.append({"at": 450, "fault": {"kind": "github_5xx", "rate": 0.3,
                                       "duration": 60}})
    lines.append({"at": 95.5, "restart": True})
    return lines


if __name__ == "__main__":
    write("steady-day.jsonl", steady_day(random.Random(1)), "24 h")
    write("burst-500.jsonl", burst(random.Random(2)), "500 jobs in 5 s")
    write("matrix-storm.jsonl", matrix_storm(random.Random(3)),
          "duplicates and faults")
    write("chaos-spot.jsonl", chaos_spot(random.Random(4)),
          "killed poll loops and spot interruptions")
    write("budget-storm.jsonl", budget_storm(random.Random(5)),
          "a tight write limit, short visibility, duplicates, 5xx, a restart")
