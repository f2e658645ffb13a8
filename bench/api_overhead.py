"""API overhead benchmark: what the service costs per job, per listing and per upload,
alone or side by side with the Celery anchor (Unity's pixyz-scheduler, bench/anchor/).

    .venv/bin/python bench/api_overhead.py                    # starts its own service (local Ray)
    .venv/bin/python bench/api_overhead.py --target anchor    # bench/anchor/start.sh … stop.sh
    .venv/bin/python bench/api_overhead.py --alternate 3      # anchor, ours, anchor, ours, …
    .venv/bin/python bench/api_overhead.py --url http://127.0.0.1:8000 --key KEY --pid PID
    .venv/bin/python bench/api_overhead.py --url "$ANCHOR_URL" --key "$ANCHOR_KEY" \\
        --pids-file "$ANCHOR_PIDS_FILE"                       # a service already running
    … --quick                                                 # reduced counts: a check, not a measure

One system prints one table (measure, result, target); `--alternate N` (or `--target
both`, one round) starts each system afresh per round, anchor first, prints each
round's table, then one with the median and range per measure and ours/anchor.

Measures. Sequential `api_test` submit→SUCCESS (20 ms polls; ours also waiting on
`GET /jobs/{uuid}/events` instead, and `sleep` with `{"duration": 0}`); a burst of 300
jobs from 16 threads (50 ms polls, one connection per thread; then a new client per
job); the service's CPU per job in the sequential run and in the burst: user + system
CPU of its whole process tree(s), reaped children included, over the run / jobs (so
it includes answering the polls); `GET /jobs` with ≥ 1000 jobs present, all finished;
idle memory of the whole tree(s) after 10 warm-up jobs (RSS and PSS sums); a 200 MiB
multipart upload (time, peak tree RSS growth) and, ours only, a 1 GiB chunked one.
The process trees are those of the PIDs given (`--pid`, `--pids-file`), or of what the
script started: `pixyz serve` (its Ray cluster is below it) or, for the anchor, Redis,
the Celery worker and its API (three roots, bench/anchor/start.sh's pids file).

The anchor speaks the same wire protocol for all of this (`POST /jobs` multipart with
process/params/config/file, `GET /jobs`, `GET /jobs/{uuid}`, `x-api-key`); what differs
is handled by `Api` (auto-detected from /openapi.json, or `--api`): it has no events
stream and no chunked upload (those rows read n/a), its `sleep` defaults to 0.1 s and
ours to 1 s (both are sent `{"duration": 0}`), a job it does not know reads PENDING
rather than 404 (the waits only look for SUCCESS/FAILURE/REVOKED).

Targets on a 2-core machine: sequential api_test submit→SUCCESS p50 ≤ 60 ms; a burst
of 300 jobs from 16 threads ≥ 27 jobs/s; GET /jobs with 1000 jobs p50 ≤ 20 ms; a 200 MiB
multipart upload grows the service's process tree by ≤ 400 MiB, a 1 GiB chunked upload
(the SDK's path for large files) by ≤ 64 MiB.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import httpx
import psutil
from table import print_table

FINAL = {"SUCCESS", "FAILURE", "REVOKED"}
ANCHOR_SCRIPTS = Path(__file__).resolve().parent / "anchor"
DEFAULT_ANCHOR_CHECKOUT = "/var/tmp/anchor"
SLEEP_NOOP = '{"duration": 0}'


@dataclass(frozen=True)
class Api:
    """What one system's API offers beyond the common protocol."""

    name: str
    events: bool  # GET /jobs/{uuid}/events (Server-Sent Events)
    chunked: bool  # /uploads/tus, the SDK's chunked upload


OURS = Api("ours", events=True, chunked=True)
ANCHOR = Api("anchor", events=False, chunked=False)


def detect_api(client: httpx.Client) -> Api:
    """Ours documents the events route in its OpenAPI; the anchor has no such route."""
    response = client.get("/openapi.json")
    if response.status_code != 200:
        raise SystemExit(f"GET /openapi.json: {response.status_code}; say which with --api")
    paths = response.json().get("paths", {})
    return OURS if any(p.endswith("/events") for p in paths) else ANCHOR


@dataclass(frozen=True)
class Counts:
    warmup: int = 10
    sequential: int = 100
    sleep: int = 50
    burst: int = 300
    threads: int = 16
    list_jobs: int = 1000
    list_samples: int = 50
    upload_mib: int = 200
    chunked_mib: int = 1024  # 0: skip
    settle_s: float = 2.0


