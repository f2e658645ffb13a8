"""RayCluster: the JobStore's every call into Ray, behind one small adapter.

The Scheduler, the Supervisor and Deliveries are plain classes that receive
this adapter (or one of its methods) instead of calling Ray themselves, so each
can be tested with a fake in its place and no cluster running.
"""

from __future__ import annotations

import asyncio

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from tasks.archive_builder import build_archive
from tasks.run_spec import RunSpec
from tasks.runner import run_job
from tasks.sandbox.scratch import sweep_after
from tasks.storage import Storage

run_job_task = ray.remote(run_job)


class RayCluster:
    """Runner tasks, their cancellation, scratch sweeps and archive builds as Ray does them."""

    def resources(self) -> dict[str, float]:
        """The cluster's total resources (which queues have nodes)."""
        return ray.cluster_resources()

    def store(self):
        """The handle of the actor this runs in (the JobStore), for the runner's reports."""
        return ray.get_runtime_context().current_actor

    def launch(self, spec: RunSpec, options: dict) -> ray.ObjectRef:
        """Start the job's runner task with its queue's Ray options; never retried by Ray."""
        return run_job_task.options(max_retries=0, name=f"job:{spec.job_id}", **options).remote(
            spec
        )

    def outcome(self, ref: ray.ObjectRef) -> asyncio.Future:
        """The runner's return value (or its error), to await."""
        return asyncio.wrap_future(ref.future())

    def cancel(self, ref: ray.ObjectRef) -> None:
        """Kill the runner and its child tasks."""
        ray.cancel(ref, force=True, recursive=True)

    def sweep_scratch(self, node_id: str, pid: int, root: str | None) -> None:
        """Remove, on its node, the scratch folder of a runner that was killed."""
        sweep_after.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=True)
        ).remote(root, pid)

    async def build_archive(
        self, storage: Storage, job_id: str, outputs: list[str], scratch_dir: str | None
    ) -> int:
        """Zip the job's outputs in a task of their own; returns the archive's size."""
        return await build_archive.remote(storage, job_id, outputs, scratch_dir)
