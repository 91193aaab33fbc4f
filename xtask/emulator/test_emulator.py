"""Tests of starburst_emulator.py: a real emulator process, boto3 as the client, and
fake_worker.py as the `--worker-bin` every ECS task runs.

Run with the moto venv's Python: `python -m unittest discover -s xtask/emulator -v`
(`cargo xtask emulator --test` does).
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest
import urllib.error
import urllib.request
import zipfile
from typing import Any, Callable

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

HERE = os.path.dirname(os.path.abspath(__file__))
EMULATOR = os.path.join(HERE, "starburst_emulator.py")
FAKE_WORKER = os.path.join(HERE, "fake_worker.py")
REGION = "us-east-1"
WAIT = 30.0  # seconds before a wait gives up: a failure, never a timing assertion


def wait_for(what: str, probe: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + WAIT
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class Emulator:
    """One emulator process, stopped by closing its stdin."""

    def __init__(self, tmp: str, *extra: str, env: dict[str, str] | None = None) -> None:
        self.config_path = os.path.join(tmp, "config.json")
        self.log_dir = os.path.join(tmp, "logs")
        self.proc = subprocess.Popen(
            [
                sys.executable, EMULATOR,
                "--port", "0",
                "--worker-bin", FAKE_WORKER,
                "--bootstrap", "--config-out", self.config_path,
                "--log-dir", self.log_dir,
                "--exit-on-stdin-eof",
                *extra,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
        line: list[bytes] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()))
        reader.start()
        reader.join(WAIT)
        ready = line[0].decode().split() if line else []
        if len(ready) != 2 or ready[0] != "STARBURST_EMULATOR_READY":
            self.proc.kill()
            raise AssertionError(f"emulator did not report ready: {line!r}")
        self.url = ready[1]
        with open(self.config_path) as f:
            self.config = json.load(f)

    def client(self, service: str, region_name: str = REGION, **config: Any) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=region_name,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(**config) if config else None,
        )

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        try:
            with urllib.request.urlopen(req) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def stop(self) -> int:
        self.proc.stdin.close()
        code = self.proc.wait(WAIT)
        self.proc.stdout.close()
        return code


class EmulatorTest(unittest.TestCase):
    emu: Emulator

    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.TemporaryDirectory(prefix="starburst-emulator-test-")
        cls.emu = Emulator(
            cls.tmp.name,
            "--stop-grace", "1", "--spot-grace", "1", "--pass-env", "EMU_TEST_PASSED",
            env={"R_EMU_TEST": "r-var", "EMU_TEST_PASSED": "passed", "EMU_TEST_HIDDEN": "hidden"},
        )
        cls.ecs = cls.emu.client("ecs")
        cls.ecs.register_task_definition(**task_definition("starburst-worker", "starburst-sim:local"))

    @classmethod
    def tearDownClass(cls) -> None:
        cls.emu.stop()
        cls.tmp.cleanup()

    def file(self, name: str) -> str:
        return os.path.join(self.tmp.name, f"{self._testMethodName}-{name}")

    def run_task(self, env: dict[str, str], spot: bool = False, family: str = "starburst-worker") -> dict[str, Any]:
        cfg = self.emu.config
        resp = self.ecs.run_task(
            cluster=cfg["cluster"],
            taskDefinition=family,
            count=1,
            capacityProviderStrategy=[{"capacityProvider": "FARGATE_SPOT" if spot else "FARGATE", "weight": 1}],
            networkConfiguration={
                "awsvpcConfiguration": {
                    "subnets": cfg["subnets"],
                    "securityGroups": cfg["security_groups"],
                    "assignPublicIp": "ENABLED",
                }
            },
            overrides={
                "containerOverrides": [
                    {"name": "worker", "environment": [{"name": k, "value": v} for k, v in env.items()]}
                ]
            },
        )
        self.assertEqual(resp["failures"], [])
        return resp["tasks"][0]

    def describe(self, task: dict[str, Any]) -> dict[str, Any]:
        return self.ecs.describe_tasks(cluster=self.emu.config["cluster"], tasks=[task["taskArn"]])["tasks"][0]

    def wait_status(self, task: dict[str, Any], status: str) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            d = self.describe(task)
            if d["lastStatus"] == "STOPPED" and status != "STOPPED":
                raise AssertionError(f"task stopped while waiting for {status}: {d.get('stoppedReason')}")
            return d if d["lastStatus"] == status else None

        return wait_for(f"task {task['taskArn']} to be {status}", probe)

    def read_json(self, path: str) -> Any:
        wait_for(path, lambda: os.path.exists(path))
        with open(path) as f:
            return json.load(f)

    def pids(self, path: str) -> list[int]:
        wait_for(path, lambda: os.path.exists(path))
        with open(path) as f:
            return [int(p) for p in f.read().split()]

    # -- lifecycle ------------------------------------------------------------------------

    def test_task_runs_with_definition_and_override_environment(self) -> None:
        out = self.file("env.json")
        task = self.run_task({"FAKE_ENV_OUT": out, "FROM_OVERRIDE": "o", "FROM_DEFINITION": "overridden"})
        self.assertEqual(task["lastStatus"], "PROVISIONING")
        self.assertEqual(task["desiredStatus"], "RUNNING")
        self.assertEqual(task["launchType"], "FARGATE")
        self.assertEqual((task["cpu"], task["memory"]), ("1024", "2048"))
        running = self.wait_status(task, "RUNNING")
        self.assertIn("startedAt", running)
        self.assertEqual(running["containers"][0]["lastStatus"], "RUNNING")
        self.assertNotIn("exitCode", running["containers"][0])
        env = self.read_json(out)
        task_id = task["taskArn"].split("/")[-1]
        self.assertEqual(env["FROM_OVERRIDE"], "o")
        self.assertEqual(env["FROM_DEFINITION"], "overridden")
        self.assertEqual(env["DEFINITION_ONLY"], "d")
        self.assertEqual(env["AWS_ENDPOINT_URL"], self.emu.url)
        self.assertEqual(env["AWS_ACCESS_KEY_ID"], "testing")
        self.assertEqual(env["AWS_REGION"], REGION)
        self.assertEqual(env["STARBURST_SIM_TASK_ID"], task_id)
        self.assertEqual(env["ECS_CONTAINER_METADATA_URI_V4"], f"{self.emu.url}/_starburst/ecs-meta/{task_id}")
        self.assertEqual(env["R_EMU_TEST"], "r-var")
        self.assertEqual(env["EMU_TEST_PASSED"], "passed")
        self.assertNotIn("EMU_TEST_HIDDEN", env)
        self.ecs.stop_task(cluster=self.emu.config["cluster"], task=task["taskArn"])
        self.wait_status(task, "STOPPED")

    def test_exit_zero_is_essential_container_exited_and_kills_the_group(self) -> None:
        pid_file = self.file("pids")
        task = self.run_task({"FAKE_EXIT": "0", "FAKE_CHILD": "1", "FAKE_PID_OUT": pid_file})
        stopped = self.wait_status(task, "STOPPED")
        self.assertEqual(stopped["stopCode"], "EssentialContainerExited")
        self.assertEqual(stopped["stoppedReason"], "Essential container in task exited")
        self.assertEqual(stopped["desiredStatus"], "STOPPED")
        self.assertIn("stoppedAt", stopped)
        self.assertEqual(stopped["containers"][0]["lastStatus"], "STOPPED")
        self.assertEqual(stopped["containers"][0]["exitCode"], 0)
        _, child = self.pids(pid_file)
        wait_for("the worker's child to die with the container", lambda: not alive(child))

    def test_a_task_interface_is_an_ecs_attachment_released_when_the_task_stops(self) -> None:
        task = self.run_task({})
        self.wait_status(task, "RUNNING")
        ec2 = self.emu.client("ec2")
        group = self.emu.config["security_groups"][0]
        enis = ec2.describe_network_interfaces(Filters=[{"Name": "group-id", "Values": [group]}])["NetworkInterfaces"]
        ours = [e for e in enis if e["Description"].endswith(task["attachments"][0]["id"])]
        self.assertEqual(len(ours), 1, enis)
        self.assertRegex(ours[0]["Description"], r"^arn:aws:ecs:us-east-1:\d{12}:attachment/")
        self.ecs.stop_task(cluster=self.emu.config["cluster"], task=task["taskArn"])
        self.wait_status(task, "STOPPED")
        left = ec2.describe_network_interfaces(Filters=[{"Name": "network-interface-id", "Values": [ours[0]["NetworkInterfaceId"]]}])["NetworkInterfaces"]
        self.assertEqual(left, [])

    def test_exit_code_is_reported(self) -> None:
        stopped = self.wait_status(self.run_task({"FAKE_EXIT": "3"}), "STOPPED")
        self.assertEqual(stopped["stopCode"], "EssentialContainerExited")
        self.assertEqual(stopped["containers"][0]["exitCode"], 3)

    def test_stop_task_is_user_initiated_with_the_exit_code_after_sigterm(self) -> None:
        task = self.run_task({})
        self.wait_status(task, "RUNNING")
        resp = self.ecs.stop_task(cluster=self.emu.config["cluster"], task=task["taskArn"], reason="scaling in")
        self.assertEqual(resp["task"]["desiredStatus"], "STOPPED")
        self.assertNotEqual(resp["task"]["lastStatus"], "STOPPED")  # moto alone says STOPPED at once
        stopped = self.wait_status(task, "STOPPED")
        self.assertEqual(stopped["stopCode"], "UserInitiated")
        self.assertEqual(stopped["stoppedReason"], "scaling in")
        self.assertEqual(stopped["containers"][0]["exitCode"], 143)  # 128 + SIGTERM

    def test_stop_task_exit_code_of_a_worker_that_handles_sigterm(self) -> None:
        pid_file = self.file("pids")
        task = self.run_task({"FAKE_ON_TERM": "exit:0", "FAKE_PID_OUT": pid_file})
        self.pids(pid_file)  # written once the handler is installed
        self.ecs.stop_task(cluster=self.emu.config["cluster"], task=task["taskArn"], reason="done")
        stopped = self.wait_status(task, "STOPPED")
        self.assertEqual(stopped["stopCode"], "UserInitiated")
        self.assertEqual(stopped["containers"][0]["exitCode"], 0)

    def test_stop_task_kills_a_worker_that_ignores_sigterm(self) -> None:
        pid_file = self.file("pids")
        task = self.run_task({"FAKE_ON_TERM": "ignore", "FAKE_PID_OUT": pid_file})
        self.pids(pid_file)  # written once SIGTERM is ignored
        self.ecs.stop_task(cluster=self.emu.config["cluster"], task=task["taskArn"])
        stopped = self.wait_status(task, "STOPPED")
        self.assertEqual(stopped["stopCode"], "UserInitiated")
        self.assertEqual(stopped["containers"][0]["exitCode"], 137)  # 128 + SIGKILL

    def test_stopping_a_stopped_task_changes_nothing(self) -> None:
        task = self.run_task({"FAKE_EXIT": "3"})
        before = self.wait_status(task, "STOPPED")
        self.ecs.stop_task(cluster=self.emu.config["cluster"], task=task["taskArn"], reason="late")
        after = self.describe(task)
        for key in ("lastStatus", "stopCode", "stoppedReason"):
            self.assertEqual(after[key], before[key])
        self.assertEqual(after["containers"][0]["exitCode"], 3)

    def test_spot_interruption(self) -> None:
        task = self.run_task({}, spot=True)
        self.wait_status(task, "RUNNING")
        task_id = task["taskArn"].split("/")[-1]
        status, body = self.emu.call("POST", f"/_starburst/interrupt/{task_id}")
        self.assertEqual(status, 200, body)
        stopped = self.wait_status(task, "STOPPED")
        self.assertEqual(stopped["stopCode"], "SpotInterruption")
        self.assertEqual(stopped["stoppedReason"], "Your Spot Task was interrupted.")
        self.assertEqual(stopped["containers"][0]["exitCode"], 143)

    def test_only_spot_tasks_can_be_interrupted(self) -> None:
        task = self.run_task({})
        self.wait_status(task, "RUNNING")
        task_id = task["taskArn"].split("/")[-1]
        status, _ = self.emu.call("POST", f"/_starburst/interrupt/{task_id}")
        self.assertEqual(status, 409)
        self.assertEqual(self.emu.call("POST", "/_starburst/interrupt/no-such-task")[0], 404)
        self.assertEqual(self.describe(task)["lastStatus"], "RUNNING")
        self.ecs.stop_task(cluster=self.emu.config["cluster"], task=task["taskArn"])
        self.wait_status(task, "STOPPED")

    # -- images ---------------------------------------------------------------------------

    def ecr_image(self, tag: str) -> str:
        repo = self.emu.client("ecr").describe_repositories(repositoryNames=["starburst"])["repositories"][0]
        return f"{repo['repositoryUri']}:{tag}"

    def test_missing_ecr_image_fails_to_start(self) -> None:
        image = self.ecr_image("not-pushed")
        self.ecs.register_task_definition(**task_definition("missing-image", image))
        stopped = self.wait_status(self.run_task({}, family="missing-image"), "STOPPED")
        self.assertEqual(stopped["stopCode"], "TaskFailedToStart")
        self.assertTrue(stopped["stoppedReason"].startswith("CannotPullContainerError:"), stopped["stoppedReason"])
        self.assertIn(image, stopped["stoppedReason"])
        self.assertNotIn("startedAt", stopped)
        self.assertEqual(stopped["containers"][0]["lastStatus"], "STOPPED")
        self.assertIn("CannotPullContainerError", stopped["containers"][0]["reason"])
        self.assertNotIn("exitCode", stopped["containers"][0])

    def test_pushed_ecr_image_runs(self) -> None:
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "config": {}, "layers": []})
        self.emu.client("ecr").put_image(repositoryName="starburst", imageManifest=manifest, imageTag="pushed")
        self.ecs.register_task_definition(**task_definition("pushed-image", self.ecr_image("pushed")))
        stopped = self.wait_status(self.run_task({"FAKE_EXIT": "0"}, family="pushed-image"), "STOPPED")
        self.assertEqual(stopped["stopCode"], "EssentialContainerExited")

    def test_sim_pull_fail_image_fails_to_start(self) -> None:
        self.ecs.register_task_definition(**task_definition("pull-fail", "example/sim-pull-fail:1"))
        stopped = self.wait_status(self.run_task({}, family="pull-fail"), "STOPPED")
        self.assertEqual(stopped["stopCode"], "TaskFailedToStart")

    # -- logs and metadata ----------------------------------------------------------------

    def test_output_goes_to_cloudwatch_logs_and_the_log_dir(self) -> None:
        task = self.run_task({"FAKE_LINES": "3", "FAKE_EXIT": "0"})
        self.wait_status(task, "STOPPED")
        task_id = task["taskArn"].split("/")[-1]
        events = self.emu.client("logs").get_log_events(
            logGroupName="/starburst/workers", logStreamName=f"starburst/worker/{task_id}", startFromHead=True
        )["events"]
        messages = [e["message"] for e in events]
        self.assertEqual(messages[:3], ["fake worker line 0", "fake worker line 1", "fake worker line 2"])
        self.assertIn("fake worker stderr line", messages)
        with open(os.path.join(self.emu.log_dir, f"{task_id}.log")) as f:
            self.assertIn("fake worker line 2\n", f.read())

    def test_metadata_endpoint_describes_the_task(self) -> None:
        out = self.file("meta.json")
        task = self.run_task({"FAKE_META_OUT": out})
        meta = self.read_json(out)
        self.assertEqual(meta["TaskARN"], task["taskArn"])
        self.assertEqual(meta["Cluster"], task["clusterArn"])
        self.assertEqual(meta["Family"], "starburst-worker")
        self.assertEqual(meta["LaunchType"], "FARGATE")
        self.assertTrue(meta["AvailabilityZone"].startswith(REGION))
        task_id = task["taskArn"].split("/")[-1]
        status, container = self.emu.call("GET", f"/_starburst/ecs-meta/{task_id}")
        self.assertEqual(status, 200)
        self.assertEqual(container["Labels"]["com.amazonaws.ecs.task-arn"], task["taskArn"])
        self.ecs.stop_task(cluster=self.emu.config["cluster"], task=task["taskArn"])
        self.wait_status(task, "STOPPED")

    # -- stats and faults -----------------------------------------------------------------

    def test_stats_count_requests_by_service_and_operation(self) -> None:
        s3 = self.emu.client("s3")
        bucket = self.emu.config["bucket"]
        self.emu.call("POST", "/_starburst/stats/reset")
        s3.put_object(Bucket=bucket, Key="stats/a", Body=b"12345")
        s3.put_object(Bucket=bucket, Key="stats/b", Body=b"678", IfNoneMatch="*")
        s3.list_objects_v2(Bucket=bucket, Prefix="stats/")
        s3.get_object(Bucket=bucket, Key="stats/a")["Body"].read()
        self.ecs.describe_clusters(clusters=[self.emu.config["cluster"]])
        _, stats = self.emu.call("GET", "/_starburst/stats")
        self.assertEqual(
            stats["requests"]["s3"],
            {"PUT object": 1, "PUT object conditional": 1, "GET bucket LIST": 1, "GET object": 1},
        )
        self.assertEqual(stats["requests"]["ecs"], {"DescribeClusters": 1})
        self.assertEqual(stats["total_requests"], 5)
        self.assertGreaterEqual(stats["bytes_received"]["s3"], 8)
        _, stats = self.emu.call("POST", "/_starburst/stats/reset")
        self.assertEqual(stats["total_requests"], 0)

    def test_query_protocol_requests_are_counted_by_action(self) -> None:
        self.emu.call("POST", "/_starburst/stats/reset")
        self.emu.client("ec2").describe_subnets()
        _, stats = self.emu.call("GET", "/_starburst/stats")
        self.assertEqual(stats["requests"], {"ec2": {"DescribeSubnets": 1}})

    def test_fault_injection_fails_matching_requests_then_recovers(self) -> None:
        s3 = self.emu.client("s3", retries={"total_max_attempts": 1})
        bucket = self.emu.config["bucket"]
        status, _ = self.emu.call("POST", "/_starburst/faults", {"service": "s3", "method": "PUT", "status": 503, "code": "SlowDown", "count": 2})
        self.assertEqual(status, 200)
        s3.list_objects_v2(Bucket=bucket)  # not a PUT: the rule does not match
        for _ in range(2):
            with self.assertRaises(ClientError) as e:
                s3.put_object(Bucket=bucket, Key="faults/a", Body=b"x")
            self.assertEqual(e.exception.response["Error"]["Code"], "SlowDown")
            self.assertEqual(e.exception.response["ResponseMetadata"]["HTTPStatusCode"], 503)
        s3.put_object(Bucket=bucket, Key="faults/a", Body=b"x")
        self.assertEqual(s3.get_object(Bucket=bucket, Key="faults/a")["Body"].read(), b"x")
        self.assertEqual(self.emu.call("GET", "/_starburst/faults")[1], {"faults": []})

    def test_fault_injection_on_json_services_and_clearing(self) -> None:
        ecs = self.emu.client("ecs", retries={"total_max_attempts": 1})
        self.emu.call("POST", "/_starburst/faults", {"service": "ecs", "status": 400, "code": "ThrottlingException", "count": 5})
        with self.assertRaises(ClientError) as e:
            ecs.describe_clusters(clusters=["starburst"])
        self.assertEqual(e.exception.response["Error"]["Code"], "ThrottlingException")
        self.assertEqual(self.emu.call("DELETE", "/_starburst/faults")[1], {"faults": []})
        ecs.describe_clusters(clusters=["starburst"])
        self.assertEqual(self.emu.call("POST", "/_starburst/faults", {"status": 503})[0], 400)


class EmulatorExitTest(unittest.TestCase):
    def test_exit_kills_every_worker(self) -> None:
        with tempfile.TemporaryDirectory(prefix="starburst-emulator-exit-") as tmp:
            emu = Emulator(tmp)
            ecs = emu.client("ecs")
            ecs.register_task_definition(**task_definition("exit", "starburst-sim:local"))
            pid_files = [os.path.join(tmp, f"pids{i}") for i in range(2)]
            for i, pid_file in enumerate(pid_files):
                env = {"FAKE_CHILD": "1", "FAKE_PID_OUT": pid_file}
                if i == 1:
                    env["FAKE_ON_TERM"] = "ignore"
                ecs.run_task(
                    cluster="starburst",
                    taskDefinition="exit",
                    launchType="FARGATE",
                    networkConfiguration={"awsvpcConfiguration": {"subnets": emu.config["subnets"]}},
                    overrides={"containerOverrides": [{"name": "worker", "environment": [{"name": k, "value": v} for k, v in env.items()]}]},
                )
            pids = []
            for pid_file in pid_files:
                wait_for(pid_file, lambda: os.path.exists(pid_file))
                with open(pid_file) as f:
                    pids += [int(p) for p in f.read().split()]
            self.assertTrue(all(alive(p) for p in pids))
            self.assertEqual(emu.stop(), 0)
            for pid in pids:
                wait_for(f"process {pid} to die with the emulator", lambda: not alive(pid))

    def test_exit_stops_running_builds_and_removes_their_files(self) -> None:
        with tempfile.TemporaryDirectory(prefix="starburst-emulator-exit-") as tmp:
            emu = Emulator(tmp)
            emu.client("s3").put_object(Bucket=emu.config["bucket"], Key="exit/Dockerfile", Body=b"FROM scratch\n")
            codebuild = emu.client("codebuild")
            codebuild.create_project(
                name="exit",
                source={"type": "S3", "location": f"{emu.config['bucket']}/exit/"},
                artifacts={"type": "NO_ARTIFACTS"},
                environment={"type": "LINUX_CONTAINER", "image": "aws/codebuild/standard:7.0", "computeType": "BUILD_GENERAL1_SMALL"},
                serviceRole="arn:aws:iam::123456789012:role/starburst-codebuild",
            )
            out = os.path.join(tmp, "build")
            command = f"sleep 60 & echo $! $CODEBUILD_SRC_DIR > {out}.tmp && mv {out}.tmp {out}; wait"
            codebuild.start_build(projectName="exit", buildspecOverride=f"version: 0.2\nphases:\n  build:\n    commands:\n      - {command}\n")
            wait_for(out, lambda: os.path.exists(out))
            with open(out) as f:
                pid, src = f.read().split()
            self.assertTrue(alive(int(pid)) and os.path.isdir(src))
            self.assertEqual(emu.stop(), 0)
            wait_for(f"process {pid} to die with the emulator", lambda: not alive(int(pid)))
            self.assertFalse(os.path.exists(src))


class EmulatorOptionsTest(unittest.TestCase):
    def test_every_aws_request_waits_and_the_fargate_quota_is_raised(self) -> None:
        latency = 0.3
        with tempfile.TemporaryDirectory(prefix="starburst-emulator-latency-") as tmp:
            emu = Emulator(tmp, "--latency-ms", str(latency * 1000), "--fargate-vcpus", "64")
            try:
                quotas = emu.client("service-quotas")
                for code in ("L-3032A538", "L-36FBB829"):
                    quota = quotas.get_service_quota(ServiceCode="fargate", QuotaCode=code)["Quota"]
                    self.assertEqual(quota["Value"], 64.0)
                s3 = emu.client("s3")
                bucket = emu.config["bucket"]
                for call in (
                    lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x"),
                    lambda: s3.get_object(Bucket=bucket, Key="k"),
                    lambda: emu.client("ecs").list_clusters(),
                ):
                    t0 = time.monotonic()
                    call()
                    self.assertGreaterEqual(time.monotonic() - t0, latency)
            finally:
                emu.stop()


class StrictModeTest(unittest.TestCase):
    """Each kind of request AWS rejects is rejected, as AWS would answer it."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.TemporaryDirectory(prefix="starburst-emulator-strict-")
        cls.emu = Emulator(cls.tmp.name, "--consistency-delay-ms", "1500")
        cls.ecs = cls.emu.client("ecs")
        cls.ecs.register_task_definition(**task_definition("strict-worker", "starburst-sim:local"))

    @classmethod
    def tearDownClass(cls) -> None:
        cls.emu.stop()
        cls.tmp.cleanup()

    def rejected(self, code: str, call: Callable[[], Any], says: str = "") -> str:
        with self.assertRaises(ClientError) as caught:
            call()
        error = caught.exception.response["Error"]
        self.assertEqual(error["Code"], code, error)
        self.assertIn(says, error.get("Message", ""))
        return error.get("Message", "")

    def run_task(self, **changes: Any) -> Any:
        cfg = self.emu.config
        args: dict[str, Any] = {
            "cluster": cfg["cluster"],
            "taskDefinition": "strict-worker",
            "count": 1,
            "capacityProviderStrategy": [{"capacityProvider": "FARGATE", "weight": 1}],
            "networkConfiguration": {"awsvpcConfiguration": {"subnets": cfg["subnets"], "securityGroups": cfg["security_groups"]}},
        }
        args.update(changes)
        return self.ecs.run_task(**{k: v for k, v in args.items() if v is not None})

    def test_model_rules_required_enum_length_pattern_and_range(self) -> None:
        # Clients that do not check first, as the Rust SDK does not: the emulator must.
        ecr = self.emu.client("ecr", parameter_validation=False)
        self.rejected("InvalidParameterException", lambda: ecr.create_repository(repositoryName="a"), "length greater than or equal to 2")
        self.rejected("InvalidParameterException", lambda: ecr.create_repository(repositoryName="starburst-"), "regular expression pattern")
        self.rejected("InvalidParameterException", lambda: ecr.create_repository(repositoryName="Starburst"), "regular expression pattern")
        logs = self.emu.client("logs", parameter_validation=False)
        self.rejected("InvalidParameterException", lambda: logs.create_log_group(logGroupName="bad name!"), "regular expression pattern")
        iam = self.emu.client("iam", parameter_validation=False)
        self.rejected("ValidationError", lambda: iam.create_role(RoleName="r" * 65, AssumeRolePolicyDocument="{}"), "less than or equal to 64")
        quotas = self.emu.client("service-quotas", parameter_validation=False)
        self.rejected("IllegalArgumentException", lambda: quotas.request_service_quota_increase(ServiceCode="fargate", QuotaCode="L-3032A538", DesiredValue=-1.0), "greater than or equal to 0")
        ecs = self.emu.client("ecs", parameter_validation=False)
        self.rejected("InvalidParameterException", lambda: ecs.list_tasks(desiredStatus="DONE"), "enum value set: [RUNNING, PENDING, STOPPED]")
        self.rejected("InvalidParameterException", lambda: ecr.create_repository(), "'repositoryName' failed to satisfy constraint: Member must not be null")
        ec2 = self.emu.client("ec2", parameter_validation=False)
        self.rejected("MissingParameter", lambda: ec2.create_security_group(GroupName="starburst"))

    def test_ecs_list_tasks_started_by_is_the_only_filter(self) -> None:
        cluster = self.emu.config["cluster"]
        self.ecs.list_tasks(cluster=cluster, startedBy="me")
        self.ecs.list_tasks(cluster=cluster, desiredStatus="RUNNING", family="strict-worker")
        self.rejected("InvalidParameterException", lambda: self.ecs.list_tasks(cluster=cluster, startedBy="me", desiredStatus="RUNNING"), "startedBy must be the only filter")

    def test_ecs_run_task_rules(self) -> None:
        self.rejected("InvalidParameterException", lambda: self.run_task(count=11), "between 1 and 10")
        self.rejected("InvalidParameterException", lambda: self.run_task(launchType="FARGATE"), "both a launch type and capacity provider strategy")
        self.rejected("InvalidParameterException", lambda: self.run_task(networkConfiguration=None), "Network Configuration must be provided")
        self.rejected("InvalidParameterException", lambda: self.run_task(overrides={"cpu": "256", "memory": "4096"}), "No Fargate configuration exists")
        ec2_only = dict(task_definition("strict-ec2", "starburst-sim:local"), requiresCompatibilities=["EC2"])
        self.ecs.register_task_definition(**ec2_only)
        self.rejected("InvalidParameterException", lambda: self.run_task(taskDefinition="strict-ec2"), "does not support launch_type FARGATE")
        self.ecs.create_cluster(clusterName="strict-no-providers")
        self.rejected("InvalidParameterException", lambda: self.run_task(cluster="strict-no-providers"), "not associated with the cluster")
        self.assertEqual(self.run_task()["failures"], [])

    def test_ecs_fargate_task_definition_rules(self) -> None:
        good = task_definition("strict-td", "123456789012.dkr.ecr.us-east-1.amazonaws.com/starburst:x")
        self.rejected("ClientException", lambda: self.ecs.register_task_definition(**dict(good, networkMode="bridge")), "awsvpc")
        self.rejected("ClientException", lambda: self.ecs.register_task_definition(**dict(good, cpu="512", memory="512")), "No Fargate configuration exists")
        no_role = {k: v for k, v in good.items() if k != "executionRoleArn"}
        self.rejected("ClientException", lambda: self.ecs.register_task_definition(**no_role), "support ECR images")
        not_ecr = dict(no_role, containerDefinitions=[dict(no_role["containerDefinitions"][0], image="r-base:4")])
        self.rejected("ClientException", lambda: self.ecs.register_task_definition(**not_ecr), "support log driver awslogs")
        self.ecs.register_task_definition(**good)

    def test_ecs_capacity_providers_need_the_service_linked_role(self) -> None:
        iam = self.emu.client("iam")
        role = "AWSServiceRoleForECS"
        roles = [r["RoleName"] for r in iam.list_roles(PathPrefix="/aws-service-role/ecs.amazonaws.com/")["Roles"]]
        self.assertEqual(roles, [role], "--bootstrap creates it, named as AWS names it")
        iam.delete_service_linked_role(RoleName=role)
        try:
            self.ecs.create_cluster(clusterName="strict-plain")
            self.rejected("InvalidParameterException", lambda: self.ecs.create_cluster(clusterName="strict-cp", capacityProviders=["FARGATE"]), "service linked role")
        finally:
            iam.create_service_linked_role(AWSServiceName="ecs.amazonaws.com")
        self.ecs.create_cluster(clusterName="strict-cp", capacityProviders=["FARGATE"])

    def test_s3_bucket_names_and_location_constraint(self) -> None:
        s3 = self.emu.client("s3")
        for name in ("xn--starburst", "sthree-starburst", "starburst-s3alias", "starburst--ol-s3", "Starburst", "a..b", "192.168.0.1", "ab"):
            self.rejected("InvalidBucketName", lambda: s3.create_bucket(Bucket=name))
        self.rejected("InvalidLocationConstraint", lambda: s3.create_bucket(Bucket="strict-east", CreateBucketConfiguration={"LocationConstraint": "us-east-1"}))
        west = self.emu.client("s3", region_name="eu-west-1")
        self.rejected("IllegalLocationConstraintException", lambda: west.create_bucket(Bucket="strict-west"))
        west.create_bucket(Bucket="strict-west", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})

    def test_ec2_security_group_names(self) -> None:
        ec2 = self.emu.client("ec2")
        self.rejected("InvalidParameterValue", lambda: ec2.create_security_group(GroupName="sg-starburst", Description="d"), "sg-*")

    def test_ec2_a_security_group_in_use_is_not_deleted(self) -> None:
        ec2 = self.emu.client("ec2")
        group = ec2.create_security_group(GroupName="strict-used", Description="d")["GroupId"]
        eni = ec2.create_network_interface(SubnetId=self.emu.config["subnets"][0], Groups=[group])["NetworkInterface"]["NetworkInterfaceId"]
        self.rejected("DependencyViolation", lambda: ec2.delete_security_group(GroupId=group), "dependent object")
        ec2.delete_network_interface(NetworkInterfaceId=eni)
        ec2.delete_security_group(GroupId=group)

    def test_eventual_consistency_of_new_buckets_log_groups_and_roles(self) -> None:
        s3, logs, iam = self.emu.client("s3"), self.emu.client("logs"), self.emu.client("iam")
        s3.create_bucket(Bucket="strict-young")
        self.rejected("NoSuchBucket", lambda: s3.put_bucket_tagging(Bucket="strict-young", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]}))
        logs.create_log_group(logGroupName="/strict/young")
        self.assertEqual(logs.describe_log_groups(logGroupNamePrefix="/strict/young")["logGroups"], [])
        arn = iam.create_role(RoleName="strict-young", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        td = dict(task_definition("strict-young", "starburst-sim:local"), executionRoleArn=arn)
        self.rejected("ClientException", lambda: self.ecs.register_task_definition(**td), "unable to assume the role")
        wait_for("the bucket", lambda: _succeeds(lambda: s3.put_bucket_tagging(Bucket="strict-young", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})))
        wait_for("the log group", lambda: logs.describe_log_groups(logGroupNamePrefix="/strict/young")["logGroups"])
        wait_for("the role", lambda: _succeeds(lambda: self.ecs.register_task_definition(**td)))

    def test_rejections_are_counted_and_listed(self) -> None:
        ec2 = self.emu.client("ec2")
        self.rejected("InvalidParameterValue", lambda: ec2.create_security_group(GroupName="sg-counted", Description="d"))
        with urllib.request.urlopen(f"{self.emu.url}/_starburst/rejected", timeout=WAIT) as r:
            listed = json.load(r)["rejected"]
        self.assertIn({"service": "ec2", "operation": "CreateSecurityGroup", "code": "InvalidParameterValue"}, [{k: e[k] for k in ("service", "operation", "code")} for e in listed])
        with urllib.request.urlopen(f"{self.emu.url}/_starburst/stats", timeout=WAIT) as r:
            self.assertGreaterEqual(json.load(r)["rejected_as_aws_would"]["ec2"]["CreateSecurityGroup"], 1)


