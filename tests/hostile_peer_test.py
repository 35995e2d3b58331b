#!/usr/bin/env python3
"""Hostile clients against ghscale's webhook listener.

`ghscale run` on embedded backends, with its listener taking signed
workflow_job deliveries into a durable embedded queue that a pool polls, and
the listener's bounds configured in [server]: 512 connections, 64 per client
address, 100 header lines, 16 KiB of header, an 8 KiB request line, 10 s for
a request head and for a body, 15 s of keep-alive, and a 10 s drain.
Hostile clients connect from loopback addresses other than 127.0.0.1
(127.0.0.2, 127.0.0.3, ...: all of 127/8 is loopback on Linux) over raw
sockets, so that the per-client bound applies to them and not to the
legitimate deliveries, which come from 127.0.0.1 through http.client.

deep_nesting      a signed delivery whose body nests 200,000 arrays (under
                  the 1 MiB body limit) is answered 400, and the process lives
header_flood      8 connections each send a request line and then up to
                  1,000,000 header lines as fast as the socket takes them:
                  each is answered 431 before the million, and the process's
                  RSS stays under its idle RSS + 100 MB throughout
slow_clients      200 connections drip a request head one byte every 4 s;
                  meanwhile 100 signed deliveries (4 at a time) are each
                  answered 202 within 2 s, /healthz and /metrics answer 200
                  within 2 s every 0.5 s, and the server cuts every slow
                  connection (408 or a close) by head_timeout + 5 s
per_client_limit  100 idle connections from one address: at most 64 stay
                  open, the others are closed within 2 s, and a delivery
                  from 127.0.0.1 is still answered 202
malformed         no request line, a 20,000-byte URL (414), an absurd method,
                  a body shorter than its Content-Length (408 by
                  body_timeout + 5 s), a Content-Length of 10^12 (413 with
                  no body read), a chunked body that stalls (408) and one
                  that never ends (413), two X-Hub-Signature-256 headers
                  (400 or 401, never 202), GET on the webhook path (405);
                  /healthz answers 200 after each
drain_under_load  with 200 slow clients and a stream of deliveries going on,
                  SIGTERM: exit 0 within the 10 s drain + 5 s
and at the end: the webhook secret and the hostile bodies never appear in
ghscale's log (header values the attacker chose are reported, not failed).

A case that kills ghscale fails with its exit status (139 = SIGSEGV), and
the next case runs on a restarted ghscale. Prints one line per case, "ok" or
"FAIL <reason>", with its figures below it (RSS idle / peak / after under
the header flood, p50 / p99 / max of the deliveries under slow clients,
slow-connection lifetimes, time to exit after SIGTERM), then
"hostile: ok" or "hostile: FAILED" (exit 1, with the tail of ghscale's log).

  python3 tests/hostile_peer_test.py --ghscale build/ghscale [--case NAME] [--keep]

GHSCALE_OLD_LISTENER=1 leaves the listener bounds out of the configuration,
for a binary with the cpp-httplib listener, which refuses them as unknown
keys (it is expected to fail several cases). Standard library only; every
wait has a deadline, every socket and process is closed on the way out, and
the whole script stops itself after 14 minutes (ctest's TIMEOUT is 15).
"""
import argparse
import collections
import concurrent.futures
import errno
import hashlib
import hmac
import http.client
import itertools
import os
import re
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
# The process wrapper, configuration check and payload of the durable-queue
# test are this test's too.
from durable_queue_peer_test import (  # noqa: E402
    Ghscale, free_port, queued_payload, write_config)

SECRET = "hostile-peer-secret-5e1f0c2a9d"
JUNK = "hostile-junk-9b7d41"     # in header values, URLs and methods the attacker picks
BODY_MARK = "hostile-body-3c8e27"  # in bodies, which must never be logged
WEBHOOK = "/webhook"
SERVER = "127.0.0.1"

# The listener's bounds, as configured (GHSCALE_OLD_LISTENER=1 leaves them out).
MAX_CONNECTIONS = 512
PER_CLIENT = 64
MAX_HEADERS = 100
MAX_HEADER_BYTES = 16384
MAX_REQUEST_LINE = 8192
HEAD_TIMEOUT = 10.0
BODY_TIMEOUT = 10.0
KEEP_ALIVE = 15.0
DRAIN = 10.0
MAX_BODY = 1048576               # max_body_bytes' default
SLACK = 5.0                      # s allowed past a configured timeout

DEPTH = 200_000                  # deep_nesting: nested arrays
FLOOD_CONNECTIONS = 8
FLOOD_LINES = 1_000_000          # header lines per connection at the most
FLOOD_LINES_PER_CHUNK = 2000
FLOOD_DEADLINE = 30.0            # s per flooding connection
RSS_LIMIT_MB = 100               # over idle, during the flood
RSS_ABORT_MB = 300               # over idle: the flood stops, to spare the machine
SLOW_CONNECTIONS = 200
SLOW_PER_SOURCE = 10
DRIP_EVERY = 4.0                 # s between two bytes of a slow client
DRIP_FOR = 60.0                  # s a slow client keeps dripping at the most
LEGIT_DELIVERIES = 100
LEGIT_THREADS = 4
LEGIT_LIMIT = 2.0                # s a delivery or a health probe may take
LEGIT_TIMEOUT = 5.0              # s after which a delivery counts as unanswered
LEGIT_BUDGET = 30.0              # s in which the deliveries of a case start
IDLE_CONNECTIONS = 100
PROMPTLY = 2.0                   # s within which refused connections are closed, and
                                 # a request refused on its head alone is answered
OVERALL_LIMIT = 840              # s for the whole script

OLD_LISTENER = os.environ.get("GHSCALE_OLD_LISTENER") == "1"
JOB_IDS = itertools.count(1)     # a new job id for every delivery


class OverallTimeout(BaseException):
    """Raised by SIGALRM when the script overran OVERALL_LIMIT (a backstop:
    every wait has its own deadline first)."""


# -- configuration -----------------------------------------------------------------

