#!/usr/bin/env python3
"""A stateful fake of the GitHub REST API, for ghscale's integration tests,
end-to-end test and burst benchmark.

It serves the endpoints ghscale uses (App JWT -> installation token -> runner
registration, jobs, runners, runner groups), under "/" as api.github.com does
and under "/api/v3" as GitHub Enterprise Server does, and it behaves like
GitHub where ghscale's correctness depends on it: RS256 JWT checking, token
expiry and ownership, header checks, primary and secondary rate limits with
`retry-after`, per-request latency, and injected faults (5xx, the transient
404 after a token mint, rate-limit answers).

usage: fake_github.py --port P --app-id ID --public-key PEMFILE
         [--latency-ms 10] [--writes-per-minute L (0 = unlimited)]
         [--hourly-limit 15000] [--installation ORG=ID | OWNER/REPO=ID ...]
         [--runner-group NAME=ID ...] [--token-ttl 3600] [--ready-file PATH]
         [--seed 0]
--port 0 picks a free port; the "listening" line names it.

Control API (not GitHub; no latency, no header checks, no rate limits):
  POST   /_fake/jobs         {"owner","repo","job_id","run_id","labels","status","run_attempt"}
  PATCH  /_fake/jobs/ID      {"status","conclusion","runner_id","runner_name"}
  PATCH  /_fake/runners/ID   {"status","busy"}
  POST   /_fake/faults       {"kind": "5xx"|"404_after_mint"|"rate_limit", "count": N, "rate": 0..1,
                              "op": operation (e.g. "generate_jitconfig"), "applied": bool (5xx: the
                              write happens, the answer is still 5xx), "window_ms": M (404_after_mint),
                              "retry_after": S and "which": "secondary"|"primary" (rate_limit)}
  DELETE /_fake/faults
  POST   /_fake/limits       {"writes_per_minute","hourly_limit","latency_ms","token_ttl"}
  GET    /_fake/state        counters, runners, jobs, faults
  POST   /_fake/reset        {"world": false} clears counters and rate-limit windows;
                             "world": true also runners, jobs and faults
"""
import argparse
import base64
import binascii
import json
import math
import os
import random
import re
import secrets
import string
import sys
import threading
import time
import traceback
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

API_VERSIONS = {"2022-11-28"}
DOCS_URL = "https://docs.github.com/rest"
RATE_LIMIT_DOCS = "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api"
CONCURRENCY_LIMIT = 100          # GitHub: at most 100 concurrent requests
UNAUTHENTICATED_HOURLY = 60      # GitHub's limit for requests it cannot attribute
JWT_CLOCK_SKEW = 60              # GitHub tolerates iat up to a minute ahead
JWT_MAX_LIFETIME = 600           # and an App JWT living at most 10 minutes
REGISTRATION_TOKEN_TTL = 3600
# Mutations on runner endpoints are GitHub's "content-creating" requests for
# the secondary limit. Token mints are excluded: they are App-authenticated,
# not made with the installation's token, so they do not spend its budget.
WRITE_OPS = {"generate_jitconfig", "registration_token", "delete_runner"}
READ_ONLY_LABELS = {"self-hosted", "linux", "windows", "macos", "x64", "arm64", "arm"}

JWT_PROBLEMS = {
    "undecodable": "A JSON web token could not be decoded",
    "alg": "A JSON web token could not be decoded",
    "signature": "A JSON web token could not be decoded",
    "iss": "'Issuer' claim ('iss') must be the App's ID",
    "iat": "'Issued at' claim ('iat') must be an Integer representing a time in the past",
    "expired": "'Expiration time' claim ('exp') must be a numeric value representing the "
               "future time at which the assertion expires",
    "exp_too_far": "'Expiration time' claim ('exp') is too far in the future",
}


