#!/usr/bin/env python3
"""A transparent proxy in front of moto_server that counts AWS calls by API
and can make CreateFleet fill partially, which moto never does.

Requests pass through byte for byte with their Host header, so the SigV4
signature ghscale computed for the proxy's address still verifies at moto.
moto ignores CreateFleet's ClientToken; the proxy gives it EC2's
idempotency (a repeated token gets the first call's answer), so a retried
launch cannot launch twice here either. A partial fill keeps moto's answer
honest: the instances it drops from the
response are terminated in moto, and an <errorSet> entry per dropped
instance says InsufficientInstanceCapacity, as EC2 does.

  python3 aws_proxy.py --port P --upstream http://127.0.0.1:M \
      --admin-key AKID --admin-secret SECRET
Control: GET /_proxy/calls (JSON counts: "<API> <status>", plus "instances
launched" by CreateFleet), POST /_proxy/partial {"rate": 0.5,
"count": 3}: the next `count` CreateFleet calls keep only `rate` of their
instances (at least one is dropped when more than one was launched).
"""
import argparse
import http.client
import json
import re
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3

lock = threading.Lock()
calls = {}
partial = {"rate": 1.0, "count": 0}
fleets_by_token = {}  # ClientToken -> the response body EC2 would repeat
args = None


def api_of(headers, body):
    target = headers.get("X-Amz-Target")
    if target:
        return target.split(".")[-1]
    fields = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
    return fields.get("Action", ["unknown"])[0]


def drop_instances(xml, rate):
    """Keeps `rate` of the instance ids in a CreateFleet response; returns
    the new XML and the ids dropped."""
    ids = re.findall(r"<item>(i-[0-9a-f]+)</item>", xml)
    keep = int(len(ids) * rate)
    if len(ids) > 1:
        keep = min(keep, len(ids) - 1)
    dropped = ids[keep:]
    for i in dropped:
        xml = xml.replace("<item>%s</item>" % i, "", 1)
    errors = "".join(
        "<item><errorCode>InsufficientInstanceCapacity</errorCode>"
        "<errorMessage>We currently do not have sufficient capacity in the "
        "Availability Zone you requested (injected by aws_proxy).</errorMessage>"
        "<lifecycle>spot</lifecycle></item>" for _ in dropped)
    if "<errorSet/>" in xml:
        xml = xml.replace("<errorSet/>", "<errorSet>%s</errorSet>" % errors)
    elif "<errorSet>" in xml:
        xml = xml.replace("<errorSet>", "<errorSet>" + errors, 1)
    else:
        xml = xml.replace("</fleetId>", "</fleetId><errorSet>%s</errorSet>" % errors, 1)
    return xml, dropped


def terminate(ids, region):
    ec2 = boto3.client("ec2", region_name=region, endpoint_url=args.upstream,
                       aws_access_key_id=args.admin_key,
                       aws_secret_access_key=args.admin_secret)
    ec2.terminate_instances(InstanceIds=ids)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, status, body, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def control(self, body):
        if self.command == "GET" and self.path == "/_proxy/calls":
            with lock:
                data = json.dumps(calls).encode()
            return self.reply(200, data, [("Content-Type", "application/json")])
        if self.command == "POST" and self.path == "/_proxy/partial":
            with lock:
                partial.update(json.loads(body or b"{}"))
            return self.reply(204, b"")
        return self.reply(404, b"")

    def forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.startswith("/_proxy/"):
            return self.control(body)
        api = api_of(self.headers, body)
        started = time.time()
        token = None
        if api == "CreateFleet":
            fields = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
            token = fields.get("ClientToken", [None])[0]
            with lock:
                cached = fleets_by_token.get(token) if token else None
                if cached is not None:
                    calls["CreateFleet replayed"] = calls.get("CreateFleet replayed", 0) + 1
            if cached is not None:
                return self.reply(200, cached, [("Content-Type", "text/xml")])
        up = urllib.parse.urlparse(args.upstream)
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
        headers = {k: v for k, v in self.headers.items()}
        conn.request(self.command, self.path, body=body, headers=headers)
        res = conn.getresponse()
        data = res.read()
        status = res.status
        out_headers = [(k, v) for k, v in res.getheaders()
                       if k.lower() not in ("content-length", "transfer-encoding",
                                            "connection")]
        conn.close()
        with lock:
            key = "%s %d" % (api, status)
            calls[key] = calls.get(key, 0) + 1
            cut = api == "CreateFleet" and status == 200 and partial["count"] > 0
            if cut:
                partial["count"] -= 1
                rate = partial["rate"]
        if cut:
            xml, dropped = drop_instances(data.decode(), rate)
            if dropped:
                region = re.search(r"Credential=[^/]+/\d+/([^/]+)/",
                                   self.headers.get("Authorization", ""))
                terminate(dropped, region.group(1) if region else "us-east-1")
                with lock:
                    calls["CreateFleet dropped"] = calls.get("CreateFleet dropped", 0) + len(dropped)
            data = xml.encode()
        if token and status == 200:
            with lock:
                fleets_by_token[token] = data
                launched = len(re.findall(rb"<item>i-[0-9a-f]+</item>", data))
                calls["instances launched"] = calls.get("instances launched", 0) + launched
        self.reply(status, data, out_headers)
        if args.log_requests:
            print("%.3f %s %d %.1f ms" % (started, api, status, (time.time() - started) * 1000),
                  flush=True)

    do_GET = do_POST = do_PUT = do_DELETE = forward


def main():
    global args
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True)
    p.add_argument("--admin-key", required=True)
    p.add_argument("--admin-secret", required=True)
    p.add_argument("--log-requests", action="store_true",
                   help="one line per call: start time, API, status, duration")
    args = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print("aws-proxy listening on 127.0.0.1:%d" % args.port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
