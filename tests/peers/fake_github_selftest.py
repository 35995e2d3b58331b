#!/usr/bin/env python3
"""Self-check of fake_github.py: starts it on a free port with a fresh RSA key,
signs App JWTs itself, and checks every behaviour the ghscale tests rely on.
Exits 1 and lists the failures if any check fails.

usage: python3 tests/peers/fake_github_selftest.py
"""
import base64
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

APP_ID = "4242"
ORG, ORG_INSTALLATION = "acme", 11
OWNER, REPO, REPO_INSTALLATION = "octo", "widgets", 22
WRITES_PER_MINUTE = 5
FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_github.py")
HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28",
           "User-Agent": "fake-github-selftest"}

failures = []


def check(condition, what):
    if not condition:
        failures.append(what)
        print(f"FAIL: {what}", flush=True)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def app_jwt(key, iat_offset=-60, lifetime=600, iss=APP_ID, alg="RS256"):
    now = int(time.time())
    header = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    claims = b64url(json.dumps({"iat": now + iat_offset, "exp": now + iat_offset + lifetime,
                                "iss": iss, "jti": os.urandom(8).hex()}).encode())
    signature = key.sign(f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{claims}.{b64url(signature)}"


class Client:
    def __init__(self, port):
        self.port = port

    def call(self, method, path, auth=None, body=None, headers=None):
        """(status, lower-cased headers, decoded JSON body or None)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        all_headers = dict(HEADERS if headers is None else headers)
        if auth:
            all_headers["Authorization"] = f"Bearer {auth}"
        payload = None if body is None else json.dumps(body)
        if payload is not None:
            all_headers["Content-Type"] = "application/json"
        connection.request(method, path, body=payload, headers=all_headers)
        response = connection.getresponse()
        data = response.read()
        connection.close()
        return (response.status, {k.lower(): v for k, v in response.getheaders()},
                json.loads(data) if data else None)

    def control(self, method, path, body=None):
        status, _, data = self.call(method, path, body=body, headers={})
        assert status < 300, f"control {method} {path}: {status} {data}"
        return data

    def token(self, key, installation):
        status, _, data = self.call("POST", f"/app/installations/{installation}/access_tokens", app_jwt(key))
        assert status == 201, f"mint for installation {installation}: {status} {data}"
        return data["token"]

    def jit(self, token, scope, name, prefix=""):
        return self.call("POST", f"{prefix}/{scope}/actions/runners/generate-jitconfig", token,
                         {"name": name, "runner_group_id": 1, "labels": ["self-hosted", "linux", "small"]})


def check_jwt(client, key, other_key):
    status, headers, body = client.call("POST", f"/app/installations/{ORG_INSTALLATION}/access_tokens",
                                        app_jwt(key))
    check(status == 201 and body["token"].startswith("ghs_") and body["expires_at"].endswith("Z"),
          f"token mint: {status} {sorted(body or {})}")
    check("x-ratelimit-remaining" in headers, "token mint carries rate-limit headers")
    cases = {"bad signature": app_jwt(other_key), "expired": app_jwt(key, iat_offset=-700),
             "exp too far": app_jwt(key, lifetime=660), "iat in the future": app_jwt(key, iat_offset=120),
             "wrong iss": app_jwt(key, iss="999"), "alg HS256": app_jwt(key, alg="HS256"),
             "garbage": "not.a.jwt"}
    for what, jwt in cases.items():
        status, _, body = client.call("POST", f"/app/installations/{ORG_INSTALLATION}/access_tokens", jwt)
        check(status == 401 and body.get("message") and body.get("documentation_url"),
              f"JWT {what} -> 401 with a GitHub error: {status} {body}")
    status, _, _ = client.call("POST", f"/app/installations/{ORG_INSTALLATION}/access_tokens",
                               app_jwt(key, iss=int(APP_ID)))
    check(status == 201, f"integer iss accepted: {status}")
    status, _, _ = client.call("POST", "/app/installations/77/access_tokens", app_jwt(key))
    check(status == 404, f"unknown installation mint -> 404: {status}")
    state = client.control("GET", "/_fake/state")
    check(state["jwt_failures_total"] == len(cases), f"JWT failures counted: {state['jwt_failures']}")
    check(state["tokens_minted"] == 2, f"tokens minted counted: {state['tokens_minted']}")


def check_installations(client, key):
    status, _, body = client.call("GET", f"/orgs/{ORG}/installation", app_jwt(key))
    check(status == 200 and body["id"] == ORG_INSTALLATION, f"org installation: {status} {body}")
    status, _, body = client.call("GET", f"/api/v3/repos/{OWNER}/{REPO}/installation", app_jwt(key))
    check(status == 200 and body["id"] == REPO_INSTALLATION, f"repo installation under /api/v3: {status} {body}")
    status, _, _ = client.call("GET", "/orgs/nobody/installation", app_jwt(key))
    check(status == 404, f"unknown org installation -> 404: {status}")


def check_secondary_limit(client, org_token):
    path = f"/orgs/{ORG}/actions/runners/registration-token"
    statuses = [client.call("POST", path, org_token)[0] for _ in range(WRITES_PER_MINUTE)]
    check(statuses == [201] * WRITES_PER_MINUTE, f"{WRITES_PER_MINUTE} writes admitted: {statuses}")
    status, headers, body = client.call("POST", path, org_token)
    retry_after = int(headers.get("retry-after", "0"))
    check(status == 403 and "secondary rate limit" in body["message"] and 1 <= retry_after <= 60,
          f"write {WRITES_PER_MINUTE + 1} -> 403 secondary with retry-after: {status} {headers} {body}")
    status, _, _ = client.call("GET", f"/orgs/{ORG}/actions/runners", org_token)
    check(status == 200, f"reads pass while writes are limited: {status}")
    state = client.control("GET", "/_fake/state")
    check(state["secondary_403s"] == 1 and state["registration_tokens_issued"] == WRITES_PER_MINUTE,
          f"secondary 403s counted: {state['secondary_403s']}, tokens {state['registration_tokens_issued']}")
    check(state["writes_total"] == WRITES_PER_MINUTE, f"write histogram total: {state['writes_per_second']}")
    client.control("POST", "/_fake/limits", {"writes_per_minute": 0})


def check_runners(client, org_token, repo_token):
    status, _, body = client.jit(org_token, f"orgs/{ORG}", "runner-0")
    runner = body.get("runner", {}) if body else {}
    check(status == 201 and runner.get("name") == "runner-0" and runner.get("status") == "offline"
          and runner.get("busy") is False and [l["name"] for l in runner["labels"]] == ["self-hosted", "linux", "small"]
          and all({"id", "name", "type"} <= set(l) for l in runner["labels"]),
          f"org JIT config runner: {status} {body}")
    files = json.loads(base64.b64decode(body["encoded_jit_config"]))
    dot_runner = json.loads(base64.b64decode(files[".runner"]))
    check(dot_runner["agentId"] == runner["id"], f"JIT config names its runner: {dot_runner}")
    status, _, _ = client.jit(org_token, f"orgs/{ORG}", "runner-0")
    check(status == 409, f"duplicate runner name -> 409: {status}")
    status, _, _ = client.call("POST", f"/orgs/{ORG}/actions/runners/generate-jitconfig", org_token,
                               {"name": "x", "runner_group_id": 1})
    check(status == 422, f"JIT config without labels -> 422: {status}")
    status, _, body = client.jit(repo_token, f"repos/{OWNER}/{REPO}", "runner-0", prefix="/api/v3")
    check(status == 201, f"repo JIT config under /api/v3 (same name, other scope): {status} {body}")
    status, _, body = client.jit(org_token, f"repos/{OWNER}/{REPO}", "intruder")
    check(status == 403, f"token of another installation -> 403: {status} {body}")
    status, _, _ = client.jit("ghs_unknown", f"orgs/{ORG}", "x")
    check(status == 401, f"unknown token -> 401: {status}")
    status, _, body = client.call("GET", f"/orgs/{ORG}/actions/runner-groups", org_token)
    check(status == 200 and [g["id"] for g in body["runner_groups"]] == [1, 7],
          f"runner groups Default + configured: {status} {body}")

    for i in range(1, 7):
        client.jit(org_token, f"orgs/{ORG}", f"runner-{i}")
    status, headers, body = client.call("GET", f"/orgs/{ORG}/actions/runners?per_page=3&page=1", org_token)
    link = headers.get("link", "")
    check(status == 200 and body["total_count"] == 7 and len(body["runners"]) == 3
          and 'page=2>; rel="next"' in link and 'page=3>; rel="last"' in link
          and link.startswith(f"<http://127.0.0.1:{client.port}/orgs/{ORG}/actions/runners?"),
          f"runner list page 1 with Link: {status} {link} {body and body.get('total_count')}")
    status, headers, body = client.call("GET", f"/orgs/{ORG}/actions/runners?per_page=3&page=3", org_token)
    link = headers.get("link", "")
    check(status == 200 and len(body["runners"]) == 1 and 'rel="next"' not in link and 'page=2>; rel="prev"' in link,
          f"runner list last page: {status} {link}")

    runner_id = runner["id"]
    status, _, _ = client.call("DELETE", f"/orgs/{ORG}/actions/runners/{runner_id}", org_token)
    check(status == 204, f"delete runner -> 204: {status}")
    status, _, _ = client.call("DELETE", f"/orgs/{ORG}/actions/runners/{runner_id}", org_token)
    check(status == 404, f"delete it again -> 404: {status}")
    status, _, body = client.call("GET", f"/orgs/{ORG}/actions/runners", org_token)
    check(body["total_count"] == 6, f"runner list after delete: {body['total_count']}")


def check_jobs(client, repo_token):
    client.control("POST", "/_fake/jobs", {"owner": OWNER, "repo": REPO, "job_id": 501, "run_id": 90,
                                           "labels": ["self-hosted", "small"], "status": "queued"})
    path = f"/repos/{OWNER}/{REPO}/actions/jobs/501"
    status, _, body = client.call("GET", path, repo_token)
    check(status == 200 and body["id"] == 501 and body["run_id"] == 90 and body["status"] == "queued"
          and body["labels"] == ["self-hosted", "small"] and "runner_id" in body, f"job queued: {status} {body}")
    client.control("PATCH", "/_fake/jobs/501", {"status": "in_progress", "runner_id": 3, "runner_name": "r"})
    status, _, body = client.call("GET", path, repo_token)
    check(status == 200 and body["status"] == "in_progress" and body["runner_id"] == 3, f"job in progress: {body}")
    status, _, _ = client.call("GET", f"/repos/{OWNER}/{REPO}/actions/jobs/502", repo_token)
    check(status == 404, f"unknown job -> 404: {status}")


def check_rate_limit_headers(client, org_token):
    path = f"/orgs/{ORG}/actions/runners"
    _, first, _ = client.call("GET", path, org_token)
    _, second, _ = client.call("GET", path, org_token)
    check(first.get("x-ratelimit-limit") == "15000" and first.get("x-ratelimit-resource") == "core"
          and int(second["x-ratelimit-remaining"]) == int(first["x-ratelimit-remaining"]) - 1
          and int(second["x-ratelimit-used"]) == int(first["x-ratelimit-used"]) + 1
          and int(first["x-ratelimit-reset"]) > time.time(), f"rate-limit headers decrease: {first} {second}")
    client.control("POST", "/_fake/limits", {"hourly_limit": int(second["x-ratelimit-used"]) + 1})
    status, _, _ = client.call("GET", path, org_token)
    check(status == 200, f"last request of the hour passes: {status}")
    status, headers, body = client.call("GET", path, org_token)
    check(status == 403 and headers.get("x-ratelimit-remaining") == "0" and "API rate limit exceeded" in body["message"],
          f"exhausted primary -> 403: {status} {headers} {body}")
    check(client.control("GET", "/_fake/state")["primary_403s"] == 1, "primary 403 counted")
    client.control("POST", "/_fake/limits", {"hourly_limit": 15000})


def check_faults(client, key, org_token):
    path = f"/orgs/{ORG}/actions/runners"
    client.control("POST", "/_fake/faults", {"kind": "5xx", "count": 2})
    statuses = [client.call("GET", path, org_token)[0] for _ in range(3)]
    check(statuses == [502, 503, 200], f"5xx fault for the next 2 requests: {statuses}")

    client.control("POST", "/_fake/faults", {"kind": "5xx", "count": 1, "op": "generate_jitconfig", "applied": True})
    check(client.jit(org_token, f"orgs/{ORG}", "lost-answer")[0] == 502, "applied 5xx answers 502")
    check(client.jit(org_token, f"orgs/{ORG}", "lost-answer")[0] == 409, "applied 5xx did create the runner")

    client.control("POST", "/_fake/faults", {"kind": "404_after_mint", "count": 1, "window_ms": 400})
    fresh = client.token(key, ORG_INSTALLATION)
    status, _, _ = client.call("GET", path, fresh)
    check(status == 404, f"call right after the mint -> 404: {status}")
    time.sleep(0.45)
    status, _, _ = client.call("GET", path, fresh)
    check(status == 200, f"same token after the window -> 200: {status}")
    status, _, _ = client.call("GET", path, client.token(key, ORG_INSTALLATION))
    check(status == 200, f"fault spent after one token: {status}")

    client.control("POST", "/_fake/faults", {"kind": "rate_limit", "count": 1, "retry_after": 3})
    status, headers, _ = client.call("GET", path, org_token)
    check(status == 403 and headers.get("retry-after") == "3", f"injected rate limit: {status} {headers}")
    client.control("POST", "/_fake/faults", {"kind": "5xx", "count": 5})
    client.control("DELETE", "/_fake/faults")
    check(client.call("GET", path, org_token)[0] == 200, "DELETE /_fake/faults clears faults")
    state = client.control("GET", "/_fake/state")
    check(state["faults_injected"] == {"5xx": 3, "404_after_mint": 1, "rate_limit": 1},
          f"faults counted: {state['faults_injected']}")


def check_headers(client, org_token):
    path = f"/orgs/{ORG}/actions/runners"
    cases = [("missing User-Agent", "User-Agent", None, 403), ("unknown API version", "X-GitHub-Api-Version",
              "2020-01-01", 400), ("missing API version", "X-GitHub-Api-Version", None, 400),
             ("plain JSON Accept", "Accept", "application/json", 415)]
    for what, name, value, expected in cases:
        headers = {k: v for k, v in HEADERS.items() if k != name}
        if value:
            headers[name] = value
        status, _, body = client.call("GET", path, org_token, headers=headers)
        check(status == expected and body.get("message"), f"{what} -> {expected}: {status} {body}")
    state = client.control("GET", "/_fake/state")
    check(state["header_violations_total"] == len(cases), f"header violations counted: {state['header_violations']}")


def check_concurrency(client, org_token):
    client.control("POST", "/_fake/limits", {"latency_ms": 600})
    statuses, lock = [], threading.Lock()
    def one():
        status = client.call("GET", f"/orgs/{ORG}/actions/runners", org_token)[0]
        with lock:
            statuses.append(status)
    threads = [threading.Thread(target=one) for _ in range(110)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client.control("POST", "/_fake/limits", {"latency_ms": 1})
    state = client.control("GET", "/_fake/state")
    in_flight = state["max_in_flight"].get(f"installation ID {ORG_INSTALLATION}", 0)
    refused = statuses.count(403)
    # How many overlap depends on the scheduler; whatever overlapped beyond 100 was refused.
    check(refused == max(0, in_flight - 100) and statuses.count(200) == 110 - refused,
          f"concurrency over 100 -> 403 secondary: max in flight {in_flight}, refused {refused}")


def check_token_expiry(client, key):
    client.control("POST", "/_fake/limits", {"token_ttl": 1})
    token = client.token(key, ORG_INSTALLATION)
    time.sleep(1.1)
    status, _, body = client.call("GET", f"/orgs/{ORG}/actions/runners", token)
    check(status == 401 and body["message"] == "Bad credentials", f"expired token -> 401: {status} {body}")
    client.control("POST", "/_fake/limits", {"token_ttl": 3600})


def check_reset(client):
    client.control("POST", "/_fake/reset", {})
    state = client.control("GET", "/_fake/state")
    check(state["requests_total"] == 0 and state["tokens_minted"] == 0 and state["runners"],
          f"reset clears counters, keeps the world: {state['requests_total']} {len(state['runners'])}")
    client.control("POST", "/_fake/reset", {"world": True})
    check(client.control("GET", "/_fake/state")["runners"] == [], "reset with world clears runners")


def main():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with tempfile.TemporaryDirectory() as tmp:
        pem = os.path.join(tmp, "app.pub.pem")
        with open(pem, "wb") as f:
            f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
        ready = os.path.join(tmp, "ready")
        fake = subprocess.Popen(
            [sys.executable, FAKE, "--port", "0", "--app-id", APP_ID, "--public-key", pem, "--latency-ms", "1",
             "--writes-per-minute", str(WRITES_PER_MINUTE), "--installation", f"{ORG}={ORG_INSTALLATION}",
             "--installation", f"{OWNER}/{REPO}={REPO_INSTALLATION}", "--runner-group", "gpu=7",
             "--ready-file", ready], stdout=subprocess.PIPE, text=True)
        try:
            line = fake.stdout.readline().strip()
            check(line.startswith("fake-github listening on 127.0.0.1:"), f"listening line: {line!r}")
            port = int(line.rsplit(":", 1)[1])
            with open(ready) as f:
                check(int(f.read()) == port, "ready file names the port")
            client = Client(port)
            check_jwt(client, key, other_key)
            check_installations(client, key)
            org_token = client.token(key, ORG_INSTALLATION)
            repo_token = client.token(key, REPO_INSTALLATION)
            check_secondary_limit(client, org_token)
            check_runners(client, org_token, repo_token)
            check_jobs(client, repo_token)
            check_rate_limit_headers(client, org_token)
            check_faults(client, key, org_token)
            client.control("POST", "/_fake/reset", {})
            check_headers(client, org_token)
            check_concurrency(client, org_token)
            check_token_expiry(client, key)
            check_reset(client)
        finally:
            fake.terminate()
            fake.wait(timeout=10)
    if failures:
        print(f"fake_github selftest: {len(failures)} check(s) failed", flush=True)
        return 1
    print("fake_github selftest: all checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
