#!/usr/bin/env python3
"""starburst's local AWS: a moto server plus Fargate and CodeBuild simulators, in one process.

Anyone without an AWS account gets real S3, ECS, ECR, EC2, IAM, STS, CodeBuild and CloudWatch
Logs APIs on 127.0.0.1 (moto), and ECS tasks that actually run: for every Fargate task RunTask
creates, the simulator starts the `--worker-bin` executable (a `starburst-worker`) as a local
process with the task's environment, streams its output to CloudWatch Logs and reports its
lifecycle (PROVISIONING, PENDING, RUNNING, STOPPED with stop codes and exit codes) through
moto's ECS objects, so clients see it with DescribeTasks exactly as they would on AWS.

CodeBuild builds run too (codebuild_sim.py): StartBuild downloads the project's S3 source and
runs its buildspec's phases on the host, `docker` being `--podman`; BatchGetBuilds reports
the phases as they happen, CloudWatch Logs gets the build log, StopBuild stops it.

Extra endpoints under `/_starburst/` (never AWS-shaped, never counted):

- `GET /_starburst/stats`, `POST /_starburst/stats/reset`: AWS requests per service and
  operation, bytes received and sent.
- `POST /_starburst/faults` (JSON rule), `GET` / `DELETE /_starburst/faults`: make the next
  matching requests fail with an AWS-shaped error.
- `POST /_starburst/interrupt/<task id>`: a Fargate Spot interruption of that task.
- `GET /_starburst/ecs-meta/<task id>/task` (and `/_starburst/ecs-meta/<task id>`): the ECS
  task metadata endpoint v4 a worker finds in `ECS_CONTAINER_METADATA_URI_V4`.
- `GET /_starburst/tasks`: the simulated tasks (pid, status), for debugging and tests.

Run it with the Python of the project's moto venv (`cargo xtask emulator` does). When it
listens it prints exactly one line `STARBURST_EMULATOR_READY http://127.0.0.1:<port>` to
stdout; everything else goes to stderr. SIGTERM, SIGINT or (with `--exit-on-stdin-eof`) the
end of stdin stop it and every worker process it started.

Gaps against real Fargate and CodeBuild are listed in `GAPS` below and printed by `--gaps`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs

from werkzeug.serving import make_server

from moto.ec2.models import ec2_backends
from moto.ecr.models import ecr_backends
from moto.ecs.models import EC2ContainerServiceBackend, Task, ecs_backends
from moto.server import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

import moto_fargate_quotas  # noqa: E402,F401  (patches moto's Service Quotas on import)
import iam_simulation  # noqa: E402,F401  (adds iam:SimulatePrincipalPolicy to moto on import)
import strict  # noqa: E402
from codebuild_sim import CodeBuildSimulator  # noqa: E402
from sim_common import die_with_parent, ensure_stream, kill_group, now, put_log  # noqa: E402
from strict import read_body  # noqa: E402

READY = "STARBURST_EMULATOR_READY"
LOG = logging.getLogger("starburst-emulator")

GAPS = """\
Gaps of the Fargate simulator against real ECS Fargate:
- Task cpu/memory, ephemeral storage and the CPU architecture are recorded, never enforced:
  a worker can use the whole machine; no OOM kill (exit 137) unless you kill it yourself.
- Without --containers, no container image: the "image" is --worker-bin run on the host with
  the host's R and libraries (R_*, STARBURST_SIM_* and --pass-env variables pass through;
  STARBURST_LIBRARY points into the task's working directory). With --containers, each task
  runs its image for real (`podman run --network host`, the image taken from the local
  engine's storage: whoever "pushes" to this emulator's ECR must also build or tag it there),
  with only the task's own environment. Either way, ECR images of this emulator's
  account/region must exist in moto's ECR (else CannotPullContainerError); any other image
  name "pulls" unless it contains "sim-pull-fail". A container `command` is passed as
  arguments to the image's ENTRYPOINT (--worker-bin); `entryPoint` is ignored. Only the first
  container of a task definition runs (moto models one container per task).
- No network isolation: awsvpc subnets and security groups are not applied; the worker runs
  on 127.0.0.1 and reaches only this emulator (AWS_ENDPOINT_URL). No public IP check.
- Credentials: the task role is simulated with static keys (testing/testing) in the
  environment, not the container credentials endpoint; IAM policies are not enforced
  (iam:SimulatePrincipalPolicy evaluates a user's or role's identity policies, see
  iam_simulation.py, but requests are never refused for lack of permission).
- The awslogs log group is created when missing (real ECS fails the task with
  ResourceInitializationError unless awslogs-create-group is true).
- Start-up takes ~0.1 s (two simulator ticks, plus --start-delay), not 30-60 s; Spot
  interruptions come only from POST /_starburst/interrupt, with a --spot-grace (default 2 s)
  warning instead of 2 minutes; StopTask's SIGKILL comes after --stop-grace (default 5 s)
  instead of the task definition's stopTimeout (30 s).
- No EventBridge task state-change events, no task throttling or RunTask placement
  failures. Service Quotas has the Fargate vCPU quotas at AWS's default of 6 and increase
  requests that stay PENDING (moto has neither; moto_fargate_quotas.py adds them).
- Each task gets a fresh working directory and TMPDIR (deleted when it stops), but shares
  the host's HOME and file system.

Gaps of the CodeBuild simulator against real CodeBuild:
- A build runs on the host, not in its CodeBuild image (the image is only reported, and in
  CODEBUILD_BUILD_IMAGE): its commands use the host's tools and the emulator's own
  environment (PATH, podman's CONTAINERS_CONF...). `docker` is --podman (`docker build` with
  `--network host`, so builds reach package repositories on 127.0.0.1); `aws` only answers
  `aws ecr get-login-password`. privilegedMode is recorded, not needed for docker.
- Each command runs in its own `bash -c` (`sh -c` with `env: shell: sh`) in its own process
  group: unlike CodeBuild, `cd` and `export` do not carry over to the next command. Of the
  buildspec only version, env.variables, env.shell and the phases' commands are read:
  `finally`, `on-failure`, `run-as`, runtime-versions, parameter-store, secrets-manager,
  exported-variables, artifacts, cache and reports are ignored. Environment variables of type
  PARAMETER_STORE or SECRETS_MANAGER are passed literally.
- Only S3 sources: "bucket/prefix/" (every object under the prefix) or "bucket/key" (a zip);
  a buildspec is inline or a file of the source, never an S3 ARN. No secondary sources, no
  artifacts upload (UPLOAD_ARTIFACTS does nothing), no cache, no batch builds, no VPC, no
  queueing or concurrent-build limit (QUEUED ends at once), no S3 logs. The log group is
  created when missing. Compute and environment types are recorded, never enforced.
