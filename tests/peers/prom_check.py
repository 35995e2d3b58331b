#!/usr/bin/python3
"""Strict check of a Prometheus text exposition (format 0.0.4).

Usage: prom_check.py FILE   (or "-" for stdin)

The page must parse with the official client library's parser
(python3-prometheus-client), and on top of what that parser tolerates:
  * every family has exactly one # HELP and one # TYPE, before its samples;
  * the samples of a family are contiguous and named after it (counters end
    in _total; histograms have _bucket, _sum and _count only);
  * histogram buckets are cumulative, end with le="+Inf", and that bucket
    equals _count, for every label set;
  * no sample (name plus labels) appears twice.
Exit status 0 when the page passes; otherwise 1 and the first problem.
"""
import math
import re
import sys

from prometheus_client.parser import text_string_to_metric_families

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*$")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def fail(line_no, message):
    raise ValueError(f"line {line_no}: {message}")


def family_of(sample_name, families):
    """The declared family a sample name belongs to, or None."""
    if sample_name in families:
        return sample_name
    for suffix in ("_bucket", "_sum", "_count"):
        if sample_name.endswith(suffix):
            base = sample_name[: -len(suffix)]
            if families.get(base, {}).get("type") == "histogram":
                return base
    return None


def check_structure(text):
    families = {}  # name -> {"help": bool, "type": str or None, "closed": bool}
    current = None
    seen = set()
    if text and not text.endswith("\n"):
        fail(text.count("\n") + 1, "the page must end with a line feed")
    for line_no, line in enumerate(text.split("\n")[:-1], 1):
        if not line:
            fail(line_no, "empty line")
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            kind, rest = line[2:6], line[7:]
            name, _, value = rest.partition(" ")
            if not NAME.match(name):
                fail(line_no, f"bad metric name {name!r}")
            fam = families.setdefault(name, {"help": False, "type": None, "samples": 0})
            if current is not None and current != name:
                families[current]["closed"] = True
            if fam.get("closed"):
                fail(line_no, f"family {name} is not contiguous")
            if fam["samples"]:
                fail(line_no, f"# {kind} of {name} after its samples")
            if kind == "HELP":
                if fam["help"]:
                    fail(line_no, f"second # HELP for {name}")
                fam["help"] = True
            else:
                if fam["type"] is not None:
                    fail(line_no, f"second # TYPE for {name}")
                if value not in TYPES:
                    fail(line_no, f"unknown type {value!r}")
                if value == "counter" and not name.endswith("_total"):
                    fail(line_no, f"counter {name} does not end in _total")
                fam["type"] = value
            current = name
            continue
        if line.startswith("#"):
            continue
        match = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$", line)
        if not match:
            fail(line_no, "not a sample line")
        sample_name, labels, _ = match.groups()
        name = family_of(sample_name, families)
        if name is None or families[name]["type"] is None or not families[name]["help"]:
            fail(line_no, f"sample {sample_name} without # HELP and # TYPE")
        if name != current:
            fail(line_no, f"sample of {name} inside family {current}")
        key = (sample_name, labels or "")
        if key in seen:
            fail(line_no, f"duplicate sample {sample_name}{labels or ''}")
        seen.add(key)
        families[name]["samples"] += 1


def check_histograms(families):
    for fam in families:
        if fam.type != "histogram":
            continue
        series = {}
        for s in fam.samples:
            labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
            entry = series.setdefault(labels, {"buckets": [], "count": None, "sum": None})
            if s.name.endswith("_bucket"):
                entry["buckets"].append((float(s.labels["le"]), s.value))
            elif s.name.endswith("_count"):
                entry["count"] = s.value
            elif s.name.endswith("_sum"):
                entry["sum"] = s.value
        for labels, entry in series.items():
            buckets = entry["buckets"]
            where = f"{fam.name}{dict(labels)}"
            if not buckets or not math.isinf(buckets[-1][0]):
                raise ValueError(f"{where}: last bucket is not le=\"+Inf\"")
            if [b for b, _ in buckets] != sorted(b for b, _ in buckets):
                raise ValueError(f"{where}: buckets out of order")
            counts = [c for _, c in buckets]
            if counts != sorted(counts):
                raise ValueError(f"{where}: buckets are not cumulative")
            if entry["count"] is None or entry["sum"] is None:
                raise ValueError(f"{where}: missing _count or _sum")
            if entry["count"] != counts[-1]:
                raise ValueError(f"{where}: _count differs from the +Inf bucket")


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "-"
    text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    try:
        check_structure(text)
        families = list(text_string_to_metric_families(text))
        check_histograms(families)
    except (ValueError, KeyError, IndexError) as err:
        print(f"invalid exposition: {err}", file=sys.stderr)
        return 1
    samples = sum(len(f.samples) for f in families)
    print(f"ok: {len(families)} families, {samples} samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
