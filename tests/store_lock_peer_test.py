#!/usr/bin/env python3
"""One process per durable queue store: the lock on `<storage>.lock`.

Everything embedded (like tests/durable_queue_peer_test.py), the pool paced
slow (GitHub answers after a delay, one request at a time) so that jobs are
still queued and in flight while the others try their luck:

1. A: listener + pool on the durable queue "jobs"; a first batch of signed
   workflow_job deliveries, all accepted (202).
2. B: A's stores, another port: exits 2 within seconds, before it polls
   anything; stderr names a store of A's and A's pid; no "running" line,
   no runner configured; the lock file still holds A's pid.
3. C: exactly A's configuration: exits 2 on the port ("cannot listen on"),
   never reaching the store (its stderr does not mention it).
4. A serves the first batch, every job once (one "runner configured", one
   "message outcome" done in its log, none in B's or C's).
5. A second batch; A is killed with SIGKILL mid-work; D (A's configuration)
   starts although the lock file still holds A's dead pid, and serves what
   was left: every accepted job is served at least once across A and D,
   no process configures two runners for one job; jobs served by both A and
   D (in flight at the kill) are counted, not failed.
6. `ghscale check-config` passes on B's configuration while A holds the
   lock (the lock is a runtime fact, not a configuration problem).

usage: store_lock_peer_test.py --ghscale PATH [--keep]
Standard library only; every wait has a deadline, every process started is
killed on the way out.
"""
import argparse
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from durable_queue_peer_test import (  # noqa: E402
    LABELS, SECRET, Burst, check, free_port, get, stored_messages, wait_until)

FIRST_BATCH = range(1, 41)            # served by A alone
SECOND_BATCH = range(1001, 1041)      # A is killed while serving these
KILL_AFTER_CONFIGURED = 10            # runners of the second batch in A's log
EXIT_DEADLINE = 15                    # seconds B and C may take to refuse
STEP_DEADLINE = 60                    # any other wait


# -- configuration -----------------------------------------------------------------

def config_text(workdir, port):
    """Everything embedded; the pool polls the durable queue "jobs", which the
    listener feeds. GitHub answers after 100 ms, one request at a time, so a
    batch of 40 takes seconds. Visibility 6 s: what A held at its kill comes
    back to D soon."""
    return """
[aws]
backend = "embedded"

[[queues]]
name = "jobs"
backend = "embedded"
dead_letter = "jobs-dlq"
visibility_timeout = "6s"
wait_time = "1s"
max_receive_count = 50
storage = "{jobs_db}"

[[queues]]
name = "jobs-dlq"
backend = "embedded"
wait_time = "1s"
storage = "{dlq_db}"

[[github_apps]]
name = "app"
backend = "embedded"
writes_per_minute = 100000
max_concurrency = 1

[[pools]]
name = "linux"
queue = "jobs"
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
github_latency = "100ms"

[timeouts]
drain = "5s"

[server]
listen = "127.0.0.1:{port}"
webhook_queue = "jobs"
webhook_secret_files = ["{secret}"]
threads = 4

[logging]
level = "debug"
format = "json"
""".format(jobs_db=os.path.join(workdir, "jobs.db"),
           dlq_db=os.path.join(workdir, "jobs-dlq.db"),
           labels=json.dumps(LABELS), port=port,
           secret=os.path.join(workdir, "webhook-secret"))


def write_config(workdir, name, text):
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


# -- processes ---------------------------------------------------------------------------

