"""Strict mode of the emulator: a request AWS would reject is rejected here too.

moto is lenient: it accepts requests AWS refuses, so an adapter that only ever met moto can fail
on its first real call. In strict mode every AWS request is parsed with the botocore model of
its service (the models moto routes by; botocore is pinned next to moto by
`cargo xtask emulator-venv`) and validated as AWS's front ends do: required members, enum
values, string, list and map lengths, patterns (matched whole, like AWS's Java validators) and
numeric ranges. Then the documented rules that the models do not encode and starburst relies on
(`RULES`, each with its source). A violation never reaches moto: it is answered with the error
code the service uses and an AWS-style message, so the client sees what AWS would send.

With a consistency delay it also shows AWS's eventual consistency: for that long after it was
created, a bucket answers NoSuchBucket, a log group is missing from DescribeLogGroups and a
role cannot be given to ECS ("ECS was unable to assume the role").
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import regex  # AWS patterns use \\p{L}, which the standard `re` lacks
from moto.core.parse import PROTOCOL_PARSERS
from moto.core.request import Request, determine_request_protocol
from moto.core.routing import get_service_router
from moto.core.utils import get_service_model
from moto.ec2.models import ec2_backends
from moto.ecs.models import ecs_backends
from moto.iam import models as iam_models
from moto.iam.models import iam_backends
from werkzeug.exceptions import HTTPException

ACCOUNT = "123456789012"  # moto's default account

# AWS names ECS's service-linked role AWSServiceRoleForECS; moto would say AWSServiceRoleForecs.
iam_models.SERVICE_NAME_CONVERSION.setdefault("ecs", "ECS")

# Signing names (as `classify` reports them) -> botocore model names.
MODELS = {
    "ecs": "ecs",
    "ecr": "ecr",
    "logs": "logs",
    "servicequotas": "service-quotas",
    "s3": "s3",
    "ec2": "ec2",
    "iam": "iam",
    "sts": "sts",
    "tagging": "resourcegroupstaggingapi",
    "codebuild": "codebuild",
}

# The error code each service answers a request that breaks its model with.
VALIDATION_CODE = {
    "ecs": "InvalidParameterException",
    "ecr": "InvalidParameterException",
    "logs": "InvalidParameterException",
    "servicequotas": "IllegalArgumentException",
    "tagging": "InvalidParameterException",
    "iam": "ValidationError",
    "sts": "ValidationError",
    "ec2": "InvalidParameterValue",
    "s3": "InvalidArgument",
    "codebuild": "InvalidInputException",
}


@dataclass
class Violation:
    """What AWS would answer instead of doing the request."""

    code: str
    message: str
    status: int = 400


@dataclass
class Call:
    """A parsed AWS request."""

    service: str
    operation: str
    params: dict[str, Any]
    region: str


# ---------------------------------------------------------------------------------------
# The model check
# ---------------------------------------------------------------------------------------

_PATTERNS: dict[str, Any] = {}


def _pattern(p: str) -> Any:
    if p not in _PATTERNS:
        try:
            _PATTERNS[p] = regex.compile(p)
        except regex.error:
            # Java reads "[\w-_]" as \w, '-' or '_'; so does this once the '-' is escaped.
            _PATTERNS[p] = regex.compile(p.replace(r"\w-", r"\w\-"))
    return _PATTERNS[p]


def _show(v: Any) -> str:
    s = v if isinstance(v, str) else json.dumps(v, default=str)
    return s if len(s) <= 200 else s[:200] + "..."


def validate(shape: Any, value: Any, path: str, errors: list[str]) -> None:
    """Appends to `errors` what AWS's model validation would say about `value`."""
    kind = shape.type_name
    meta = shape.metadata
    where = f"at '{path}'" if path else "at the top level"
    if kind == "structure":
        if not isinstance(value, dict):
            return
        for name in shape.required_members:
            if value.get(name) is None:
                errors.append(f"Value null at '{_join(path, name)}' failed to satisfy constraint: Member must not be null")
        for name, v in value.items():
            member = shape.members.get(name)
            if member is not None and v is not None:
                validate(member, v, _join(path, name), errors)
        return
    if kind in ("list", "map", "string", "blob"):
        size = len(value) if hasattr(value, "__len__") else None
        what = {"list": "have length", "map": "have length", "string": "have length", "blob": "have length"}[kind]
        if size is not None and "min" in meta and size < meta["min"]:
            errors.append(f"Value '{_show(value)}' {where} failed to satisfy constraint: Member must {what} greater than or equal to {meta['min']}")
        if size is not None and "max" in meta and size > meta["max"]:
            errors.append(f"Value '{_show(value)}' {where} failed to satisfy constraint: Member must {what} less than or equal to {meta['max']}")
    if kind == "list" and isinstance(value, list):
        for i, v in enumerate(value):
            if v is not None:
                validate(shape.member, v, f"{path}.{i + 1}.member", errors)
    elif kind == "map" and isinstance(value, dict):
        for k, v in value.items():
            validate(shape.key, k, f"{path}.{k}.key", errors)
            if v is not None:
                validate(shape.value, v, f"{path}.{k}.value", errors)
    elif kind == "string" and isinstance(value, str):
        enum = meta.get("enum")
        if enum and value not in enum:
            errors.append(f"Value '{_show(value)}' {where} failed to satisfy constraint: Member must satisfy enum value set: [{', '.join(enum)}]")
        pattern = meta.get("pattern")
        if pattern and not _pattern(pattern).fullmatch(value):
            errors.append(f"Value '{_show(value)}' {where} failed to satisfy constraint: Member must satisfy regular expression pattern: {pattern}")
    elif kind in ("integer", "long", "float", "double") and isinstance(value, (int, float)):
        if "min" in meta and value < meta["min"]:
            errors.append(f"Value '{value}' {where} failed to satisfy constraint: Member must have value greater than or equal to {meta['min']}")
        if "max" in meta and value > meta["max"]:
            errors.append(f"Value '{value}' {where} failed to satisfy constraint: Member must have value less than or equal to {meta['max']}")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def validation_message(errors: list[str]) -> str:
    n = len(errors)
    return f"{n} validation error{'s' if n > 1 else ''} detected: " + "; ".join(errors)