QUICK = Counts(
    warmup=5,
    sequential=20,
    sleep=10,
    burst=60,
    list_jobs=100,
    list_samples=10,
    upload_mib=64,
    chunked_mib=0,
    settle_s=1.0,
)


@dataclass
class Row:
    key: str  # stable across systems and rounds
    label: str
    value: float | None  # None: not applicable to this system
    unit: str
    digits: int = 0
    target: str = ""

    def shown(self) -> str:
        if self.value is None:
            return "n/a"
        return f"{self.value:.{self.digits}f} {self.unit}".rstrip()


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def submit(client, process="api_test", params="{}", **fields):
    data = {"process": process, "params": params, "config": "{}", **fields}
    response = client.post("/jobs", data=data)
    response.raise_for_status()
    return response.json()["uuid"]


POLLS = itertools.count()  # GET /jobs/{uuid} made by wait(); next() is atomic in CPython


def polls():
    return next(POLLS)


def wait(client, job_id, poll=0.02, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        next(POLLS)
        status = client.get(f"/jobs/{job_id}").json()["status"]
        if status in FINAL:
            return status
        time.sleep(poll)
    raise TimeoutError(job_id)


def wait_events(client, job_id, timeout=120):
    """Follow `GET /jobs/{uuid}/events` (ours) to its `end` event; returns the final status."""
    with client.stream("GET", f"/jobs/{job_id}/events", timeout=timeout) as response:
        response.raise_for_status()
        event = None
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line.removeprefix("event:").strip()
            elif line.startswith("data:") and event == "end":
                return json.loads(line.removeprefix("data:"))["status"]
    raise RuntimeError(f"events of {job_id} ended without an end event")


def sequential(client, n=100, process="api_test", params="{}", waiter=wait):
    latencies = []
    for _ in range(n):
        started = time.perf_counter()
        job_id = submit(client, process, params)
        status = waiter(client, job_id)
        assert status == "SUCCESS", (job_id, status)
        latencies.append(time.perf_counter() - started)
    return latencies


def burst(url, key, n=300, threads=16, poll=0.05, fresh_clients=False):
    """n jobs from `threads` client threads, each keeping one connection (as pipelines do),
    or with `fresh_clients` a new httpx.Client (new connection, new SSL context) per job."""
    local = threading.local()

    def one(_):
        if fresh_clients:
            with httpx.Client(base_url=url, headers={"x-api-key": key}, timeout=120) as c:
                return wait(c, submit(c), poll=poll)
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, headers={"x-api-key": key}, timeout=120)
        job_id = submit(local.client)
        return wait(local.client, job_id, poll=poll)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        statuses = list(pool.map(one, range(n)))
    elapsed = time.perf_counter() - started
    assert statuses.count("SUCCESS") == n, statuses
    return n / elapsed


def list_jobs(client, at_least=1000, samples=50):
    """Tops the service up to `at_least` jobs, waits until all have finished (so that only
    the listing runs), then times `samples` listings."""
    existing = len(client.get("/jobs").json()["jobs"])
    with ThreadPoolExecutor(8) as pool:
        added = list(pool.map(lambda _: submit(client), range(max(0, at_least - existing))))
    for job_id in added:
        wait(client, job_id, poll=0.2, timeout=600)
    count = len(client.get("/jobs").json()["jobs"])
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        response = client.get("/jobs")
        times.append(time.perf_counter() - started)
        assert response.status_code == 200
    return count, times


# --- the service's process trees ---------------------------------------------------------


def tree(pids) -> list[psutil.Process]:
    """The processes of the trees rooted at `pids` (an int or a list), each once."""
    found = {}
    for pid in [pids] if isinstance(pids, int) else pids:
        try:
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                found[proc.pid] = proc
        except psutil.NoSuchProcess:
            pass
    return list(found.values())


def tree_rss(pids):
    total = 0
    for proc in tree(pids):
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def tree_memory(pids):
    """(RSS sum, PSS sum, processes) of the trees, in bytes."""
    rss = pss = count = 0
    for proc in tree(pids):
        try:
            info = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss, pss, count = rss + info.rss, pss + info.pss, count + 1
    return rss, pss, count


