"""The CodeBuild simulator: builds that StartBuild starts really run, on the host, with podman.

moto's CodeBuild keeps projects and build records but runs nothing: StartBuild ignores every
override and BatchGetBuilds reports any build SUCCEEDED. Here StartBuild keeps moto's record
and starts a thread that does what a CodeBuild build container would: it downloads the S3
source, reads the buildspec and runs the commands of its install, pre_build, build and
post_build phases (each with `bash -c` in its own process group, in the source directory), with
`docker` meaning `podman --network host` and an `aws` that only answers `ecr get-login-password`.
It reports the phases as they happen through BatchGetBuilds and writes CodeBuild's log lines to
CloudWatch Logs. StopBuild and the build's timeout end the running command (SIGTERM, SIGKILL
after STOP_GRACE seconds).
"""

from __future__ import annotations

import copy
import functools
import io
import logging
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import quote

import yaml
from moto.codebuild.exceptions import InvalidInputException
from moto.codebuild.responses import CodeBuildResponse, _validate_required_params_id
from moto.core.responses import ActionResult
from moto.s3.exceptions import MissingBucket
from moto.s3.models import FakeKey, s3_backends
from moto.utilities.utils import get_partition

from sim_common import die_with_parent, ensure_stream, kill_group, now, put_log

LOG = logging.getLogger("starburst-emulator")

STOP_GRACE = 2.0  # seconds between SIGTERM and SIGKILL when a build is stopped or times out
TICK = 0.05  # how often a running command is checked for a stop or the timeout
COMMAND_PHASES = {"INSTALL": "install", "PRE_BUILD": "pre_build", "BUILD": "build", "POST_BUILD": "post_build"}
CONTAINER_PHASES = ("DOWNLOAD_SOURCE", *COMMAND_PHASES, "UPLOAD_ARTIFACTS")  # those the build log shows
SHELLS = {"bash": "bash", "sh": "sh", "/bin/sh": "sh"}
DEFAULT_TIMEOUT_MINUTES = 60

DOCKER_SHIM = """#!/bin/sh
# docker in the starburst emulator's CodeBuild: the host's podman; builds use the host's network.
if [ "$1" = build ]; then
  shift
  exec {podman} build --network host "$@"
fi
exec {podman} "$@"
"""

AWS_SHIM = """#!/bin/sh
# aws in the starburst emulator's CodeBuild: only what a docker login needs.
case " $* " in
  *" ecr get-login-password "*) echo starburst-emulator-ecr-token; exit 0 ;;
esac
echo "the starburst emulator's aws shim only answers 'aws ecr get-login-password' (not: aws $*)" >&2
exit 1
"""


class PhaseError(Exception):
    """Ends the current phase with `status` and CodeBuild's context (status code, message)."""

    def __init__(self, status: str, code: str = "", message: str = "") -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Buildspec:
    commands: dict[str, list[str]]  # by phase type (INSTALL, ...)
    variables: dict[str, str]
    shell: str


def parse_buildspec(text: str) -> Buildspec:
    """A buildspec (version 0.2 YAML) as the simulator runs it; YAML_FILE_ERROR if it is not one."""
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PhaseError("FAILED", "YAML_FILE_ERROR", f"YAML_FILE_ERROR: {e}") from e
    if not isinstance(spec, dict):
        raise PhaseError("FAILED", "YAML_FILE_ERROR", "YAML_FILE_ERROR: the buildspec is not a YAML mapping")
    if str(spec.get("version")) not in ("0.1", "0.2"):
        raise PhaseError("FAILED", "YAML_FILE_ERROR", f"YAML_FILE_ERROR: invalid buildspec version {spec.get('version')!r}, expected 0.2")
    env = spec.get("env") or {}
    shell = SHELLS.get(env.get("shell", "bash"))
    if shell is None:
        raise PhaseError("FAILED", "YAML_FILE_ERROR", f"YAML_FILE_ERROR: unsupported shell {env['shell']!r} (bash or sh)")
    phases = spec.get("phases") or {}
    commands = {}
    for phase, key in COMMAND_PHASES.items():
        listed = (phases.get(key) or {}).get("commands") or []
        if not isinstance(listed, list) or not all(isinstance(c, str) for c in listed):
            raise PhaseError("FAILED", "YAML_FILE_ERROR", f"YAML_FILE_ERROR: phases.{key}.commands must be a list of strings")
        commands[phase] = listed
    variables = {str(k): str(v) for k, v in (env.get("variables") or {}).items()}
    return Buildspec(commands, variables, shell)


