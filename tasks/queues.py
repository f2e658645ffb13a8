"""Queues as Ray resources, in one place: where each queue's work may run, and what happens
when a cluster has no node for it.

`config.queue` names a queue; `Settings.queue_resources` maps it to Ray task
options (`cpu` → CPUs, `gpu` → a fraction of a GPU, `gpuhigh` → a custom
resource that large-GPU nodes advertise). A queue whose resources no node in
the cluster has either falls back to CPU workers (and the job says so) or, when
the operator forbids that, fails the job with the reason instead of leaving it
waiting forever. A job re-run after a crash (or after its time limit, when asked)
moves to `Settings.retry_queue` (`gpuhigh`) when that queue is configured and has
nodes. The queue map is the only list of queues: `config.queue` is checked against it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QueueChoice:
    options: dict
    """Ray task options (num_cpus, num_gpus, resources) to use for this queue now."""
    note: str | None = None
    """Set when the queue's own nodes are missing: what happens instead."""
    runnable: bool = True
    """False when the queue has no nodes and CPU fallback is forbidden."""


def choose_queues(
    queue_resources: dict[str, dict],
    cluster: dict[str, float],
    allow_cpu_fallback: bool,
    scalable: dict[str, float] | None = None,
) -> dict[str, QueueChoice]:
    """How each queue runs on a cluster whose total resources are `cluster`.

    `scalable` names resources the autoscaler can add (a GPU node type with
    min_workers 0): queues needing them wait for that node instead of falling back.
    """
    cluster = dict(cluster)
    for name, amount in (scalable or {}).items():
        cluster[name] = max(cluster.get(name, 0), amount)
    cpu = dict(queue_resources["cpu"])
    choices = {}
    for queue, wanted in queue_resources.items():
        options = dict(wanted)
        missing = (options.get("num_gpus", 0) > 0 and cluster.get("GPU", 0) == 0) or any(
            cluster.get(name, 0) == 0 for name in options.get("resources") or {}
        )
        if not missing:
            choices[queue] = QueueChoice(options)
        elif allow_cpu_fallback:
            note = f"Queue '{queue}' has no matching nodes in this cluster: running on CPU workers"
            choices[queue] = QueueChoice(cpu, note)
        else:
            note = f"queue '{queue}' has no matching nodes in this cluster and CPU fallback is disabled (PIXYZ_ALLOW_CPU_FALLBACK=false)"
            choices[queue] = QueueChoice(options, note, runnable=False)
    return choices


def escalate(queue: str, choices: dict[str, QueueChoice], retry_queue: str) -> str:
    """The queue for a re-run after a crash: `retry_queue` where it is configured and has
    nodes (`choices` comes from the operator's map), else the same queue."""
    target = choices.get(retry_queue)
    if retry_queue and target is not None and target.note is None:
        return retry_queue
    return queue