def config_text(workdir, port):
    limits = "" if OLD_LISTENER else """max_connections = {conns}
max_connections_per_client = {per_client}
max_headers = {headers}
max_header_bytes = {header_bytes}
max_request_line = {line}
head_timeout = "{head}s"
body_timeout = "{body}s"
keep_alive_timeout = "{keep}s"
""".format(conns=MAX_CONNECTIONS, per_client=PER_CLIENT, headers=MAX_HEADERS,
           header_bytes=MAX_HEADER_BYTES, line=MAX_REQUEST_LINE,
           head=int(HEAD_TIMEOUT), body=int(BODY_TIMEOUT), keep=int(KEEP_ALIVE))
    return """
[aws]
backend = "embedded"

[[queues]]
name = "jobs"
backend = "embedded"
dead_letter = "jobs-dlq"
wait_time = "1s"
storage = "{jobs_db}"

[[queues]]
name = "jobs-dlq"
backend = "embedded"
storage = "{dlq_db}"

[[github_apps]]
name = "app"
backend = "embedded"
writes_per_minute = 100000

[[pools]]
name = "linux"
queue = "jobs"
github_app = "app"
labels = ["self-hosted", "linux", "x64"]
match = "subset"
max_runners = 100000
instance_types = ["m5.large"]
subnets = ["subnet-local"]
launch_template = "lt-local"
capacity = "on-demand"
job_queued_check = false

[simulation]
ec2_fleet_burst = 10000
ec2_fleet_refill = 1000.0

[timeouts]
drain = "{drain}s"

[server]
listen = "{server}:{port}"
webhook_path = "{path}"
webhook_queue = "jobs"
webhook_secret_files = ["{secret}"]
{limits}
[logging]
level = "debug"
format = "json"
""".format(jobs_db=os.path.join(workdir, "jobs.db"),
           dlq_db=os.path.join(workdir, "jobs-dlq.db"), drain=int(DRAIN),
           server=SERVER, port=port, path=WEBHOOK,
           secret=os.path.join(workdir, "webhook-secret"), limits=limits)


# -- small helpers -------------------------------------------------------------------

def check(condition, message):
    if not condition:
        raise AssertionError(message)


def describe_exit(code):
    if code is None:
        return "still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "signal %d" % -code
        return "killed by %s (exit %d)" % (name, 128 - code)
    return "exit %d" % code


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100.0 * (len(ordered) - 1))))]


def spread(values, unit="s"):
    if not values:
        return "none"
    return "p50 %.3f%s, p99 %.3f%s, max %.3f%s" % (
        percentile(values, 50), unit, percentile(values, 99), unit, max(values), unit)


