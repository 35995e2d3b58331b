#!/usr/bin/env python3
"""Checks conf/ghscale.service: the hardening and restart policy the README
promises, a stop timeout longer than the drain, and `systemd-analyze verify`
on a copy whose ExecStart points at the built binary (it needs the binaries
to exist). Keys newer than the machine's systemd are the only warnings
allowed."""
import argparse
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
UNIT = ROOT / "conf" / "ghscale.service"

REQUIRED = {
    "Restart": "on-failure",
    "DynamicUser": "yes",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "KillSignal": "SIGTERM",
    "StateDirectory": "ghscale",
}
# Added after systemd 252 (Debian bookworm); older versions ignore them.
NEWER_KEYS = {"RestartSteps", "RestartMaxDelaySec"}
DEFAULT_DRAIN_SECONDS = 30


def service_keys(text):
    keys = {}
    section = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        key, _, value = line.partition("=")
        if section == "[Service]":
            keys.setdefault(key.strip(), []).append(value.strip())
    return keys


def seconds(value):
    units = {"s": 1, "min": 60, "ms": 0.001}
    total = 0.0
    for number, unit in re.findall(r"(\d+)\s*(min|ms|s)", value):
        total += int(number) * units[unit]
    return total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ghscale", required=True)
    args = parser.parse_args()
    text = UNIT.read_text()
    keys = service_keys(text)
    failures = []
    for key, want in REQUIRED.items():
        if want not in keys.get(key, []):
            failures.append(f"{key}={want} missing (have {keys.get(key)})")
    stop = seconds(keys.get("TimeoutStopSec", ["0"])[0])
    if stop <= DEFAULT_DRAIN_SECONDS:
        failures.append(f"TimeoutStopSec ({stop}s) must exceed the drain ({DEFAULT_DRAIN_SECONDS}s)")
    if not any("ghscale run --config" in v for v in keys.get("ExecStart", [])):
        failures.append("ExecStart does not run `ghscale run --config`")
    verify = shutil.which("systemd-analyze")
    if verify:
        with tempfile.TemporaryDirectory() as tmp:
            copy = pathlib.Path(tmp) / "ghscale.service"
            copy.write_text(text.replace("/usr/local/bin/ghscale", str(pathlib.Path(args.ghscale).resolve())))
            out = subprocess.run([verify, "verify", str(copy)], capture_output=True, text=True)
            for line in (out.stdout + out.stderr).splitlines():
                newer = any(f"Unknown key '{k}'" in line for k in NEWER_KEYS)
                # verify also looks at the machine's other units; only ours counts.
                if "ghscale.service" in line and not newer:
                    failures.append("systemd-analyze: " + line)
            if out.returncode != 0:
                failures.append(f"systemd-analyze verify exited {out.returncode}")
    else:
        print("systemd-analyze not installed: structural checks only")
    for f in failures:
        print("FAIL", f)
    print("systemd unit:", "FAILED" if failures else "OK")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