class Process:
    """One `ghscale run`, stdout and stderr in their own files. The JSON log
    goes to stderr, as does the one line of a refusal ("ghscale: ...")."""
    started = []  # every one, so that none outlives the test

    def __init__(self, binary, config, name, workdir):
        self.name = name
        self.out_path = os.path.join(workdir, name + ".log")
        self.err_path = os.path.join(workdir, name + ".err")
        self._out = open(self.out_path, "w")
        self._err = open(self.err_path, "w")
        self.began = time.monotonic()
        self.proc = subprocess.Popen([binary, "run", "--config", config],
                                     stdout=self._out, stderr=self._err)
        Process.started.append(self)
        self.pid = self.proc.pid

    def wait_exit(self, timeout):
        """(exit code, seconds since start); fails after `timeout` s."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("%s still running after %ss" % (self.name, timeout))
        return code, time.monotonic() - self.began

    def wait_healthy(self, port):
        wait_until("%s's /healthz" % self.name, lambda: get(port, "/healthz")[0] == 200,
                   STEP_DEADLINE, self.proc)

    def stop(self, sig, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait_exit(timeout)[0]

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self._out, self._err):
            if not f.closed:
                f.close()

    def _lines(self):
        for path in (self.out_path, self.err_path):
            with open(path) as f:
                yield from f.read().splitlines()

    def stderr(self):
        """What the process wrote that is not a JSON log line."""
        plain = []
        for line in self._lines():
            try:
                json.loads(line)
            except ValueError:
                plain.append(line)
        return "\n".join(plain)

    def records(self):
        """The JSON log lines so far (a line cut short by a kill is skipped)."""
        out = []
        for line in self._lines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                out.append(record)
        return out

    def tail(self, lines=15):
        text = []
        for path in (self.out_path, self.err_path):
            with open(path) as f:
                rows = f.read().splitlines()
            text.append("--- %s (last %d of %d lines)" % (
                os.path.basename(path), min(lines, len(rows)), len(rows)))
            text.extend(rows[-lines:])
        return "\n".join(text)


def job_of(record):
    job = record.get("job", "")  # "<id>#<attempt>"
    try:
        return int(job.split("#")[0])
    except ValueError:
        return job


def configured(records):
    """Job id -> runners configured for it ("runner configured" lines)."""
    return collections.Counter(job_of(r) for r in records if r.get("msg") == "runner configured")


def done(records):
    """Job id -> messages of "jobs" that ended as "done"."""
    return collections.Counter(
        job_of(r) for r in records
        if r.get("msg") == "message outcome" and r.get("queue") == "jobs"
        and r.get("outcome") == "done")


def messages(records, *names):
    return [r for r in records if r.get("msg") in names]


def lock_holder(path):
    with open(path + ".lock") as f:
        return f.read().strip()


def first_line(text):
    return text.strip().splitlines()[0] if text.strip() else "(nothing)"


# -- the test -------------------------------------------------------------------------------

def run(binary, workdir, procs):
    with open(os.path.join(workdir, "webhook-secret"), "w") as f:
        f.write(SECRET + "\n")
    jobs_db = os.path.join(workdir, "jobs.db")
    dlq_db = os.path.join(workdir, "jobs-dlq.db")
    port_a, port_b = free_port(), free_port()
    while port_b == port_a:
        port_b = free_port()
    conf_a = write_config(workdir, "a.toml", config_text(workdir, port_a))
    conf_b = write_config(workdir, "b.toml", config_text(workdir, port_b))

    def start(config, name):
        p = Process(binary, config, name, workdir)
        procs.append(p)
        return p

    # 1. A takes the first batch and starts serving it, slowly.
    a = start(conf_a, "a")
    a.wait_healthy(port_a)
    check(lock_holder(jobs_db) == str(a.pid) and lock_holder(dlq_db) == str(a.pid),
          "A's lock files hold %s / %s, A is %d"
          % (lock_holder(jobs_db), lock_holder(dlq_db), a.pid))
    burst = Burst(port_a, FIRST_BATCH).start()
    burst.join(STEP_DEADLINE)
    check(burst.accepted == set(FIRST_BATCH), "A refused %s, left unanswered %s"
          % (burst.refused, sorted(burst.unanswered)))
    print("1. A (pid %d, port %d) accepted %d deliveries (202) in %.2f s; %d runners "
          "configured so far" % (a.pid, port_a, len(burst.accepted),
                                 time.monotonic() - a.began,
                                 len(set(FIRST_BATCH) & set(configured(a.records())))))

    # 2. B: A's stores, its own port.
    b = start(conf_b, "b")
    code, took = b.wait_exit(EXIT_DEADLINE)
    err = b.stderr()
    waiting = len(set(FIRST_BATCH) - set(configured(a.records())))
    check(code == 2, "B exited with %s, not 2; stderr: %s" % (code, err))
    check(str(a.pid) in err, "B's stderr does not name A's pid %d: %s" % (a.pid, err))
    named = [p for p in (jobs_db, dlq_db) if p in err]
    check(named, "B's stderr names neither store: %s" % err)
    check("in use by process %d" % a.pid in err, "B's stderr lacks 'in use by process %d': %s"
          % (a.pid, err))
    check("(lock file %s.lock)" % named[0] in err, "B's stderr lacks the lock file: %s" % err)
    b_records = b.records()
    check(not messages(b_records, "running", "poll loop started", "runner configured",
                       "message outcome"),
          "B got further than the store: %s" % messages(
              b_records, "running", "poll loop started", "runner configured",
              "message outcome")[:3])
    check(lock_holder(jobs_db) == str(a.pid) and lock_holder(dlq_db) == str(a.pid),
          "after B the lock files hold %s / %s" % (lock_holder(jobs_db), lock_holder(dlq_db)))
    check(a.proc.poll() is None, "A exited when B tried the store")
    print("2. B (port %d) exited %d after %.2f s while %d of A's jobs still waited for a "
          "runner; %d log lines, no 'running', nothing launched; A's pid still in the lock "
          "files; stderr: %s" % (port_b, code, took, waiting, len(b_records), first_line(err)))

    # 3. C: exactly A's configuration.
    c = start(conf_a, "c")
    code, took = c.wait_exit(EXIT_DEADLINE)
    err = c.stderr()
    check(code == 2, "C exited with %s, not 2; stderr: %s" % (code, err))
    check("cannot listen on 127.0.0.1:%d" % port_a in err,
          "C's stderr does not say 'cannot listen on 127.0.0.1:%d': %s" % (port_a, err))
    check(".db" not in err and "queue store" not in err and "lock file" not in err,
          "C's stderr mentions the store: %s" % err)
    c_records = c.records()
    check(not messages(c_records, "running", "queue recovered", "poll loop started",
                       "runner configured", "message outcome"),
          "C got past its listener: %s" % c_records[:3])
    check(lock_holder(jobs_db) == str(a.pid), "after C the lock file holds %s"
          % lock_holder(jobs_db))
    print("3. C exited %d after %.2f s, %d log lines, the store untouched; stderr: %s"
          % (code, took, len(c_records), first_line(err)))

    # 6 (documented here, while A holds the lock): check-config on B's configuration.
    checked = subprocess.run([binary, "check-config", conf_b], capture_output=True,
                             text=True, timeout=EXIT_DEADLINE)
    check(checked.returncode == 0, "check-config on B's configuration exited %d: %s%s"
          % (checked.returncode, checked.stdout, checked.stderr))
    check(a.proc.poll() is None and lock_holder(jobs_db) == str(a.pid),
          "check-config disturbed A")
    check_config_line = ("6. check-config on B's configuration exited 0 while A (pid %d) "
                         "held the lock (%d lines of output)"
                         % (a.pid, len(checked.stdout.splitlines())))

    # 4. A serves the first batch, each job once.
    wait_until("A to serve the first batch",
               lambda: set(FIRST_BATCH) <= set(done(a.records())), STEP_DEADLINE, a.proc,
               lambda: "(%s left)" % sorted(set(FIRST_BATCH) - set(done(a.records()))))
    served_at = time.monotonic() - a.began
    a_records = a.records()
    a_conf, a_done = configured(a_records), done(a_records)
    not_once = sorted(j for j in FIRST_BATCH if a_conf[j] != 1 or a_done[j] != 1)
    check(not not_once, "first batch not served exactly once by A: %s"
          % [(j, a_conf[j], a_done[j]) for j in not_once[:10]])
    strangers = sorted(set(a_conf) - set(FIRST_BATCH), key=str)
    check(not strangers, "A configured runners for jobs never sent: %s" % strangers[:10])
    for other in (b, c):
        recs = other.records()
        check(not configured(recs) and not done(recs), "%s served jobs" % other.name)
    print("4. A served the %d jobs of the first batch exactly once each (%d runners "
          "configured, %d messages done) %.1f s after it started; B and C served none"
          % (len(FIRST_BATCH), sum(a_conf.values()), sum(a_done[j] for j in FIRST_BATCH),
             served_at))

    # 5. The second batch; SIGKILL A mid-work; D on A's configuration.
    second = Burst(port_a, SECOND_BATCH).start()
    # "runner configured" lines come one per GitHub answer (100 ms apart);
    # "message outcome" done lines come in bunches as launches report back.
    wait_until("A to configure %d runners of the second batch" % KILL_AFTER_CONFIGURED,
               lambda: len(set(SECOND_BATCH) & set(configured(a.records())))
               >= KILL_AFTER_CONFIGURED, STEP_DEADLINE, a.proc)
    a.proc.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    second.halt()
    second.join(STEP_DEADLINE)
    check(a.stop(signal.SIGKILL) == -signal.SIGKILL, "A did not end by SIGKILL")
    check(not second.refused, "second batch refused: %s" % second.refused)
    a_records = a.records()
    a_conf, a_done = configured(a_records), done(a_records)
    a_second = set(SECOND_BATCH) & set(a_conf)
    stale = lock_holder(jobs_db)
    check(stale == str(a.pid), "after the kill the lock file holds %r, not A's pid %d"
          % (stale, a.pid))
    print("5. A killed (SIGKILL) with %d of the second batch accepted, %d unanswered, "
          "%d configured and %d done by A; the lock files still hold A's pid %s"
          % (len(second.accepted), len(second.unanswered), len(a_second),
             len(set(SECOND_BATCH) & set(a_done)), stale))

    d = start(conf_a, "d")
    d.wait_healthy(port_a)
    started_in = time.monotonic() - d.began
    check(lock_holder(jobs_db) == str(d.pid) and lock_holder(dlq_db) == str(d.pid),
          "D's lock files hold %s / %s, D is %d"
          % (lock_holder(jobs_db), lock_holder(dlq_db), d.pid))
    # The store is opened (and locked) before /healthz answers; the queue
    # actor logs what it read when it first runs, which may come later.

    def recovered():
        return [r for r in d.records() if r.get("msg") == "queue recovered"
                and r.get("queue") == "jobs"]
    wait_until("D's 'queue recovered' line for 'jobs'", recovered, STEP_DEADLINE, d.proc)
    recovered = recovered()
    must = burst.accepted | second.accepted

    def unserved():
        served = set(a_conf) | set(configured(d.records()))
        return must - served

    def unsettled():
        # A job is settled once some process deleted its message ("done").
        return must - set(a_done) - set(done(d.records()))

    wait_until("every accepted job to be served and settled across A and D",
               lambda: not unserved() and not unsettled(), STEP_DEADLINE, d.proc,
               lambda: "(unserved %s, unsettled %s)"
               % (sorted(unserved())[:10], sorted(unsettled())[:10]))
    finished_in = time.monotonic() - killed_at
    code = d.stop(signal.SIGTERM)
    check(code == 0, "D exited %s after SIGTERM" % code)
    d_records = d.records()
    d_conf = configured(d_records)
    for name, counts in (("A", a_conf), ("D", d_conf)):
        twice = sorted((j, n) for j, n in counts.items() if n > 1)
        check(not twice, "%s configured more than one runner for %s" % (name, twice[:10]))
    strangers = sorted((set(d_conf) | set(a_conf)) - must - second.unanswered, key=str)
    check(not strangers, "runners configured for jobs never accepted: %s" % strangers[:10])
    redone_first = sorted(set(FIRST_BATCH) & set(d_conf))
    check(not redone_first, "D served jobs A had settled before the kill: %s" % redone_first)
    jobs_left = stored_messages(jobs_db, "jobs")
    dead = stored_messages(dlq_db, "jobs-dlq")
    check(jobs_left == 0 and dead == 0, "after D: %d messages left on 'jobs', %d dead-lettered"
          % (jobs_left, dead))
    # Served by both: A configured a runner and was killed before the delete
    # of its message was committed, so the message came back to D after its
    # visibility timeout. "message outcome" done is logged just before the
    # delete is sent, so a job A logged done may (rarely) be among them.
    both = sorted(set(a_conf) & set(d_conf))
    both_logged_done = sorted(set(both) & set(a_done))
    by_d = set(d_conf) & must
    print("5. D (pid %d) started %.2f s after launch over A's stale lock, recovered %s "
          "messages (%s in flight), served %d jobs; every one of the %d accepted jobs "
          "served at least once, %.1f s after the kill; %d served by both A and D %s "
          "(%d of them logged done by A); no process configured a job twice; D exited 0 "
          "on SIGTERM, 'jobs' and 'jobs-dlq' empty"
          % (d.pid, started_in, recovered[0].get("messages"), recovered[0].get("in_flight"),
             len(by_d), len(must), finished_in, len(both), both, len(both_logged_done)))
    print(check_config_line)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ghscale", required=True, help="path of the ghscale binary")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="store-lock-test-")
    procs = []
    began = time.monotonic()
    ok = False
    try:
        run(os.path.abspath(args.ghscale), workdir, procs)
        ok = True
    except AssertionError as err:
        print("FAIL: %s" % err)
        for p in procs:
            print(p.tail())
        print("(logs in %s)" % workdir)
    finally:
        for p in Process.started:
            p.close()
    if ok:
        print("store_lock: ok (%.1f s)" % (time.monotonic() - began))
        if args.keep:
            print("work directory: %s" % workdir)
        else:
            shutil.rmtree(workdir)
        return 0
    print("store_lock: FAILED")
    return 1


if __name__ == "__main__":
    sys.exit(main())