# ---------------------------------------------------------------------------------------
# Rules the models do not encode
# ---------------------------------------------------------------------------------------


@dataclass
class Rule:
    service: str
    operation: str
    name: str
    source: str
    check: Callable[[Call], Violation | None]


RULES: list[Rule] = []


def rule(service: str, operation: str, name: str, source: str) -> Callable[[Callable[[Call], Violation | None]], Callable[[Call], Violation | None]]:
    def register(f: Callable[[Call], Violation | None]) -> Callable[[Call], Violation | None]:
        RULES.append(Rule(service, operation, name, source, f))
        return f

    return register


ECS_API = "https://docs.aws.amazon.com/AmazonECS/latest/APIReference"
ECS_GUIDE = "https://docs.aws.amazon.com/AmazonECS/latest/developerguide"
S3_GUIDE = "https://docs.aws.amazon.com/AmazonS3/latest/userguide"

# Fargate task sizes: cpu units -> the memory (MiB) each allows.
FARGATE_SIZES: dict[int, set[int]] = {
    256: {512, 1024, 2048},
    512: set(range(1024, 4096 + 1, 1024)),
    1024: set(range(2048, 8192 + 1, 1024)),
    2048: set(range(4096, 16384 + 1, 1024)),
    4096: set(range(8192, 30720 + 1, 1024)),
    8192: set(range(16384, 61440 + 1, 4096)),
    16384: set(range(32768, 122880 + 1, 8192)),
}
_FARGATE_PROVIDERS = ("FARGATE", "FARGATE_SPOT")


def _fargate_size_error(cpu: Any, memory: Any) -> str | None:
    try:
        c, m = int(str(cpu)), int(str(memory))
    except (TypeError, ValueError):
        return f"Invalid 'cpu' setting for task. For more information, see the Troubleshooting section of the Amazon ECS Developer Guide. (cpu {cpu!r}, memory {memory!r})"
    if m not in FARGATE_SIZES.get(c, set()):
        return f"No Fargate configuration exists for given values: {c} CPU, {m} memory. See the Amazon ECS documentation for the valid values."
    return None


@rule("ecs", "ListTasks", "startedBy must be the only filter", f"{ECS_API}/API_ListTasks.html (startedBy)")
def _list_tasks_started_by(call: Call) -> Violation | None:
    p = call.params
    others = [k for k in ("containerInstance", "family", "serviceName", "desiredStatus", "launchType") if p.get(k) is not None]
    if p.get("startedBy") is not None and others:
        return Violation("InvalidParameterException", f"startedBy must be the only filter; it was combined with {', '.join(others)}.")
    return None


