#!/usr/bin/env python3
"""The burst that matters most: one batch of queued jobs through `ghscale run`
against moto (SQS, EC2, SSM; SigV4 checked) and the fake GitHub, with 10 ms
of latency on every GitHub request.

  python3 bench/burst.py --ghscale build/ghscale [--jobs 100] [--runs 3]
  python3 bench/burst.py --ghscale build/ghscale --limited 60 --minutes 3

Default mode: ghscale runs idle; the jobs are sent with a 3 s SQS delay so that
they all become visible at one instant (a burst, as one SQS batch reaches the
scale-up Lambda), and the clock starts at that instant; the fake lets writes
through freely. Prints, per run, the time until every instance is
launched (CreateFleet answered) and configured (its JIT config put in SSM),
the calls to GitHub and AWS per launched runner (the queue's own calls
included), and the median of the runs last.

--limited L: the fake refuses more than L content-creating requests a
minute (403 + retry-after, as GitHub's secondary limit) and ghscale is
configured with writes_per_minute = L; enough jobs wait for `--minutes`
minutes of writes. Prints the writes in each full minute while jobs waited
(as a share of L) and the 403s answered.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "peers"))
import harness  # noqa: E402


def count(calls, api):
    return sum(v for k, v in calls.items() if k.startswith(api + " 2"))


def burst_run(binary, jobs, run, ssm_throughput):
    """ghscale runs and is idle; the jobs are sent with an SQS delay so that
    all of them become visible at the same instant, and the clock starts
    then: a burst of `jobs` queued jobs, as one SQS batch reaches the Lambda."""
    delay = 3
    with tempfile.TemporaryDirectory() as tmp, harness.World(
            tmp, latency_ms=10, ssm_throughput=ssm_throughput) as w:
        first = 10_000 * (run + 1)
        w.create_jobs(first, jobs)
        w.start_ghscale(binary)
        harness.wait_until(lambda: "ledger reconciled" in open(w.ghscale_log.name).read(),
                           30, "ghscale to start")
        base_calls = w.aws_calls()
        base_gh = w.github_state()
        start = time.monotonic() + delay
        w.send_webhooks(first, jobs, delay=delay)
        if time.monotonic() > start:
            raise RuntimeError("sending the burst took longer than its %d s delay" % delay)
        launched_at = configured_at = None
        while configured_at is None and time.monotonic() - start < 300:
            calls = w.aws_calls()
            launched = calls.get("instances launched", 0) - base_calls.get("instances launched", 0)
            puts = count(calls, "PutParameter") - count(base_calls, "PutParameter")
            if launched_at is None and launched >= jobs:
                launched_at = time.monotonic() - start
            if puts >= jobs:
                configured_at = time.monotonic() - start
            time.sleep(0.01)
        harness.wait_until(lambda: w.queue_depth(w.queue_url) == 0, 60, "the queue to drain")
        calls = w.aws_calls()
        gh = w.github_state()
        w.stop_ghscale()
        runners = count(calls, "PutParameter") - count(base_calls, "PutParameter")
        aws = {k: v - base_calls.get(k, 0) for k, v in calls.items()
               if " " in k and k.split()[1].isdigit() and v - base_calls.get(k, 0)}
        gh_total = gh["requests_total"] - base_gh["requests_total"]
        return {
            "launched_s": launched_at, "configured_s": configured_at, "runners": runners,
            "create_fleet": count(calls, "CreateFleet") - count(base_calls, "CreateFleet"),
            "jit": gh["jit_configs_issued"] - base_gh["jit_configs_issued"],
            "aws_per_runner": sum(aws.values()) / max(1, runners),
            "github_per_runner": gh_total / max(1, runners),
            "aws_calls": aws,
            "github_calls": gh["requests"],
            "secondary_403": gh["secondary_403s"] - base_gh["secondary_403s"],
        }


def moto_floor(jobs):
    """The AWS calls of the burst made straight from boto3, without ghscale
    and without GitHub, 16 at a time, from the same instant: what moto itself
    needs on this machine for them (receive the jobs, one CreateFleet per 20,
    one PutParameter per runner, delete the messages)."""
    import concurrent.futures
    with tempfile.TemporaryDirectory() as tmp, harness.World(tmp, latency_ms=10) as w:
        w.send_webhooks(0, jobs)
        sqs, ec2, ssm = w.client("sqs"), w.client("ec2"), w.client("ssm")
        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            batches = list(pool.map(lambda _: sqs.receive_message(
                QueueUrl=w.queue_url, MaxNumberOfMessages=10,
                AttributeNames=["ApproximateReceiveCount"]).get("Messages", []),
                range(jobs // 10)))
            fleets = list(pool.map(lambda n: ec2.create_fleet(
                Type="instant", TargetCapacitySpecification={
                    "TotalTargetCapacity": n, "DefaultTargetCapacityType": "spot"},
                LaunchTemplateConfigs=[{"LaunchTemplateSpecification": {
                    "LaunchTemplateName": "ghscale-runner", "Version": "$Default"},
                    "Overrides": [{"InstanceType": "m5.large", "SubnetId": w.subnets[0]}]}]),
                [20] * (jobs // 20)))
            ids = [i for f in fleets for item in f["Instances"] for i in item["InstanceIds"]]
            list(pool.map(lambda i: ssm.put_parameter(
                Name="/ghscale/runners/" + i, Value="x" * 1200, Type="SecureString"), ids))
            list(pool.map(lambda b: sqs.delete_message_batch(QueueUrl=w.queue_url, Entries=[
                {"Id": str(k), "ReceiptHandle": m["ReceiptHandle"]} for k, m in enumerate(b)]),
                [b for b in batches if b]))
        return time.monotonic() - start


def limited_run(binary, limit, minutes):
    jobs = limit * minutes + limit // 2  # always a backlog until the end
    with tempfile.TemporaryDirectory() as tmp, harness.World(
            tmp, latency_ms=10, writes_per_minute=limit, app_writes_per_minute=limit) as w:
        w.start_ghscale(binary)
        w.queue_jobs(50_000, jobs)
        harness.wait_until(lambda: w.github_state()["jit_configs_issued"] >= limit * minutes + 1,
                           60 * (minutes + 2), "%d minutes of writes" % minutes)
        gh = w.github_state()
        w.stop_ghscale()
    per_second = {int(second): n for second, n in gh["writes_per_second"]}
    t0 = min(per_second)
    windows = [sum(per_second.get(t0 + m * 60 + s, 0) for s in range(60)) for m in range(minutes)]
    # The steady rate: every write before the last second that saw one, over
    # the time from the first write to that second (writes come in waves as
    # the window frees up; this counts whole waves).
    last = max(per_second)
    before = sum(n for second, n in per_second.items() if second < last)
    steady = 60.0 * before / (last - t0) if last > t0 else 0.0
    return windows, steady, gh


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ghscale", required=True)
    p.add_argument("--jobs", type=int, default=100)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--limited", type=int, default=0, metavar="L")
    p.add_argument("--minutes", type=int, default=3)
    p.add_argument("--moto-floor", action="store_true",
                   help="also time the burst's AWS calls made directly with boto3")
    p.add_argument("--ssm-throughput", type=float, default=1000,
                   help="aws.ssm_throughput: 40 is Parameter Store's default, "
                        "1000 its higher-throughput quota (default)")
    args = p.parse_args()
    binary = os.path.abspath(args.ghscale)
    if args.limited:
        windows, steady, gh = limited_run(binary, args.limited, args.minutes)
        for m, n in enumerate(windows):
            print("minute %d: %d writes (%.1f%% of L=%d)" % (m + 1, n, 100.0 * n / args.limited,
                                                            args.limited))
        print("median share of L: %.1f%%, steady rate %.1f writes/min (%.1f%% of L), "
              "secondary-limit 403s: %d, primary 403s: %d" % (
                  100.0 * statistics.median(windows) / args.limited, steady,
                  100.0 * steady / args.limited, gh["secondary_403s"], gh["primary_403s"]))
        return 0
    results = []
    for run in range(args.runs):
        r = burst_run(binary, args.jobs, run, args.ssm_throughput)
        results.append(r)
        print("run %d: %d runners launched in %.2f s, configured in %.2f s; CreateFleet %d "
              "(%.2f per runner), JIT configs %d; per runner: %.2f AWS calls, %.2f GitHub "
              "calls; secondary 403s %d" % (
                  run + 1, r["runners"], r["launched_s"] or -1, r["configured_s"] or -1,
                  r["create_fleet"], r["create_fleet"] / max(1, r["runners"]), r["jit"],
                  r["aws_per_runner"], r["github_per_runner"], r["secondary_403"]))
        print("       AWS calls: %s" % dict(sorted(r["aws_calls"].items())))
        print("       GitHub calls: %s" % r["github_calls"])
    done = [r["configured_s"] for r in results if r["configured_s"] is not None]
    if done:
        print("median: all %d launched and configured in %.2f s (%d runs)" % (
            args.jobs, statistics.median(done), len(done)))
    if args.moto_floor:
        floors = [moto_floor(args.jobs) for _ in range(args.runs)]
        print("moto floor: the same AWS calls straight from boto3 (16 at a time) take "
              "%.2f s (median of %d)" % (statistics.median(floors), len(floors)))
    return 0 if len(done) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