def rss_mb(pid):
    """VmRSS of `pid` in MB; None once it is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def signature(body, secret=SECRET):
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signed_headers(body):
    return {"Content-Type": "application/json",
            "X-GitHub-Event": "workflow_job",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": signature(body)}


def raw_head(method, path, headers):
    """A request head as bytes, headers in order (a name may repeat)."""
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: %s" % SERVER]
    lines += ["%s: %s" % (name, value) for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def deliver(port, body, timeout=LEGIT_TIMEOUT, signed=True):
    """One signed delivery from 127.0.0.1 on a new connection (as GitHub
    sends them): (status or None, seconds, why there was no answer)."""
    started = time.monotonic()
    headers = signed_headers(body)
    if not signed:
        del headers["X-Hub-Signature-256"]
    conn = http.client.HTTPConnection(SERVER, port, timeout=timeout)
    try:
        conn.request("POST", WEBHOOK, body, headers)
        res = conn.getresponse()
        res.read()
        return res.status, time.monotonic() - started, ""
    except (OSError, http.client.HTTPException) as err:
        return None, time.monotonic() - started, "%s: %s" % (type(err).__name__, err)
    finally:
        conn.close()


def probe(port, path, timeout=LEGIT_LIMIT):
    """(status or None, seconds) of a GET from 127.0.0.1."""
    started = time.monotonic()
    conn = http.client.HTTPConnection(SERVER, port, timeout=timeout)
    try:
        conn.request("GET", path)
        res = conn.getresponse()
        res.read()
        return res.status, time.monotonic() - started
    except (OSError, http.client.HTTPException):
        return None, time.monotonic() - started
    finally:
        conn.close()


STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})")


def status_of(data):
    match = STATUS_LINE.match(data)
    return int(match.group(1)) if match else None


class Sockets:
    """The raw client sockets of a case, all closed when it ends."""

    def __init__(self):
        self._lock = threading.Lock()
        self._all = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close_all()

    def new(self, source):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with self._lock:
            self._all.append(s)
        s.bind((source, 0))
        return s

    def connect(self, source, port, timeout, sndbuf=None):
        s = self.new(source)
        if sndbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        s.settimeout(timeout)
        s.connect((SERVER, port))
        return s

    def close_all(self):
        with self._lock:
            socks, self._all = self._all, []
        for s in socks:
            try:
                s.close()
            except OSError:
                pass


Answer = collections.namedtuple("Answer", "status how seconds data")


def read_answer(sock, timeout, started=None):
    """What the server does next on `sock` within `timeout` s: `how` is
    "answered" (a whole response head came), "closed" (end of stream),
    "reset", or "silent"; `seconds` count from `started` (default: now)."""
    started = time.monotonic() if started is None else started
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return Answer(status_of(data), "silent", time.monotonic() - started, data)
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            return Answer(status_of(data), "reset", time.monotonic() - started, data)
        if not chunk:
            return Answer(status_of(data), "closed", time.monotonic() - started, data)
        data += chunk
        if b"\r\n\r\n" in data:
            return Answer(status_of(data), "answered", time.monotonic() - started, data)


def describe_answer(a):
    if a.status is not None:
        return "%d after %.1f s" % (a.status, a.seconds)
    return {"closed": "closed without an answer", "reset": "reset without an answer",
            "silent": "no answer", "answered": "a garbled answer %r" % a.data[:40]
            }[a.how] + " after %.1f s" % a.seconds


# -- background load ----------------------------------------------------------------

class RssSampler:
    """VmRSS of a process every 0.2 s until stopped (or it exits)."""

    def __init__(self, pid, abort_above):
        self.pid = pid
        self.abort_above = abort_above
        self.peak = rss_mb(pid) or 0.0
        self.over = threading.Event()   # RSS passed abort_above
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(5)

    def _run(self):
        deadline = time.monotonic() + 300
        while not self._stop.is_set() and time.monotonic() < deadline:
            rss = rss_mb(self.pid)
            if rss is None:
                return
            self.peak = max(self.peak, rss)
            if rss > self.abort_above:
                self.over.set()
            self._stop.wait(0.2)


class Deliveries:
    """Signed deliveries from 127.0.0.1 by `threads` senders, each delivery on
    a new connection: `count` of them, or a stream until stop(); none starts
    after `budget` s. Records (status, seconds, why) per delivery."""

    def __init__(self, port, count=None, threads=LEGIT_THREADS, budget=LEGIT_BUDGET):
        self.port = port
        self.left = count
        self.budget = budget
        self.lock = threading.Lock()
        self.results = []
        self.deadline = None
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send, daemon=True)
                         for _ in range(threads)]

    def start(self):
        self.deadline = time.monotonic() + self.budget
        for t in self._threads:
            t.start()
        return self

    def stop(self):
        self._stop.set()
        return self.join()

    def join(self, timeout=LEGIT_BUDGET + 3 * LEGIT_TIMEOUT):
        end = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))
        return self

    def _take(self):
        with self.lock:
            if self._stop.is_set() or time.monotonic() > self.deadline:
                return False
            if self.left is not None:
                if self.left == 0:
                    return False
                self.left -= 1
            return True

    def _send(self):
        while self._take():
            result = deliver(self.port, queued_payload(next(JOB_IDS)))
            with self.lock:
                self.results.append(result)
            if result[0] is None:
                self._stop.wait(0.2)  # refused at once (the listener is gone): no spinning

    def summary(self):
        with self.lock:
            results = list(self.results)
        accepted = [s for st, s, _ in results if st == 202]
        return results, accepted


class OpsMonitor:
    """GET /healthz and /metrics every 0.5 s until stopped (at most
    `lasting` s); records (path, status, seconds) per probe."""

    def __init__(self, port, lasting=120.0):
        self.port = port
        self.lasting = lasting
        self.results = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(3 * LEGIT_LIMIT + 1)
        return self

    def _run(self):
        deadline = time.monotonic() + self.lasting
        while not self._stop.is_set() and time.monotonic() < deadline:
            for path in ("/healthz", "/metrics"):
                status, secs = probe(self.port, path)
                self.results.append((path, status, secs))
            self._stop.wait(0.5)

    def problems(self):
        bad = [(p, st, s) for p, st, s in self.results if st != 200 or s > LEGIT_LIMIT]
        if not self.results:
            return ["no /healthz or /metrics probe ran"]
        if not bad:
            return []
        path, st, secs = bad[0]
        return ["%d of %d /healthz and /metrics probes not answered 200 within %.0f s "
                "(first: %s %s after %.1f s)"
                % (len(bad), len(self.results), LEGIT_LIMIT, path,
                   st if st is not None else "no answer", secs)]


class SlowDrip:
    """`count` connections, `per_source` from each of 127.0.0.<first>, ...,
    each sending a request head one byte every DRIP_EVERY s for at most
    DRIP_FOR s. Records, per connection, how long it lasted and whether the
    server ended it (an answer, a close or a reset) or the client did."""

    HEAD = (b"POST " + WEBHOOK.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nX-GitHub-Event: workflow_job\r\n")

    def __init__(self, port, sockets, count=SLOW_CONNECTIONS, per_source=SLOW_PER_SOURCE,
                 first=2):
        self.port = port
        self.sockets = sockets
        self.count = count
        self.per_source = per_source
        self.first = first
        self.conns = []
        self.not_opened = []
        self._opened = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        """Opens the connections (in at most 10 s, dripping into those
        already open meanwhile), each sending its first byte at once; returns
        once they are open, and drips on in the background."""
        self._thread.start()
        self._opened.wait(15)
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        return self

    def join(self, timeout):
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _end(self, conn, by, sel):
        conn["end"] = time.monotonic()
        conn["by"] = by
        sel.unregister(conn["sock"])
        conn["sock"].close()

    def _open(self, i, open_by, sel):
        source = "127.0.0.%d" % (self.first + i // self.per_source)
        left = open_by - time.monotonic()
        if left <= 0:
            self.not_opened.append("not tried: 10 s spent connecting")
            return
        try:
            s = self.sockets.connect(source, self.port, min(2.0, left))
            s.sendall(self.HEAD[:1])
        except OSError as err:
            self.not_opened.append("%s: %s" % (type(err).__name__, err))
            return
        s.setblocking(False)
        now = time.monotonic()
        conn = {"sock": s, "first": now, "next": now + DRIP_EVERY, "sent": 1,
                "end": None, "by": None, "data": b""}
        self.conns.append(conn)
        sel.register(s, selectors.EVENT_READ, conn)

    def _run(self):
        sel = selectors.DefaultSelector()
        to_open = collections.deque(range(self.count))
        open_by = time.monotonic() + 10
        try:
            while not self._stop.is_set():
                for _ in range(10):
                    if to_open:
                        self._open(to_open.popleft(), open_by, sel)
                if not to_open:
                    self._opened.set()
                now = time.monotonic()
                active = [c for c in self.conns if c["end"] is None]
                if not active and not to_open:
                    return
                for c in active:
                    if now >= c["first"] + DRIP_FOR:
                        self._end(c, "client", sel)
                    elif now >= c["next"]:
                        c["next"] += DRIP_EVERY
                        try:
                            c["sock"].send(self.HEAD[c["sent"]:c["sent"] + 1])
                            c["sent"] += 1
                        except BlockingIOError:
                            pass
                        except OSError:
                            self._end(c, "server", sel)
                if not sel.get_map():
                    continue
                for key, _ in sel.select(timeout=0 if to_open else 0.25):
                    c = key.data
                    if c["end"] is not None:
                        continue
                    try:
                        data = c["sock"].recv(4096)
                    except BlockingIOError:
                        continue
                    except OSError:
                        self._end(c, "server", sel)
                        continue
                    c["data"] += data
                    if not data or b"\r\n\r\n" in c["data"]:
                        self._end(c, "server", sel)
        finally:
            self._opened.set()
            for c in self.conns:
                if c["end"] is None:
                    c["end"] = time.monotonic()
                    c["by"] = "client"
            sel.close()
            for c in self.conns:
                c["sock"].close()

    def lifetimes(self):
        """(seconds of the connections the server ended, of those the client
        ended, the statuses the server answered)."""
        by_server = [c["end"] - c["first"] for c in self.conns if c["by"] == "server"]
        by_client = [c["end"] - c["first"] for c in self.conns if c["by"] == "client"]
        statuses = collections.Counter(status_of(c["data"]) for c in self.conns
                                       if c["by"] == "server")
        return by_server, by_client, statuses


class Flood:
    """Connections that each send `head` and then every chunk of `chunks()`
    as fast as their socket takes them, reading whatever the server answers
    meanwhile. Each stops at a whole response head, when the server closes
    or resets it, at its deadline, when `abort` is set, or `grace` s after
    its last chunk went out. Results: per connection, how it ended, the
    status answered, and the units (lines, bytes) sent when it did."""

    def __init__(self, port, sockets, sources, head, chunks, deadline, grace, abort):
        self.port = port
        self.sockets = sockets
        self.sources = sources
        self.head = head
        self.chunks = chunks      # () -> iterable of (bytes, units)
        self.deadline = deadline
        self.grace = grace
        self.abort = abort

    def run(self):
        sel = selectors.DefaultSelector()
        states = []
        try:
            for source in self.sources:
                # A small send buffer: what counts as sent is (nearly) what
                # reached the server, not what waits in this side's buffer.
                s = self.sockets.connect(source, self.port, 5, sndbuf=65536)
                s.setblocking(False)
                st = {"sock": s, "source": source, "pending": memoryview(self.head),
                      "units": 0, "pending_units": 0, "chunks": iter(self.chunks()),
                      "data": b"", "how": None, "exhausted_at": None,
                      "started": time.monotonic()}
                states.append(st)
                sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, st)
            while any(st["how"] is None for st in states):
                now = time.monotonic()
                for st in states:
                    if st["how"] is not None:
                        continue
                    if self.abort.is_set():
                        st["how"] = "aborted"
                    elif now > st["started"] + self.deadline:
                        st["how"] = "deadline"
                    elif st["exhausted_at"] is not None and now > st["exhausted_at"] + self.grace:
                        st["how"] = "exhausted"
                    if st["how"] is not None:
                        sel.unregister(st["sock"])
                if not sel.get_map():
                    break
                for key, events in sel.select(timeout=0.1):
                    st = key.data
                    if events & selectors.EVENT_READ:
                        self._read(st)
                    if st["how"] is None and events & selectors.EVENT_WRITE:
                        self._write(st, sel)
                    if st["how"] is not None:
                        sel.unregister(st["sock"])
        finally:
            sel.close()
        return [{"how": st["how"], "status": status_of(st["data"]), "units": st["units"],
                 "all_sent": st["exhausted_at"] is not None, "source": st["source"]}
                for st in states]

    def _read(self, st):
        try:
            data = st["sock"].recv(65536)
        except BlockingIOError:
            return
        except OSError:
            st["how"] = "reset"
            return
        if not data:
            st["how"] = "closed"
            return
        st["data"] += data
        if b"\r\n\r\n" in st["data"]:
            st["how"] = "answered"

    def _write(self, st, sel):
        while True:
            if not st["pending"]:
                st["units"] += st["pending_units"]
                nxt = next(st["chunks"], None)
                if nxt is None:
                    st["pending_units"] = 0
                    st["exhausted_at"] = time.monotonic()
                    sel.modify(st["sock"], selectors.EVENT_READ, st)
                    return
                st["pending"], st["pending_units"] = memoryview(nxt[0]), nxt[1]
            try:
                sent = st["sock"].send(st["pending"])
            except BlockingIOError:
                return
            except OSError:
                # The server closed or reset while we sent: read what it said.
                self._read(st)
                if st["how"] is None:
                    st["how"] = "reset"
                return
            st["pending"] = st["pending"][sent:]
            if st["pending"]:
                return


_HEADER_CHUNKS = []


def header_chunks():
    """FLOOD_LINES header lines "X-a<i>: b", FLOOD_LINES_PER_CHUNK a chunk
    (built once, about 14 MB, shared by the flooding connections)."""
    if not _HEADER_CHUNKS:
        for first in range(0, FLOOD_LINES, FLOOD_LINES_PER_CHUNK):
            last = min(FLOOD_LINES, first + FLOOD_LINES_PER_CHUNK)
            _HEADER_CHUNKS.append((b"".join(b"X-a%d: b\r\n" % i for i in range(first, last)),
                                   last - first))
    return _HEADER_CHUNKS


# -- the test context -----------------------------------------------------------------

class Context:
    """ghscale (restarted when a case killed it), its port, its logs."""

    def __init__(self, binary, workdir):
        self.binary = binary
        self.workdir = workdir
        with open(os.path.join(workdir, "webhook-secret"), "w") as f:
            f.write(SECRET + "\n")
        self.port = free_port()
        self.config = write_config(workdir, "ghscale.toml", config_text(workdir, self.port),
                                   binary)
        self.instances = []       # (Ghscale, why it was started)
        self.server = None
        self.figures = []

    def figure(self, text):
        self.figures.append(text)

    def start(self, why):
        log = os.path.join(self.workdir, "ghscale-%d.log" % (len(self.instances) + 1))
        self.server = Ghscale(self.binary, self.config, self.port, log)
        self.instances.append((self.server, why))

    def ready(self):
        """A live, healthy ghscale for the next case: started, or restarted
        when the last case killed it or left it unable to answer."""
        if self.server is None:
            self.start("first start")
            return
        code = self.server.proc.poll()
        if code is not None:
            self.figure("(ghscale had exited: %s; restarted)" % describe_exit(code))
            self.start("after %s" % describe_exit(code))
            return
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if probe(self.port, "/healthz")[0] == 200:
                return
            time.sleep(0.5)
        self.figure("(ghscale no longer answered /healthz: killed and restarted)")
        self.kill()
        self.start("after it stopped answering")

    def exited(self, within):
        """ghscale's exit code if it exits within `within` s, else None."""
        try:
            return self.server.proc.wait(timeout=within)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        if self.server is not None and self.server.proc.poll() is None:
            self.server.proc.kill()
            self.server.proc.wait(10)

    def healthy(self, after):
        """Fails unless ghscale lives and /healthz answers 200 within 2 s."""
        code = self.exited(0.3)
        check(code is None, "ghscale died %s: %s" % (after, describe_exit(code)))
        status, secs = probe(self.port, "/healthz")
        check(status == 200, "/healthz %s: %s after %.1f s"
              % (after, status if status is not None else "no answer", secs))

    def close(self):
        for server, _ in self.instances:
            if server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait(10)
            server.log.close()