def tree_cpu(pids):
    """(total, of which reaped children) CPU seconds, user + system, the trees have spent:
    each live process's own plus its reaped children's (a job's short-lived processes, as
    the anchor's per-job fork and multiprocessing Manager, end up in their parent's count)."""
    total = children = 0.0
    for proc in tree(pids):
        try:
            t = proc.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total += t.user + t.system + t.children_user + t.children_system
        children += t.children_user + t.children_system
    return total, children


def with_cpu(pids, fn: Callable):
    """fn()'s result and the trees' CPU seconds meanwhile, (total, of which reaped
    children, status polls made), or None without PIDs."""
    if not pids:
        return fn(), None
    before, polls_before = tree_cpu(pids), polls()
    result = fn()
    after, polls_after = tree_cpu(pids), polls()
    return result, (after[0] - before[0], after[1] - before[1], polls_after - polls_before - 1)


def upload(client, pids, mib=200, chunked_with=None):
    """Seconds and peak tree growth (MiB) of one upload: multipart `POST /jobs`, or with
    `chunked_with` (a `pixyz_client.Client`) the SDK's chunked path (`/uploads/tus`)."""
    folder = Path(tempfile.mkdtemp())
    path = folder / "big.stl"
    with open(path, "wb") as f:
        block = os.urandom(1024 * 1024)
        for _ in range(mib):
            f.write(block)
    peak = [tree_rss(pids)]
    before = peak[0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], tree_rss(pids))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    try:
        if chunked_with is not None:
            file_url = chunked_with.upload(path, progress=False)
            response = client.post("/jobs", data={"process": "api_test", "file_url": file_url})
        else:
            with open(path, "rb") as f:
                response = client.post(
                    "/jobs", data={"process": "api_test"}, files={"file": ("big.stl", f)}
                )
        elapsed = time.perf_counter() - started
    finally:
        stop.set()
        sampler.join()
        shutil.rmtree(folder, ignore_errors=True)
    response.raise_for_status()
    return elapsed, (peak[0] - before) / 1024**2


# --- one measurement ----------------------------------------------------------------------


def cpu_rows(key, cpu, jobs):
    total, children, polls_made = cpu
    return [
        Row(key, "  service CPU per job (trees, user+sys)", total / jobs * 1000, "ms", 1),
        Row(
            f"{key}_children",
            "    of which reaped child processes",
            children / jobs * 1000,
            "ms",
            1,
        ),
        Row(f"{key}_polls", "    status polls per job (served in it)", polls_made / jobs, "", 1),
    ]


def measure(url, key, pids, api: Api, counts: Counts) -> list[Row]:
    rows = []
    ms = 1000
    with httpx.Client(base_url=url, headers={"x-api-key": key}, timeout=120) as client:
        for _ in range(counts.warmup):  # warm up workers
            wait(client, submit(client))
        time.sleep(counts.settle_s)
        if pids:
            rss, pss, procs = tree_memory(pids)
            rows.append(
                Row("idle_rss", "idle memory of the tree(s), RSS sum", rss / 1024**2, "MiB")
            )
            rows.append(Row("idle_pss", "  same, PSS sum", pss / 1024**2, "MiB"))
            rows.append(Row("idle_procs", "  processes in the tree(s)", procs, ""))

        n = counts.sequential
        lat, cpu = with_cpu(pids, lambda: sequential(client, n))
        label = f"sequential api_test submit→SUCCESS ({n} jobs, 20 ms polls)"
        rows.append(Row("seq_p50", f"{label} p50", statistics.median(lat) * ms, "ms", 0, "≤ 60 ms"))
        rows.append(Row("seq_p95", "  same, p95", percentile(lat, 95) * ms, "ms"))
        if cpu is not None:
            rows += cpu_rows("seq_cpu", cpu, n)

        events = None
        if api.events:
            events = statistics.median(sequential(client, n, waiter=wait_events)) * ms
        rows.append(Row("seq_events_p50", "  same, waiting on /events (SSE) p50", events, "ms"))

        lat = sequential(client, counts.sleep, process="sleep", params=SLEEP_NOOP)
        label = f"sequential sleep {SLEEP_NOOP} submit→SUCCESS ({counts.sleep} jobs) p50"
        rows.append(Row("sleep_p50", label, statistics.median(lat) * ms, "ms"))

        jobs, threads = counts.burst, counts.threads
        rate, cpu = with_cpu(pids, lambda: burst(url, key, n=jobs, threads=threads))
        label = f"burst: {jobs} jobs from {threads} threads, 50 ms polls"
        rows.append(Row("burst", label, rate, "jobs/s", 1, "≥ 27 jobs/s"))
        if cpu is not None:
            rows += cpu_rows("burst_cpu", cpu, jobs)
        rate = burst(url, key, n=jobs, threads=threads, fresh_clients=True)
        rows.append(Row("burst_fresh", "  same, a new HTTP client per job", rate, "jobs/s", 1))

        count, times = list_jobs(client, counts.list_jobs, counts.list_samples)
        rows.append(
            Row(
                "list_p50",
                f"GET /jobs with ≥ {counts.list_jobs} jobs p50",
                statistics.median(times) * ms,
                "ms",
                1,
                "≤ 20 ms",
            )
        )
        rows.append(Row("list_count", "  jobs listed", count, "jobs"))

        if pids:
            mib = counts.upload_mib
            seconds, growth = upload(client, pids, mib=mib)
            rows.append(Row("upload", f"{mib} MiB upload (multipart POST /jobs)", seconds, "s", 1))
            rows.append(
                Row(
                    "upload_growth",
                    "  peak RSS growth of the service tree",
                    growth,
                    "MiB",
                    0,
                    "≤ 400 MiB",
                )
            )
            if counts.chunked_mib:
                seconds = growth = None
                if api.chunked:
                    from pixyz_client import Client

                    with Client(url, key, progress=False) as sdk:
                        seconds, growth = upload(
                            client, pids, mib=counts.chunked_mib, chunked_with=sdk
                        )
                label = f"{counts.chunked_mib} MiB upload (chunked, /uploads/tus)"
                rows.append(Row("chunked", label, seconds, "s", 1))
                rows.append(
                    Row(
                        "chunked_growth",
                        "  peak RSS growth of the service tree",
                        growth,
                        "MiB",
                        0,
                        "≤ 64 MiB",
                    )
                )
    return rows