@rule("ecs", "RunTask", "count is at most 10", f"{ECS_API}/API_RunTask.html (count: 'You can specify up to 10 tasks for each call')")
def _run_task_count(call: Call) -> Violation | None:
    count = call.params.get("count")
    if count is not None and not 1 <= count <= 10:
        return Violation("InvalidParameterException", "count must be between 1 and 10.")
    return None


@rule("ecs", "RunTask", "launchType and capacityProviderStrategy exclude each other", f"{ECS_API}/API_RunTask.html (capacityProviderStrategy)")
def _run_task_launch_type(call: Call) -> Violation | None:
    if call.params.get("launchType") is not None and call.params.get("capacityProviderStrategy"):
        return Violation("InvalidParameterException", "Specifying both a launch type and capacity provider strategy is not supported.")
    return None


def _task_definition(call: Call, ref: str) -> Any:
    backend = ecs_backends[ACCOUNT][call.region]
    try:
        return backend.describe_task_definition(ref)
    except Exception:  # moto answers the missing definition itself
        return None


def _is_fargate_run(p: dict[str, Any]) -> bool:
    if p.get("launchType") == "FARGATE":
        return True
    return any(s.get("capacityProvider") in _FARGATE_PROVIDERS for s in p.get("capacityProviderStrategy") or [])


@rule("ecs", "RunTask", "a Fargate task needs a FARGATE-compatible awsvpc task definition and a network configuration", f"{ECS_GUIDE}/fargate-task-defs.html, {ECS_API}/API_RunTask.html (networkConfiguration)")
def _run_task_fargate(call: Call) -> Violation | None:
    p = call.params
    if not _is_fargate_run(p):
        return None
    td = _task_definition(call, p.get("taskDefinition", ""))
    if td is None:
        return None
    if "FARGATE" not in (td.requires_compatibilities or []):
        return Violation("InvalidParameterException", "Task definition does not support launch_type FARGATE.")
    if td.network_mode == "awsvpc" and not (p.get("networkConfiguration") or {}).get("awsvpcConfiguration"):
        return Violation("InvalidParameterException", "Network Configuration must be provided when networkMode 'awsvpc' is specified.")
    overrides = p.get("overrides") or {}
    if overrides.get("cpu") is not None or overrides.get("memory") is not None:
        error = _fargate_size_error(overrides.get("cpu", td.cpu), overrides.get("memory", td.memory))
        if error:
            return Violation("InvalidParameterException", error)
    return None


@rule("ecs", "RunTask", "a capacity provider strategy names only providers of the cluster", f"{ECS_API}/API_RunTask.html (capacityProviderStrategy), {ECS_GUIDE}/fargate-capacity-providers.html")
def _run_task_providers(call: Call) -> Violation | None:
    names = [s.get("capacityProvider") for s in call.params.get("capacityProviderStrategy") or []]
    if not names:
        return None
    backend = ecs_backends[ACCOUNT][call.region]
    cluster = backend.clusters.get((call.params.get("cluster") or "default").split("/")[-1])
    if cluster is None:
        return None  # moto answers ClusterNotFoundException
    have = set(getattr(cluster, "capacity_providers", None) or [])
    missing = [n for n in names if n not in have]
    if missing:
        return Violation("InvalidParameterException", f"The specified capacity provider strategy cannot contain a capacity provider that is not associated with the cluster. Associate the capacity provider with the cluster or specify a valid capacity provider and try again. ({', '.join(missing)})")
    return None