def _pairs(variables: list[dict[str, Any]] | None) -> dict[str, str]:
    return {v["name"]: str(v.get("value", "")) for v in variables or []}


class SimBuild:
    """One build: moto's record (updated as the build goes), its settings and its processes."""

    def __init__(self, record: dict[str, Any], account: str, region: str, workdir: str) -> None:
        self.record = record
        self.id: str = record["id"]
        self.account = account
        self.region = region
        self.workdir = workdir
        self.src = os.path.join(workdir, "src")
        self.deadline = time.monotonic() + 60 * record["timeoutInMinutes"]
        self.stop = threading.Event()
        self.groups: list[int] = []  # process groups of its commands, killed when it ends
        self.spec: Buildspec | None = None
        self.env: dict[str, str] = {}
        self.thread: threading.Thread | None = None
        logs = record["logs"]
        enabled = logs["cloudWatchLogs"]["status"] != "DISABLED"
        self.log_target = (region, logs["groupName"], logs["streamName"]) if enabled else None

    @property
    def status(self) -> str:
        return self.record["buildStatus"]


class CodeBuildSimulator:
    """Runs the builds of moto's CodeBuild and reports them through its build records."""

    def __init__(self, podman: str) -> None:
        self.url = ""  # set once the server listens
        self.lock = threading.Lock()  # guards every build record
        self.builds: dict[str, SimBuild] = {}
        self._workroot = tempfile.mkdtemp(prefix="starburst-emulator-builds-")
        self._shims = os.path.join(self._workroot, "bin")
        os.mkdir(self._shims)
        podman = shlex.quote(shutil.which(podman) or podman)
        for name, script in (("docker", DOCKER_SHIM.format(podman=podman)), ("aws", AWS_SHIM)):
            path = os.path.join(self._shims, name)
            with open(path, "w") as f:
                f.write(script)
            os.chmod(path, 0o755)

    # -- moto hooks (run on request threads) ----------------------------------------------

    def install(self) -> None:
        """Replaces moto's StartBuild, BatchGetBuilds and StopBuild."""
        sim = self
        start_build = CodeBuildResponse.start_build

        def patched_start_build(resp: CodeBuildResponse) -> ActionResult:
            record = start_build(resp).result["build"]  # type: ignore[index]  # moto validates and records
            return ActionResult({"build": sim.adopt(resp, record)})

        def patched_batch_get_builds(resp: CodeBuildResponse) -> ActionResult:
            ids = resp._get_param("ids")
            if any(":" not in i for i in ids):
                raise InvalidInputException("Invalid build ID provided")
            found = {b["id"]: b for history in resp.codebuild_backend.build_metadata_history.values() for b in history}
            with sim.lock:
                builds = [copy.deepcopy(found[i]) for i in ids if i in found]
            return ActionResult({"builds": builds, "buildsNotFound": [i for i in ids if i not in found]})

        def patched_stop_build(resp: CodeBuildResponse) -> ActionResult:
            build_id = resp._get_param("id")
            _validate_required_params_id(build_id, resp.codebuild_backend.list_builds())
            return ActionResult({"build": sim.stop_build(build_id)})

        CodeBuildResponse.start_build = patched_start_build  # type: ignore[method-assign]
        CodeBuildResponse.batch_get_builds = patched_batch_get_builds  # type: ignore[method-assign]
        CodeBuildResponse.stop_build = patched_stop_build  # type: ignore[method-assign]

    def adopt(self, resp: CodeBuildResponse, record: dict[str, Any]) -> dict[str, Any]:
        """Makes moto's new build record the effective one (overrides applied) and starts it."""
        backend = resp.codebuild_backend
        name = record["projectName"]
        project = backend.codebuild_projects[name].project_metadata
        param = resp._get_param
        source = dict(project.get("source") or {})
        source["type"] = param("sourceTypeOverride") or source.get("type")
        source["location"] = param("sourceLocationOverride") or source.get("location")
        if param("buildspecOverride"):
            source["buildspec"] = param("buildspecOverride")
        env = dict(project.get("environment") or {})
        # The override's variables replace the project's of the same name.
        variables = {v["name"]: v for v in [*(env.get("environmentVariables") or []), *(param("environmentVariablesOverride") or [])]}
        env.update(
            type=param("environmentTypeOverride") or env.get("type"),
            image=param("imageOverride") or env.get("image"),
            computeType=param("computeTypeOverride") or env.get("computeType"),
            environmentVariables=list(variables.values()),
            privilegedMode=_first(param("privilegedModeOverride"), env.get("privilegedMode"), False),
        )
        started = now()
        build_uuid = record["id"].split(":", 1)[1]
        with self.lock:
            record.pop("sourceVersion", None)  # moto's made-up refs/heads/main
            if param("sourceVersion"):
                record["sourceVersion"] = param("sourceVersion")
            record.update(
                buildNumber=len(backend.build_history[name]),
                startTime=started,
                currentPhase="QUEUED",
                buildStatus="IN_PROGRESS",
                phases=[
                    {"phaseType": "SUBMITTED", "phaseStatus": "SUCCEEDED", "startTime": started, "endTime": started, "durationInSeconds": 0},
                    {"phaseType": "QUEUED", "startTime": started},
                ],
                source=source,
                environment=env,
                serviceRole=project["serviceRole"],
                logs=_logs(project, name, build_uuid, resp.region, resp.current_account),
                timeoutInMinutes=_first(param("timeoutInMinutesOverride"), project.get("timeoutInMinutes") or None, DEFAULT_TIMEOUT_MINUTES),
            )
            workdir = tempfile.mkdtemp(prefix=f"{build_uuid}-", dir=self._workroot)
            build = SimBuild(record, resp.current_account, resp.region, workdir)
            build.thread = threading.Thread(target=self._run, args=(build,), name=f"build-{build_uuid}", daemon=True)
            self.builds[build.id] = build
            answer = copy.deepcopy(record)
        build.thread.start()
        return answer

    def stop_build(self, build_id: str) -> dict[str, Any]:
        """StopBuild: a running build is STOPPED at once; its thread ends the running command."""
        with self.lock:
            build = self.builds[build_id]
            if not build.record["buildComplete"]:
                if build.status == "IN_PROGRESS":
                    build.record["buildStatus"] = "STOPPED"
                build.stop.set()
            return copy.deepcopy(build.record)

    # -- a build's thread ---------------------------------------------------------------

    def _run(self, build: SimBuild) -> None:
        try:
            self._leave(build, "SUCCEEDED")  # QUEUED
            self._phase(build, "PROVISIONING", functools.partial(self._provision, build))
            self._phase(build, "DOWNLOAD_SOURCE", functools.partial(self._download, build))
            for phase in ("INSTALL", "PRE_BUILD", "BUILD"):
                if build.status != "IN_PROGRESS":
                    break  # a failed install or pre_build skips the rest
                self._phase(build, phase, functools.partial(self._commands, build, phase))
            else:
                # As on CodeBuild: post_build runs, and artifacts are uploaded, after a failed build phase too.
                if _goes_on(build):
                    self._phase(build, "POST_BUILD", functools.partial(self._commands, build, "POST_BUILD"))
                if _goes_on(build):
                    self._phase(build, "UPLOAD_ARTIFACTS")
            self._phase(build, "FINALIZING")
            self._complete(build)
        finally:
            for pgid in build.groups:
                kill_group(pgid, signal.SIGKILL)  # what the commands left running dies with the "container"
            shutil.rmtree(build.workdir, ignore_errors=True)

    def _phase(self, build: SimBuild, phase: str, work: Callable[[], None] = lambda: None) -> None:
        with self.lock:
            build.record["currentPhase"] = phase
            build.record["phases"].append({"phaseType": phase, "startTime": now()})
        if phase in CONTAINER_PHASES:
            self._log(build, f"Entering phase {phase}")
        try:
            work()
        except PhaseError as e:
            return self._leave(build, e.status, e.code, e.message)
        except Exception as e:  # a bug of the simulator: the build ends instead of hanging
            LOG.exception("build %s, phase %s", build.id, phase)
            return self._leave(build, "FAULT", "CLIENT_ERROR", f"starburst emulator error: {e!r}")
        self._leave(build, "SUCCEEDED")

    def _leave(self, build: SimBuild, status: str, code: str = "", message: str = "") -> None:
        """Ends the current phase with `status`; a phase that did not succeed decides the build's
        status unless one is set already (STOPPED by StopBuild, FAILED by an earlier phase)."""
        ended = now()
        with self.lock:
            phase = build.record["phases"][-1]
            phase.update(
                phaseStatus=status,
                endTime=ended,
                durationInSeconds=int((ended - phase["startTime"]).total_seconds()),
                contexts=[{"statusCode": code, "message": message}],
            )
            if status != "SUCCEEDED" and build.status == "IN_PROGRESS":
                build.record["buildStatus"] = status
        if phase["phaseType"] in CONTAINER_PHASES:
            self._log(build, f"Phase complete: {phase['phaseType']} State: {status}")
            if code:
                self._log(build, f"Phase context status code: {code} Message: {message}")

    def _complete(self, build: SimBuild) -> None:
        ended = now()
        with self.lock:
            build.record["phases"].append({"phaseType": "COMPLETED", "startTime": ended})
            if build.status == "IN_PROGRESS":
                build.record["buildStatus"] = "SUCCEEDED"
            build.record.update(currentPhase="COMPLETED", endTime=ended, buildComplete=True)

    def _provision(self, build: SimBuild) -> None:
        if build.log_target:
            ensure_stream(build.account, *build.log_target)

    def _download(self, build: SimBuild) -> None:
        """DOWNLOAD_SOURCE: the S3 source into build.src, then the buildspec and environment."""
        source = build.record["source"]
        if source.get("type") != "S3":
            raise PhaseError("FAILED", "CLIENT_ERROR", f"source type {source.get('type')} is not supported by the starburst emulator (only S3)")
        location = source.get("location") or ""
        for name, data in _s3_source(build.account, build.region, location):
            path = os.path.normpath(os.path.join(build.src, name.lstrip("/")))
            if not path.startswith(build.src + os.sep):
                continue  # never outside the source directory
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        os.makedirs(build.src, exist_ok=True)
        self._log(build, f"CODEBUILD_SRC_DIR={build.src}")
        build.spec = self._buildspec(build, source.get("buildspec") or "buildspec.yml")
        build.env = self._environment(build, build.spec)

    def _buildspec(self, build: SimBuild, text: str) -> Buildspec:
        """The buildspec: inline YAML, else a file of the source (buildspec.yml by default)."""
        try:
            inline = isinstance(yaml.safe_load(text), dict)
        except yaml.YAMLError:
            inline = "\n" in text
        if inline:
            return parse_buildspec(text)
        path = os.path.join(build.src, text)
        self._log(build, f"YAML location is {path}")
        try:
            with open(path) as f:
                return parse_buildspec(f.read())
        except OSError as e:
            raise PhaseError("FAILED", "YAML_FILE_ERROR", f"YAML_FILE_ERROR: stat {path}: {e.strerror}") from e

    def _environment(self, build: SimBuild, spec: Buildspec) -> dict[str, str]:
        """The emulator's own environment (podman's configuration, AWS_*), then CodeBuild's
        precedence: the buildspec's variables, the project's, StartBuild's override."""
        r = build.record
        env = dict(os.environ)
        env.update(
            AWS_REGION=build.region,
            AWS_DEFAULT_REGION=build.region,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
        )
        env.update(spec.variables)
        env.update(_pairs(r["environment"]["environmentVariables"]))  # the project's, then the override's
        env.update(
            CODEBUILD_BUILD_ID=r["id"],
            CODEBUILD_BUILD_ARN=r["arn"],
            CODEBUILD_BUILD_NUMBER=str(r["buildNumber"]),
            CODEBUILD_BUILD_IMAGE=r["environment"].get("image") or "",
            CODEBUILD_SRC_DIR=build.src,
            AWS_ENDPOINT_URL=self.url,
            PATH=os.pathsep.join([self._shims, env.get("PATH", os.defpath)]),
        )
        return env

    def _commands(self, build: SimBuild, phase: str) -> None:
        assert build.spec is not None
        for command in build.spec.commands.get(phase, []):
            self._log(build, f"Running command {command}")
            code = self._execute(build, command)
            if code != 0:
                self._log(build, f"Command did not exit successfully {command} exit status {code}")
                raise PhaseError("FAILED", "COMMAND_EXECUTION_ERROR", f"Error while executing command: {command}. Reason: exit status {code}")

    def _execute(self, build: SimBuild, command: str) -> int:
        """Runs one command in its own process group; its exit status (a signal n: 128 + n)."""
        self._check_halt(build)
        assert build.spec is not None
        env = dict(build.env, CODEBUILD_BUILD_SUCCEEDING="1" if build.status == "IN_PROGRESS" else "0")
        try:
            proc = subprocess.Popen(
                [build.spec.shell, "-c", command],
                cwd=build.src,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        except OSError as e:
            raise PhaseError("FAILED", "COMMAND_EXECUTION_ERROR", f"Error while executing command: {command}. Reason: {e}") from e
        build.groups.append(proc.pid)
        reader = threading.Thread(target=self._pump, args=(build, proc), name=f"build-output-{proc.pid}", daemon=True)
        reader.start()
        while not _exited(proc, TICK):
            if build.stop.is_set() or time.monotonic() >= build.deadline:
                _terminate(proc)
        reader.join(timeout=1.0)  # a background process may hold the output open: never wait for it
        self._check_halt(build)
        return 128 - proc.returncode if proc.returncode < 0 else proc.returncode

    def _check_halt(self, build: SimBuild) -> None:
        if build.stop.is_set():
            raise PhaseError("STOPPED")
        if time.monotonic() >= build.deadline:
            raise PhaseError("TIMED_OUT", "BUILD_TIMED_OUT", "Build has timed out. ")

    def _pump(self, build: SimBuild, proc: subprocess.Popen[bytes]) -> None:
        """Copies a command's output, line by line, to the build's log."""
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            if build.log_target:
                put_log(build.account, build.log_target, raw.decode("utf-8", "replace").rstrip("\n"))

    def _log(self, build: SimBuild, message: str) -> None:
        """A line of CodeBuild's own, e.g. "[Container] 2026/12/04 21:00:00.123456 Entering phase BUILD"."""
        if build.log_target:
            put_log(build.account, build.log_target, f"[Container] {now():%Y/%m/%d %H:%M:%S.%f} {message}")

    # -- shutdown ------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stops every running build and removes every build's files."""
        with self.lock:
            builds = list(self.builds.values())
        for build in builds:
            build.stop.set()
        for build in builds:
            if build.thread is not None:
                build.thread.join(timeout=STOP_GRACE + 3)
        shutil.rmtree(self._workroot, ignore_errors=True)


def _goes_on(build: SimBuild) -> bool:
    """Whether the phases after BUILD run: unless the build was stopped or timed out."""
    return build.status in ("IN_PROGRESS", "FAILED") and not build.stop.is_set()


def _exited(proc: subprocess.Popen[bytes], seconds: float) -> bool:
    """Whether the process exits within `seconds`."""
    try:
        proc.wait(timeout=seconds)
        return True
    except subprocess.TimeoutExpired:
        return False


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the command's process group, SIGKILL after STOP_GRACE seconds."""
    kill_group(proc.pid, signal.SIGTERM)
    if not _exited(proc, STOP_GRACE):
        kill_group(proc.pid, signal.SIGKILL)
        proc.wait()


def _first(*values: Any) -> Any:
    """The first value that is not None."""
    return next(v for v in values if v is not None)


def _logs(project: dict[str, Any], name: str, build_uuid: str, region: str, account: str) -> dict[str, Any]:
    """A build's `logs`: CodeBuild's group /aws/codebuild/<project> and stream <uuid> unless the
    project's logsConfig names others (the stream name is then a prefix)."""
    config = dict((project.get("logsConfig") or {}).get("cloudWatchLogs") or {"status": "ENABLED"})
    s3 = (project.get("logsConfig") or {}).get("s3Logs") or {"status": "DISABLED"}
    if config.get("status") == "DISABLED":
        return {"cloudWatchLogs": config, "s3Logs": s3}
    group = config.get("groupName") or f"/aws/codebuild/{name}"
    stream = f"{config['streamName']}/{build_uuid}" if config.get("streamName") else build_uuid
    return {
        "groupName": group,
        "streamName": stream,
        "deepLink": f"https://console.aws.amazon.com/cloudwatch/home?region={region}#logEvent:group={quote(group, safe='')};stream={quote(stream, safe='')}",
        "cloudWatchLogsArn": f"arn:{get_partition(region)}:logs:{region}:{account}:log-group:{group}:log-stream:{stream}",
        "cloudWatchLogs": config,
        "s3Logs": s3,
    }


def _s3_source(account: str, region: str, location: str) -> list[tuple[str, bytes]]:
    """(relative path, content) of each file of an S3 source: every object under "bucket/prefix/",
    or the members of the zip "bucket/key". Read from moto's S3 in-process."""
    bucket_name, _, key = location.partition("/")
    try:
        bucket = s3_backends[account][get_partition(region)].get_bucket(bucket_name)
    except MissingBucket as e:
        raise PhaseError("FAILED", "CLIENT_ERROR", f"NoSuchBucket: The specified bucket does not exist for primary source and source version {location}") from e
    objects = {name: obj for name, obj in list(bucket.keys.items()) if isinstance(obj, FakeKey)}
    if key == "" or key.endswith("/"):
        files = [(name[len(key):], obj.value) for name, obj in objects.items() if name.startswith(key) and not name.endswith("/")]
        if not files:
            raise PhaseError("FAILED", "CLIENT_ERROR", f"no matching artifact paths found for primary source and source version {location}")
        return files
    if key not in objects:
        raise PhaseError("FAILED", "CLIENT_ERROR", f"NoSuchKey: The specified key does not exist for primary source and source version {location}")
    try:
        with zipfile.ZipFile(io.BytesIO(objects[key].value)) as z:
            return [(info.filename, z.read(info)) for info in z.infolist() if not info.is_dir()]
    except zipfile.BadZipFile as e:
        raise PhaseError("FAILED", "CLIENT_ERROR", f"zip: not a valid zip file for primary source and source version {location}") from e