# --- starting and stopping the systems ------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(port, storage=None, ray_temp=None):
    storage = storage or tempfile.mkdtemp(prefix="pixyz-bench-")
    env = {**os.environ, "PIXYZ_API_KEY": "bench-key", "PIXYZ_MAX_UPLOAD_BYTES": str(1024**3)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serve_app.cli",
            "serve",
            "--port",
            str(port),
            "--storage",
            storage,
            "--ray-temp-dir",
            ray_temp or tempfile.mkdtemp(prefix="pzb-"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    for line in proc.stdout:
        if line.startswith("API key:"):
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return proc
    raise RuntimeError("service did not start")


def run_ours(counts: Counts) -> list[Row]:
    port = free_port()
    storage = tempfile.mkdtemp(prefix="pixyz-bench-")
    ray_temp = tempfile.mkdtemp(prefix="pzb-")
    proc = start_service(port, storage, ray_temp)
    try:
        return measure(f"http://127.0.0.1:{port}", "bench-key", [proc.pid], OURS, counts)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        shutil.rmtree(storage, ignore_errors=True)
        shutil.rmtree(ray_temp, ignore_errors=True)


def read_pids(path) -> list[int]:
    """PIDs from a file: one per line, alone or last ("name pid", as bench/anchor/start.sh)."""
    pids = []
    for line in Path(path).read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            pids.append(int(line.split()[-1]))
    return pids


def run_anchor(counts: Counts, checkout: str) -> list[Row]:
    """A fresh anchor (stop.sh, start.sh: empty Redis and share), measured, stopped."""
    stop = [str(ANCHOR_SCRIPTS / "stop.sh"), checkout]
    subprocess.run(stop, check=True)
    out = subprocess.run(
        [str(ANCHOR_SCRIPTS / "start.sh"), checkout], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    env = dict(line.split("=", 1) for line in out.splitlines() if line.startswith("ANCHOR_"))
    try:
        pids = read_pids(env["ANCHOR_PIDS_FILE"])
        return measure(env["ANCHOR_URL"], env["ANCHOR_KEY"], pids, ANCHOR, counts)
    finally:
        subprocess.run(stop, check=False)


# --- reporting --------------------------------------------------------------------------


def print_rows(rows: list[Row]):
    print_table([(r.label, r.shown(), r.target) for r in rows])


def summary(runs: list[tuple[str, list[Row]]]):
    """Per measure and system: median (min–max over rounds), and ours/anchor of the medians."""
    labels, order, values = {}, [], {}
    for target, rows in sorted(runs, key=lambda run: run[0] != "ours"):  # ours' order first
        for row in rows:
            if row.key not in labels:
                labels[row.key], order = row, [*order, row.key]
            if row.value is not None:
                values.setdefault((row.key, target), []).append(row.value)

    def cell(key, target):
        got = values.get((key, target))
        if not got:
            return "n/a"
        row = replace(labels[key], value=statistics.median(got))
        if len(got) == 1:
            return row.shown()
        low, high = min(got), max(got)
        return f"{row.shown()} ({low:.{row.digits}f}–{high:.{row.digits}f})"

    table = [("measure", "anchor", "ours", "ours/anchor")]
    for key in order:
        a, o = values.get((key, "anchor")), values.get((key, "ours"))
        ratio = ""
        if a and o and statistics.median(a):
            ratio = f"{statistics.median(o) / statistics.median(a):.2f}"
        table.append((labels[key].label, cell(key, "anchor"), cell(key, "ours"), ratio))
    widths = [max(len(line[i]) for line in table) for i in range(4)]
    for line in table:
        print(f"{line[0]:<{widths[0]}}  {line[1]:>{widths[1]}}  {line[2]:>{widths[2]}}  {line[3]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a service already running (else one is started)")
    parser.add_argument("--key", default="bench-key")
    parser.add_argument(
        "--pid",
        type=int,
        action="append",
        default=[],
        help="root of the service's process tree (repeatable); default: what is started here",
    )
    parser.add_argument(
        "--pids-file",
        action="append",
        default=[],
        help="a file of PIDs, one a line ('name pid' too), e.g. bench/anchor/start.sh's",
    )
    parser.add_argument(
        "--api", choices=["auto", "ours", "anchor"], default="auto", help="with --url"
    )
    parser.add_argument(
        "--target",
        choices=["ours", "anchor", "both"],
        default="ours",
        help="what to start (without --url); both: one round of each",
    )
    parser.add_argument(
        "--alternate",
        type=int,
        metavar="N",
        help="N rounds of anchor then ours, each started afresh; median and range per measure",
    )
    parser.add_argument(
        "--anchor-dir",
        default=DEFAULT_ANCHOR_CHECKOUT,
        help="the anchor's checkout (bench/anchor/start.sh sets it up)",
    )
    parser.add_argument("--quick", action="store_true", help="reduced counts (a check)")
    parser.add_argument("--sequential", type=int, help="sequential jobs (default 100)")
    parser.add_argument("--burst", type=int, help="burst jobs (default 300)")
    parser.add_argument("--threads", type=int, help="burst threads (default 16)")
    parser.add_argument("--list-jobs", type=int, help="jobs present for GET /jobs (default 1000)")
    parser.add_argument("--json", help="also write every run's numbers to this file")
    args = parser.parse_args()

    counts = QUICK if args.quick else Counts()
    for field in ("sequential", "burst", "threads", "list_jobs"):
        if getattr(args, field) is not None:
            counts = replace(counts, **{field: getattr(args, field)})

    runs: list[tuple[str, list[Row]]] = []

    def record(target, round_, rows):
        runs.append((target, rows))
        print(f"\n== {target}" + (f", round {round_}" if round_ else ""), flush=True)
        print_rows(rows)
        sys.stdout.flush()

    def load():
        return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())

    if args.url:
        pids = [*args.pid, *(pid for path in args.pids_file for pid in read_pids(path))]
        with httpx.Client(base_url=args.url, headers={"x-api-key": args.key}, timeout=30) as client:
            api = {"ours": OURS, "anchor": ANCHOR}.get(args.api) or detect_api(client)
        print(f"{api.name} at {args.url}, trees {pids or 'not measured'}, {load()}", flush=True)
        record(api.name, None, measure(args.url, args.key, pids, api, counts))
    else:
        rounds = args.alternate or 1
        targets = ["anchor", "ours"] if args.alternate or args.target == "both" else [args.target]
        for round_ in range(1, rounds + 1):
            for target in targets:
                print(f"\nstarting {target} (round {round_}/{rounds}), {load()}", flush=True)
                rows = (
                    run_anchor(counts, args.anchor_dir) if target == "anchor" else run_ours(counts)
                )
                record(target, round_ if len(targets) > 1 else None, rows)
        if len(targets) > 1:
            print(f"\n== side by side: median (range) over {rounds} round(s), {load()}")
            summary(runs)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps(
                {
                    "counts": asdict(counts),
                    "runs": [{"target": t, "rows": [asdict(r) for r in rows]} for t, rows in runs],
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