- The IAM service role is not assumed: commands get static keys (testing/testing) and
  AWS_ENDPOINT_URL pointing at this emulator; IAM policies are not enforced.
- StopBuild and the timeout (timeoutInMinutes) send SIGTERM to the running command's process
  group and SIGKILL 2 s later; what commands left running in the background is killed when
  the build ends. Only StartBuild, BatchGetBuilds and StopBuild are simulated; other calls
  are moto's (which has no UpdateProject).
"""

MOTO_ACCOUNT = "123456789012"
ISO = "%Y-%m-%dT%H:%M:%S.%fZ"


def iso(t: dt.datetime | None) -> str | None:
    return t.astimezone(dt.timezone.utc).strftime(ISO) if t else None


# ---------------------------------------------------------------------------------------
# Request classification and statistics
# ---------------------------------------------------------------------------------------

_CREDENTIAL = re.compile(r"Credential=[^/,\s]+/\d{8}/([^/,\s]+)/([^/,\s]+)/aws4_request")
_TARGET_SERVICES = {
    "AmazonEC2ContainerServiceV20141113": "ecs",
    "AmazonEC2ContainerRegistry_V20150921": "ecr",
    "Logs_20140328": "logs",
    "ServiceQuotasV20190624": "servicequotas",
    "AmazonSSM": "ssm",
    "AWSEvents": "events",
    "CodeBuild_20161006": "codebuild",
}
# Query parameters of S3 requests that select a listing or sign a request, not a sub-resource.
_S3_PLAIN_PARAMS = {
    "list-type",
    "prefix",
    "delimiter",
    "continuation-token",
    "start-after",
    "max-keys",
    "encoding-type",
    "marker",
    "fetch-owner",
    "x-id",
    "versionId",
    "partNumber",
    "response-content-type",
    "response-content-disposition",
}


def _signing_scope(environ: dict[str, Any], query: dict[str, list[str]]) -> tuple[str, str] | None:
    """(region, service) from a SigV4 Authorization header or presigned query string."""
    m = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
    if m:
        return m.group(1), m.group(2).lower()
    cred = query.get("X-Amz-Credential", [""])[0]
    parts = cred.split("/")
    if len(parts) == 5 and parts[4] == "aws4_request":
        return parts[2], parts[3].lower()
    return None


def s3_operation(method: str, path: str, query: dict[str, list[str]], environ: dict[str, Any]) -> str:
    """A readable name of an S3 request: method, bucket/object, and what kind of call it is."""
    bucket, _, key = path.lstrip("/").partition("/")
    sub = sorted(k for k in query if k not in _S3_PLAIN_PARAMS and not k.startswith("X-Amz-"))
    if not bucket:
        return f"{method} service"
    if not key:
        if method == "GET" and not sub:
            return "GET bucket LIST"
        if method == "GET" and sub in (["uploads"], ["versions"]):
            return f"GET bucket LIST {sub[0]}"
        if method == "POST" and "delete" in sub:
            return "POST bucket delete-objects"
        return f"{method} bucket" + (f" ?{','.join(sub)}" if sub else "")
    copy = "HTTP_X_AMZ_COPY_SOURCE" in environ
    if method == "PUT":
        if "uploadId" in query:
            return "PUT object part" + (" copy" if copy else "")
        if sub:
            return f"PUT object ?{','.join(sub)}"
        if copy:
            return "PUT object copy"
        if "HTTP_IF_NONE_MATCH" in environ or "HTTP_IF_MATCH" in environ:
            return "PUT object conditional"
        return "PUT object"
    if method == "POST":
        if "uploads" in query:
            return "POST object create-multipart"
        if "uploadId" in query:
            return "POST object complete-multipart"
    if method == "DELETE" and "uploadId" in query:
        return "DELETE object abort-multipart"
    if method == "GET" and "uploadId" in query:
        return "GET object LIST parts"
    if sub:
        return f"{method} object ?{','.join(sub)}"
    if method == "GET" and "HTTP_RANGE" in environ:
        return "GET object range"
    return f"{method} object"


def classify(environ: dict[str, Any]) -> tuple[str, str]:
    """(service, operation) of an AWS request, as the stats and fault rules name them."""
    method = environ.get("REQUEST_METHOD", "GET").upper()
    path = environ.get("PATH_INFO", "/")
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    scope = _signing_scope(environ, query)
    target = environ.get("HTTP_X_AMZ_TARGET")
    service = scope[1] if scope else None
    if target and "." in target:
        prefix, op = target.split(".", 1)
        return service or _TARGET_SERVICES.get(prefix, prefix.lower()), op
    if service == "s3":
        return "s3", s3_operation(method, path, query, environ)
    action = query.get("Action", [None])[0]
    if action is None and environ.get("CONTENT_TYPE", "").startswith(
        "application/x-www-form-urlencoded"
    ):
        form = parse_qs(read_body(environ).decode("utf-8", "replace"), keep_blank_values=True)
        action = form.get("Action", [None])[0]
    if action:
        return service or "query", action
    if service is None and path.startswith("/moto-api"):
        return "moto-api", f"{method} {path}"
    if service is None:
        # Unsigned path-style requests are S3's (moto routes them there too).
        return "s3", s3_operation(method, path, query, environ)
    return service, f"{method} {path}"


class Stats:
    """Requests per service and operation, bytes received and sent; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._requests: dict[str, dict[str, int]] = {}
            self._bytes_in: dict[str, int] = {}
            self._bytes_out: dict[str, int] = {}
            self._faults: dict[str, dict[str, int]] = {}
            self._rejected: dict[str, dict[str, int]] = {}
            self._since = time.time()

    def request(self, service: str, op: str) -> None:
        with self._lock:
            ops = self._requests.setdefault(service, {})
            ops[op] = ops.get(op, 0) + 1

    def fault(self, service: str, op: str) -> None:
        with self._lock:
            ops = self._faults.setdefault(service, {})
            ops[op] = ops.get(op, 0) + 1

    def rejected(self, service: str, op: str) -> None:
        with self._lock:
            ops = self._rejected.setdefault(service, {})
            ops[op] = ops.get(op, 0) + 1

    def bytes_in(self, service: str, n: int) -> None:
        if n:
            with self._lock:
                self._bytes_in[service] = self._bytes_in.get(service, 0) + n

    def bytes_out(self, service: str, n: int) -> None:
        if n:
            with self._lock:
                self._bytes_out[service] = self._bytes_out.get(service, 0) + n

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            requests = {s: dict(ops) for s, ops in self._requests.items()}
            return {
                "requests": requests,
                "bytes_received": dict(self._bytes_in),
                "bytes_sent": dict(self._bytes_out),
                "faults_injected": {s: dict(ops) for s, ops in self._faults.items()},
                "rejected_as_aws_would": {s: dict(ops) for s, ops in self._rejected.items()},
                "total_requests": sum(sum(ops.values()) for ops in requests.values()),
                "total_bytes_received": sum(self._bytes_in.values()),
                "total_bytes_sent": sum(self._bytes_out.values()),
                "seconds": round(time.time() - self._since, 3),
            }