# -- the cases ------------------------------------------------------------------------

def case_deep_nesting(ctx):
    body = ('{"action":"queued","marker":"%s","workflow_job":' % BODY_MARK
            + "[" * DEPTH + "]" * DEPTH + "}").encode()
    check(len(body) < MAX_BODY, "the deep body is over the body limit")
    # Unsigned first: refused (401) before anything parses it.
    status, secs, why = deliver(ctx.port, body, timeout=10, signed=False)
    ctx.figure("unsigned deep body: %s after %.2f s"
               % (status if status is not None else why, secs))
    code = ctx.exited(1)
    check(code is None, "ghscale crashed on an UNSIGNED body of %d nested arrays: %s"
          % (DEPTH, describe_exit(code)))
    check(status == 401, "the unsigned deep body was answered %s, not 401"
          % (status if status is not None else why))
    status, secs, why = deliver(ctx.port, body, timeout=10)
    ctx.figure("signed deep body (%d bytes, %d nested arrays): %s after %.2f s"
               % (len(body), DEPTH, status if status is not None else why, secs))
    code = ctx.exited(3)
    check(code is None, "ghscale crashed on a signed body of %d nested arrays: %s "
          "(the delivery got %s)" % (DEPTH, describe_exit(code),
                                    status if status is not None else why))
    check(status == 400, "the deep body was answered %s, not 400"
          % (status if status is not None else why))
    ctx.healthy("after the deep body")


