#!/usr/bin/env python3
"""Signs requests with botocore's SigV4Auth, the reference for tests/sigv4_test.cpp.

Reads a JSON list of requests on stdin, each
  {"method", "url", "headers": [[name, value], ...], "body",
   "region", "service", "access_key", "secret_key", "token" (or ""),
   "timestamp": "20150830T123600Z"}
and prints a JSON list with, per request, the Authorization header botocore
computed and the headers it signed ([[lower-case name, value], ...] in
signing order, host included). Header names must be unique per request. Every request is signed at its "timestamp":
botocore reads the time through botocore.auth.get_current_datetime, which is
replaced for the duration of each signature.
"""
import datetime
import json
import sys

import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def sign(spec):
    instant = datetime.datetime.strptime(spec["timestamp"], "%Y%m%dT%H%M%SZ")
    botocore.auth.get_current_datetime = lambda: instant
    request = AWSRequest(method=spec["method"], url=spec["url"],
                         headers=dict(spec["headers"]),
                         data=spec["body"].encode("utf-8"))
    credentials = Credentials(spec["access_key"], spec["secret_key"],
                              spec["token"] or None)
    signer = botocore.auth.SigV4Auth(credentials, spec["service"], spec["region"])
    signer.add_auth(request)
    authorization = request.headers["Authorization"]
    names = authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
    values = signer.headers_to_sign(request)
    return {
        "authorization": authorization,
        "signed_headers": [[name, values[name]] for name in names],
    }


def main():
    json.dump([sign(spec) for spec in json.load(sys.stdin)], sys.stdout)


if __name__ == "__main__":
    main()
