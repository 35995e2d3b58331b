#!/usr/bin/env python3
"""Crash safety of webhook ingress on the durable embedded queue (issue 5).

Phase 1: `ghscale run` takes signed workflow_job deliveries into the durable
queue "jobs" (SQLite), which no pool polls yet, and is killed with SIGKILL in
the middle of a burst from several threads.
Phase 2: the same queues and files, now polled by a pool; a second burst
arrives while it works. Every job that got a 202 in either phase must be
processed exactly once ("message outcome" ... "done" in the JSON log), a job
whose delivery had no answer at the kill at most once, a job never sent never;
the queue and its dead-letter queue are empty after a clean SIGTERM (exit 0).
Also checked: /readyz is 200 while running, and /metrics passes the strict
Prometheus check (tests/peers/prom_check.py under /usr/bin/python3, which has
prometheus_client) and counts the accepted deliveries.

usage: durable_queue_peer_test.py --ghscale PATH [--keep]
Standard library only; every wait polls with a deadline.
"""
import argparse
import collections
import contextlib
import hashlib
import hmac
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
PROM_CHECK = os.path.join(HERE, "peers", "prom_check.py")
SECRET = "durable-queue-test-secret"
LABELS = ["self-hosted", "linux", "x64"]
ORG = "octo-org"
INSTALLATION = 4242

PHASE1_JOBS = 2000          # planned; the kill cuts the burst short
KILL_AFTER_ACCEPTED = 300   # SIGKILL once this many got their 202
PHASE2_FIRST_JOB = 1_000_001
PHASE2_JOBS = 300
SENDERS = 8


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, predicate, timeout, proc=None, shortfall=lambda: ""):
    """Polls `predicate` until it holds; fails after `timeout` seconds or as
    soon as `proc` exits, saying what `shortfall` says was missing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError("ghscale exited with %s while waiting for %s"
                                 % (proc.returncode, what))
        time.sleep(0.05)
    raise AssertionError("timed out after %ss waiting for %s %s" % (timeout, what, shortfall()))


def get(port, path):
    """(status, body) of a GET; (None, why) when nothing answers."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", path)
        res = conn.getresponse()
        out = (res.status, res.read().decode())
        conn.close()
        return out
    except OSError as err:
        return (None, str(err))


# -- configuration -----------------------------------------------------------------

def queue_tables(workdir):
    return """
[[queues]]
name = "jobs"
backend = "embedded"
dead_letter = "jobs-dlq"
visibility_timeout = "30s"
wait_time = "1s"
max_receive_count = 20
storage = "{jobs_db}"

[[queues]]
name = "jobs-dlq"
backend = "embedded"
wait_time = "1s"
storage = "{dlq_db}"

[[queues]]
name = "other"
backend = "embedded"
dead_letter = "other-dlq"
wait_time = "1s"

[[queues]]
name = "other-dlq"
backend = "embedded"
""".format(jobs_db=os.path.join(workdir, "jobs.db"),
           dlq_db=os.path.join(workdir, "jobs-dlq.db"))


def config_text(workdir, port, polled_queue):
    """Everything embedded; the one pool takes its jobs from `polled_queue`."""
    return """
[aws]
backend = "embedded"
{queues}
[[github_apps]]
name = "app"
backend = "embedded"
writes_per_minute = 100000

[[pools]]
name = "linux"
queue = "{polled}"
github_app = "app"
labels = {labels}
match = "subset"
max_runners = 100000
instance_types = ["m5.large"]
subnets = ["subnet-local"]
launch_template = "lt-local"
capacity = "on-demand"
job_queued_check = false

[scaler]
window = "50ms"

[retry]
base = "200ms"
max = "1s"

[simulation]
ec2_fleet_burst = 10000
ec2_fleet_refill = 1000.0

[timeouts]
drain = "10s"

[server]
listen = "127.0.0.1:{port}"
webhook_queue = "jobs"
webhook_secret_files = ["{secret}"]
threads = 8

[logging]
level = "debug"
format = "json"
""".format(queues=queue_tables(workdir), polled=polled_queue,
           labels=json.dumps(LABELS), port=port,
           secret=os.path.join(workdir, "webhook-secret"))


def write_config(workdir, name, text, ghscale):
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write(text)
    check = subprocess.run([ghscale, "check-config", path], capture_output=True, text=True)
    if check.returncode != 0:
        raise AssertionError("check-config %s failed:\n%s%s" % (name, check.stdout, check.stderr))
    return path


# -- ghscale and its log ---------------------------------------------------------------

class Ghscale:
    started = []  # every instance, so that a failing test leaves none running

    def __init__(self, binary, config, port, log_path):
        self.port = port
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen([binary, "run", "--config", config],
                                     stdout=self.log, stderr=self.log)
        Ghscale.started.append(self.proc)
        wait_until("/healthz on port %d" % port, lambda: get(port, "/healthz")[0] == 200,
                   60, self.proc)

    def stop(self, sig):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=60)
        finally:
            self.log.close()

    def records(self):
        """The JSON log lines so far (a line cut short by a kill is skipped)."""
        out = []
        with open(self.log_path) as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out