def case_header_flood(ctx):
    pid = ctx.server.proc.pid
    idle = statistics.median(rss_mb(pid) or 0.0 for _ in range(3))
    sampler = RssSampler(pid, idle + RSS_ABORT_MB).start()
    chunks = header_chunks()
    head = ("POST %s HTTP/1.1\r\nHost: %s\r\nX-Junk: %s\r\n" % (WEBHOOK, SERVER, JUNK)).encode()
    started = time.monotonic()
    try:
        with Sockets() as socks:
            results = Flood(ctx.port, socks,
                            ["127.0.0.%d" % (2 + i) for i in range(FLOOD_CONNECTIONS)],
                            head, lambda: chunks, FLOOD_DEADLINE, 2.0, sampler.over).run()
        took = time.monotonic() - started
        time.sleep(1.0)
        after = rss_mb(pid)
    finally:
        sampler.stop()
    peak = sampler.peak
    ctx.figure("RSS: idle %.0f MB, peak %.0f MB during the flood, %s after it"
               % (idle, peak, "%.0f MB" % after if after is not None else "gone"))
    ctx.figure("flood: %.1f s; per connection: %s" % (took, ", ".join(
        "%s %s at %d lines" % (r["how"], r["status"] or "-", r["units"]) for r in results)))
    problems = []
    code = ctx.exited(0.5)
    if code is not None:
        problems.append("ghscale died under the header flood: %s" % describe_exit(code))
    if peak >= idle + RSS_LIMIT_MB:
        problems.append("RSS reached %.0f MB, idle %.0f MB: over idle + %d MB%s"
                        % (peak, idle, RSS_LIMIT_MB,
                           " (flood stopped at idle + %d MB)" % RSS_ABORT_MB
                           if sampler.over.is_set() else ""))
    bad = [r for r in results if r["status"] != 431 or r["units"] >= FLOOD_LINES]
    if bad:
        problems.append("%d of %d flooding connections not answered 431 before %d header "
                        "lines (e.g. %s, %s after %d lines)"
                        % (len(bad), len(results), FLOOD_LINES, bad[0]["how"],
                           bad[0]["status"] or "no status", bad[0]["units"]))
    check(not problems, "; ".join(problems))
    ctx.healthy("after the header flood")


