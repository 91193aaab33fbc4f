"""moto_server with what moto 5.2.5 lacks for starburst's quota port, added in process.

moto's Service Quotas knows only the `vpc` service and only GetServiceQuota and
ListAWSDefaultServiceQuotas; its ECS omits a task's task-level `cpu` in DescribeTasks, and moves a
task on from RUNNING each time it is described. This script adds, following the AWS API
reference:

- the Fargate vCPU quotas (L-3032A538 On-Demand, L-36FBB829 Spot; default 6, AWS's default for
  new accounts), for GetServiceQuota and GetAWSDefaultServiceQuota;
- GetAWSDefaultServiceQuota, RequestServiceQuotaIncrease and GetRequestedServiceQuotaChange,
  with requests kept per account and region, created PENDING; unknown quotas and request ids
  are NoSuchResourceException, a second open request for a quota
  ResourceAlreadyExistsException and a value not above the quota's IllegalArgumentException,
  as in AWS;
- a task's `cpu` and `memory` from its task definition (AWS always reports them for Fargate);
- tasks that stay RUNNING until stopped.

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
