"""The Supervisor with the Scheduler, without Ray: slots, time limits, crash retries, cancel.

The Ray boundary is `FakeCluster`: each launched runner is an asyncio future the
test ends by hand (a result, or the error Ray would raise), and kills and
scratch sweeps are written down. Everything else is real: the records are
`JobCheckpoints` on a folder, the queues come from `tasks/queues.py`.
"""

import asyncio
import dataclasses
import pickle
import uuid

from ray import exceptions as ray_errors

from tasks import records
from tasks.checkpoints import JobCheckpoints
from tasks.deliveries import Deliveries
from tasks.job_metrics import JobMetrics
from tasks.metrics import ServiceMetrics
from tasks.processes import discover
from tasks.run_spec import RunSpec
from tasks.sandbox.scripts import ScriptLimits
from tasks.scheduling import Scheduler
from tasks.settings import Settings
from tasks.storage import Storage
from tasks.supervision import Supervisor

CPU_ONLY = {"CPU": 8.0}
WITH_GPUHIGH = {"CPU": 8.0, "GPU": 2.0, "gpuhigh": 1.0}
SUCCESS = {"status": records.SUCCESS, "result": {"ok": True}, "outputs": ["out.glb"]}


class FakeCluster:
    """What `tasks.ray_cluster.RayCluster` does, as plain records and futures."""

    def __init__(self, resources: dict):
        self.cluster = resources
        self.launched: list[tuple[RunSpec, dict]] = []
        self.runs: list[asyncio.Future] = []
        self.cancelled: list[int] = []
        self.swept: list[tuple[str, int, str | None]] = []

    def resources(self) -> dict:
        return self.cluster

    def store(self) -> str:
        return "the store's handle"

    def launch(self, spec: RunSpec, options: dict) -> int:
        self.launched.append((spec, options))
        self.runs.append(asyncio.get_running_loop().create_future())
        return len(self.runs) - 1

    def outcome(self, handle: int) -> asyncio.Future:
        return self.runs[handle]

    def cancel(self, handle: int) -> None:
        self.cancelled.append(handle)

    def sweep_scratch(self, node_id: str, pid: int, root: str | None) -> None:
        self.swept.append((node_id, pid, root))

    async def build_archive(self, storage, job_id, outputs, scratch_dir) -> int:
        return 0


class Store:
    """The JobStore's classes wired as the actor wires them, on `FakeCluster`."""

    def __init__(self, tmp_path, resources=CPU_ONLY, **overrides):
        self.settings = Settings(storage=str(tmp_path / "storage"), allow_scripts=True, **overrides)
        self.storage = Storage(self.settings.storage)
        self.checkpoints = JobCheckpoints(self.storage)
        self.cluster = FakeCluster(resources)
        self.metrics = JobMetrics(ServiceMetrics())
        self.scheduler = Scheduler(self.settings, self.checkpoints.jobs, self.cluster.resources)
        self.supervisor = Supervisor(
            settings=self.settings,
            storage=self.storage,
            processes=discover(allow_scripts=True),
            checkpoints=self.checkpoints,
            scheduler=self.scheduler,
            metrics=self.metrics,
            deliveries=Deliveries(
                self.settings, self.storage, self.checkpoints, self.cluster.build_archive
            ),
            launcher=self.cluster,
        )

    async def submit(self, process="api_test", queue="cpu", time_limit=60.0, **config) -> str:
        """What `JobStore.create` does with a new job."""
        job_id = str(uuid.uuid4())
        record = records.new_record(
            job_id,
            process=process,
            name="part",
            params={"extension": "glb"},
            config=config,
            queue=queue,
            time_limit=time_limit,
            inputs=["part.step"],
            owner="key-a",
        )
        self.scheduler.admit(record)
        self.checkpoints.add(record)
        await self.checkpoints.persist(job_id)
        await self.checkpoints.write_index()
        self.scheduler.accepted("key-a")
        self.metrics.submitted(record)
        await self.supervisor.launch(job_id)
        return job_id

    async def runner_started(self, run: int, pid: int = 4242) -> None:
        """The runner of launch number `run` reports RECEIVED, as `run_job` does first."""
        spec = self.cluster.launched[run][0]
        payload = {"status": records.RECEIVED, "node_id": f"node-{run}", "pid": pid}
        assert await self.supervisor.reports.report(spec.job_id, spec.attempt, 0, "status", payload)

    def record(self, job_id: str) -> dict:
        return self.checkpoints.jobs[job_id]