def case_slow_clients(ctx):
    with Sockets() as socks:
        monitor = OpsMonitor(ctx.port).start()
        drip = SlowDrip(ctx.port, socks).start()
        try:
            time.sleep(1.0)  # every slow client has sent its first byte
            legit = Deliveries(ctx.port, count=LEGIT_DELIVERIES).start().join()
            drip.join(DRIP_FOR + 10)
        finally:
            drip.stop()
            monitor.stop()
    results, accepted = legit.summary()
    by_server, by_client, statuses = drip.lifetimes()
    latencies = [s for st, s, _ in results if st is not None]
    ctx.figure("legit deliveries under %d slow clients: %d sent, %d answered 202; "
               "answered in %s" % (len(drip.conns), len(results), len(accepted),
                                   spread(latencies)))
    ctx.figure("slow connections: %d cut by the server%s; %d lasted until the client "
               "stopped (%.0f s)"
               % (len(by_server), " (%s), lasting median %.1f s, max %.1f s" % (
                   ", ".join("%s x%d" % (k or "no answer", v)
                             for k, v in sorted(statuses.items(), key=str)),
                   statistics.median(by_server), max(by_server)) if by_server else "",
                  len(by_client), DRIP_FOR))
    ctx.figure("/healthz and /metrics probes: %d, %s"
               % (len(monitor.results), spread([s for _, _, s in monitor.results])))
    problems = []
    code = ctx.exited(0.3)
    if code is not None:
        problems.append("ghscale died: %s" % describe_exit(code))
    if drip.not_opened:
        problems.append("%d slow connections not opened (%s)"
                        % (len(drip.not_opened), drip.not_opened[0]))
    slow = [r for r in results if r[0] != 202 or r[1] > LEGIT_LIMIT]
    if slow or len(results) < LEGIT_DELIVERIES:
        st, secs, why = slow[0] if slow else (202, 0, "")
        problems.append("%d of %d deliveries answered 202 within %.0f s (%d sent; first "
                        "miss: %s after %.1f s)"
                        % (len(results) - len(slow), LEGIT_DELIVERIES, LEGIT_LIMIT,
                           len(results), st if st is not None else why or "none", secs))
    problems += monitor.problems()
    late = [s for s in by_server if s > HEAD_TIMEOUT + SLACK]
    if by_client or late:
        problems.append("%d of %d slow connections not cut by the server within %.0f s "
                        "(%d lasted until the client stopped at %.0f s)"
                        % (len(by_client) + len(late), len(drip.conns),
                           HEAD_TIMEOUT + SLACK, len(by_client), DRIP_FOR))
    check(not problems, "; ".join(problems))


def case_per_client_limit(ctx):
    source = "127.0.0.30"
    with Sockets() as socks:
        sel = selectors.DefaultSelector()
        conns = []   # {"sock", "connected", "ended", "how"}
        try:
            for _ in range(IDLE_CONNECTIONS):
                s = socks.new(source)
                s.setblocking(False)
                err = s.connect_ex((SERVER, ctx.port))
                c = {"sock": s, "connected": None, "ended": None, "how": None,
                     "started": time.monotonic()}
                conns.append(c)
                if err == 0:
                    c["connected"] = time.monotonic()
                    sel.register(s, selectors.EVENT_READ, c)
                elif err in (errno.EINPROGRESS, errno.EAGAIN):
                    sel.register(s, selectors.EVENT_WRITE, c)
                else:
                    c["how"] = "refused (%s)" % errno.errorcode.get(err, err)
                    c["ended"] = time.monotonic()
            last_open = time.monotonic()
            # Watch them all until PROMPTLY s after the last one was opened.
            while sel.get_map():
                left = last_open + PROMPTLY - time.monotonic()
                if left <= 0:
                    break
                for key, events in sel.select(timeout=min(left, 0.2)):
                    c = key.data
                    if c["connected"] is None:
                        err = c["sock"].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if err:
                            c["how"] = "refused (%s)" % errno.errorcode.get(err, err)
                            c["ended"] = time.monotonic()
                            sel.unregister(c["sock"])
                        else:
                            c["connected"] = time.monotonic()
                            last_open = max(last_open, c["connected"])
                            sel.modify(c["sock"], selectors.EVENT_READ, c)
                        continue
                    try:
                        data = c["sock"].recv(4096)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = None
                    c["how"] = ("reset" if data is None else "closed" if not data
                                else "answered %s" % status_of(data))
                    c["ended"] = time.monotonic()
                    sel.unregister(c["sock"])
            for c in conns:
                if c["how"] is None and c["connected"] is None:
                    c["how"] = "connect pending"
            still_open = [c for c in conns if c["how"] is None]
            ended = collections.Counter(c["how"] for c in conns if c["how"] is not None)
            # A delivery from 127.0.0.1 while they are held.
            status, secs, why = deliver(ctx.port, queued_payload(next(JOB_IDS)))
        finally:
            sel.close()
    ctx.figure("%d idle connections from %s: %d open after %.0f s, the rest: %s"
               % (IDLE_CONNECTIONS, source, len(still_open), PROMPTLY,
                  ", ".join("%s x%d" % kv for kv in sorted(ended.items())) or "none"))
    ctx.figure("delivery from 127.0.0.1 meanwhile: %s after %.2f s"
               % (status if status is not None else why, secs))
    problems = []
    if len(still_open) > PER_CLIENT:
        problems.append("%d of %d idle connections from one address still open %.0f s "
                        "after the last was opened: over the per-client limit of %d"
                        % (len(still_open), IDLE_CONNECTIONS, PROMPTLY, PER_CLIENT))
    if status != 202:
        problems.append("the delivery from 127.0.0.1 got %s after %.1f s, not 202"
                        % (status if status is not None else why, secs))
    code = ctx.exited(0.3)
    if code is not None:
        problems.append("ghscale died: %s" % describe_exit(code))
    check(not problems, "; ".join(problems))
    ctx.healthy("after the idle connections")


# malformed: each probe sends its bytes from its own address and says
# whether the answer is right; /healthz is checked after each. A probe whose
# answer is due at once still watches for WATCH s, to tell what came instead.
WATCH = BODY_TIMEOUT + SLACK + 1

def probe_raw(ctx, socks, source, data, timeout):
    s = socks.connect(source, ctx.port, 5)
    s.sendall(data)
    return read_answer(s, timeout)


def expect(answer, statuses, within, also_closed=False):
    """None when `answer` is one of `statuses` within `within` s (or, with
    `also_closed`, a close without an answer), else what was wrong."""
    if answer.status in statuses and answer.seconds <= within:
        return None
    if also_closed and answer.status is None and answer.how in ("closed", "reset") \
            and answer.seconds <= within:
        return None
    return "%s, expected %s within %.0f s" % (
        describe_answer(answer), "/".join(map(str, statuses))
        + (" or a close" if also_closed else ""), within)


