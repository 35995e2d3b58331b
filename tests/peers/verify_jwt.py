#!/usr/bin/env python3
"""Checks a GitHub App JWT as GitHub would, independently of ghscale's code.

usage: verify_jwt.py PUBLIC_KEY_PEM ISS NOW JTI < jwt

Verifies the RS256 signature with the App's public key, the header, and the
claims GitHub checks: iat backdated by 60 s from NOW (Unix seconds, or a
range LO..HI when the signer read the clock itself), a lifetime of at most 10
minutes, iss and jti ("any": only present). Exits 0 and prints the jti when
all hold, else 1 with the reasons on stderr.
"""
import base64
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding


def b64url_decode(part):
    if "=" in part:
        raise ValueError("base64url segment carries padding")
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def problems(public_key_pem, iss, now_range, jti, token):
    segments = token.split(".")
    if len(segments) != 3:
        return ["expected 3 segments, got %d" % len(segments)], None
    header_b64, claims_b64, sig_b64 = segments
    with open(public_key_pem, "rb") as f:
        key = serialization.load_pem_public_key(f.read())
    out = []
    try:
        key.verify(b64url_decode(sig_b64), (header_b64 + "." + claims_b64).encode(),
                   padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        out.append("RS256 signature does not verify")
    header = json.loads(b64url_decode(header_b64))
    if header != {"alg": "RS256", "typ": "JWT"}:
        out.append("header is %r" % header)
    claims = json.loads(b64url_decode(claims_b64))
    iat = claims.get("iat")
    lo, hi = now_range
    if not isinstance(iat, int) or not lo - 60 <= iat <= hi - 60:
        out.append("iat %r is not now - 60 (now in %d..%d)" % (iat, lo, hi))
        iat = lo - 60
    exp = claims.get("exp")
    if not isinstance(exp, int) or exp <= iat + 60 or exp - iat > 600:
        out.append("exp %r is not after now and within 600 s of iat" % exp)
    if claims.get("iss") != iss:
        out.append("iss %r is not %r" % (claims.get("iss"), iss))
    if not isinstance(claims.get("jti"), str) or not claims["jti"] \
            or (jti != "any" and claims["jti"] != jti):
        out.append("jti %r is not %r" % (claims.get("jti"), jti))
    return out, claims.get("jti")


def parse_now(text):
    lo, _, hi = text.partition("..")
    return int(lo), int(hi or lo)


def main():
    public_key_pem, iss, now, jti = sys.argv[1:5]
    found, seen_jti = problems(public_key_pem, iss, parse_now(now), jti,
                               sys.stdin.read().strip())
    for p in found:
        print("verify_jwt: " + p, file=sys.stderr)
    if found:
        return 1
    print(seen_jti, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