class ApiError(Exception):
    """A GitHub-style error answer raised from deep inside a handler."""

    def __init__(self, status, message, headers=None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


@dataclass
class Response:
    status: int
    body: object = None            # JSON-able; None means an empty body
    headers: dict = field(default_factory=dict)


def error(status, message, headers=None, docs=DOCS_URL):
    return Response(status, {"message": message, "documentation_url": docs}, dict(headers or {}))


@dataclass
class Request:
    method: str
    path: str                      # without the /api/v3 prefix
    query: dict
    headers: object                # email.message.Message: case-insensitive get
    body: bytes
    base_url: str                  # scheme://host[/api/v3], for Link headers

    def json(self):
        try:
            value = json.loads(self.body or b"{}")
        except ValueError:
            raise ApiError(400, "Problems parsing JSON")
        if not isinstance(value, dict):
            raise ApiError(400, "Problems parsing JSON")
        return value


@dataclass
class Token:
    installation_id: int
    expires_at: float              # wall clock
    not_found_until: float = 0.0   # monotonic: the transient 404 after a mint lasts until then


@dataclass
class Fault:
    kind: str
    count: int
    rate: float = 1.0
    op: str = None
    applied: bool = False
    window_ms: int = 500
    retry_after: int = 1
    which: str = "secondary"

    def matches(self, op, base_op):
        return self.count > 0 and self.op in (None, op, base_op)


@dataclass
class Bucket:
    reset: int                     # wall-clock second the hourly window ends
    used: int = 0


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def b64url_decode(segment):
    if "=" in segment:
        raise ValueError("padding in a JWT segment")
    return base64.b64decode(segment + "=" * (-len(segment) % 4), altchars=b"-_", validate=True)


def rfc3339(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def random_token(prefix, length):
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


def jwt_problem(token, public_key, app_id, now):
    """None when GitHub would accept this App JWT, else the key of the reason."""
    try:
        header_b64, claims_b64, signature_b64 = token.split(".")
        header = json.loads(b64url_decode(header_b64))
        claims = json.loads(b64url_decode(claims_b64))
        signature = b64url_decode(signature_b64)
    except (ValueError, binascii.Error):
        return "undecodable"
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return "undecodable"
    if header.get("alg") != "RS256":
        return "alg"
    try:
        public_key.verify(signature, f"{header_b64}.{claims_b64}".encode(),
                          padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return "signature"
    iss, iat, exp = claims.get("iss"), claims.get("iat"), claims.get("exp")
    if not (is_int(iss) or isinstance(iss, str)) or str(iss) != app_id:
        return "iss"
    if not is_int(iat) or iat > now + JWT_CLOCK_SKEW:
        return "iat"
    if not is_int(exp) or exp <= now:
        return "expired"
    if exp - iat > JWT_MAX_LIFETIME:
        return "exp_too_far"
    return None


SCOPE = r"/(?:orgs/(?P<org>[^/]+)|repos/(?P<owner>[^/]+)/(?P<repo>[^/]+))"
REPO = r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"
# (method, path pattern, operation, authentication, handler method name)
ROUTES = [(method, re.compile(pattern + "$"), op, auth, handler) for method, pattern, op, auth, handler in [
    ("POST", r"/app/installations/(?P<installation_id>\d+)/access_tokens", "mint_token", "app", "mint_token"),
    ("GET", r"/orgs/(?P<org>[^/]+)/installation", "get_org_installation", "app", "get_installation"),
    ("GET", r"/users/(?P<org>[^/]+)/installation", "get_user_installation", "app", "get_installation"),
    ("GET", REPO + r"/installation", "get_repo_installation", "app", "get_installation"),
    ("POST", SCOPE + r"/actions/runners/generate-jitconfig", "generate_jitconfig", "installation",
     "generate_jitconfig"),
    ("POST", SCOPE + r"/actions/runners/registration-token", "registration_token", "installation",
     "registration_token"),
    ("GET", SCOPE + r"/actions/runners", "list_runners", "installation", "list_runners"),
    ("DELETE", SCOPE + r"/actions/runners/(?P<runner_id>\d+)", "delete_runner", "installation", "delete_runner"),
    ("GET", REPO + r"/actions/jobs/(?P<job_id>\d+)", "get_job", "installation", "get_job"),
    ("GET", r"/orgs/(?P<org>[^/]+)/actions/runner-groups", "list_runner_groups", "installation",
     "list_runner_groups"),
]]


def route(method, path):
    """(operation, its base name, auth kind, handler name, path parameters) or None."""
    for route_method, pattern, op, auth, handler in ROUTES:
        match = pattern.match(path)
        if match and route_method == method:
            params = match.groupdict()
            scoped = "org" in params and "owner" in params
            full_op = f"{op}_{'repo' if params.get('repo') else 'org'}" if scoped else op
            return full_op, op, auth, handler, params
    return None


def scope_of(params):
    """The account that owns a runner: "org" or "owner/repo", lower-cased as GitHub compares them."""
    if params.get("repo"):
        return f"{params['owner']}/{params['repo']}".lower()
    return (params.get("org") or params["owner"]).lower()


class FakeGitHub:
    """The world and its counters; every method runs under one lock."""

    def __init__(self, app_id, public_key, installations, runner_groups, latency_ms,
                 writes_per_minute, hourly_limit, token_ttl, seed):
        self.app_id, self.public_key = str(app_id), public_key
        self.installations = {k.lower(): v for k, v in installations.items()}
        self.runner_groups = [{"id": 1, "name": "Default", "default": True}] + [
            {"id": gid, "name": name, "default": False} for name, gid in runner_groups.items()]
        self.latency_ms, self.writes_per_minute = latency_ms, writes_per_minute
        self.hourly_limit, self.token_ttl = hourly_limit, token_ttl
        self.lock = threading.Lock()
        self.rng = random.Random(seed)      # fault draws are reproducible
        self.tokens = {}
        self.runners = {}                   # id -> (scope, runner JSON)
        self.jobs = {}                      # id -> job JSON
        self.faults = []
        self.labels = {}                    # label name -> id, stable like GitHub's
        self.next_runner_id = 1
        self.next_5xx_status = 502
        self.in_flight = Counter()
        self.reset_counters()

    def reset_counters(self):
        self.buckets = {}
        self.write_windows = defaultdict(deque)
        self.counts = Counter()
        self.requests = defaultdict(Counter)
        self.header_violations, self.jwt_failures = Counter(), Counter()
        self.faults_injected = Counter()
        self.max_in_flight = Counter()
        self.write_histogram = Counter()
        self.distinct_jwts = set()

    # ---- the request pipeline, in GitHub's order of checks ----

    def process(self, request):
        """(response, bucket to release after the answer is sent, or None)."""
        with self.lock:
            matched = route(request.method, request.path)
            op = matched[0] if matched else "unknown"
            release = None
            response = self.header_problem(request)
            if response is None and not matched:
                response = error(404, "Not Found")
            if response is None:
                response, release = self.dispatch(request, *matched)
            self.requests[op][str(response.status)] += 1
            response.headers.setdefault("x-github-request-id", secrets.token_hex(8).upper())
            return response, release

    def header_problem(self, request):
        user_agent = request.headers.get("User-Agent")
        version = request.headers.get("X-GitHub-Api-Version")
        accept = request.headers.get("Accept") or ""
        if not user_agent:
            self.header_violations["missing_user_agent"] += 1
            return error(403, "Request forbidden by administrative rules. "
                              "Please make sure your request has a User-Agent header")
        # Stricter than GitHub, which defaults a missing version: ghscale must pin it.
        if version not in API_VERSIONS:
            self.header_violations["bad_api_version"] += 1
            return error(400, f"API version {version} is not supported.")
        if "application/vnd.github" not in accept:
            self.header_violations["bad_accept"] += 1
            return error(415, f"Unsupported 'Accept' header: {accept!r}. "
                              "Must accept 'application/vnd.github+json'.")
        return None

    def dispatch(self, request, op, base_op, auth, handler, params):
        server_error = self.draw_fault("5xx", op, base_op)
        if server_error and not server_error.applied:
            return self.server_error(), None   # refused at the edge: no bucket is charged
        bucket, token, problem = self.authenticate(request, auth)
        self.in_flight[bucket] += 1
        self.max_in_flight[bucket] = max(self.max_in_flight[bucket], self.in_flight[bucket])
        try:
            response = self.limited(request, op, base_op, bucket, token, problem)
            if response is None:
                response = getattr(self, handler)(request, params, token)
        except ApiError as e:
            response = error(e.status, e.message, e.headers)
        except Exception:      # a bug in the fake must not leak the in-flight slot
            self.in_flight[bucket] -= 1
            raise
        if server_error:
            response = self.server_error()     # the write happened; the answer was lost
        response.headers = {**self.rate_headers(bucket), **response.headers}
        return response, bucket

    def limited(self, request, op, base_op, bucket, token, problem):
        """The answer that stops a request before its handler, or None."""
        if self.in_flight[bucket] > CONCURRENCY_LIMIT:
            self.counts["secondary_403s"] += 1
            return self.secondary_limit(1)
        if not self.charge_primary(bucket):
            self.counts["primary_403s"] += 1
            return error(403, f"API rate limit exceeded for {bucket}.", docs=RATE_LIMIT_DOCS)
        if problem:
            return problem
        if token and time.monotonic() < token.not_found_until:
            self.faults_injected["404_after_mint"] += 1
            return error(404, "Not Found")
        injected = self.draw_fault("rate_limit", op, base_op)
        if injected:
            return self.injected_rate_limit(injected)
        if base_op in WRITE_OPS and token:
            retry_after = self.admit_write(bucket)
            if retry_after:
                self.counts["secondary_403s"] += 1
                return self.secondary_limit(retry_after)
        return None

    def authenticate(self, request, auth):
        """(rate-limit bucket, installation token or None, error answer or None)."""
        scheme, _, credential = (request.headers.get("Authorization") or "").partition(" ")
        scheme = scheme.lower()
        if auth == "app":
            problem = jwt_problem(credential, self.public_key, self.app_id, int(time.time())) \
                if scheme == "bearer" else "undecodable"
            if problem:
                self.jwt_failures[problem] += 1
                return "unauthenticated", None, error(401, JWT_PROBLEMS[problem])
            self.distinct_jwts.add(credential)
            return f"app {self.app_id}", None, None
        token = self.tokens.get(credential) if scheme in ("bearer", "token") else None
        if token is None or time.time() >= token.expires_at:
            return "unauthenticated", None, error(401, "Bad credentials")
        return f"installation ID {token.installation_id}", token, None

    def charge_primary(self, bucket):
        now = int(time.time())
        state = self.buckets.get(bucket)
        if state is None or now >= state.reset:
            state = self.buckets[bucket] = Bucket(reset=now + 3600)
        if state.used >= self.bucket_limit(bucket):
            return False
        state.used += 1
        return True

    def bucket_limit(self, bucket):
        return UNAUTHENTICATED_HOURLY if bucket == "unauthenticated" else self.hourly_limit

    def rate_headers(self, bucket):
        state = self.buckets.get(bucket) or Bucket(reset=int(time.time()) + 3600)
        limit = self.bucket_limit(bucket)
        return {"x-ratelimit-limit": str(limit), "x-ratelimit-remaining": str(max(0, limit - state.used)),
                "x-ratelimit-used": str(state.used), "x-ratelimit-reset": str(state.reset),
                "x-ratelimit-resource": "core"}

    def admit_write(self, bucket):
        """None if the write fits the rolling minute, else the seconds until a slot frees.
        Refused writes do not enter the window; admitted ones count whatever their outcome."""
        now = time.monotonic()
        window = self.write_windows[bucket]
        while window and window[0] <= now - 60:
            window.popleft()
        if self.writes_per_minute and len(window) >= self.writes_per_minute:
            return max(1, math.ceil(window[0] + 60 - now))
        window.append(now)
        self.write_histogram[int(time.time())] += 1
        return None

    def secondary_limit(self, retry_after):
        return error(403, "You have exceeded a secondary rate limit. Please wait a few minutes "
                          "before you try again.", {"retry-after": str(retry_after)},
                     docs=RATE_LIMIT_DOCS + "#about-secondary-rate-limits")

    def injected_rate_limit(self, fault):
        self.faults_injected["rate_limit"] += 1
        if fault.which == "primary":
            reset = int(time.time()) + fault.retry_after
            return error(403, "API rate limit exceeded (injected).",
                         {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)}, docs=RATE_LIMIT_DOCS)
        return self.secondary_limit(fault.retry_after)

    def server_error(self):
        self.faults_injected["5xx"] += 1
        status, self.next_5xx_status = self.next_5xx_status, 1005 - self.next_5xx_status  # 502, 503, ...
        return Response(status, {"message": "Server Error" if status == 502 else "Service Unavailable"})

    def draw_fault(self, kind, op, base_op):
        for fault in self.faults:
            if fault.kind == kind and fault.matches(op, base_op):
                if self.rng.random() >= fault.rate:
                    return None
                fault.count -= 1
                return fault
        return None

    def release(self, bucket):
        with self.lock:
            self.in_flight[bucket] -= 1

    # ---- GitHub endpoints ----

    def installation_of(self, account):
        """The installation owning an org, a user or a repository (a repo-level one first)."""
        if account in self.installations:
            return self.installations[account]
        return self.installations.get(account.split("/")[0])

    def owned_scope(self, params, token):
        scope = scope_of(params)
        if self.installation_of(scope) != token.installation_id:
            raise ApiError(403, "Resource not accessible by integration")
        return scope

    def mint_token(self, request, params, _):
        installation_id = int(params["installation_id"])
        if installation_id not in self.installations.values():
            raise ApiError(404, "Not Found")
        token_value = random_token("ghs_", 36)
        token = Token(installation_id, time.time() + self.token_ttl)
        transient = next((f for f in self.faults if f.kind == "404_after_mint" and f.count > 0), None)
        if transient:
            transient.count -= 1
            token.not_found_until = time.monotonic() + transient.window_ms / 1000
        self.tokens[token_value] = token
        self.counts["tokens_minted"] += 1
        return Response(201, {"token": token_value, "expires_at": rfc3339(token.expires_at),
                              "permissions": {"organization_self_hosted_runners": "write",
                                              "administration": "write", "actions": "read"},
                              "repository_selection": "all"})

    def get_installation(self, request, params, _):
        account = scope_of(params)
        installation_id = self.installation_of(account)
        if installation_id is None:
            raise ApiError(404, "Not Found")
        login = params.get("org") or params["owner"]
        target = "User" if request.path.startswith("/users/") else "Organization"
        return Response(200, {
            "id": installation_id, "app_id": int(self.app_id) if self.app_id.isdigit() else self.app_id,
            "account": {"login": login, "type": target}, "target_type": target,
            "repository_selection": "all",
            "access_tokens_url": f"{request.base_url}/app/installations/{installation_id}/access_tokens"})

    def groups_for(self, scope):
        # A repository has only the Default group; an org has the configured ones too.
        return self.runner_groups[:1] if "/" in scope else self.runner_groups

    def generate_jitconfig(self, request, params, token):
        scope = self.owned_scope(params, token)
        body = request.json()
        name, group_id, labels = body.get("name"), body.get("runner_group_id"), body.get("labels")
        for field_name, valid in (("name", isinstance(name, str) and name),
                                  ("runner_group_id", is_int(group_id)),
                                  ("labels", isinstance(labels, list) and 0 < len(labels) <= 100
                                   and all(isinstance(label, str) and label for label in labels))):
            if not valid:
                raise ApiError(422, f'Invalid request.\n\n"{field_name}" wasn\'t supplied or is invalid.')
        if group_id not in {group["id"] for group in self.groups_for(scope)}:
            raise ApiError(404, "Not Found")
        if any(s == scope and r["name"] == name for s, r in self.runners.values()):
            raise ApiError(409, f"Already exists - A runner with the name {name} already exists.")
        runner = self.add_runner(scope, name, labels, group_id)
        self.counts["jit_configs_issued"] += 1
        return Response(201, {"runner": runner, "encoded_jit_config": self.encoded_jit_config(request, runner)})

    def add_runner(self, scope, name, labels, group_id):
        runner_id, self.next_runner_id = self.next_runner_id, self.next_runner_id + 1
        lowered = {label.lower() for label in labels}
        runner = {
            "id": runner_id, "name": name,
            "os": "Linux" if "linux" in lowered else "Windows" if "windows" in lowered else "unknown",
            "status": "offline", "busy": False, "ephemeral": True, "runner_group_id": group_id,
            "labels": [{"id": self.labels.setdefault(label, len(self.labels) + 1), "name": label,
                        "type": "read-only" if label.lower() in READ_ONLY_LABELS else "custom"}
                       for label in labels]}
        self.runners[runner_id] = (scope, runner)
        return runner

    def encoded_jit_config(self, request, runner):
        # The shape of GitHub's: base64 of a JSON map from runner file names to base64 contents.
        def b64(data):
            return base64.b64encode(data).decode()
        dot_runner = json.dumps({"agentId": runner["id"], "agentName": runner["name"],
                                 "poolId": runner["runner_group_id"], "serverUrl": request.base_url,
                                 "ephemeral": True}).encode()
        files = {".runner": b64(dot_runner), ".credentials": b64(secrets.token_bytes(48)),
                 ".credentials_rsaparams": b64(secrets.token_bytes(96))}
        return b64(json.dumps(files).encode())

    def registration_token(self, request, params, token):
        self.owned_scope(params, token)
        self.counts["registration_tokens_issued"] += 1
        return Response(201, {"token": random_token("A", 28).upper(),
                              "expires_at": rfc3339(time.time() + REGISTRATION_TOKEN_TTL)})

    def list_runners(self, request, params, token):
        scope = self.owned_scope(params, token)
        name = request.query.get("name")
        runners = [r for s, r in self.runners.values() if s == scope and name in (None, r["name"])]
        return self.page(request, runners, "runners")

    def delete_runner(self, request, params, token):
        scope = self.owned_scope(params, token)
        runner_id = int(params["runner_id"])
        owner_scope, runner = self.runners.get(runner_id, (None, None))
        if owner_scope != scope:
            raise ApiError(404, "Not Found")
        if runner["busy"]:
            raise ApiError(422, f'Bad request - Runner "{runner["name"]}" is still running a job"')
        del self.runners[runner_id]
        self.counts["runners_deleted"] += 1
        return Response(204)

    def get_job(self, request, params, token):
        scope = self.owned_scope(params, token)
        job = self.jobs.get(int(params["job_id"]))
        if job is None or f"{job['owner']}/{job['repo']}".lower() != scope:
            raise ApiError(404, "Not Found")
        return Response(200, {k: v for k, v in job.items() if k not in ("owner", "repo")})

    def list_runner_groups(self, request, params, token):
        scope = self.owned_scope(params, token)
        groups = [{**group, "visibility": "all", "inherited": False, "allows_public_repositories": False,
                   "runners_url": f"{request.base_url}/orgs/{scope}/actions/runner-groups/{group['id']}/runners"}
                  for group in self.groups_for(scope)]
        return self.page(request, groups, "runner_groups")

    def page(self, request, items, key):
        """One page of `items` with a Link header as GitHub paginates (per_page <= 100)."""
        def number(name, default):
            try:
                return int(request.query.get(name, default))
            except ValueError:
                return default
        per_page, page = min(max(number("per_page", 30), 1), 100), max(number("page", 1), 1)
        last = max(1, math.ceil(len(items) / per_page))
        def link(target, rel):
            query = urlencode({**request.query, "per_page": per_page, "page": target})
            return f'<{request.base_url}{request.path}?{query}>; rel="{rel}"'
        links = ([link(page + 1, "next"), link(last, "last")] if page < last else []) + \
                ([link(page - 1, "prev"), link(1, "first")] if page > 1 else [])
        body = {"total_count": len(items), key: items[(page - 1) * per_page:page * per_page]}
        return Response(200, body, {"Link": ", ".join(links)} if links else {})

    # ---- control API ----

    def control(self, method, path, body):
        with self.lock:
            try:
                data = json.loads(body or b"{}")
            except ValueError:
                return Response(400, {"message": "invalid JSON"})
            for control_method, pattern, handler in CONTROL_ROUTES:
                match = pattern.match(path)
                if match and control_method == method:
                    try:
                        return handler(self, data, *match.groups())
                    except (KeyError, TypeError, ValueError) as e:
                        return Response(400, {"message": f"bad control request: {e!r}"})
            return Response(404, {"message": "no such control endpoint"})

    def create_job(self, data):
        job_id = int(data["job_id"])
        self.jobs[job_id] = {
            "id": job_id, "run_id": int(data.get("run_id", job_id)), "run_attempt": int(data.get("run_attempt", 1)),
            "owner": data["owner"], "repo": data["repo"], "name": data.get("name", f"job {job_id}"),
            "status": data.get("status", "queued"), "conclusion": None, "labels": list(data.get("labels", [])),
            "runner_id": None, "runner_name": None, "runner_group_id": None, "runner_group_name": None,
            "created_at": rfc3339(time.time()), "started_at": None, "completed_at": None, "steps": [],
            "html_url": f"https://github.com/{data['owner']}/{data['repo']}/actions/runs/{job_id}"}
        return Response(201, self.jobs[job_id])

    def update_job(self, data, job_id):
        job = self.jobs.get(int(job_id))
        if job is None:
            return Response(404, {"message": "no such job"})
        job.update({k: data[k] for k in ("status", "conclusion", "runner_id", "runner_name") if k in data})
        if data.get("status") == "in_progress":
            job["started_at"] = rfc3339(time.time())
        if data.get("status") == "completed":
            job["completed_at"] = rfc3339(time.time())
        return Response(200, job)

    def update_runner(self, data, runner_id):
        _, runner = self.runners.get(int(runner_id), (None, None))
        if runner is None:
            return Response(404, {"message": "no such runner"})
        runner.update({k: data[k] for k in ("status", "busy") if k in data})
        return Response(200, runner)

    def add_fault(self, data):
        if data["kind"] not in ("5xx", "404_after_mint", "rate_limit"):
            raise ValueError(f"unknown fault kind {data['kind']}")
        fault = Fault(kind=data["kind"], count=int(data.get("count", 1)), rate=float(data.get("rate", 1.0)),
                      op=data.get("op"), applied=bool(data.get("applied", False)),
                      window_ms=int(data.get("window_ms", 500)), retry_after=int(data.get("retry_after", 1)),
                      which=data.get("which", "secondary"))
        self.faults.append(fault)
        return Response(201, {"faults": [vars(f) for f in self.faults]})

    def clear_faults(self, _):
        self.faults.clear()
        return Response(204)

    def set_limits(self, data):
        for key in ("writes_per_minute", "hourly_limit", "latency_ms", "token_ttl"):
            if key in data:
                setattr(self, key, type(getattr(self, key))(data[key]))
        return Response(200, {k: getattr(self, k) for k in
                              ("writes_per_minute", "hourly_limit", "latency_ms", "token_ttl")})

    def reset(self, data):
        self.reset_counters()
        if data.get("world"):
            self.runners.clear()
            self.jobs.clear()
            self.faults.clear()
        return Response(204)

    def state(self, _):
        return Response(200, {
            "requests": {op: dict(statuses) for op, statuses in self.requests.items()},
            "requests_total": sum(sum(s.values()) for s in self.requests.values()),
            **{name: self.counts[name] for name in (
                "jit_configs_issued", "registration_tokens_issued", "tokens_minted", "runners_deleted",
                "secondary_403s", "primary_403s")},
            "header_violations": dict(self.header_violations),
            "header_violations_total": sum(self.header_violations.values()),
            "jwt_failures": dict(self.jwt_failures), "jwt_failures_total": sum(self.jwt_failures.values()),
            "distinct_jwts": len(self.distinct_jwts),
            "faults_injected": dict(self.faults_injected),
            "max_in_flight": dict(self.max_in_flight),
            "rate_limit_used": {bucket: b.used for bucket, b in self.buckets.items()},
            # Accepted writes per wall-clock second: the sustained write rate is read from this.
            "writes_per_second": sorted([second, n] for second, n in self.write_histogram.items()),
            "writes_total": sum(self.write_histogram.values()),
            "runners": [{**runner, "scope": scope} for scope, runner in self.runners.values()],
            "jobs": list(self.jobs.values()),
            "faults": [vars(f) for f in self.faults if f.count > 0],
        })


CONTROL_ROUTES = [(method, re.compile(pattern + "$"), handler) for method, pattern, handler in [
    ("POST", r"/_fake/jobs", FakeGitHub.create_job),
    ("PATCH", r"/_fake/jobs/(\d+)", FakeGitHub.update_job),
    ("PATCH", r"/_fake/runners/(\d+)", FakeGitHub.update_runner),
    ("POST", r"/_fake/faults", FakeGitHub.add_fault),
    ("DELETE", r"/_fake/faults", FakeGitHub.clear_faults),
    ("POST", r"/_fake/limits", FakeGitHub.set_limits),
    ("POST", r"/_fake/reset", FakeGitHub.reset),
    ("GET", r"/_fake/state", FakeGitHub.state),
]]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"      # keep-alive, as ghscale's engine reuses connections
    server_version = "fake-github"

    def log_message(self, *_):
        pass                           # request lines would carry nothing useful, and never tokens

    def do_GET(self):
        self.handle_request()

    do_POST = do_PATCH = do_PUT = do_DELETE = do_GET

    def handle_request(self):
        fake = self.server.fake
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = urlsplit(self.path)
        if url.path.startswith("/_fake/"):
            self.send(fake.control(self.command, url.path, body))
            return
        prefix = "/api/v3" if url.path.startswith("/api/v3/") else ""
        request = Request(self.command, url.path[len(prefix):],
                          {k: v[-1] for k, v in parse_qs(url.query).items()}, self.headers, body,
                          f"http://{self.headers.get('Host') or '127.0.0.1'}{prefix}")
        try:
            response, release = fake.process(request)
        except Exception:
            traceback.print_exc()
            self.send(Response(500, {"message": "fake-github bug; see its stderr"}))
            return
        try:
            time.sleep(fake.latency_ms / 1000)   # this thread's own wait: requests overlap
            self.send(response)
        finally:
            if release:
                fake.release(release)

    def send(self, response):
        payload = b"" if response.body is None else json.dumps(response.body).encode()
        self.send_response(response.status)
        if response.body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-GitHub-Api-Version-Selected", "2022-11-28")
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024          # a burst of hundreds of connections must not be refused


def load_public_key(path):
    """The App's public key; a private key PEM works too (its public half is used)."""
    with open(path, "rb") as f:
        pem = f.read()
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        key = serialization.load_pem_private_key(pem, password=None).public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SystemExit(f"{path}: not an RSA key")
    return key


def key_values(pairs, what):
    result = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if not name or not value.isdigit():
            raise SystemExit(f"{what} must be NAME=ID, got {pair!r}")
        result[name] = int(value)
    return result


def main(argv):
    parser = argparse.ArgumentParser(description="A stateful fake of the GitHub REST API for ghscale's tests.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--public-key", required=True)
    parser.add_argument("--latency-ms", type=float, default=10.0)
    parser.add_argument("--writes-per-minute", type=int, default=0)
    parser.add_argument("--hourly-limit", type=int, default=15000)
    parser.add_argument("--installation", action="append", default=[], metavar="ACCOUNT=ID")
    parser.add_argument("--runner-group", action="append", default=[], metavar="NAME=ID")
    parser.add_argument("--token-ttl", type=int, default=3600)
    parser.add_argument("--ready-file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    fake = FakeGitHub(args.app_id, load_public_key(args.public_key),
                      key_values(args.installation, "--installation"),
                      key_values(args.runner_group, "--runner-group"), args.latency_ms,
                      args.writes_per_minute, args.hourly_limit, args.token_ttl, args.seed)
    server = Server(("127.0.0.1", args.port), Handler)
    server.fake = fake
    port = server.server_address[1]
    if args.ready_file:
        partial = args.ready_file + ".partial"
        with open(partial, "w") as f:
            f.write(f"{port}\n")
        os.replace(partial, args.ready_file)   # readers never see a half-written file
    print(f"fake-github listening on 127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