def m_no_request_line(ctx, socks, source):
    a = probe_raw(ctx, socks, source, b"\r\n\r\n", HEAD_TIMEOUT + SLACK + 1)
    return expect(a, (400, 408), HEAD_TIMEOUT + SLACK, also_closed=True), describe_answer(a)


def m_long_url(ctx, socks, source):
    path = WEBHOOK + "?" + (JUNK + "a" * 20000)[:20000 - len(WEBHOOK) - 1]
    a = probe_raw(ctx, socks, source, raw_head("GET", path, []), WATCH)
    return expect(a, (414,), PROMPTLY), describe_answer(a)


def m_absurd_method(ctx, socks, source):
    method = JUNK.upper().replace("-", "") + "\x01\x7f" + "X" * 2000
    a = probe_raw(ctx, socks, source, raw_head(method, WEBHOOK, []), WATCH)
    return expect(a, (400, 405, 501), PROMPTLY), describe_answer(a)


def m_short_body(ctx, socks, source):
    body = queued_payload(next(JOB_IDS))
    headers = list(signed_headers(body).items()) + [("Content-Length", str(len(body) + 1000))]
    s = socks.connect(source, ctx.port, 5)
    s.sendall(raw_head("POST", WEBHOOK, headers) + body)
    a = read_answer(s, BODY_TIMEOUT + SLACK + 1)
    return expect(a, (408,), BODY_TIMEOUT + SLACK), describe_answer(a)


def m_huge_length(ctx, socks, source):
    headers = [("Content-Type", "application/json"), ("X-GitHub-Event", "workflow_job"),
               ("X-Hub-Signature-256", signature(b"")), ("Content-Length", str(10 ** 12))]
    a = probe_raw(ctx, socks, source, raw_head("POST", WEBHOOK, headers), WATCH)
    return expect(a, (413,), PROMPTLY), describe_answer(a)


def m_chunked_stalled(ctx, socks, source):
    headers = [("Content-Type", "application/json"), ("X-GitHub-Event", "workflow_job"),
               ("X-Hub-Signature-256", signature(b"")), ("Transfer-Encoding", "chunked")]
    piece = ('{"marker":"%s",' % BODY_MARK).encode()
    data = raw_head("POST", WEBHOOK, headers) + b"%x\r\n%s\r\n" % (len(piece), piece)
    a = probe_raw(ctx, socks, source, data, BODY_TIMEOUT + SLACK + 1)
    return expect(a, (408,), BODY_TIMEOUT + SLACK), describe_answer(a)


