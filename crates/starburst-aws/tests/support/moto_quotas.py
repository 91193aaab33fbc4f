"""moto_server with what moto 5.2.5 lacks for starburst's quota port, added in process.

- Service Quotas: the Fargate vCPU quotas and the increase-request operations, from
  xtask/emulator/moto_fargate_quotas.py (shared with the emulator; see its docstring);
- ECS: a task's `cpu` and `memory` from its task definition (moto omits the task-level `cpu`
  in DescribeTasks; AWS always reports them for Fargate), and tasks that stay RUNNING until
  stopped (moto moves a task on each time it is described).

Then it runs moto_server with the given arguments (`-H 127.0.0.1 -p PORT`).
"""

import os
import sys

from moto.ecs.models import Task
from moto.moto_api import state_manager
from moto.server import main

# The Service Quotas part is shared with the emulator (xtask/emulator), patched on import.
sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..", "xtask", "emulator")
)
import moto_fargate_quotas  # noqa: E402,F401

_task_init = Task.__init__


def _task_with_cpu(self, cluster, task_definition, *args, **kwargs):
    _task_init(self, cluster, task_definition, *args, **kwargs)
    self.cpu = task_definition.cpu
    self.memory = task_definition.memory


Task.__init__ = _task_with_cpu

state_manager.set_transition(
    model_name="ecs::task", transition={"progression": "manual", "times": 10**9}
)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