def done_counts(records):
    """Job id -> how many messages of queue "jobs" ended as "done"."""
    counts = collections.Counter()
    for r in records:
        if (r.get("msg") == "message outcome" and r.get("queue") == "jobs"
                and r.get("outcome") == "done"):
            job = r.get("job", "")  # "<id>#<attempt>"; "" if the body did not parse
            counts[int(job.split("#")[0]) if job else job] += 1
    return counts


# -- deliveries --------------------------------------------------------------------------

def queued_payload(job_id):
    """A workflow_job `queued` delivery as GitHub sends it."""
    return json.dumps({
        "action": "queued",
        "workflow_job": {"id": job_id, "run_id": job_id * 10, "run_attempt": 1,
                         "status": "queued", "labels": LABELS, "name": "build %d" % job_id,
                         "created_at": "2026-11-22T10:00:00Z"},
        "repository": {"name": "hello", "full_name": "%s/hello" % ORG,
                       "owner": {"login": ORG, "type": "Organization"}},
        "organization": {"login": ORG},
        "installation": {"id": INSTALLATION},
    }).encode()


class Burst:
    """Sends one delivery per job id from `SENDERS` threads, each on its own
    keep-alive connection (http.client writes headers and body in one send,
    so Nagle's algorithm adds no delay), and records what each delivery got: 202
    (accepted), another status (refused), or no answer (unanswered)."""

    def __init__(self, port, job_ids):
        self.port = port
        self.pending = collections.deque(job_ids)
        self.lock = threading.Lock()
        self.accepted = set()
        self.refused = {}
        self.unanswered = set()
        self.halted = threading.Event()
        self.threads = [threading.Thread(target=self._send) for _ in range(SENDERS)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def halt(self):
        """No new delivery starts; those in flight finish or fail."""
        self.halted.set()

    def join(self, timeout):
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                raise AssertionError("a sender is still running after %ss" % timeout)

    def sent(self):
        with self.lock:
            return self.accepted | set(self.refused) | self.unanswered

    def accepted_count(self):
        with self.lock:
            return len(self.accepted)

    def _next(self):
        with self.lock:
            if self.halted.is_set() or not self.pending:
                return None
            return self.pending.popleft()

    def _send(self):
        conn = None
        while (job_id := self._next()) is not None:
            body = queued_payload(job_id)
            headers = {
                "Content-Type": "application/json",
                "X-GitHub-Event": "workflow_job",
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": "sha256=" + hmac.new(
                    SECRET.encode(), body, hashlib.sha256).hexdigest(),
            }
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("POST", "/webhook", body, headers)
                res = conn.getresponse()
                res.read()
                status = res.status
            except (OSError, http.client.HTTPException):
                # Killed mid-answer (a reset, or a body cut short): unanswered.
                status = None
                conn = None  # a new connection for the next delivery
            with self.lock:
                if status == 202:
                    self.accepted.add(job_id)
                elif status is None:
                    self.unanswered.add(job_id)
                else:
                    self.refused[job_id] = status
        if conn is not None:
            conn.close()


# -- checks --------------------------------------------------------------------------------

def check(condition, message):
    if not condition:
        raise AssertionError(message)


def check_ready(server):
    status, body = get(server.port, "/readyz")
    check(status == 200, "/readyz answered %s:\n%s" % (status, body))


def check_metrics(server, workdir, accepted):
    status, page = get(server.port, "/metrics")
    check(status == 200, "/metrics answered %s" % status)
    path = os.path.join(workdir, "metrics.txt")
    with open(path, "w") as f:
        f.write(page)
    strict = subprocess.run(["/usr/bin/python3", PROM_CHECK, path],
                            capture_output=True, text=True)
    check(strict.returncode == 0, "metrics page rejected: %s%s" % (strict.stdout, strict.stderr))
    match = re.search(r'^ghscale_webhook_deliveries_total\{outcome="accepted"\} (\S+)$',
                      page, re.MULTILINE)
    check(match is not None, "no ghscale_webhook_deliveries_total{outcome=\"accepted\"}")
    check(float(match.group(1)) == accepted,
          "metrics count %s accepted deliveries, the senders got %d 202s"
          % (match.group(1), accepted))
    return strict.stdout.strip()


def stored_messages(db_path, queue):
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        return db.execute("SELECT COUNT(*) FROM messages WHERE queue = ?", (queue,)).fetchone()[0]


def recovered_messages(server):
    """How many messages the restarted queue "jobs" read from its store."""
    for r in server.records():
        if r.get("msg") == "queue recovered" and r.get("queue") == "jobs":
            return int(r["messages"])
    raise AssertionError("no 'queue recovered' line for 'jobs' in %s" % server.log_path)


# -- the test --------------------------------------------------------------------------------

