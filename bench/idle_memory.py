"""Idle memory of the whole service, process by process, and what each setting trims.

    .venv/bin/python bench/idle_memory.py                 # the default, then each variant
    .venv/bin/python bench/idle_memory.py --only default

Starts `pixyz serve` (local Ray) once per variant, waits until it answers and has
run a few no-op jobs, lets it settle, then prints every process of its tree with RSS,
PSS and USS (psutil's `memory_full_info`), and one summary table of the variants.
PSS is the fair sum: pages shared between processes (Python's libraries, the object
store's mapping) count once across the tree.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict

import httpx
import psutil

KEY = "bench-key"

# name -> (extra environment, extra `pixyz serve` arguments)
VARIANTS = {
    "default": ({}, []),
    "ingress proxy": ({"PIXYZ_INGRESS": "proxy"}, []),
    "no prestarted workers": ({"RAY_num_prestart_python_workers": "0"}, []),
    "object store 128 MiB": ({}, ["--object-store-mb", "128"]),
    "dashboard on": ({}, ["--dashboard"]),
}


def print_rows(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [f"{row[0]:<{widths[0]}}"] + [
            f"{c:>{w}}" for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        print("  ".join(cells))


def start(port: int, env: dict, args: list[str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "serve_app.cli", "serve", "--port", str(port)]
    command += ["--storage", tempfile.mkdtemp(prefix="pixyz-mem-")]
    command += ["--ray-temp-dir", tempfile.mkdtemp(prefix="pzm-"), *args]
    proc = subprocess.Popen(
        command,
        env={**os.environ, "PIXYZ_API_KEY": KEY, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("API key:"):
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return proc
    raise RuntimeError("the service did not start:\n" + "".join(seen[-20:]))


def run_jobs(url: str, n: int = 5) -> None:
    with httpx.Client(base_url=url, headers={"x-api-key": KEY}, timeout=60) as client:
        for _ in range(n):
            uuid = client.post("/jobs", data={"process": "api_test"}).json()["uuid"]
            while client.get(f"/jobs/{uuid}").json()["status"] not in ("SUCCESS", "FAILURE"):
                time.sleep(0.05)


def tree(pid: int) -> list[tuple[str, float, float, float]]:
    """(name, RSS, PSS, USS) in MiB of `pid` and every process under it."""
    root = psutil.Process(pid)
    rows = []
    for proc in [root, *root.children(recursive=True)]:
        try:
            info = proc.memory_full_info()
            name = proc.name()
            if name.startswith("python") or name == "ray::IDLE":
                name = " ".join(proc.cmdline()[:4])[-40:] if name != "ray::IDLE" else name
        except psutil.Error:
            continue
        rows.append((name, info.rss / 2**20, info.pss / 2**20, info.uss / 2**20))
    return rows


def measure(name: str, env: dict, args: list[str], settle: float) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = start(port, env, args)
    try:
        run_jobs(f"http://127.0.0.1:{port}")
        time.sleep(settle)
        rows = tree(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    by_name = defaultdict(lambda: [0, 0.0, 0.0, 0.0])
    for process, rss, pss, uss in rows:
        entry = by_name[process]
        entry[0] += 1
        entry[1] += rss
        entry[2] += pss
        entry[3] += uss
    print(f"\n{name}: {len(rows)} processes")
    print_rows(
        [
            (process, str(count), f"{rss:.0f}", f"{pss:.0f}", f"{uss:.0f}")
            for process, (count, rss, pss, uss) in sorted(by_name.items(), key=lambda kv: -kv[1][2])
        ],
        header=("process", "n", "RSS MiB", "PSS MiB", "USS MiB"),
    )
    return {
        "processes": len(rows),
        "rss": sum(r[1] for r in rows),
        "pss": sum(r[2] for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", action="append", choices=sorted(VARIANTS))
    parser.add_argument("--settle", type=float, default=20, help="seconds idle before measuring")
    args = parser.parse_args()
    results = {}
    for name in args.only or VARIANTS:
        env, extra = VARIANTS[name]
        results[name] = measure(name, env, extra, args.settle)
    print()
    print_rows(
        [
            (name, str(r["processes"]), f"{r['rss']:.0f}", f"{r['pss']:.0f}")
            for name, r in results.items()
        ],
        header=("variant", "processes", "RSS MiB", "PSS MiB"),
    )


if __name__ == "__main__":
    main()