class CountingInput:
    """A WSGI input stream that reports every byte read from it."""

    def __init__(self, stream: Any, count: Callable[[int], None]) -> None:
        self._stream = stream
        self._count = count

    def read(self, *args: Any) -> bytes:
        data = self._stream.read(*args)
        self._count(len(data))
        return data

    def readline(self, *args: Any) -> bytes:
        data = self._stream.readline(*args)
        self._count(len(data))
        return data

    def readlines(self, *args: Any) -> list[bytes]:
        lines = self._stream.readlines(*args)
        self._count(sum(len(x) for x in lines))
        return lines

    def __iter__(self) -> Iterable[bytes]:
        for line in self._stream:
            self._count(len(line))
            yield line

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close:
            close()


# ---------------------------------------------------------------------------------------
# Fault injection
# ---------------------------------------------------------------------------------------


class FaultRules:
    """Rules that make the next matching AWS requests fail; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[dict[str, Any]] = []

    @staticmethod
    def parse(rule: Any) -> dict[str, Any]:
        if not isinstance(rule, dict) or not isinstance(rule.get("service"), str):
            raise ValueError('a fault rule is a JSON object with at least "service"')
        status = int(rule.get("status", 500))
        count = int(rule.get("count", 1))
        if not 400 <= status <= 599 or count < 1:
            raise ValueError("status must be 400-599 and count at least 1")
        return {
            "service": rule["service"].lower(),
            "method": rule["method"].upper() if rule.get("method") else None,
            "operation": rule.get("operation"),
            "status": status,
            "code": str(rule.get("code", "InternalError")),
            "message": str(rule.get("message", "fault injected by the starburst emulator")),
            "count": count,
        }

    def add(self, rule: dict[str, Any]) -> None:
        with self._lock:
            self._rules.append(rule)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._rules]

    def take(self, service: str, method: str, op: str) -> dict[str, Any] | None:
        with self._lock:
            for rule in self._rules:
                if rule["service"] != service:
                    continue
                if rule["method"] and rule["method"] != method:
                    continue
                if rule["operation"] and rule["operation"] != op:
                    continue
                rule["count"] -= 1
                if rule["count"] <= 0:
                    self._rules.remove(rule)
                return dict(rule)
        return None


def fault_response(environ: dict[str, Any], service: str, rule: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    """An AWS-shaped error for the request's protocol."""
    return strict.error_response(environ, service, rule["code"], rule["message"], rule["status"])


# ---------------------------------------------------------------------------------------
# Fargate simulator
# ---------------------------------------------------------------------------------------

_ECR_IMAGE = re.compile(
    r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com/([^:@]+)(?::([^@]+))?(?:@(sha256:[0-9a-f]+))?$"
)
_FARGATE_PROVIDERS = ("FARGATE", "FARGATE_SPOT")

class SimTask:
    """The simulator's record of one ECS task: its moto object, its process, its stop state."""

    def __init__(self, backend: EC2ContainerServiceBackend, task: Task) -> None:
        self.backend = backend
        self.task = task
        self.id: str = task.id
        self.account: str = backend.account_id
        self.region: str = backend.region_name
        self.task_definition = backend.describe_task_definition(task.task_definition_arn)
        self.container_def: dict[str, Any] = self.task_definition.container_definitions[0]
        self.phase = "PROVISIONING"
        self.adopted_at = time.monotonic()
        self.proc: subprocess.Popen[bytes] | None = None
        self.reader: threading.Thread | None = None
        self.workdir: str | None = None
        # (stop code, reason, grace seconds) once the platform or a client asked it to stop.
        self.stop_request: tuple[str, str | None, float] | None = None
        self.term_sent_at: float | None = None
        self.killed = False
        self.exit_code: int | None = None
        self.deprovisioned_at: float | None = None

    @property
    def done(self) -> bool:
        return self.phase == "STOPPED"

    def container_override(self) -> dict[str, Any]:
        name = self.container_def.get("name")
        for o in (self.task.overrides or {}).get("containerOverrides") or []:
            if o.get("name") == name:
                return o
        return {}

    def log_target(self) -> tuple[str, str, str] | None:
        """(region, group, stream) of the awslogs driver, or None without awslogs."""
        conf = self.container_def.get("logConfiguration") or {}
        if conf.get("logDriver") != "awslogs":
            return None
        opts = conf.get("options") or {}
        group = opts.get("awslogs-group")
        if not group:
            return None
        prefix = opts.get("awslogs-stream-prefix")
        name = self.container_def.get("name")
        stream = f"{prefix}/{name}/{self.id}" if prefix else self.id
        return opts.get("awslogs-region", self.region), group, stream

    def metadata(self, url: str) -> dict[str, Any]:
        t = self.task
        td = self.task_definition
        return {
            "Cluster": t.cluster_arn,
            "TaskARN": t.task_arn,
            "Family": td.family,
            "Revision": str(td.revision),
            "DesiredStatus": t.desired_status,
            "KnownStatus": t.last_status,
            "Limits": {"CPU": _vcpus(getattr(t, "cpu", None)), "Memory": _int(getattr(t, "memory", None))},
            "PullStartedAt": iso(getattr(t, "pull_started_at", None)),
            "PullStoppedAt": iso(getattr(t, "pull_stopped_at", None)),
            "AvailabilityZone": getattr(t, "availability_zone", f"{self.region}a"),
            "LaunchType": "FARGATE",
            "Containers": [self.container_metadata(url)],
            "ClockDrift": {"ClockErrorBound": 0.5, "ReferenceTimestamp": iso(now()), "ClockSynchronizationStatus": "SYNCHRONIZED"},
            "EphemeralStorageMetrics": {"Utilized": 0, "Reserved": 20496},
        }

    def container_metadata(self, url: str) -> dict[str, Any]:
        t = self.task
        c = t.containers[0]
        return {
            "DockerId": f"{self.id}-{c.name}",
            "Name": c.name,
            "DockerName": c.name,
            "Image": c.image,
            "Labels": {
                "com.amazonaws.ecs.cluster": t.cluster_arn,
                "com.amazonaws.ecs.container-name": c.name,
                "com.amazonaws.ecs.task-arn": t.task_arn,
                "com.amazonaws.ecs.task-definition-family": self.task_definition.family,
                "com.amazonaws.ecs.task-definition-version": str(self.task_definition.revision),
            },
            "DesiredStatus": t.desired_status,
            "KnownStatus": c.last_status,
            "ExitCode": self.exit_code,
            "Type": "NORMAL",
            "ContainerARN": c.container_arn,
            "LogDriver": (self.container_def.get("logConfiguration") or {}).get("logDriver"),
            "LogOptions": (self.container_def.get("logConfiguration") or {}).get("options"),
            "Networks": [{"NetworkMode": "awsvpc", "IPv4Addresses": ["127.0.0.1"]}],
        }

    def summary(self) -> dict[str, Any]:
        return {
            "task_id": self.id,
            "task_arn": self.task.task_arn,
            "phase": self.phase,
            "last_status": self.task.last_status,
            "desired_status": self.task.desired_status,
            "pid": self.proc.pid if self.proc else None,
            "exit_code": self.exit_code,
            "stop_code": getattr(self.task, "stop_code", None),
            "capacity_provider": self.task.capacity_provider_name,
        }


