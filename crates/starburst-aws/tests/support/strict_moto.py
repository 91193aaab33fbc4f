"""The moto server the adapter tests run against: strict, as AWS is.

- Strict mode (xtask/emulator/strict.py): every request is validated against its service's
  botocore model and AWS's documented cross-field rules; what AWS would reject is rejected
  with AWS's error, so an adapter test fails where a real account would;
- Service Quotas: the Fargate vCPU quotas and the increase-request operations, from
  xtask/emulator/moto_fargate_quotas.py (shared with the emulator; see its docstring);
- with `--codebuild-podman PODMAN`: CodeBuild builds run on this machine, `docker` being
  PODMAN (xtask/emulator/codebuild_sim.py, the emulator's CodeBuild simulator);
- with `--manual-tasks`: a task's `cpu` and `memory` from its task definition (moto omits the
  task-level `cpu` in DescribeTasks; AWS always reports them for Fargate), and tasks that stay
  RUNNING until stopped (moto moves a task on each time it is described).

Usage: strict_moto.py [--manual-tasks] [--codebuild-podman PODMAN] [--consistency-delay-ms N]
                      -H 127.0.0.1 [-p PORT]

With port 0 (the default) the kernel picks a free port, and the server prints
`listening on <port>` once it is bound: a port picked by the test and released before the server
binds it could be taken by a server of a test running beside it.
"""

import argparse
import os
import sys

sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..", "xtask", "emulator")
)

from moto.ecs.models import Task  # noqa: E402
from moto.moto_api import state_manager  # noqa: E402
from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

import strict  # noqa: E402
from codebuild_sim import CodeBuildSimulator  # noqa: E402
from starburst_emulator import StarburstMiddleware  # noqa: E402  (also patches Service Quotas)


def manual_tasks() -> None:
    init = Task.__init__

    def with_cpu(self, cluster, task_definition, *args, **kwargs):
        init(self, cluster, task_definition, *args, **kwargs)
        self.cpu = task_definition.cpu
        self.memory = task_definition.memory

    Task.__init__ = with_cpu
    state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 10**9})


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("-H", "--host", default="127.0.0.1")
    p.add_argument("-p", "--port", type=int, default=0)
    p.add_argument("--manual-tasks", action="store_true")
    p.add_argument("--consistency-delay-ms", type=float, default=0.0)
    p.add_argument("--codebuild-podman")
    args = p.parse_args(argv)
    if args.manual_tasks:
        manual_tasks()
    codebuild = None
    if args.codebuild_podman:
        codebuild = CodeBuildSimulator(args.codebuild_podman)
        codebuild.install()
    app = StarburstMiddleware(
        DomainDispatcherApplication(create_backend_app), None, 0.0, strict.Strict(args.consistency_delay_ms / 1000.0)
    )
    server = make_server(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)
    server.daemon_threads = True
    if codebuild:
        codebuild.url = f"http://{args.host}:{server.server_port}"
    print(f"listening on {server.server_port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