def run(binary, workdir):
    with open(os.path.join(workdir, "webhook-secret"), "w") as f:
        f.write(SECRET + "\n")
    port = free_port()
    ingress_only = write_config(workdir, "c1.toml", config_text(workdir, port, "other"), binary)
    polling = write_config(workdir, "c2.toml", config_text(workdir, port, "jobs"), binary)

    # Phase 1: deliveries land on the durable queue; SIGKILL mid-burst.
    server = Ghscale(binary, ingress_only, port, os.path.join(workdir, "phase1.log"))
    check_ready(server)
    first = Burst(port, range(1, PHASE1_JOBS + 1)).start()
    wait_until("%d accepted deliveries" % KILL_AFTER_ACCEPTED,
               lambda: first.accepted_count() >= KILL_AFTER_ACCEPTED, 120, server.proc)
    server.proc.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    first.halt()
    first.join(60)
    check(server.stop(signal.SIGKILL) == -signal.SIGKILL, "phase 1 did not end by SIGKILL")
    check(not first.refused, "phase 1 refused deliveries: %s" % first.refused)
    check(not done_counts(server.records()), "phase 1 processed jobs: nothing polls 'jobs'")
    sent1 = first.sent()
    check(len(first.accepted) < PHASE1_JOBS, "the kill landed after the burst")
    print("phase 1: %d deliveries sent, %d accepted (202), %d unanswered at the SIGKILL"
          % (len(sent1), len(first.accepted), len(first.unanswered)))

    # Phase 2: restart on the same files, now polling; a second burst meanwhile.
    server = Ghscale(binary, polling, port, os.path.join(workdir, "phase2.log"))
    restarted_at = time.monotonic()
    recovered = recovered_messages(server)
    check(len(first.accepted) <= recovered <= len(sent1),
          "recovered %d messages: %d were accepted, %d sent"
          % (recovered, len(first.accepted), len(sent1)))
    second = Burst(port, range(PHASE2_FIRST_JOB, PHASE2_FIRST_JOB + PHASE2_JOBS)).start()
    second.join(120)
    check(second.accepted == set(range(PHASE2_FIRST_JOB, PHASE2_FIRST_JOB + PHASE2_JOBS)),
          "phase 2 deliveries not all accepted: refused %s, unanswered %s"
          % (second.refused, sorted(second.unanswered)[:10]))
    must_be_done = first.accepted | second.accepted

    def not_done():
        return must_be_done - set(done_counts(server.records()))

    wait_until("every accepted job to be processed", lambda: not not_done(), 120, server.proc,
               lambda: "(%d of %d never processed, e.g. %s)"
               % (len(not_done()), len(must_be_done), sorted(not_done())[:5]))
    drained_at = time.monotonic()
    check_ready(server)
    metrics_summary = check_metrics(server, workdir, len(second.accepted))
    exit_code = server.stop(signal.SIGTERM)
    check(exit_code == 0, "ghscale exited with %s after SIGTERM" % exit_code)

    # Exactly once, from the whole phase 2 log (the drain included).
    done = done_counts(server.records())
    twice = sorted(j for j in must_be_done if done[j] != 1)
    check(not twice, "accepted jobs not done exactly once: %s"
          % [(j, done[j]) for j in twice[:10]])
    maybe = sorted(j for j in first.unanswered if done[j] > 1)
    check(not maybe, "unanswered jobs done more than once: %s" % maybe[:10])
    strangers = sorted(set(done) - must_be_done - first.unanswered, key=str)
    check(not strangers, "jobs done that were never sent: %s" % strangers[:10])
    recovered_unanswered = sum(1 for j in first.unanswered if done[j] == 1)
    jobs_left = stored_messages(os.path.join(workdir, "jobs.db"), "jobs")
    dead = stored_messages(os.path.join(workdir, "jobs-dlq.db"), "jobs-dlq")
    check(jobs_left == 0, "%d messages left on 'jobs'" % jobs_left)
    check(dead == 0, "%d messages dead-lettered" % dead)

    print("phase 2: %d messages recovered from the store; "
          "%d more deliveries accepted while processing; "
          "%d jobs processed exactly once (%d accepted before the kill, "
          "%d unanswered at the kill that had been committed), all processed %.1f s after "
          "the restart (%.1f s after the kill); queue and dead-letter queue empty; "
          "exit 0 on SIGTERM; metrics: %s"
          % (recovered, len(second.accepted), len(must_be_done) + recovered_unanswered,
             len(first.accepted), recovered_unanswered, drained_at - restarted_at,
             drained_at - killed_at, metrics_summary))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ghscale", required=True, help="path of the ghscale binary")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="durable-queue-test-")
    try:
        run(os.path.abspath(args.ghscale), workdir)
    except AssertionError as err:
        print("FAIL: %s (logs in %s)" % (err, workdir), file=sys.stderr)
        return 1
    finally:
        for proc in Ghscale.started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if args.keep:
        print("work directory: %s" % workdir)
    else:
        shutil.rmtree(workdir)
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