def _vcpus(cpu: Any) -> float | None:
    try:
        return int(cpu) / 1024
    except (TypeError, ValueError):
        return None


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _is_fargate(task: Task) -> bool:
    return task.container_instance_arn is None and (
        task.launch_type in ("FARGATE", "")
        or task.capacity_provider_name in _FARGATE_PROVIDERS
    )


class FargateSimulator:
    """Runs a `--worker-bin` process for every Fargate task and reports its lifecycle in moto."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.url = ""  # set once the server listens
        self.lock = threading.RLock()
        self.tasks: dict[str, SimTask] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fargate-simulator", daemon=True)
        self._workroot = tempfile.mkdtemp(prefix="starburst-emulator-tasks-")
        self._logged_errors: set[str] = set()

    # -- moto hooks (run on request threads) ----------------------------------------------

    def install(self) -> None:
        """Wraps moto's RunTask, StopTask and its task resource arithmetic."""
        sim = self
        run_task = EC2ContainerServiceBackend.run_task
        stop_task = EC2ContainerServiceBackend.stop_task

        def patched_run_task(backend: EC2ContainerServiceBackend, *a: Any, **kw: Any) -> list[Task]:
            _default_security_groups(backend, a, kw)
            with sim.lock:
                tasks = run_task(backend, *a, **kw)
                for t in tasks:
                    sim.adopt(backend, t)
                return tasks

        def patched_stop_task(backend: EC2ContainerServiceBackend, cluster_str: str, task_str: str, reason: str) -> Task:
            with sim.lock:
                return sim.stop_task(backend, stop_task, cluster_str, task_str, reason)

        EC2ContainerServiceBackend.run_task = patched_run_task  # type: ignore[method-assign]
        EC2ContainerServiceBackend.stop_task = patched_stop_task  # type: ignore[method-assign]
        EC2ContainerServiceBackend._calculate_task_resource_requirements = staticmethod(  # type: ignore[method-assign]
            _task_resource_requirements
        )

    def adopt(self, backend: EC2ContainerServiceBackend, task: Task) -> None:
        """Takes over a new Fargate task: freezes moto's own state machine, sets what a real
        RunTask returns (PROVISIONING, launch type, cpu/memory, AZ...)."""
        if task.id in self.tasks or not _is_fargate(task):
            return
        sim = SimTask(backend, task)
        task._transitions = []  # moto would advance RUNNING -> ... -> STOPPED on describes
        task.last_status = "PROVISIONING"
        task.desired_status = "RUNNING"
        task.stopped_reason = None
        task.launch_type = "FARGATE"
        task.platform_version = task.platform_version or "1.4.0"
        task.platform_family = "Linux"
        task.created_at = now()
        task.version = 1
        overrides = task.overrides or {}
        task.cpu = overrides.get("cpu") or sim.task_definition.cpu
        task.memory = overrides.get("memory") or sim.task_definition.memory
        eph = getattr(sim.task_definition, "ephemeral_storage", None)
        task.ephemeral_storage = eph or {"sizeInGiB": 20}
        task.availability_zone = _availability_zone(task)
        for c in task.containers:
            c.task_arn = task.task_arn  # moto puts the task definition's ARN here
            c.container_arn = f"arn:aws:ecs:{sim.region}:{sim.account}:container/{task.cluster_name}/{task.id}/{uuid.uuid4()}"
            c.health_status = "UNKNOWN"  # no health check defined
            c.exitCode = None  # moto reports 0 before the container ever ran
            c.last_status = "PENDING"
            c.runtime_id = f"{task.id}-{c.name}"
        # Fargate describes a task's network interface by its attachment's ARN (moto: "moto ECS");
        # teardown tells task interfaces from others by it.
        for eni_id, attachment in _task_interfaces(task):
            eni = ec2_backends[sim.account][sim.region].enis.get(eni_id)
            if eni is not None:
                eni.description = f"arn:aws:ecs:{sim.region}:{sim.account}:attachment/{attachment}"
        self.tasks[task.id] = sim

    def stop_task(self, backend: EC2ContainerServiceBackend, original: Callable[..., Task], cluster_str: str, task_str: str, reason: str) -> Task:
        """StopTask: moto marks the task STOPPED at once; the simulator keeps it RUNNING
        (desired STOPPED, stop code UserInitiated) until its process has exited."""
        sim = self.tasks.get(task_str.split("/")[-1])
        if sim is None:
            return original(backend, cluster_str, task_str, reason)
        t = sim.task
        before = (t.last_status, t.desired_status, t.stopped_reason)
        result = original(backend, cluster_str, task_str, reason)
        t.last_status, t.desired_status, t.stopped_reason = before
        if sim.done or sim.stop_request is not None:
            return result  # a stopped task stays as it was, as on ECS
        t.desired_status = "STOPPED"
        t.stop_code = "UserInitiated"
        t.stopped_reason = reason or "Task stopped by user"
        t.stopping_at = now()
        sim.stop_request = ("UserInitiated", t.stopped_reason, self.args.stop_grace)
        return result

    def interrupt(self, task_id: str, force: bool) -> tuple[int, dict[str, Any]]:
        """A Fargate Spot interruption: SIGTERM now, SIGKILL after --spot-grace."""
        with self.lock:
            sim = self.tasks.get(task_id)
            if sim is None:
                return 404, {"error": f"no simulated task {task_id}"}
            if sim.task.capacity_provider_name != "FARGATE_SPOT" and not force:
                return 409, {"error": f"task {task_id} does not run on FARGATE_SPOT (add ?force=true to interrupt it anyway)"}
            if sim.done:
                return 409, {"error": f"task {task_id} has already stopped"}
            if sim.stop_request is None:
                t = sim.task
                t.desired_status = "STOPPED"
                t.stop_code = "SpotInterruption"
                t.stopped_reason = "Your Spot Task was interrupted."
                t.stopping_at = now()
                sim.stop_request = ("SpotInterruption", t.stopped_reason, self.args.spot_grace)
            return 200, sim.summary()

    # -- the simulator thread -----------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                with self.lock:
                    self._scan()
                    for sim in list(self.tasks.values()):
                        if not sim.done:
                            self._step(sim)
            except Exception as e:  # keep simulating whatever moto does
                self._log_once(f"simulator tick: {e!r}")
            self._stop.wait(self.args.tick)

    def _log_once(self, msg: str) -> None:
        if msg not in self._logged_errors:
            self._logged_errors.add(msg)
            LOG.exception(msg)

    def _scan(self) -> None:
        """Adopts Fargate tasks created by other paths than RunTask (a safety net)."""
        for account in list(ecs_backends.keys()):
            regions = dict.items(ecs_backends[account])
            for _region, backend in list(regions):
                for cluster_tasks in list(backend.tasks.values()):
                    for task in list(cluster_tasks.values()):
                        if task.id not in self.tasks and task.last_status != "STOPPED":
                            self.adopt(backend, task)

    def _step(self, sim: SimTask) -> None:
        t = sim.task
        c = t.containers[0]
        if sim.phase == "PROVISIONING":
            if sim.stop_request:
                return self._finish(sim, exit_code=None)
            if time.monotonic() - sim.adopted_at < self.args.start_delay:
                return
            sim.phase = "PENDING"
            t.last_status = "PENDING"
            t.pull_started_at = now()
            return
        if sim.phase == "PENDING":
            if sim.stop_request:
                return self._finish(sim, exit_code=None)
            pull_error = self._pull_error(sim)
            if pull_error:
                t.stop_code = "TaskFailedToStart"
                t.stopped_reason = pull_error
                c.reason = pull_error
                sim.stop_request = ("TaskFailedToStart", pull_error, 0.0)
                return self._finish(sim, exit_code=None)
            t.pull_stopped_at = now()
            try:
                self._spawn(sim)
            except OSError as e:
                reason = f"CannotStartContainerError: failed to start {self.args.worker_bin}: {e}"
                t.stop_code = "TaskFailedToStart"
                t.stopped_reason = reason
                c.reason = reason
                sim.stop_request = ("TaskFailedToStart", reason, 0.0)
                return self._finish(sim, exit_code=None)
            sim.phase = "RUNNING"
            t.last_status = "RUNNING"
            t.started_at = now()
            t.connectivity = "CONNECTED"
            t.connectivity_at = t.started_at
            c.last_status = "RUNNING"
            return
        if sim.phase in ("RUNNING", "STOPPING"):
            assert sim.proc is not None
            code = sim.proc.poll()
            if code is not None:
                return self._exited(sim, code)
            if sim.stop_request:
                _, _, grace = sim.stop_request
                if sim.term_sent_at is None:
                    sim.phase = "STOPPING"
                    t.last_status = "DEACTIVATING"
                    sim.term_sent_at = time.monotonic()
                    kill_group(sim.proc.pid, signal.SIGTERM)
                    t.last_status = "STOPPING"
                elif not sim.killed and time.monotonic() - sim.term_sent_at >= grace:
                    sim.killed = True
                    self._kill_container(sim)
                    kill_group(sim.proc.pid, signal.SIGKILL)
            return
        if sim.phase == "DEPROVISIONING":
            self._finish(sim, exit_code=sim.exit_code)

    def _exited(self, sim: SimTask, code: int) -> None:
        """The essential container's main process exited: the container stops with it."""
        t = sim.task
        assert sim.proc is not None
        self._kill_container(sim)
        kill_group(sim.proc.pid, signal.SIGKILL)  # whatever it left behind dies with the container
        sim.exit_code = 128 - code if code < 0 else code
        if sim.reader is not None:
            sim.reader.join(timeout=2.0)
        if sim.stop_request is None:
            t.desired_status = "STOPPED"
            t.stop_code = "EssentialContainerExited"
            t.stopped_reason = "Essential container in task exited"
            t.stopping_at = now()
            sim.stop_request = ("EssentialContainerExited", t.stopped_reason, 0.0)
        c = t.containers[0]
        c.last_status = "STOPPED"
        c.exitCode = sim.exit_code
        t.execution_stopped_at = now()
        t.last_status = "DEPROVISIONING"
        sim.phase = "DEPROVISIONING"

    def _finish(self, sim: SimTask, exit_code: int | None) -> None:
        t = sim.task
        c = t.containers[0]
        if sim.stop_request and not getattr(t, "stop_code", None):
            t.stop_code = sim.stop_request[0]
        t.desired_status = "STOPPED"
        if getattr(t, "stopping_at", None) is None:
            t.stopping_at = now()
        if getattr(t, "execution_stopped_at", None) is None:
            t.execution_stopped_at = now()
        t.stopped_at = now()
        c.last_status = "STOPPED"
        c.exitCode = exit_code
        t.last_status = "STOPPED"
        t.connectivity = "DISCONNECTED" if sim.proc else getattr(t, "connectivity", None)
        sim.phase = "STOPPED"
        if sim.workdir:
            shutil.rmtree(sim.workdir, ignore_errors=True)
        # Deprovisioning releases the task's network interface (moto keeps it forever, and its
        # security group could never be deleted).
        for eni_id, _ in _task_interfaces(t):
            try:
                ec2_backends[sim.account][sim.region].delete_network_interface(eni_id)
            except Exception:  # already gone
                pass

    def _pull_error(self, sim: SimTask) -> str | None:
        image = sim.task.containers[0].image or ""
        fail = (
            "CannotPullContainerError: pull image manifest has been retried 5 time(s): "
            f"failed to resolve ref {image}: not found"
        )
        if "sim-pull-fail" in image:
            return fail
        m = _ECR_IMAGE.match(image)
        if not m:
            return None
        account, region, repo, tag, digest = m.groups()
        if account != sim.account or region != sim.region:
            return None
        try:
            repository = ecr_backends[account][region].repositories.get(repo)
            if repository is None:
                return fail
            repository._get_image(None if digest else (tag or "latest"), digest)
        except Exception:
            return fail
        return None

    def _environment(self, sim: SimTask) -> dict[str, str]:
        env: dict[str, str] = {}
        for k, v in os.environ.items():
            if self.args.containers:
                break  # a container has the image's environment, not the host's
            if k in ("PATH", "HOME", "LANG") or k.startswith(("R_", "STARBURST_SIM_")) or k in self.args.pass_env:
                env[k] = v
        env.update(
            {
                "AWS_REGION": sim.region,
                "AWS_DEFAULT_REGION": sim.region,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_EXECUTION_ENV": "AWS_ECS_FARGATE",
            }
        )
        for kv in sim.container_def.get("environment") or []:
            env[kv["name"]] = kv.get("value", "")
        for kv in sim.container_override().get("environment") or []:
            env[kv["name"]] = kv.get("value", "")
        # What the platform owns: where AWS is, the metadata endpoint, the task's identity.
        env["AWS_ENDPOINT_URL"] = self.url
        env["ECS_CONTAINER_METADATA_URI_V4"] = f"{self.url}/_starburst/ecs-meta/{sim.id}"
        env["ECS_CONTAINER_METADATA_URI"] = env["ECS_CONTAINER_METADATA_URI_V4"]
        env["STARBURST_SIM_TASK_ID"] = sim.id
        if not self.args.containers:
            # On the host, a task's files stay in its working directory.
            env["TMPDIR"] = sim.workdir or tempfile.gettempdir()
            env["STARBURST_LIBRARY"] = os.path.join(sim.workdir or tempfile.gettempdir(), "library")
        return env

    def _spawn(self, sim: SimTask) -> None:
        sim.workdir = tempfile.mkdtemp(prefix=f"{sim.id}-", dir=self._workroot)
        command = sim.container_override().get("command") or sim.container_def.get("command") or []
        env = self._environment(sim)
        argv = [self.args.worker_bin, *command]
        if self.args.containers:
            image = sim.task.containers[0].image
            argv = [self.args.podman, "run", "--rm", "--network", "host", "--name", _container_name(sim.id)]
            for k in sorted(env):
                argv += ["--env", f"{k}={env[k]}"]
            argv += [image, *command]
            env = dict(os.environ)  # podman's own environment (CONTAINERS_CONF, PATH)
        sim.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=sim.workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        sim.reader = threading.Thread(target=self._pump_logs, args=(sim, sim.proc), name=f"logs-{sim.id}", daemon=True)
        sim.reader.start()

    def _kill_container(self, sim: SimTask) -> None:
        """With --containers: the container dies with its task (`podman run` may not forward SIGKILL)."""
        if self.args.containers:
            subprocess.run(
                [self.args.podman, "rm", "--force", "--time", "0", _container_name(sim.id)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )

    def _pump_logs(self, sim: SimTask, proc: subprocess.Popen[bytes]) -> None:
        """Copies the container's output, line by line, to CloudWatch Logs and --log-dir."""
        target = sim.log_target()
        tee = None
        if self.args.log_dir:
            os.makedirs(self.args.log_dir, exist_ok=True)
            tee = open(os.path.join(self.args.log_dir, f"{sim.id}.log"), "ab")
        try:
            if target:
                ensure_stream(sim.account, *target)
            assert proc.stdout is not None
            for raw in iter(proc.stdout.readline, b""):
                if tee:
                    tee.write(raw)
                    tee.flush()
                if target:
                    line = raw.decode("utf-8", "replace").rstrip("\n")
                    put_log(sim.account, target, line)
        except Exception as e:
            self._log_once(f"log pump of task {sim.id}: {e!r}")
        finally:
            if tee:
                tee.close()

    # -- shutdown ------------------------------------------------------------------------

    def shutdown(self, grace: float = 2.0) -> None:
        """Stops the thread and every worker process group it started."""
        self._stop.set()
        self._thread.join(timeout=5)
        with self.lock:
            procs = [s.proc for s in self.tasks.values() if s.proc is not None]
        for p in procs:
            if p.poll() is None:
                kill_group(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in procs:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        with self.lock:
            sims = list(self.tasks.values())
        for sim in sims:
            if sim.proc is not None:
                self._kill_container(sim)
        for p in procs:
            kill_group(p.pid, signal.SIGKILL)  # the group, even if its leader already exited
            try:
                p.wait(timeout=2)
            except subprocess.TimeoutExpired:
                LOG.error("worker process %d did not die", p.pid)
        shutil.rmtree(self._workroot, ignore_errors=True)


def _container_name(task_id: str) -> str:
    return f"starburst-sim-{task_id}"


def _task_interfaces(task: Task) -> list[tuple[str, str]]:
    """(network interface id, attachment id) of each awsvpc attachment of `task`."""
    found = []
    for a in getattr(task, "attachments", None) or []:
        if a.get("type") != "ElasticNetworkInterface":
            continue
        for d in a.get("details", []):
            if d.get("name") == "networkInterfaceId":
                found.append((d["value"], a["id"]))
    return found


def _task_resource_requirements(task_definition: Any) -> dict[str, Any]:
    """moto's version fails (TypeError) when a container has no memory of its own, as Fargate
    task definitions with task-level memory allow; missing values count as 0 here."""
    req: dict[str, Any] = {"CPU": 0, "MEMORY": 0, "PORTS": [], "PORTS_UDP": []}
    for cd in task_definition.container_definitions:
        req["CPU"] += int(cd.get("cpu", cd.get("Cpu", 0)) or 0)
        mem = cd.get("memory", cd.get("Memory")) or cd.get("memoryReservation", cd.get("MemoryReservation"))
        req["MEMORY"] += int(mem or 0)
        for pm in cd.get("portMappings", cd.get("PortMappings", [])) or []:
            port = pm.get("hostPort", pm.get("HostPort"))
            if port is not None:
                req["PORTS"].append(port)
    return req


def _default_security_groups(backend: EC2ContainerServiceBackend, a: tuple[Any, ...], kw: dict[str, Any]) -> None:
    """moto needs awsvpcConfiguration.securityGroups (KeyError otherwise); ECS uses the VPC's
    default group when they are omitted, so fill that in."""
    net = kw.get("networking_configuration")
    if net is None and len(a) > 7:
        net = a[7]
    if not isinstance(net, dict):
        return
    conf = net.get("awsvpcConfiguration")
    if not isinstance(conf, dict) or conf.get("securityGroups"):
        return
    groups: list[str] = []
    try:
        ec2 = ec2_backends[backend.account_id][backend.region_name]
        subnet = ec2.get_subnet(conf["subnets"][0])
        default = ec2.get_security_group_from_name("default", vpc_id=subnet.vpc_id)
        if default is not None:
            groups = [default.id]
    except Exception:
        pass
    conf["securityGroups"] = groups


def _availability_zone(task: Task) -> str:
    try:
        subnet_id = task.network_configuration["awsvpcConfiguration"]["subnets"][0]
        ec2 = ec2_backends[task._account_id][task.region_name]
        return ec2.get_subnet(subnet_id).availability_zone
    except Exception:
        return f"{task.region_name}a"


# ---------------------------------------------------------------------------------------
# The WSGI middleware
# ---------------------------------------------------------------------------------------


class StarburstMiddleware:
    """Counts and optionally fails AWS requests, and serves `/_starburst/` endpoints."""

    def __init__(self, app: Any, sim: FargateSimulator | None, latency_ms: float = 0.0, checker: strict.Strict | None = None) -> None:
        self.app = app
        self.sim = sim
        self.stats = Stats()
        self.faults = FaultRules()
        # Strict mode (the default): requests AWS would reject are answered as AWS would.
        self.strict = checker
        # Every AWS request waits this long before it is answered (real S3 in-region: 25-30 ms
        # at the median); requests are served on their own threads, so they wait concurrently.
        self.latency = max(0.0, latency_ms) / 1000.0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_starburst/"):
            return self._control(environ, start_response, path[len("/_starburst/"):])
        service, op = classify(environ)
        method = environ.get("REQUEST_METHOD", "GET").upper()
        if self.latency:
            time.sleep(self.latency)
        rule = self.faults.take(service, method, op)
        if rule is not None:
            body_len = len(read_body(environ))
            self.stats.fault(service, op)
            self.stats.bytes_in(service, body_len)
            status, headers, body = fault_response(environ, service, rule)
            start_response(status, headers)
            return [body]
        call = None
        if self.strict is not None:
            query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
            region = (_signing_scope(environ, query) or ("us-east-1", service))[0]
            call, violation = self.strict.check(environ, service, region)
            if violation is not None:
                self.stats.rejected(service, op)
                status, headers, body = strict.error_response(environ, service, violation.code, violation.message, violation.status)
                start_response(status, headers)
                return [body]
        self.stats.request(service, op)
        if "wsgi.input" in environ:
            environ["wsgi.input"] = CountingInput(environ["wsgi.input"], lambda n: self.stats.bytes_in(service, n))
        if call is None:
            return self._count_out(service, self.app(environ, start_response))
        return self._count_out(service, self._answered(call, environ, start_response))

    def _answered(self, call: strict.Call, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        """Runs moto and lets strict mode see (and, for eventual consistency, edit) its answer."""
        assert self.strict is not None
        seen: list[Any] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            seen[:] = [status, headers, exc_info]
            return lambda data: None

        body = self.app(environ, capture)
        status, headers, exc_info = seen
        code = int(status.split()[0])
        if not self.strict.wants_body(call):
            self.strict.answered(call, code, None)
            start_response(status, headers, exc_info)
            return body
        data = b"".join(body)
        close = getattr(body, "close", None)
        if close:
            close()
        new = self.strict.answered(call, code, data)
        if new is not None:
            data = new
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"] + [("Content-Length", str(len(data)))]
        start_response(status, headers, exc_info)
        return [data]

    def _count_out(self, service: str, body: Iterable[bytes]) -> Iterable[bytes]:
        try:
            for chunk in body:
                self.stats.bytes_out(service, len(chunk))
                yield chunk
        finally:
            close = getattr(body, "close", None)
            if close:
                close()

    def _control(self, environ: dict[str, Any], start_response: Any, path: str) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        query = parse_qs(environ.get("QUERY_STRING", ""))
        try:
            if path == "stats" and method == "GET":
                return _json(start_response, 200, self.stats.snapshot())
            if path == "stats/reset" and method == "POST":
                self.stats.reset()
                return _json(start_response, 200, self.stats.snapshot())
            if path == "faults":
                if method == "POST":
                    payload = json.loads(read_body(environ) or b"null")
                    rules = payload if isinstance(payload, list) else [payload]
                    for r in [FaultRules.parse(r) for r in rules]:
                        self.faults.add(r)
                    return _json(start_response, 200, {"faults": self.faults.list()})
                if method == "DELETE":
                    self.faults.clear()
                    return _json(start_response, 200, {"faults": []})
                if method == "GET":
                    return _json(start_response, 200, {"faults": self.faults.list()})
            if path.startswith("interrupt/") and method == "POST" and self.sim is not None:
                force = query.get("force", ["false"])[0].lower() in ("1", "true", "yes")
                status, payload = self.sim.interrupt(path[len("interrupt/"):], force)
                return _json(start_response, status, payload)
            if path.startswith("ecs-meta/") and method == "GET" and self.sim is not None:
                task_id, _, rest = path[len("ecs-meta/"):].partition("/")
                with self.sim.lock:
                    sim = self.sim.tasks.get(task_id)
                    if sim is None:
                        return _json(start_response, 404, {"error": f"no simulated task {task_id}"})
                    if rest == "task":
                        return _json(start_response, 200, sim.metadata(self.sim.url))
                    if rest == "":
                        return _json(start_response, 200, sim.container_metadata(self.sim.url))
            if path == "rejected" and method == "GET":
                return _json(start_response, 200, {"rejected": list(self.strict.rejected) if self.strict else []})
            if path == "tasks" and method == "GET" and self.sim is not None:
                with self.sim.lock:
                    return _json(start_response, 200, {"tasks": [s.summary() for s in self.sim.tasks.values()]})
        except (ValueError, json.JSONDecodeError) as e:
            return _json(start_response, 400, {"error": str(e)})
        return _json(start_response, 404, {"error": f"no such emulator endpoint: {method} /_starburst/{path}"})


def _json(start_response: Any, status: int, payload: Any) -> list[bytes]:
    body = json.dumps(payload, default=str).encode()
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 409: "Conflict"}.get(status, "Error")
    start_response(f"{status} {reason}", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


# ---------------------------------------------------------------------------------------
# Bootstrap
# ---------------------------------------------------------------------------------------


def bootstrap(url: str, region: str) -> dict[str, Any]:
    """Creates, idempotently, what a starburst session needs, and describes it."""
    import boto3
    from botocore.exceptions import ClientError

    kw = dict(endpoint_url=url, region_name=region, aws_access_key_id="testing", aws_secret_access_key="testing")
    s3 = boto3.client("s3", **kw)
    ecs = boto3.client("ecs", **kw)
    logs = boto3.client("logs", **kw)
    ecr = boto3.client("ecr", **kw)
    ec2 = boto3.client("ec2", **kw)

    bucket, cluster, log_group, repo = "starburst-emulator", "starburst", "/starburst/workers", "starburst"

    def ignore(codes: tuple[str, ...], f: Callable[..., Any], **args: Any) -> None:
        try:
            f(**args)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") not in codes:
                raise

    iam = boto3.client("iam", **kw)
    ignore(("BucketAlreadyOwnedByYou", "BucketAlreadyExists"), s3.create_bucket, Bucket=bucket)
    # A cluster with capacity providers needs ECS's service-linked role (strict mode checks).
    ignore(("InvalidInput", "EntityAlreadyExists"), iam.create_service_linked_role, AWSServiceName="ecs.amazonaws.com")
    clusters = ecs.describe_clusters(clusters=[cluster])["clusters"]
    if not any(c.get("status") == "ACTIVE" for c in clusters):
        ecs.create_cluster(
            clusterName=cluster,
            capacityProviders=list(_FARGATE_PROVIDERS),
            defaultCapacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1}],
        )
    ignore(("ResourceAlreadyExistsException",), logs.create_log_group, logGroupName=log_group)
    ignore(("RepositoryAlreadyExistsException",), ecr.create_repository, repositoryName=repo)

    # The roles set-up creates: ECS pulls ECR images and writes awslogs as the execution role
    # (strict mode refuses a Fargate task definition that needs one and has none).
    roles = {}
    for kind, service in (("execution", "ecs-tasks.amazonaws.com"), ("task", "ecs-tasks.amazonaws.com")):
        name = f"starburst-emulator-{kind}"
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]}
        try:
            roles[kind] = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "EntityAlreadyExists":
                raise
            roles[kind] = iam.get_role(RoleName=name)["Role"]["Arn"]

    vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise RuntimeError("moto has no default VPC")
    vpc = vpcs[0]["VpcId"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
    sg_name = "starburst-workers"
    found = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [sg_name]}, {"Name": "vpc-id", "Values": [vpc]}]
    )["SecurityGroups"]
    if found:
        sg = found[0]["GroupId"]
    else:
        # A new group has no ingress rules and allows all egress: egress-only.
        sg = ec2.create_security_group(
            GroupName=sg_name, Description="starburst workers: egress only", VpcId=vpc
        )["GroupId"]
    return {
        "region": region,
        "endpoint_url": url,
        "bucket": bucket,
        "prefix": "starburst",
        "cluster": cluster,
        "subnets": sorted(s["SubnetId"] for s in subnets),
        "security_groups": [sg],
        "log_group": log_group,
        "image": "starburst-sim:local",
        "task_role_arn": roles["task"],
        "execution_role_arn": roles["execution"],
    }