def _is_ecr(image: str) -> bool:
    return bool(re.match(r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/", image or ""))


@rule("ecs", "RegisterTaskDefinition", "Fargate task definitions: awsvpc, a valid cpu/memory pair, an execution role for ECR images and awslogs", f"{ECS_GUIDE}/fargate-task-defs.html, {ECS_GUIDE}/task_execution_IAM_role.html")
def _register_fargate(call: Call) -> Violation | None:
    p = call.params
    if "FARGATE" not in (p.get("requiresCompatibilities") or []):
        return None
    if p.get("networkMode") != "awsvpc":
        return Violation("ClientException", "Fargate only supports network mode 'awsvpc'.")
    if p.get("cpu") is None or p.get("memory") is None:
        return Violation("ClientException", "Fargate requires that 'cpu' be defined at the task level.")
    error = _fargate_size_error(p.get("cpu"), p.get("memory"))
    if error:
        return Violation("ClientException", error)
    containers = p.get("containerDefinitions") or []
    if not p.get("executionRoleArn"):
        if any(_is_ecr(c.get("image", "")) for c in containers):
            return Violation("ClientException", "Fargate requires task definition to have execution role ARN to support ECR images.")
        if any((c.get("logConfiguration") or {}).get("logDriver") == "awslogs" for c in containers):
            return Violation("ClientException", "Fargate requires task definition to have execution role ARN to support log driver awslogs.")
    return None


@rule("ecs", "CreateCluster", "capacity providers need the ECS service-linked role", f"{ECS_GUIDE}/using-service-linked-roles.html")
def _cluster_service_linked_role(call: Call) -> Violation | None:
    p = call.params
    if not (p.get("capacityProviders") or p.get("defaultCapacityProviderStrategy")):
        return None
    roles = iam_backends[ACCOUNT]["global"].roles.values()
    if any(r.path.startswith("/aws-service-role/ecs.amazonaws.com/") for r in roles):
        return None
    return Violation("InvalidParameterException", "Unable to assume the service linked role. Please verify that the ECS service linked role exists.")


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def bucket_name_error(name: str) -> str | None:
    if not _BUCKET.match(name):
        return "Bucket names are 3 to 63 lowercase letters, digits, dots and hyphens, beginning and ending with a letter or digit."
    if ".." in name or _IP.match(name):
        return "Bucket names must not contain two adjacent periods or be formatted as an IP address."
    if name.startswith(BUCKET_PREFIXES) or name.endswith(BUCKET_SUFFIXES):
        return f"Bucket names must not begin with {', '.join(BUCKET_PREFIXES)} or end with {', '.join(BUCKET_SUFFIXES)}."
    return None


@rule("s3", "CreateBucket", "bucket naming rules, incl. reserved prefixes and suffixes", f"{S3_GUIDE}/bucketnamingrules.html")
def _bucket_name(call: Call) -> Violation | None:
    error = bucket_name_error(call.params.get("Bucket", ""))
    return Violation("InvalidBucketName", f"The specified bucket is not valid. {error}") if error else None


@rule("s3", "CreateBucket", "LocationConstraint absent in us-east-1, equal to the region elsewhere", "https://docs.aws.amazon.com/AmazonS3/latest/API/API_CreateBucket.html (LocationConstraint)")
def _bucket_location(call: Call) -> Violation | None:
    location = (call.params.get("CreateBucketConfiguration") or {}).get("LocationConstraint")
    if call.region == "us-east-1":
        if location is not None:
            return Violation("InvalidLocationConstraint", "The specified location-constraint is not valid")
        return None
    if location is None:
        return Violation("IllegalLocationConstraintException", "The unspecified location constraint is incompatible for the region specific endpoint this request was sent to.")
    if location != call.region:
        return Violation("IllegalLocationConstraintException", f"The {location} location constraint is incompatible for the region specific endpoint this request was sent to.")
    return None


@rule("ec2", "CreateSecurityGroup", "group names are at most 255 characters and cannot start with sg-", "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateSecurityGroup.html (GroupName)")
def _security_group_name(call: Call) -> Violation | None:
    name = call.params.get("GroupName") or ""
    if name.lower().startswith("sg-"):
        return Violation("InvalidParameterValue", f"Value ({name}) for parameter GroupName is invalid. Group names may not be in the format sg-*.")
    if len(name) > 255:
        return Violation("InvalidParameterValue", f"Value ({name[:40]}...) for parameter GroupName is invalid. Group names are at most 255 characters.")
    return None


@rule("ec2", "DeleteSecurityGroup", "a group that a network interface uses cannot be deleted (DependencyViolation; moto deletes it)", "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DeleteSecurityGroup.html")
def _security_group_in_use(call: Call) -> Violation | None:
    group = call.params.get("GroupId")
    if not group:
        return None
    enis = ec2_backends[ACCOUNT][call.region].enis.values()
    if any(group in [g.id for g in eni._group_set] for eni in enis):
        return Violation("DependencyViolation", f"resource {group} has a dependent object")
    return None


# ---------------------------------------------------------------------------------------
# Eventual consistency
# ---------------------------------------------------------------------------------------


class Consistency:
    """What was created when, to hide it for `delay` seconds as AWS sometimes does."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.lock = threading.Lock()
        self.created: dict[str, dict[str, float]] = {"bucket": {}, "log-group": {}, "role": {}}

    def note(self, kind: str, name: str) -> None:
        with self.lock:
            self.created[kind][name] = time.monotonic()

    def young(self, kind: str, name: str) -> bool:
        with self.lock:
            t = self.created[kind].get(name)
        return t is not None and time.monotonic() - t < self.delay


_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/(?:.*/)?([^/]+)$")


# ---------------------------------------------------------------------------------------
# The checker
# ---------------------------------------------------------------------------------------


class Strict:
    """Checks requests before moto sees them; notes creations and hides young ones after."""

    def __init__(self, consistency_delay: float = 0.0) -> None:
        self.consistency = Consistency(consistency_delay)
        self.rejected: list[dict[str, str]] = []  # every violation answered, for tests
        self.lock = threading.Lock()

    def parse(self, environ: dict[str, Any], service: str, region: str) -> Call | None:
        model_name = MODELS.get(service)
        if model_name is None:
            return None
        # S3 object bodies can be large and streamed (aws-chunked); the router and the header and
        # query members never need them, so they are never read here.
        body = b"" if service == "s3" and _is_object_body(environ) else read_body(environ)
        probe = dict(environ, **{"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))})
        request = Request(probe)
        try:
            op, uri_params = get_service_router(model_name).match(request)
        except (HTTPException, NotImplementedError, KeyError):
            return None
        model = get_service_model(model_name)
        try:
            # The protocol of this request (a model may list several, e.g. CBOR and JSON).
            protocol = determine_request_protocol(model, request.content_type)
        except NotImplementedError:
            return None
        if protocol not in PROTOCOL_PARSERS:
            return None
        parser = PROTOCOL_PARSERS[protocol](op)
        try:
            params = parser.parse(
                {
                    "method": request.method,
                    "values": request.values,
                    "headers": request.headers,
                    "body": body,
                    "url_path": request.path,
                    "url_params": uri_params,
                }
            )
        except Exception as e:  # a body the model cannot read
            raise _Malformed(service, op.name, str(e)) from e
        return Call(service, op.name, params, region)

    def check(self, environ: dict[str, Any], service: str, region: str) -> tuple[Call | None, Violation | None]:
        try:
            call = self.parse(environ, service, region)
        except _Malformed as m:
            code = "MalformedXML" if service == "s3" else "SerializationException"
            return None, self._reject(service, m.operation, Violation(code, f"The request could not be read: {m.detail}"))
        if call is None:
            return None, None
        rules = [r for r in RULES if r.service == service and r.operation == call.operation]
        if service == "s3":
            # S3 has its own checks, not the generic model validation of other services: its
            # documented rules come first (a us-east-1 LocationConstraint is
            # InvalidLocationConstraint, not an enum violation).
            for r in rules:
                v = r.check(call)
                if v is not None:
                    return call, self._reject(service, call.operation, v)
        op = get_service_model(MODELS[service]).operation_model(call.operation)
        errors: list[str] = []
        if op.input_shape is not None:
            validate(op.input_shape, call.params, "", errors)
        if errors:
            code = VALIDATION_CODE.get(service, "ValidationException")
            if service == "ec2" and all("must not be null" in e for e in errors):
                code = "MissingParameter"
            return call, self._reject(service, call.operation, Violation(code, validation_message(errors)))
        for r in rules if service != "s3" else []:
            v = r.check(call)
            if v is not None:
                return call, self._reject(service, call.operation, v)
        v = self._consistency(call)
        if v is not None:
            return call, v  # not a client error: the request was right, AWS was not ready
        return call, None

    def _reject(self, service: str, operation: str, v: Violation) -> Violation:
        with self.lock:
            self.rejected.append({"service": service, "operation": operation, "code": v.code, "message": v.message})
        return v

    def _consistency(self, call: Call) -> Violation | None:
        c = self.consistency
        if not c.delay:
            return None
        if call.service == "s3" and call.operation not in ("CreateBucket", "ListBuckets"):
            bucket = call.params.get("Bucket")
            if bucket and c.young("bucket", bucket):
                return Violation("NoSuchBucket", "The specified bucket does not exist", 404)
        if call.service == "ecs" and call.operation == "RegisterTaskDefinition":
            for key in ("executionRoleArn", "taskRoleArn"):
                m = _ROLE_ARN.match(call.params.get(key) or "")
                if m and c.young("role", m.group(1)):
                    return Violation(
                        "ClientException",
                        f"ECS was unable to assume the role '{call.params[key]}' that was provided for this task. "
                        "Please verify that the role being passed has the proper trust relationship and permissions "
                        "and that your IAM user has permissions to pass this role.",
                    )
        return None

    def answered(self, call: Call | None, status: int, body: bytes | None) -> bytes | None:
        """After moto answered: notes creations; returns a rewritten body, or None to keep it."""
        if call is None or status >= 300:
            return None
        c = self.consistency
        p = call.params
        if (call.service, call.operation) == ("s3", "CreateBucket"):
            c.note("bucket", p.get("Bucket", ""))
        elif (call.service, call.operation) == ("logs", "CreateLogGroup"):
            c.note("log-group", p.get("logGroupName", ""))
        elif (call.service, call.operation) == ("iam", "CreateRole"):
            c.note("role", p.get("RoleName", ""))
        elif (call.service, call.operation) == ("logs", "DescribeLogGroups") and c.delay and body is not None:
            out = json.loads(body or b"{}")
            groups = out.get("logGroups") or []
            kept = [g for g in groups if not c.young("log-group", g.get("logGroupName", ""))]
            if len(kept) != len(groups):
                out["logGroups"] = kept
                return json.dumps(out).encode()
        return None

    def wants_body(self, call: Call | None) -> bool:
        """Whether `answered` needs the response body (only where it may rewrite it)."""
        return call is not None and (call.service, call.operation) == ("logs", "DescribeLogGroups") and bool(self.consistency.delay)


class _Malformed(Exception):
    def __init__(self, service: str, operation: str, detail: str) -> None:
        super().__init__(detail)
        self.service, self.operation, self.detail = service, operation, detail


def read_body(environ: dict[str, Any]) -> bytes:
    """Reads the whole request body and puts it back as a fresh stream."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    if environ.get("wsgi.input_terminated"):
        body = stream.read()
    else:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        body = stream.read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ.pop("wsgi.input_terminated", None)
    return body


def _is_object_body(environ: dict[str, Any]) -> bool:
    """An S3 request whose body is object data (PutObject, UploadPart), never parsed here."""
    method = environ.get("REQUEST_METHOD", "").upper()
    key = environ.get("PATH_INFO", "/").lstrip("/").partition("/")[2]  # "/bucket/" has no key
    return method == "PUT" and key != "" and "tagging" not in environ.get("QUERY_STRING", "")


def error_response(environ: dict[str, Any], service: str, code: str, message: str, status: int) -> tuple[str, list[tuple[str, str]], bytes]:
    """An AWS-shaped error for the request's protocol."""
    request_id = str(uuid.uuid4())
    headers = [("x-amzn-RequestId", request_id), ("x-amz-request-id", request_id)]
    if environ.get("HTTP_X_AMZ_TARGET") or "json" in environ.get("CONTENT_TYPE", ""):
        body = json.dumps({"__type": code, "message": message}).encode()
        headers += [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", code)]
    elif service == "s3":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{_xml_escape(code)}</Code><Message>{_xml_escape(message)}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>"
        ).encode()
        headers.append(("Content-Type", "application/xml"))
    elif service == "ec2":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Response><Errors><Error><Code>{_xml_escape(code)}</Code>"
            f"<Message>{_xml_escape(message)}</Message></Error></Errors>"
            f"<RequestID>{request_id}</RequestID></Response>"
        ).encode()
        headers.append(("Content-Type", "text/xml"))
    else:
        kind = "Receiver" if status >= 500 else "Sender"
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<ErrorResponse><Error><Type>{kind}</Type><Code>{_xml_escape(code)}</Code>"
            f"<Message>{_xml_escape(message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        headers.append(("Content-Type", "text/xml"))
    if environ.get("REQUEST_METHOD", "").upper() == "HEAD":
        body = b""
    headers.append(("Content-Length", str(len(body))))
    return f"{status} {code}", headers, body


def _xml_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def rules_table() -> Iterable[str]:
    """The cross-field rules as lines of text (for `--strict-rules` and the rules document)."""
    for r in RULES:
        yield f"{r.service} {r.operation}: {r.name} ({r.source})"
