"""Fan-out inside a job: child Ray tasks on the job's queues, reported as the job's children.

A process gets this as `pc.tasks`::

    refs = [pc.tasks.submit(make_lod, scene, ratio, info=f"LOD {i}") for i, ratio in enumerate(ratios)]
    lods = pc.tasks.gather(refs)          # results in submission order

    views = pc.tasks.run(render_views, scene, queue="gpu", info="Rendered 4 views")

    kept = pc.tasks.map(simplify_batch, batches, queue="cpu", keep_first=True)  # the rest: children

Each child runs with its queue's Ray resources (with the same CPU fallback as
jobs), appears in the job's `children`, and when it finishes becomes a step
whose duration is the child's own run time. A job that is cancelled or times
out takes its children with it (the JobStore cancels recursively).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import ray


def _timed(fn: Callable, *args, **kwargs) -> tuple[Any, float, str]:
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started, ray.get_runtime_context().get_node_id()


_timed_task = ray.remote(_timed)


class SubTasks:
    def __init__(
        self,
        queue_options: dict[str, dict],
        default_queue: str,
        report: Callable[[str, dict], None],
    ):
        self.queue_options = queue_options
        self.default_queue = default_queue
        self._report = report
        self._infos: dict[ray.ObjectRef, str] = {}

    def submit(
        self, fn: Callable, *args, queue: str | None = None, info: str = "", **kwargs
    ) -> ray.ObjectRef:
        """Start `fn(*args, **kwargs)` as a child task on `queue` (default: the job's)."""
        queue = queue or self.default_queue
        if queue not in self.queue_options:
            raise ValueError(f"unknown queue {queue!r}; known: {', '.join(self.queue_options)}")
        name = info or getattr(fn, "__name__", "task")
        ref = _timed_task.options(**self.queue_options[queue], name=name[:100]).remote(
            fn, *args, **kwargs
        )
        self._infos[ref] = name
        self._report("child", {"id": ref.task_id().hex(), "info": f"{name} [{queue}]"})
        return ref

    def gather(self, refs: list[ray.ObjectRef]) -> list[Any]:
        """Wait for every child; record a step as each finishes; results in the order given."""
        results: dict[ray.ObjectRef, Any] = {}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                value, seconds, node = ray.get(done[0])
            except ray.exceptions.RayTaskError as exc:
                # Raise the child's own exception, so the job's error reads like the process's.
                raise (exc.cause or exc) from None
            results[done[0]] = value
            info = self._infos.pop(done[0], "sub-task")
            self._report(
                "child_done", {"id": done[0].task_id().hex(), "node": node, "seconds": seconds}
            )
            self._report("step", {"info": info, "duration": seconds, "progress": None})
        return [results[ref] for ref in refs]

    def map(
        self,
        fn: Callable,
        items: list,
        queue: str | None = None,
        info: str = "",
        keep_first: bool = False,
    ) -> list[Any]:
        """`fn(item)` for each item as parallel child tasks; results in the order given.

        ``keep_first``: the first item runs here, in the job's task, while the children
        run: the job's CPU works instead of waiting, one item less travels, and the
        children need no worker beyond those the free CPUs keep (on a node whose CPUs are
        all taken, a child that lends the job's CPU starts a new worker: seconds)."""
        name = info or getattr(fn, "__name__", "task")
        sent = items[1:] if keep_first else items
        refs = [
            self.submit(fn, item, queue=queue, info=f"{name} {index}/{len(items)}")
            for index, item in enumerate(sent, len(items) - len(sent) + 1)
        ]
        first = [fn(items[0])] if keep_first and items else []
        return first + self.gather(refs)

    def free_cpus(self) -> int:
        """CPUs free in the cluster now, for child tasks (the job's own not counted)."""
        return int(ray.available_resources().get("CPU", 0))

    def run(self, fn: Callable, *args, queue: str | None = None, info: str = "", **kwargs) -> Any:
        """Run one child task and wait for it."""
        return self.gather([self.submit(fn, *args, queue=queue, info=info, **kwargs)])[0]