def m_chunked_endless(ctx, socks, source):
    headers = [("Content-Type", "application/json"), ("X-GitHub-Event", "workflow_job"),
               ("X-Hub-Signature-256", signature(b"")), ("Transfer-Encoding", "chunked")]
    piece = (BODY_MARK * 300)[:4096].encode()
    chunk = b"%x\r\n%s\r\n" % (len(piece), piece)
    total = 16 * MAX_BODY   # bytes at the most; the limit is MAX_BODY

    def chunks():
        # Then the last chunk: what the server says to the whole body shows
        # whether it would have taken it.
        yield from ((chunk, len(piece)) for _ in range(total // len(piece)))
        yield b"0\r\n\r\n", 0
    started = time.monotonic()
    [r] = Flood(ctx.port, socks, [source], raw_head("POST", WEBHOOK, headers), chunks,
                BODY_TIMEOUT + SLACK, 5.0, threading.Event()).run()
    secs = time.monotonic() - started
    what = "%s %s after %.1f s, %d body bytes sent%s" % (
        r["how"], r["status"] or "-", secs, r["units"],
        " and the last chunk" if r["all_sent"] else "")
    if r["status"] == 413 and not r["all_sent"]:
        return None, what
    return "%s, expected 413 while the body was still coming" % what, what


def dup_signature(ctx, socks, source, valid_first):
    body = queued_payload(next(JOB_IDS))
    good = signed_headers(body)
    sig = good.pop("X-Hub-Signature-256")
    junk = "sha256=" + hashlib.sha256(JUNK.encode()).hexdigest()
    sigs = [sig, junk] if valid_first else [junk, sig]
    headers = (list(good.items()) + [("X-Hub-Signature-256", v) for v in sigs]
               + [("Content-Length", str(len(body)))])
    a = probe_raw(ctx, socks, source, raw_head("POST", WEBHOOK, headers) + body, WATCH)
    return expect(a, (400, 401), PROMPTLY), describe_answer(a)


def m_two_signatures_valid_first(ctx, socks, source):
    return dup_signature(ctx, socks, source, True)


def m_two_signatures_valid_last(ctx, socks, source):
    return dup_signature(ctx, socks, source, False)


def m_get_webhook(ctx, socks, source):
    a = probe_raw(ctx, socks, source, raw_head("GET", WEBHOOK, [("X-Junk", JUNK)]), WATCH)
    return expect(a, (405,), PROMPTLY), describe_answer(a)


MALFORMED = [m_no_request_line, m_long_url, m_absurd_method, m_short_body, m_huge_length,
             m_chunked_stalled, m_chunked_endless, m_two_signatures_valid_first,
             m_two_signatures_valid_last, m_get_webhook]


def case_malformed(ctx):
    """Every probe at once (the slow ones wait for the server's timeouts),
    each followed by a /healthz check."""
    def run(i, fn):
        with Sockets() as socks:
            try:
                wrong, what = fn(ctx, socks, "127.0.0.%d" % (40 + i))
            except OSError as err:
                wrong, what = "%s: %s" % (type(err).__name__, err), "error"
        status, secs = probe(ctx.port, "/healthz")
        if status != 200:
            wrong = (wrong + "; " if wrong else "") + "then /healthz %s after %.1f s" % (
                status if status is not None else "no answer", secs)
        return fn.__name__[2:], wrong, what

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(MALFORMED)) as pool:
        outcomes = list(pool.map(lambda a: run(*a), enumerate(MALFORMED)))
    problems = []
    for name, wrong, what in outcomes:
        ctx.figure("%-26s %s" % (name, what if not wrong else "FAIL: " + wrong))
        if wrong:
            problems.append("%s: %s" % (name, wrong))
    code = ctx.exited(0.3)
    if code is not None:
        problems.append("ghscale died: %s" % describe_exit(code))
    check(not problems, "; ".join(problems))


def case_drain_under_load(ctx):
    proc = ctx.server.proc
    with Sockets() as socks:
        drip = SlowDrip(ctx.port, socks).start()
        stream = Deliveries(ctx.port, count=None).start()
        try:
            time.sleep(2.0)
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = ctx.exited(DRAIN + SLACK)
            took = time.monotonic() - sent
            late = None
            if code is None:
                # Does it wait for the clients? Close them and see.
                drip.stop()
                stream.stop()
                socks.close_all()
                code = ctx.exited(10)
                late = time.monotonic() - sent
                if code is None:
                    ctx.kill()
        finally:
            stream.stop()
            drip.stop()
    results, accepted = stream.summary()
    answers = collections.Counter(st if st is not None else "no answer" for st, _, _ in results)
    if late is None:
        ctx.figure("exit after SIGTERM: %.1f s (%s)" % (took, describe_exit(code)))
    elif code is not None and code != -signal.SIGKILL:
        ctx.figure("exit after SIGTERM: none within %.0f s; %s %.1f s after SIGTERM, once "
                   "the slow clients and senders were closed" % (took, describe_exit(code),
                                                                   late))
    else:
        ctx.figure("exit after SIGTERM: none within %.1f s, even with the clients closed "
                   "(killed)" % late)
    ctx.figure("deliveries during the drain: %s; slow connections: %d"
               % (", ".join("%s x%d" % kv for kv in sorted(answers.items(), key=str)),
                  len(drip.conns)))
    check(late is None, "ghscale did not exit within %.0f s of SIGTERM with %d slow clients "
          "connected" % (DRAIN + SLACK, len(drip.conns)))
    check(code == 0, "ghscale exited after SIGTERM with %s, not 0" % describe_exit(code))


CASES = collections.OrderedDict([
    ("deep_nesting", case_deep_nesting),
    ("header_flood", case_header_flood),
    ("slow_clients", case_slow_clients),
    ("per_client_limit", case_per_client_limit),
    ("malformed", case_malformed),
    ("drain_under_load", case_drain_under_load),
])


def check_logs(ctx):
    """The secret and the hostile bodies never in a log line; header values
    and paths the attacker chose are counted (reported, not failed)."""
    secret_lines, body_lines, junk_lines = [], [], []
    for server, _ in ctx.instances:
        server.log.flush()
        with open(server.log_path, errors="replace") as f:
            for line in f:
                if SECRET in line:
                    secret_lines.append(line.strip())
                if BODY_MARK in line:
                    body_lines.append(line.strip())
                if JUNK in line or JUNK.upper().replace("-", "") in line:
                    junk_lines.append(line.strip())
    if junk_lines:
        ctx.figure("%d log lines carry a value the attacker chose, e.g. %s"
                   % (len(junk_lines), junk_lines[0][:200]))
    else:
        ctx.figure("no log line carries a header value, path or method the attacker chose")
    problems = []
    if secret_lines:
        problems.append("the webhook secret is in %d log lines" % len(secret_lines))
    if body_lines:
        problems.append("hostile bodies are in %d log lines, e.g. %s"
                        % (len(body_lines), body_lines[0][:200]))
    check(not problems, "; ".join(problems))


def print_logs(ctx):
    for i, (server, why) in enumerate(ctx.instances, 1):
        print("ghscale instance %d (%s): %s, log %s"
              % (i, why, describe_exit(server.proc.poll()), server.log_path))
    if ctx.instances:
        server = ctx.instances[-1][0]
        server.log.flush()
        with open(server.log_path, errors="replace") as f:
            tail = collections.deque(f, maxlen=60)
        print("--- last %d lines of %s ---" % (len(tail), server.log_path))
        sys.stdout.write("".join(tail))
        print("---")


def run_cases(ctx, names):
    failures = []
    for name in names + ["log_hygiene"]:
        ctx.figures = []
        try:
            if name == "log_hygiene":
                check_logs(ctx)
            else:
                ctx.ready()
                CASES[name](ctx)
            print("%s: ok" % name)
        except AssertionError as err:
            failures.append(name)
            print("%s: FAIL %s" % (name, err))
        except (OSError, RuntimeError, http.client.HTTPException) as err:
            failures.append(name)
            print("%s: FAIL %s: %s" % (name, type(err).__name__, err))
        for text in ctx.figures:
            print("    " + text)
        sys.stdout.flush()
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ghscale", required=True, help="path of the ghscale binary")
    parser.add_argument("--case", choices=list(CASES), action="append",
                        help="run this case only (may be repeated); default: all")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()

    def overran(*_):
        raise OverallTimeout()
    signal.signal(signal.SIGALRM, overran)
    signal.alarm(OVERALL_LIMIT)
    workdir = tempfile.mkdtemp(prefix="hostile-test-")
    ctx = None
    failures = ["setup"]
    try:
        ctx = Context(os.path.abspath(args.ghscale), workdir)
        failures = run_cases(ctx, args.case or list(CASES))
    except AssertionError as err:
        print("setup: FAIL %s" % err)
    except OverallTimeout:
        failures.append("overall")
        print("FAIL the script ran past %d s" % OVERALL_LIMIT)
    finally:
        signal.alarm(0)
        if ctx is not None:
            if ctx.server is not None and ctx.server.proc.poll() is None:
                ctx.server.proc.send_signal(signal.SIGTERM)
                ctx.exited(DRAIN + SLACK)
            if failures:
                print_logs(ctx)
            ctx.close()
    if failures:
        print("work directory: %s" % workdir)
    elif args.keep:
        print("work directory: %s" % workdir)
    else:
        shutil.rmtree(workdir)
    print("hostile: %s" % ("FAILED" if failures else "ok"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