async def until(condition, what: str) -> None:
    """Let the event loop run until `condition()` holds (a hang fails the test, not a clock)."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


def test_a_cap_of_one_keeps_the_second_job_waiting_until_the_first_finishes(tmp_path):
    store = Store(tmp_path, max_concurrent_jobs={"cpu": 1})

    async def scenario():
        first = await store.submit()
        second = await store.submit()
        assert [spec.job_id for spec, _ in store.cluster.launched] == [first]
        assert store.record(second)["status"] == records.PENDING
        assert store.record(second)["attempt"] == 0
        store.cluster.runs[0].set_result(SUCCESS)
        await until(lambda: len(store.cluster.launched) == 2, "the second job starts")
        return first, second

    first, second = asyncio.run(scenario())
    assert store.cluster.launched[1][0].job_id == second
    assert store.record(first)["status"] == records.SUCCESS
    assert store.record(first)["outputs"] == ["out.glb"] and store.record(first)["progress"] == 100
    assert store.scheduler.running("cpu") == [second] and store.scheduler.unfinished("key-a") == 1


def test_a_job_over_its_time_limit_is_retried_once_on_the_retry_queue_when_it_asks(tmp_path):
    store = Store(tmp_path, timeout_retry_time_limit=0.1)

    async def scenario():
        job_id = await store.submit(time_limit=0.05, retry_on_timeout=True)
        await store.runner_started(0, pid=111)
        await until(lambda: len(store.cluster.launched) == 2, "the retry is launched")
        assert store.record(job_id)["status"] == records.RETRY
        await store.runner_started(1, pid=222)
        await until(lambda: store.record(job_id)["status"] in records.TERMINAL, "the job ends")
        await asyncio.sleep(0.2)  # time for a third launch, which must not come
        return job_id

    job_id = asyncio.run(scenario())
    record = store.record(job_id)
    assert record["status"] == records.FAILURE
    assert record["error"] == "time limit of 0.1 s exceeded (config.time_limit)"
    assert record["retry"] == 1 and record["queue"] == "gpuhigh" and record["timeout_retried"]
    assert len(store.cluster.launched) == 2 and store.cluster.cancelled == [0, 1]
    assert [(node, pid) for node, pid, _ in store.cluster.swept] == [
        ("node-0", 111),
        ("node-1", 222),
    ]
    retry_spec, retry_options = store.cluster.launched[1]
    assert (retry_spec.attempt, retry_spec.info["queue"], retry_spec.info["time_limit"]) == (
        2,
        "gpuhigh",
        0.1,
    )
    assert retry_options == {"num_cpus": 1}  # no gpuhigh node here: CPU workers, and it says so
    infos = [step["info"] for step in record["steps"]]
    assert (
        "The time limit of 0.05 s exceeded (config.time_limit); retrying once on queue 'gpuhigh' with 0.1 s"
        in infos
    )
    assert "Queue 'gpuhigh' has no matching nodes in this cluster: running on CPU workers" in infos


def test_a_job_over_its_time_limit_fails_when_nobody_asked_for_a_retry(tmp_path):
    store = Store(tmp_path)

    async def scenario():
        job_id = await store.submit(time_limit=0.05)
        await store.runner_started(0)
        await until(lambda: store.record(job_id)["status"] in records.TERMINAL, "the job ends")
        return job_id

    record = store.record(asyncio.run(scenario()))
    assert record["status"] == records.FAILURE and record["retry"] == 0
    assert record["error"] == "time limit of 0.05 s exceeded (config.time_limit)"
    assert len(store.cluster.launched) == 1 and store.cluster.cancelled == [0]


def test_a_crashed_worker_is_retried_on_the_retry_queue_until_no_retries_are_left(tmp_path):
    store = Store(tmp_path, resources=WITH_GPUHIGH, max_retries=1)

    async def scenario():
        job_id = await store.submit()
        await store.runner_started(0, pid=111)
        store.cluster.runs[0].set_exception(ray_errors.WorkerCrashedError())
        await until(lambda: len(store.cluster.launched) == 2, "the retry is launched")
        store.cluster.runs[1].set_exception(ray_errors.NodeDiedError("node-1 is gone"))
        await until(lambda: store.record(job_id)["status"] in records.TERMINAL, "the job ends")
        return job_id

    record = store.record(asyncio.run(scenario()))
    assert record["retry"] == 1 and record["queue"] == "gpuhigh"
    assert store.cluster.launched[1][1] == {"num_cpus": 1, "resources": {"gpuhigh": 0.25}}
    assert store.cluster.launched[1][0].attempt == 2
    assert store.cluster.swept[0][:2] == ("node-0", 111)  # the dead runner's scratch folder
    assert (
        "The worker running this job died (WorkerCrashedError: The worker died unexpectedly"
        " while executing this task); retrying on queue 'gpuhigh'"
    ) in [step["info"] for step in record["steps"]]
    assert record["status"] == records.FAILURE
    assert record["error"] == (
        "the worker running this job died and no retries are left: NodeDiedError: node-1 is gone"
    )


def test_without_retry_queue_nodes_a_crashed_job_runs_again_on_its_own_queue(tmp_path):
    store = Store(tmp_path, resources=CPU_ONLY)

    async def scenario():
        job_id = await store.submit()
        store.cluster.runs[0].set_exception(ray_errors.WorkerCrashedError())
        await until(lambda: len(store.cluster.launched) == 2, "the retry is launched")
        store.cluster.runs[1].set_result(SUCCESS)
        await until(lambda: store.record(job_id)["status"] in records.TERMINAL, "the job ends")
        return job_id

    record = store.record(asyncio.run(scenario()))
    assert record["status"] == records.SUCCESS and record["retry"] == 1 and record["queue"] == "cpu"
    assert record["steps"][-1]["info"].endswith("; retrying")


def test_a_runner_that_fails_ends_the_job_with_its_reason(tmp_path):
    store = Store(tmp_path)

    async def scenario():
        job_id = await store.submit()
        cause = ValueError("no faces")
        store.cluster.runs[0].set_exception(ray_errors.RayTaskError("run_job", "Traceback…", cause))
        await until(lambda: store.record(job_id)["status"] in records.TERMINAL, "the job ends")
        return job_id

    record = store.record(asyncio.run(scenario()))
    assert record["status"] == records.FAILURE and record["retry"] == 0
    assert record["error"].startswith("the job's runner failed: ")
    assert len(store.cluster.launched) == 1


def test_cancel_kills_the_runner_sweeps_its_scratch_and_frees_its_slot(tmp_path):
    store = Store(tmp_path, max_concurrent_jobs={"cpu": 1})

    async def scenario():
        running = await store.submit()
        waiting = await store.submit()
        await store.runner_started(0, pid=111)
        await store.supervisor.cancel(running)
        await until(lambda: len(store.cluster.launched) == 2, "the waiting job starts")
        store.cluster.runs[0].set_result(SUCCESS)  # a late outcome of the killed runner
        await asyncio.sleep(0.05)
        return running, waiting

    running, waiting = asyncio.run(scenario())
    assert store.record(running)["status"] == records.REVOKED
    assert store.record(running)["error"] == "job cancelled at the client's request"
    assert store.cluster.cancelled == [0] and store.cluster.swept[0][:2] == ("node-0", 111)
    assert store.cluster.launched[1][0].job_id == waiting
    assert store.supervisor.running == 1


def test_each_attempt_gets_a_typed_spec_and_a_script_its_own_uid(tmp_path):
    store = Store(tmp_path)

    async def scenario():
        plain = await store.submit(process="api_test", entrypoint="other")
        scripts = [await store.submit(process="custom") for _ in range(2)]
        return plain, scripts

    plain, scripts = asyncio.run(scenario())
    spec = store.cluster.launched[0][0]
    assert (spec.job_id, spec.attempt, spec.process.name, spec.entrypoint) == (
        plain,
        1,
        "api_test",
        "other",
    )
    assert spec.params == {"extension": "glb"} and spec.inputs == ["part.step"]
    assert spec.info == {
        "uuid": plain,
        "name": "part",
        "process": "api_test",
        "queue": "cpu",
        "time_limit": 60.0,
        "attempt": 1,
        "blender_executable": store.settings.blender_executable,
        "basisu_executable": store.settings.basisu,
    }
    assert spec.store == "the store's handle" and spec.script_uid is None
    assert set(spec.queue_options) == {"cpu", "gpu", "gpuhigh"}  # CPU fallback: all runnable
    assert isinstance(spec.script_limits, ScriptLimits)

    uids = [store.cluster.launched[i][0].script_uid for i in (1, 2)]
    assert None not in uids and len(set(uids)) == 2  # two running scripts never share a uid

    view = store.cluster.launched[1][0].as_dict()  # what the script sandbox reads
    assert view["job_id"] == scripts[0] and view["script_uid"] == uids[0]
    assert view["script_limits"] is store.cluster.launched[1][0].script_limits
    copy = pickle.loads(pickle.dumps(spec))  # it crosses the Ray boundary
    assert copy.storage.root_url == spec.storage.root_url
    assert dataclasses.replace(copy, storage=spec.storage) == spec