# ---------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: a free one)")
    p.add_argument("--worker-bin", help="the executable each ECS task runs (a starburst-worker)")
    p.add_argument("--pass-env", action="append", default=[], metavar="NAME", help="host variable to pass to workers (repeatable)")
    p.add_argument("--containers", action="store_true", help="run each task's image as a real container (podman run --network host) instead of --worker-bin on the host")
    p.add_argument("--podman", default="podman", help="the podman CLI that --containers tasks and CodeBuild builds use (default podman)")
    p.add_argument("--log-dir", help="also write each task's output to DIR/<task id>.log")
    p.add_argument("--stop-grace", type=float, default=5.0, help="seconds between SIGTERM and SIGKILL on StopTask (default 5)")
    p.add_argument("--spot-grace", type=float, default=2.0, help="seconds between SIGTERM and SIGKILL on a Spot interruption (default 2)")
    p.add_argument("--start-delay", type=float, default=0.0, help="extra seconds a task spends PROVISIONING (default 0)")
    p.add_argument("--latency-ms", type=float, default=0.0, help="delay every AWS request by this many milliseconds (default 0; real S3 in-region: about 30)")
    p.add_argument("--fargate-vcpus", type=float, default=None, help="the account's Fargate vCPU quotas, On-Demand and Spot (default 6, AWS's default for new accounts)")
    p.add_argument("--tick", type=float, default=0.05, help="simulator poll interval in seconds (default 0.05)")
    p.add_argument("--region", default="us-east-1", help="region of the --bootstrap fixtures (default us-east-1)")
    p.add_argument("--bootstrap", action="store_true", help="create the bucket, cluster, log group, ECR repository and security group a session needs")
    p.add_argument("--config-out", help="with --bootstrap: write the session configuration (JSON) here")
    p.add_argument("--exit-on-stdin-eof", action="store_true", help="exit when stdin reaches end of file")
    p.add_argument("--lenient", action="store_true", help="accept what moto accepts (default: strict, requests AWS would reject are rejected as AWS would; see strict.py)")
    p.add_argument("--consistency-delay-ms", type=float, default=0.0, help="strict mode: a bucket, log group or role is invisible or unusable for this long after its creation, as AWS's eventual consistency can make it (default 0)")
    p.add_argument("--strict-rules", action="store_true", help="print the rules strict mode checks beyond the service models and exit")
    p.add_argument("--verbose", action="store_true", help="log every request")
    p.add_argument("--gaps", action="store_true", help="print the simulators' gaps against real Fargate and CodeBuild and exit")
    args = p.parse_args(argv)
    if not (args.gaps or args.strict_rules or args.containers) and not args.worker_bin:
        p.error("--worker-bin is required (or --containers)")
    if args.config_out and not args.bootstrap:
        p.error("--config-out needs --bootstrap")
    args.pass_env = set(args.pass_env)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.gaps:
        print(GAPS, end="")
        return 0
    if args.strict_rules:
        for line in strict.rules_table():
            print(line)
        return 0
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="emulator: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.INFO if args.verbose else logging.WARNING)
    args.worker_bin = os.path.abspath(args.worker_bin) if args.worker_bin else "(image entrypoint)"

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    if args.fargate_vcpus is not None:
        for code, (name, _) in list(moto_fargate_quotas.FARGATE_DEFAULTS.items()):
            moto_fargate_quotas.FARGATE_DEFAULTS[code] = (name, args.fargate_vcpus)
    sim = FargateSimulator(args)
    sim.install()
    codebuild = CodeBuildSimulator(args.podman)
    codebuild.install()
    checker = None if args.lenient else strict.Strict(args.consistency_delay_ms / 1000.0)
    middleware = StarburstMiddleware(DomainDispatcherApplication(create_backend_app), sim, args.latency_ms, checker)
    server = make_server(args.host, args.port, middleware, threaded=True, request_handler=MotoRequestHandler)
    server.daemon_threads = True
    port = server.server_address[1]
    sim.url = f"http://{args.host}:{port}"
    codebuild.url = sim.url
    serving = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    serving.start()
    sim.start()
    try:
        if args.bootstrap:
            config = bootstrap(sim.url, args.region)
            if args.config_out:
                tmp = f"{args.config_out}.tmp"
                with open(tmp, "w") as f:
                    json.dump(config, f, indent=2)
                    f.write("\n")
                os.replace(tmp, args.config_out)
            middleware.stats.reset()  # the client's statistics start at its own first call
        print(f"{READY} {sim.url}", flush=True)
        if args.exit_on_stdin_eof:

            def watch_stdin() -> None:
                try:
                    while sys.stdin.buffer.read(4096):
                        pass
                finally:
                    stop.set()

            threading.Thread(target=watch_stdin, name="stdin", daemon=True).start()
        while not stop.wait(0.5):
            pass
    finally:
        LOG.info("stopping")
        sim.shutdown()
        codebuild.shutdown()
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
