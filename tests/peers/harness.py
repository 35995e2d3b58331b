"""The real world around `ghscale run`, for the end-to-end tests and the burst
benchmark: moto (SQS, EC2, SSM, IAM) with SigV4 checking on, a counting and
fault-injecting proxy in front of it, the project's fake GitHub, and ghscale
itself, each on a free loopback port and stopped on exit.

ghscale runs either with the harness's own small configuration
(World.config_text) or with one built from conf/ghscale.example.toml
(World.example_config: the example as shipped, pointed at this world), which
to_toml() writes back as TOML.
"""
import collections
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request

import boto3
from botocore.config import Config
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

HERE = os.path.dirname(os.path.abspath(__file__))
REGION = "us-east-1"
ORG = "octo-org"
INSTALLATION = 4242
APP_ID = 9001
LABELS = ["self-hosted", "linux", "x64"]
# The shipped example configuration (World.example_config); the environment
# may name another, e.g. an older revision's for an older binary.
EXAMPLE_CONFIG = os.environ.get("GHSCALE_EXAMPLE_CONFIG") or os.path.join(
    HERE, "..", "..", "conf", "ghscale.example.toml")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, proc, what, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("%s exited with %s before serving" % (what, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("%s did not serve on port %d" % (what, port))


def http_json(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as res:
        text = res.read()
        return json.loads(text) if text else None


def policy_for_moto():
    """conf/iam-policy.json as moto can evaluate it. moto authorizes a batch
    call under its own name (sqs:DeleteMessageBatch) where AWS uses the
    single-message action, and checks SSM calls against resource "*" instead
    of the parameter's ARN; everything else is the shipped policy as is."""
    with open(os.path.join(HERE, "..", "..", "conf", "iam-policy.json")) as f:
        policy = json.load(f)
    for statement in policy["Statement"]:
        actions = statement["Action"]
        if isinstance(actions, list) and "sqs:DeleteMessage" in actions:
            actions += ["sqs:DeleteMessageBatch", "sqs:ChangeMessageVisibilityBatch",
                        "sqs:SendMessageBatch"]
        names = actions if isinstance(actions, list) else [actions]
        if any(a.startswith("ssm:") for a in names):
            statement["Resource"] = "*"
    return policy


def queued_payload(job_id, run_id, repo, labels=LABELS, installation=INSTALLATION):
    """A workflow_job `queued` webhook body, as GitHub delivers it."""
    return {
        "action": "queued",
        "workflow_job": {"id": job_id, "run_id": run_id, "run_attempt": 1,
                         "status": "queued", "labels": labels,
                         "name": "build %d" % job_id},
        "repository": {"name": repo, "full_name": "%s/%s" % (ORG, repo),
                       "owner": {"login": ORG, "type": "Organization"}},
        "organization": {"login": ORG},
        "installation": {"id": installation},
    }


# -- TOML ------------------------------------------------------------------------
# tomllib reads TOML but nothing in the standard library writes it. This covers
# what ghscale's configuration holds: strings, integers, floats, booleans,
# arrays, tables, arrays of tables at the top ([[pools]]) and arrays of inline
# tables below it (idle_schedule = [{ ... }]). Dates are not supported.

def _toml_key(key):
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_string(key)


def _toml_string(text):
    # JSON's string escapes (\" \\ \n \t \uXXXX ...) are TOML basic-string
    # escapes too; TOML also forbids a raw DEL, which JSON leaves alone.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007F")


def _toml_value(value):
    """A value written inline: scalars, arrays and inline tables."""
    if isinstance(value, bool):  # before int: bool is an int in Python
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value)  # "40.0", "0.2", "1e-05", "inf", "-inf": all TOML floats
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join("%s = %s" % (_toml_key(k), _toml_value(v))
                                for k, v in value.items()) + " }"
    raise TypeError("cannot write %r as TOML" % (value,))


def _is_table_array(value):
    return (isinstance(value, (list, tuple)) and len(value) > 0
            and all(isinstance(v, dict) for v in value))


def _toml_table(out, path, table):
    """The key/value lines of `table`, then its sub-tables under their
    headers. Arrays of tables become [[name]] sections at the top level and
    inline arrays of inline tables below it, as the example writes them."""
    later = []
    for key, value in table.items():
        if isinstance(value, dict) or (not path and _is_table_array(value)):
            later.append((key, value))
        else:
            out.append("%s = %s" % (_toml_key(key), _toml_value(value)))
    for key, value in later:
        name = ".".join(_toml_key(k) for k in path + [key])
        if isinstance(value, dict):
            out += ["", "[%s]" % name]
            _toml_table(out, path + [key], value)
        else:
            for element in value:
                out += ["", "[[%s]]" % name]
                _toml_table(out, path + [key], element)


def to_toml(doc):
    """`doc` (as tomllib.load returns it) as TOML text that reads back equal."""
    out = []
    _toml_table(out, [], doc)
    return "\n".join(out).lstrip("\n") + "\n"


class World:
    """Start with `with World(tmpdir, ...) as w:`; everything stops on exit."""

    def __init__(self, workdir, latency_ms=10, writes_per_minute=0,
                 app_writes_per_minute=10000, max_runners=1000,
                 poll_loops=int(os.environ.get("GHSCALE_POLL_LOOPS", "10")),
                 ssm_throughput=1000, log=None, max_receive_count=20):
        self.workdir = workdir
        self.latency_ms = latency_ms
        self.writes_per_minute = writes_per_minute
        self.app_writes_per_minute = app_writes_per_minute
        self.max_runners = max_runners
        self.poll_loops = poll_loops
        # Parameter Store's higher-throughput quota (moto itself has none).
        self.ssm_throughput = ssm_throughput
        # The SQS redrive policy's maxReceiveCount of the jobs queue.
        self.max_receive_count = max_receive_count
        # The pools of the configuration ghscale runs with: runner_instances()
        # looks at their instances (example_config() sets its own).
        self.pools = ["linux"]
        self.log = log or open(os.path.join(workdir, "peers.log"), "w")
        self.procs = []
        self.ghscale = None
        self.ghscale_log = None

    # -- lifecycle ------------------------------------------------------------
    def __enter__(self):
        try:
            self._start_moto()
            self._start_proxy()
            self._start_fake_github()
            self._create_aws_resources()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        if self.ghscale and self.ghscale.poll() is None:
            self.ghscale.kill()
            self.ghscale.wait()
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    def _spawn(self, argv, port, what, env=None, log=None):
        p = subprocess.Popen(argv, stdout=log or self.log, stderr=subprocess.STDOUT,
                             env=dict(os.environ, **(env or {})))
        self.procs.append(p)
        wait_for_port(port, p, what)
        return p

    def _start_moto(self):
        self.moto_port = free_port()
        # SigV4 checking starts after the eight unauthenticated setup calls
        # below: two IAM users, each with a policy and an access key. The
        # admin sets the world up; ghscale runs under conf/iam-policy.json.
        self._spawn(["moto_server", "-H", "127.0.0.1", "-p", str(self.moto_port)],
                    self.moto_port, "moto_server",
                    {"INITIAL_NO_AUTH_ACTION_COUNT": "8"},
                    open(os.path.join(self.workdir, "moto.log"), "w"))
        self.moto_url = "http://127.0.0.1:%d" % self.moto_port
        iam = boto3.client("iam", endpoint_url=self.moto_url, region_name=REGION,
                           aws_access_key_id="setup", aws_secret_access_key="setup")
        allow_all = json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"}]})
        shipped = json.dumps(policy_for_moto())
        keys = {}
        for user, policy in (("admin", allow_all), ("ghscale", shipped)):
            iam.create_user(UserName=user)
            arn = iam.create_policy(PolicyName=user, PolicyDocument=policy)["Policy"]["Arn"]
            iam.attach_user_policy(UserName=user, PolicyArn=arn)
            keys[user] = iam.create_access_key(UserName=user)["AccessKey"]
        self.admin_key = keys["admin"]["AccessKeyId"]
        self.admin_secret = keys["admin"]["SecretAccessKey"]
        self.access_key = keys["ghscale"]["AccessKeyId"]
        self.secret_key = keys["ghscale"]["SecretAccessKey"]

    def _start_proxy(self):
        self.proxy_port = free_port()
        self._spawn([sys.executable, os.path.join(HERE, "aws_proxy.py"),
                     "--port", str(self.proxy_port), "--upstream", self.moto_url,
                     "--admin-key", self.admin_key, "--admin-secret", self.admin_secret]
                    + (["--log-requests"] if os.environ.get("GHSCALE_PEER_LOG") else []),
                    self.proxy_port, "aws_proxy")
        self.proxy_url = "http://127.0.0.1:%d" % self.proxy_port

    def _start_fake_github(self):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private_key_file = os.path.join(self.workdir, "app.pem")
        public_key_file = os.path.join(self.workdir, "app.pub.pem")
        with open(self.private_key_file, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption()))
        os.chmod(self.private_key_file, 0o600)
        with open(public_key_file, "wb") as f:
            f.write(key.public_key().public_bytes(
                serialization.Encoding.PEM,
                serialization.PublicFormat.SubjectPublicKeyInfo))
        self.github_port = free_port()
        self._spawn([sys.executable, os.path.join(HERE, "fake_github.py"),
                     "--port", str(self.github_port), "--app-id", str(APP_ID),
                     "--public-key", public_key_file,
                     "--latency-ms", str(self.latency_ms),
                     "--writes-per-minute", str(self.writes_per_minute),
                     "--installation", "%s=%d" % (ORG, INSTALLATION)],
                    self.github_port, "fake_github")
        self.github_url = "http://127.0.0.1:%d" % self.github_port

    def client(self, service):
        """A client with the admin's key: the test's view of the world. moto
        answers 500 now and then under load: those calls are retried."""
        return boto3.client(service, endpoint_url=self.moto_url, region_name=REGION,
                            aws_access_key_id=self.admin_key,
                            aws_secret_access_key=self.admin_secret,
                            config=Config(retries={"max_attempts": 8, "mode": "standard"}))

    def _create_aws_resources(self):
        sqs = self.client("sqs")
        self.dlq_url = sqs.create_queue(QueueName="ghscale-jobs-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(
            QueueUrl=self.dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.queue_url = sqs.create_queue(
            QueueName="ghscale-jobs",
            Attributes={"RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn,
                 "maxReceiveCount": str(self.max_receive_count)})})["QueueUrl"]
        ec2 = self.client("ec2")
        self.image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        self.subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"][:2]]
        self.create_launch_template("ghscale-runner")

    def create_launch_template(self, name, instance_type="m5.large"):
        """A launch template in moto; returns its id ("lt-" + hex)."""
        return self.client("ec2").create_launch_template(
            LaunchTemplateName=name,
            LaunchTemplateData={"ImageId": self.image, "InstanceType": instance_type}
        )["LaunchTemplate"]["LaunchTemplateId"]

    # -- ghscale ----------------------------------------------------------------
    def config_text(self):
        return """
[aws]
region = "{region}"
backend = "remote"
sqs_endpoint = "{proxy}"
ec2_endpoint = "{proxy}"
ssm_endpoint = "{proxy}"
parameter_prefix = "/ghscale/runners"
ssm_throughput = {ssm_throughput}

[http]
max_in_flight = {http_in_flight}

[[queues]]
name = "jobs"
backend = "remote"
url = "{queue}"
dead_letter = "jobs-dlq"
visibility_timeout = "30s"
wait_time = "1s"
max_receive_count = 20
# A burst of 100 arrives as 10 receives: 10 loops take them at once and the
# scaler's window turns them into one decision.
min_loops = {loops}
max_loops = {loops}

[[queues]]
name = "jobs-dlq"
backend = "remote"
url = "{dlq}"

[[github_apps]]
name = "ci"
backend = "remote"
app_id = {app_id}
private_key_file = "{key}"
base_url = "{github}"
writes_per_minute = {writes}
max_concurrency = 50

[[pools]]
name = "linux"
queue = "jobs"
github_app = "ci"
labels = {labels}
match = "subset"
max_runners = {max_runners}
instance_types = ["m5.large", "c5.large"]
subnets = {subnets}
launch_template = "ghscale-runner"
capacity = "spot"

[scaler]
window = "100ms"
max_batch = 100

[retry]
base = "1s"
max = "5s"

[timeouts]
drain = "10s"

[logging]
level = "{log_level}"
format = "logfmt"
""".format(region=REGION, proxy=self.proxy_url, queue=self.queue_url,
           dlq=self.dlq_url, app_id=APP_ID, key=self.private_key_file,
           github=self.github_url, writes=self.app_writes_per_minute,
           labels=json.dumps(LABELS), max_runners=self.max_runners,
           subnets=json.dumps(self.subnets), loops=self.poll_loops,
           ssm_throughput=float(self.ssm_throughput),
           log_level=os.environ.get("GHSCALE_LOG_LEVEL", "info"),
           http_in_flight=int(os.environ.get("GHSCALE_HTTP_IN_FLIGHT", "64")))

    def example_config(self, writes_per_minute=None):
        """conf/ghscale.example.toml pointed at this world, as a dict: region
        and endpoints, the two queues' URLs, the App (id, key file, base URL,
        and `writes_per_minute` if given), every pool's subnets and a launch
        template created here for it, no [server], and a logfmt log at level
        info (or $GHSCALE_LOG_LEVEL). Every other value is the example's own.
        runner_instances() then covers its pools.

        The launch templates are created under the example's names
        ("lt-ghscale-<pool>"), which ghscale sends as names: only "lt-" and
        hex digits is an id."""
        with open(EXAMPLE_CONFIG, "rb") as f:
            doc = tomllib.load(f)
        aws = doc["aws"]
        aws["region"] = REGION
        for endpoint in ("sqs_endpoint", "ec2_endpoint", "ssm_endpoint"):
            aws[endpoint] = self.proxy_url
        urls = {"jobs": self.queue_url, "jobs-dlq": self.dlq_url}
        for queue in doc["queues"]:
            queue["url"] = urls[queue["name"]]
        app = doc["github_apps"][0]
        app["app_id"] = APP_ID
        app["private_key_file"] = self.private_key_file
        app["private_key_parameter"] = ""
        app["base_url"] = self.github_url
        if writes_per_minute is not None:
            app["writes_per_minute"] = writes_per_minute
        for pool in doc["pools"]:
            pool["subnets"] = list(self.subnets)
            self.create_launch_template(pool["launch_template"], pool["instance_types"][0])
        doc.pop("server", None)
        doc["logging"] = {"level": os.environ.get("GHSCALE_LOG_LEVEL", "info"),
                          "format": "logfmt"}
        self.pools = [pool["name"] for pool in doc["pools"]]
        return doc

    def write_config(self, config=None, name="ghscale.toml"):
        """The configuration file in the work directory: `config` as TOML
        text or as a dict, by default the harness's own (config_text)."""
        if config is None:
            config = self.config_text()
        elif isinstance(config, dict):
            config = to_toml(config)
        path = os.path.join(self.workdir, name)
        with open(path, "w") as f:
            f.write(config)
        return path

    def start_ghscale(self, binary, config=None):
        """`ghscale run` with `config` (see write_config). Started again in
        the same world, its log goes on in the same ghscale.log."""
        path = self.write_config(config)
        if self.ghscale_log is not None:
            self.ghscale_log.close()
            self.ghscale_log = open(self.ghscale_log.name, "a")
        else:
            self.ghscale_log = open(os.path.join(self.workdir, "ghscale.log"), "w")
        env = dict(os.environ, AWS_ACCESS_KEY_ID=self.access_key,
                   AWS_SECRET_ACCESS_KEY=self.secret_key,
                   AWS_EC2_METADATA_DISABLED="true")
        env.pop("AWS_SESSION_TOKEN", None)
        env.pop("AWS_PROFILE", None)
        self.ghscale = subprocess.Popen([binary, "run", "--config", path],
                                        stdout=self.ghscale_log,
                                        stderr=subprocess.STDOUT, env=env)

    def stop_ghscale(self, timeout=60):
        """SIGTERM, then the exit code of the drain."""
        self.ghscale.send_signal(signal.SIGTERM)
        return self.ghscale.wait(timeout=timeout)

    # -- the world's state ------------------------------------------------------
    def queue_jobs(self, first_id, count, repo="octo-repo"):
        """Each job queued on the fake GitHub, then its webhook sent to SQS."""
        self.create_jobs(first_id, count, repo)
        self.send_webhooks(first_id, count, repo)

    def create_jobs(self, first_id, count, repo="octo-repo"):
        """Jobs queued on the fake GitHub (run id: 10 x job id)."""
        for job_id in range(first_id, first_id + count):
            http_json("POST", self.github_url + "/_fake/jobs",
                      {"owner": ORG, "repo": repo, "job_id": job_id,
                       "run_id": job_id * 10, "labels": LABELS, "status": "queued"})

    def send_webhooks(self, first_id, count, repo="octo-repo", delay=0, duplicate_every=0):
        """Their `queued` webhooks sent to SQS, visible after `delay` s. With
        `duplicate_every` n, every n-th job's webhook is sent a second time,
        as a separate message with the same body (GitHub redelivering it),
        after all the first deliveries."""
        sqs = self.client("sqs")
        jobs = range(first_id, first_id + count)
        twice = [job_id for i, job_id in enumerate(jobs)
                 if duplicate_every and i % duplicate_every == duplicate_every - 1]
        entries = [{"Id": str(job_id), "DelaySeconds": delay,
                    "MessageBody": json.dumps(queued_payload(job_id, job_id * 10, repo))}
                   for job_id in jobs]
        entries += [{"Id": "%d-again" % job_id, "DelaySeconds": delay,
                     "MessageBody": json.dumps(queued_payload(job_id, job_id * 10, repo))}
                    for job_id in twice]
        for i in range(0, len(entries), 10):
            res = sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries[i:i + 10])
            if res.get("Failed"):
                raise RuntimeError("SendMessageBatch failed: %s" % res["Failed"])

    def queue_depth(self, url):
        attrs = self.client("sqs").get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages",
                                          "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(
            attrs["ApproximateNumberOfMessagesNotVisible"])

    def runner_instances(self):
        """Instances ghscale launched and did not terminate, with their tags."""
        ec2 = self.client("ec2")
        found = []
        for page in ec2.get_paginator("describe_instances").paginate(
                Filters=[{"Name": "tag:ghscale:pool", "Values": list(self.pools)},
                         {"Name": "instance-state-name", "Values": ["pending", "running"]}]):
            for r in page["Reservations"]:
                for i in r["Instances"]:
                    found.append({"id": i["InstanceId"],
                                  "tags": {t["Key"]: t["Value"] for t in i.get("Tags", [])}})
        return found

    def runner_parameters(self):
        ssm = self.client("ssm")
        names = []
        for page in ssm.get_paginator("get_parameters_by_path").paginate(
                Path="/ghscale/runners", Recursive=True):
            names += [p["Name"] for p in page["Parameters"]]
        return names

    def parameter_jobs(self, tag_cache=None):
        """Runner config parameter name -> its `ghscale:job` tag ("?" for a
        runner launched for no job). ghscale puts the tags with the
        parameter and never changes them, so a `tag_cache` dict kept by the
        caller saves a ListTagsForResource per parameter on later calls
        (only found job tags are kept: a parameter listed in the instant
        between its put and its tags is asked again)."""
        ssm = self.client("ssm")
        cache = {} if tag_cache is None else tag_cache
        jobs = {}
        for name in self.runner_parameters():
            if name not in cache:
                tags = {t["Key"]: t["Value"] for t in ssm.list_tags_for_resource(
                    ResourceType="Parameter", ResourceId=name)["TagList"]}
                if "ghscale:job" not in tags:
                    jobs[name] = "?"
                    continue
                cache[name] = tags["ghscale:job"]
            jobs[name] = cache[name]
        return jobs

    def aws_calls(self):
        return http_json("GET", self.proxy_url + "/_proxy/calls")

    def github_state(self):
        return http_json("GET", self.github_url + "/_fake/state")

    def github_fault(self, fault):
        http_json("POST", self.github_url + "/_fake/faults", fault)

    def partial_fills(self, rate, count):
        http_json("POST", self.proxy_url + "/_proxy/partial", {"rate": rate, "count": count})


def served_jobs(world, tag_cache=None):
    """(job -> live instances holding a runner config for it, the live
    instances, the config parameters of instances that are gone). Jobs are
    "<job id>#<run attempt>"; "?" collects runners launched for no job."""
    live = {i["id"] for i in world.runner_instances()}
    jobs = collections.defaultdict(list)
    orphans = []
    for name, job in world.parameter_jobs(tag_cache).items():
        instance = name.rsplit("/", 1)[1]
        if instance in live:
            jobs[job].append(instance)
        else:
            orphans.append(name)
    return jobs, live, orphans


def verdict(name, failures):
    """Prints each failure and the test's result; the exit code."""
    for f in failures:
        print("FAIL " + f)
    print("%s: %s" % (name, "FAILED" if failures else "ok"))
    return 1 if failures else 0


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting for " + what)