FAKE_PODMAN = """#!/bin/sh
# podman for the CodeBuild tests: notes its arguments and the files of its working directory.
printf '%s | %s\\n' "$*" "$(find . -type f | sort | tr '\\n' ' ')" >> "$FAKE_PODMAN_LOG"
exit "${FAKE_PODMAN_EXIT:-0}"
"""
CODEBUILD_PHASES = [
    "SUBMITTED", "QUEUED", "PROVISIONING", "DOWNLOAD_SOURCE", "INSTALL", "PRE_BUILD",
    "BUILD", "POST_BUILD", "UPLOAD_ARTIFACTS", "FINALIZING", "COMPLETED",
]
LOG_PREFIX = r"^\[Container\] \d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{6} "


class CodeBuildTest(unittest.TestCase):
    """StartBuild runs the buildspec on the host, a fake podman standing in for docker."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.TemporaryDirectory(prefix="starburst-emulator-codebuild-")
        podman = os.path.join(cls.tmp.name, "fake-podman")
        with open(podman, "w") as f:
            f.write(FAKE_PODMAN)
        os.chmod(podman, 0o755)
        cls.emu = Emulator(cls.tmp.name, "--podman", podman, env={"EMU_CODEBUILD_HOST": "host"})
        cls.codebuild = cls.emu.client("codebuild")
        cls.s3 = cls.emu.client("s3")
        cls.bucket = cls.emu.config["bucket"]

    @classmethod
    def tearDownClass(cls) -> None:
        cls.emu.stop()
        cls.tmp.cleanup()

    def file(self, name: str) -> str:
        return os.path.join(self.tmp.name, f"{self._testMethodName}-{name}")

    def upload(self, prefix: str, files: dict[str, str]) -> str:
        for name, text in files.items():
            self.s3.put_object(Bucket=self.bucket, Key=f"{prefix}{name}", Body=text.encode())
        return f"{self.bucket}/{prefix}"

    def create_project(self, name: str, location: str, env: dict[str, str] | None = None, **extra: Any) -> None:
        self.codebuild.create_project(
            name=name,
            source={"type": "S3", "location": location},
            artifacts={"type": "NO_ARTIFACTS"},
            environment={
                "type": "LINUX_CONTAINER",
                "image": "aws/codebuild/standard:7.0",
                "computeType": "BUILD_GENERAL1_SMALL",
                "environmentVariables": [{"name": k, "value": v, "type": "PLAINTEXT"} for k, v in (env or {}).items()],
            },
            serviceRole="arn:aws:iam::123456789012:role/starburst-codebuild",
            **extra,
        )

    def start(self, project: str, env: dict[str, str] | None = None, **overrides: Any) -> dict[str, Any]:
        variables = [{"name": k, "value": v, "type": "PLAINTEXT"} for k, v in (env or {}).items()]
        return self.codebuild.start_build(projectName=project, environmentVariablesOverride=variables, **overrides)["build"]

    def wait_build(self, build: dict[str, Any]) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            found = self.codebuild.batch_get_builds(ids=[build["id"]])["builds"][0]
            return found if found["buildComplete"] else None

        return wait_for(f"build {build['id']} to complete", probe)

    def log_lines(self, build: dict[str, Any]) -> list[str]:
        logs = build["logs"]
        events = self.emu.client("logs").get_log_events(logGroupName=logs["groupName"], logStreamName=logs["streamName"], startFromHead=True)["events"]
        return [e["message"] for e in events]

    def podman_calls(self, log: str) -> list[str]:
        with open(log) as f:
            return f.read().splitlines()

    def test_a_build_from_an_s3_folder_runs_its_buildspec_with_podman(self) -> None:
        buildspec = textwrap.dedent("""\
            version: 0.2
            phases:
              pre_build:
                commands:
                  - aws ecr get-login-password --region $AWS_REGION | docker login --username AWS --password-stdin x
              build:
                commands:
                  - docker build --tag $IMAGE .
                  - echo "hello from the build"; echo "and from stderr" >&2
              post_build:
                commands:
                  - docker push $IMAGE
            """)
        location = self.upload("codebuild/folder/", {"Dockerfile": "FROM scratch\n", "context/data.txt": "data", "buildspec.yml": buildspec})
        logs_config = {"cloudWatchLogs": {"status": "ENABLED", "groupName": "/starburst/builds", "streamName": "image"}}
        self.create_project("cb-folder", location, {"IMAGE": "example/image:1"}, logsConfig=logs_config)
        podman_log = self.file("podman.log")
        build = self.start("cb-folder", {"FAKE_PODMAN_LOG": podman_log})
        self.assertEqual((build["buildStatus"], build["currentPhase"], build["buildNumber"]), ("IN_PROGRESS", "QUEUED", 1))
        self.assertEqual(build["source"], {"type": "S3", "location": location})
        done = self.wait_build(build)
        self.assertEqual((done["buildStatus"], done["currentPhase"]), ("SUCCEEDED", "COMPLETED"))
        self.assertIn("endTime", done)
        self.assertEqual([p["phaseType"] for p in done["phases"]], CODEBUILD_PHASES)
        self.assertEqual({p.get("phaseStatus") for p in done["phases"][:-1]}, {"SUCCEEDED"})
        self.assertNotIn("phaseStatus", done["phases"][-1])
        files = "./Dockerfile ./buildspec.yml ./context/data.txt "
        self.assertEqual(self.podman_calls(podman_log), [
            f"login --username AWS --password-stdin x | {files}",
            f"build --network host --tag example/image:1 . | {files}",
            f"push example/image:1 | {files}",
        ])
        build_uuid = build["id"].split(":", 1)[1]
        self.assertEqual((done["logs"]["groupName"], done["logs"]["streamName"]), ("/starburst/builds", f"image/{build_uuid}"))
        lines = self.log_lines(done)
        for message in ("Entering phase BUILD", "Running command docker build --tag $IMAGE .", "Phase complete: BUILD State: SUCCEEDED"):
            self.assertTrue(any(re.match(LOG_PREFIX + re.escape(message) + "$", line) for line in lines), (message, lines))
        self.assertIn("hello from the build", lines)
        self.assertIn("and from stderr", lines)

        zipped = io.BytesIO()
        with zipfile.ZipFile(zipped, "w") as z:
            z.writestr("buildspec.yml", "version: 0.2\nphases:\n  build:\n    commands:\n      - test \"$(cat sub/data.txt)\" = zipped\n")
            z.writestr("sub/data.txt", "zipped")
        self.s3.put_object(Bucket=self.bucket, Key="codebuild/source.zip", Body=zipped.getvalue())
        again = self.start("cb-folder", sourceLocationOverride=f"{self.bucket}/codebuild/source.zip")
        self.assertEqual(again["buildNumber"], 2)
        self.assertEqual(self.wait_build(again)["buildStatus"], "SUCCEEDED")

    def test_a_failing_command_fails_its_phase_and_post_build_still_runs(self) -> None:
        location = self.upload("codebuild/failing/", {"Dockerfile": "FROM scratch\n"})
        self.create_project("cb-failing", location)
        buildspec = textwrap.dedent("""\
            version: 0.2
            phases:
              build:
                commands:
                  - docker build --tag failing .
                  - echo never
              post_build:
                commands:
                  - echo "post_build ran, succeeding=$CODEBUILD_BUILD_SUCCEEDING"
            """)
        build = self.start("cb-failing", {"FAKE_PODMAN_LOG": self.file("podman.log"), "FAKE_PODMAN_EXIT": "1"}, buildspecOverride=buildspec)
        done = self.wait_build(build)
        self.assertEqual(done["buildStatus"], "FAILED")
        self.assertEqual([p["phaseType"] for p in done["phases"]], CODEBUILD_PHASES)
        phases = {p["phaseType"]: p for p in done["phases"]}
        self.assertEqual(phases["BUILD"]["phaseStatus"], "FAILED")
        self.assertEqual(phases["BUILD"]["contexts"], [{"statusCode": "COMMAND_EXECUTION_ERROR", "message": "Error while executing command: docker build --tag failing .. Reason: exit status 1"}])
        self.assertEqual(phases["POST_BUILD"]["phaseStatus"], "SUCCEEDED")
        self.assertEqual((done["logs"]["groupName"], done["logs"]["streamName"]), ("/aws/codebuild/cb-failing", build["id"].split(":", 1)[1]))
        lines = self.log_lines(done)
        self.assertIn("post_build ran, succeeding=0", lines)
        self.assertTrue(any(line.endswith("Command did not exit successfully docker build --tag failing . exit status 1") for line in lines), lines)
        self.assertTrue(any(line.endswith("Phase complete: BUILD State: FAILED") for line in lines), lines)
        self.assertNotIn("never", lines)

        pre_build = "version: 0.2\nphases:\n  pre_build:\n    commands:\n      - aws s3 ls\n  build:\n    commands:\n      - echo never\n"
        done = self.wait_build(self.start("cb-failing", buildspecOverride=pre_build))
        self.assertEqual(done["buildStatus"], "FAILED")
        self.assertEqual([p["phaseType"] for p in done["phases"]], [*CODEBUILD_PHASES[:6], "FINALIZING", "COMPLETED"])
        self.assertEqual(done["phases"][5]["contexts"][0]["message"], "Error while executing command: aws s3 ls. Reason: exit status 1")
        self.assertIn("the starburst emulator's aws shim only answers 'aws ecr get-login-password' (not: aws s3 ls)", self.log_lines(done))

    def test_a_source_or_buildspec_that_cannot_be_read_fails_download_source(self) -> None:
        self.create_project("cb-no-source", "no-such-bucket/src/")
        cases = [
            ({}, "NoSuchBucket"),
            ({"sourceLocationOverride": f"{self.bucket}/codebuild/nothing-here/"}, "no matching artifact paths found"),
            ({"sourceLocationOverride": f"{self.bucket}/codebuild/no-such.zip"}, "NoSuchKey"),
        ]
        for overrides, says in cases:
            done = self.wait_build(self.start("cb-no-source", **overrides))
            self.assertEqual(done["buildStatus"], "FAILED")
            phase = done["phases"][3]
            self.assertEqual((phase["phaseType"], phase["phaseStatus"], phase["contexts"][0]["statusCode"]), ("DOWNLOAD_SOURCE", "FAILED", "CLIENT_ERROR"))
            self.assertIn(says, phase["contexts"][0]["message"])
            self.assertEqual([p["phaseType"] for p in done["phases"][4:]], ["FINALIZING", "COMPLETED"])
        location = self.upload("codebuild/bad-yaml/", {"Dockerfile": "FROM scratch\n"})
        for buildspec in ("version: 0.2\nphases: [\n", "version: 0.3\n", "missing.yml"):
            done = self.wait_build(self.start("cb-no-source", sourceLocationOverride=location, buildspecOverride=buildspec))
            self.assertEqual(done["phases"][3]["contexts"][0]["statusCode"], "YAML_FILE_ERROR", buildspec)

    def test_stop_build_ends_the_running_command(self) -> None:
        location = self.upload("codebuild/stop/", {"Dockerfile": "FROM scratch\n"})
        self.create_project("cb-stop", location)
        pid_file = self.file("pid")
        buildspec = f"version: 0.2\nphases:\n  build:\n    commands:\n      - sleep 60 & echo $! > {pid_file}.tmp && mv {pid_file}.tmp {pid_file}; wait\n"
        build = self.start("cb-stop", buildspecOverride=buildspec)
        wait_for(pid_file, lambda: os.path.exists(pid_file))
        with open(pid_file) as f:
            pid = int(f.read())
        self.assertTrue(alive(pid))
        self.assertEqual(self.codebuild.stop_build(id=build["id"])["build"]["buildStatus"], "STOPPED")
        done = self.wait_build(build)
        self.assertEqual(done["buildStatus"], "STOPPED")
        phases = [(p["phaseType"], p.get("phaseStatus")) for p in done["phases"]]
        self.assertEqual(phases[-3:], [("BUILD", "STOPPED"), ("FINALIZING", "SUCCEEDED"), ("COMPLETED", None)])
        wait_for(f"process {pid} to die with its build", lambda: not alive(pid))
        self.assertEqual(self.codebuild.stop_build(id=build["id"])["build"]["phases"], done["phases"])

    def test_environment_variables_and_overrides(self) -> None:
        out = self.file("env")
        buildspec = textwrap.dedent(f"""\
            version: 0.2
            env:
              variables:
                ONLY_BUILDSPEC: b
                BUILDSPEC_AND_PROJECT: b
                EVERYWHERE: b
            phases:
              build:
                commands:
                  - env -0 > {out}
            """)
        location = self.upload("codebuild/env/", {"buildspec.yml": buildspec})
        self.create_project("cb-env", location, {"BUILDSPEC_AND_PROJECT": "p", "EVERYWHERE": "p", "ONLY_PROJECT": "p"})
        build = self.start("cb-env", {"EVERYWHERE": "o"}, imageOverride="example/builder:2", timeoutInMinutesOverride=5)
        self.assertEqual((build["environment"]["image"], build["timeoutInMinutes"]), ("example/builder:2", 5))
        self.assertEqual(self.wait_build(build)["buildStatus"], "SUCCEEDED")
        with open(out) as f:
            env = dict(kv.split("=", 1) for kv in f.read().split("\0") if kv)
        self.assertEqual(
            {k: env.get(k) for k in ("ONLY_BUILDSPEC", "BUILDSPEC_AND_PROJECT", "EVERYWHERE", "ONLY_PROJECT")},
            {"ONLY_BUILDSPEC": "b", "BUILDSPEC_AND_PROJECT": "p", "EVERYWHERE": "o", "ONLY_PROJECT": "p"},
        )
        self.assertEqual(env["CODEBUILD_BUILD_ID"], build["id"])
        self.assertEqual(env["CODEBUILD_BUILD_ARN"], build["arn"])
        self.assertEqual(env["CODEBUILD_BUILD_NUMBER"], "1")
        self.assertEqual(env["CODEBUILD_BUILD_IMAGE"], "example/builder:2")
        self.assertEqual(env["CODEBUILD_SRC_DIR"], env["PWD"])
        self.assertEqual(env["AWS_ENDPOINT_URL"], self.emu.url)
        self.assertEqual((env["AWS_REGION"], env["AWS_DEFAULT_REGION"]), (REGION, REGION))
        self.assertEqual(env["EMU_CODEBUILD_HOST"], "host")  # the emulator's own environment passes through
        self.assertTrue(os.path.isfile(os.path.join(env["PATH"].split(os.pathsep)[0], "docker")))

    def test_unknown_builds_and_projects(self) -> None:
        location = self.upload("codebuild/known/", {"buildspec.yml": "version: 0.2\nphases:\n  build:\n    commands:\n      - echo hi\n"})
        self.create_project("cb-known", location)
        build = self.wait_build(self.start("cb-known"))
        found = self.codebuild.batch_get_builds(ids=[build["id"], "cb-known:no-such-build"])
        self.assertEqual([b["id"] for b in found["builds"]], [build["id"]])
        self.assertEqual(found["buildsNotFound"], ["cb-known:no-such-build"])
        for call in (lambda: self.codebuild.stop_build(id="cb-known:no-such-build"), lambda: self.codebuild.start_build(projectName="cb-no-such-project")):
            with self.assertRaises(ClientError) as e:
                call()
            self.assertEqual(e.exception.response["Error"]["Code"], "ResourceNotFoundException")
        unchecked = self.emu.client("codebuild", parameter_validation=False)
        with self.assertRaises(ClientError) as e:
            unchecked.start_build(projectName="")
        self.assertEqual(e.exception.response["Error"]["Code"], "InvalidInputException")  # strict mode


def _succeeds(call: Callable[[], Any]) -> bool:
    try:
        call()
        return True
    except ClientError:
        return False


def task_definition(family: str, image: str) -> dict[str, Any]:
    """What an ECS Fargate client registers: awsvpc, task-level cpu/memory, awslogs."""
    return {
        "family": family,
        "requiresCompatibilities": ["FARGATE"],
        "networkMode": "awsvpc",
        "cpu": "1024",
        "memory": "2048",
        "runtimePlatform": {"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"},
        "executionRoleArn": f"arn:aws:iam::123456789012:role/{family}-execution",
        "containerDefinitions": [
            {
                "name": "worker",
                "image": image,
                "essential": True,
                "environment": [
                    {"name": "FROM_DEFINITION", "value": "d"},
                    {"name": "DEFINITION_ONLY", "value": "d"},
                ],
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": "/starburst/workers",
                        "awslogs-region": REGION,
                        "awslogs-stream-prefix": "starburst",
                    },
                },
            }
        ],
    }


if __name__ == "__main__":
    unittest.main()
