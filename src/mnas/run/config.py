"""Where trials run: the ``executor:`` section of an experiment config."""

from __future__ import annotations

from typing import Optional

from pydantic import Field

from mnas.schema import Schema


class ExecutorConfig(Schema):
    kind: str = Field("local", description="a registered executor: local (in-process) or ray")
    address: Optional[str] = Field(None, description="ray: the cluster to join (HOST:PORT or auto); "
                                   "none starts a private local instance")
    workers: int = Field(1, ge=1, description="trials in flight at once (local: > 1 trains them in that many "
                         "processes of this machine, sharing its GPU; ray: tasks on the cluster)")
    cpus_per_trial: float = Field(1, gt=0)
    gpus_per_trial: float = Field(0, ge=0)
    device_resource: Optional[str] = Field(None, description="ray: custom resource of the nodes that time "
                                           "models (docs/ray.md)")
    max_retries: int = Field(2, ge=0, description="ray: re-runs of a task whose node or worker died")
