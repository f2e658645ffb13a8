"""API overhead benchmark: what the service costs per job, per listing and per upload.

    .venv/bin/python bench/api_overhead.py            # starts its own service (local Ray)
    .venv/bin/python bench/api_overhead.py --url http://127.0.0.1:8000 --key KEY --pid PID

Prints one table. Targets on a 2-core machine: sequential api_test submit→SUCCESS
p50 ≤ 60 ms; a burst of 300 jobs from 16 threads ≥ 27 jobs/s; GET /jobs with 1000
jobs p50 ≤ 20 ms; a 200 MiB multipart upload grows the service's process tree by ≤ 400 MiB,
a 1 GiB chunked upload (the SDK's path for large files) by ≤ 64 MiB.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
from table import print_table

FINAL = {"SUCCESS", "FAILURE", "REVOKED"}


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def submit(client, process="api_test", **fields):
    data = {"process": process, "params": "{}", "config": "{}", **fields}
    response = client.post("/jobs", data=data)
    response.raise_for_status()
    return response.json()["uuid"]


def wait(client, job_id, poll=0.02, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/jobs/{job_id}").json()["status"]
        if status in FINAL:
            return status
        time.sleep(poll)
    raise TimeoutError(job_id)


def sequential(client, n=100):
    latencies = []
    for _ in range(n):
        started = time.perf_counter()
        job_id = submit(client)
        assert wait(client, job_id) == "SUCCESS"
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
    existing = len(client.get("/jobs").json()["jobs"])
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: submit(client), range(max(0, at_least - existing))))
    count = len(client.get("/jobs").json()["jobs"])
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        response = client.get("/jobs")
        times.append(time.perf_counter() - started)
        assert response.status_code == 200
    return count, times


def tree_rss(pid):
    root = psutil.Process(pid)
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def upload(client, pid, mib=200, chunked_with=None):
    """Seconds and peak tree growth (MiB) of one upload: multipart `POST /jobs`, or with
    `chunked_with` (a `pixyz_client.Client`) the SDK's chunked path (`/uploads/tus`)."""
    path = Path(tempfile.mkdtemp()) / "big.stl"
    with open(path, "wb") as f:
        block = os.urandom(1024 * 1024)
        for _ in range(mib):
            f.write(block)
    peak = [tree_rss(pid)]
    before = peak[0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], tree_rss(pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    if chunked_with is not None:
        file_url = chunked_with.upload(path, progress=False)
        response = client.post("/jobs", data={"process": "api_test", "file_url": file_url})
    else:
        with open(path, "rb") as f:
            response = client.post(
                "/jobs", data={"process": "api_test"}, files={"file": ("big.stl", f)}
            )
    elapsed = time.perf_counter() - started
    stop.set()
    sampler.join()
    response.raise_for_status()
    path.unlink()
    return elapsed, (peak[0] - before) / 1024**2


def start_service(port):
    storage = tempfile.mkdtemp(prefix="pixyz-bench-")
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
            tempfile.mkdtemp(prefix="pzb-"),
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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url")
    parser.add_argument("--key", default="bench-key")
    parser.add_argument(
        "--pid", type=int, help="service process (for RSS); default: the one started here"
    )
    args = parser.parse_args()

    proc = None
    if not args.url:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = start_service(port)
        args.url, args.pid = f"http://127.0.0.1:{port}", proc.pid
    rows = []
    try:
        with httpx.Client(
            base_url=args.url, headers={"x-api-key": args.key}, timeout=120
        ) as client:
            for _ in range(10):  # warm up workers
                wait(client, submit(client))
            lat = sequential(client)
            rows.append(
                (
                    "sequential api_test submit→SUCCESS p50",
                    f"{statistics.median(lat) * 1000:.0f} ms",
                    "≤ 60 ms",
                )
            )
            rows.append(
                (
                    "sequential api_test submit→SUCCESS p95",
                    f"{percentile(lat, 95) * 1000:.0f} ms",
                    "",
                )
            )
            rate = burst(args.url, args.key)
            rows.append(
                (
                    "burst: 300 jobs from 16 threads, 50 ms polls",
                    f"{rate:.1f} jobs/s",
                    "≥ 27 jobs/s",
                )
            )
            rate = burst(args.url, args.key, fresh_clients=True)
            rows.append(("  same, a new HTTP client per job", f"{rate:.1f} jobs/s", ""))
            count, times = list_jobs(client)
            rows.append(
                (
                    f"GET /jobs with {count} jobs p50",
                    f"{statistics.median(times) * 1000:.1f} ms",
                    "≤ 20 ms",
                )
            )
            if args.pid:
                seconds, growth = upload(client, args.pid)
                rows.append(("200 MiB upload (multipart through Serve)", f"{seconds:.1f} s", ""))
                rows.append(
                    ("  peak RSS growth of the service tree", f"{growth:.0f} MiB", "≤ 400 MiB")
                )
                from pixyz_client import Client

                with Client(args.url, args.key, progress=False) as sdk:
                    seconds, growth = upload(client, args.pid, mib=1024, chunked_with=sdk)
                rows.append(("1 GiB upload (chunked, /uploads/tus)", f"{seconds:.1f} s", ""))
                rows.append(
                    ("  peak RSS growth of the service tree", f"{growth:.0f} MiB", "≤ 64 MiB")
                )
    finally:
        if proc:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    print_table(rows)


if __name__ == "__main__":
    main()
