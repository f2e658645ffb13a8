"""How long `pixyz serve` takes to stop on SIGTERM, and whether the drain worked.

Starts `pixyz serve` (its own local Ray cluster, fresh storage) in a process group of its
own, as systemd or a terminal runs it, submits a `sleep` job, and signals it while the job
runs: to the main process, to its whole group, and to every process it started (systemd's
`KillMode=control-group`). Prints, per case, the time from the signal to the exit, how much
of it was the job's remaining work, and the job's state after a restart.

    .venv/bin/python bench/shutdown.py [ROUNDS]
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
from table import print_table

REPO = Path(__file__).resolve().parents[1]
JOB_SECONDS = 6.0
SIGNAL_AFTER = 2.0  # the job has about 4 s left when the signal comes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(storage: Path, port: int) -> tuple[subprocess.Popen, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXYZ_API_KEY")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "serve_app.cli", "serve", "--port", str(port)]
        + ["--storage", str(storage), "--num-cpus", "1", "--ray-temp-dir", str(storage) + "-ray"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    while line := proc.stdout.readline():
        if line.startswith("API key:"):
            return proc, line.split()[2]
    raise RuntimeError("pixyz serve did not start")


def one_stop(how: str) -> dict:
    storage = Path(tempfile.mkdtemp(prefix="pzstop-")) / "storage"
    port = free_port()
    proc, key = start(storage, port)
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, headers={"x-api-key": key}, timeout=30) as client:
        params = json.dumps({"duration": JOB_SECONDS})
        job = client.post("/jobs", data={"process": "sleep", "params": params}).json()["uuid"]
        while client.get(f"/jobs/{job}").json()["status"] != "RUNNING":
            time.sleep(0.05)
        time.sleep(SIGNAL_AFTER)
        left = JOB_SECONDS - SIGNAL_AFTER
        sent = time.monotonic()
        if how == "main process":
            os.kill(proc.pid, signal.SIGTERM)
        elif how == "process group":
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            for p in [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(True)]:
                try:
                    p.send_signal(signal.SIGTERM)
                except psutil.NoSuchProcess:
                    pass
        proc.communicate(timeout=120)
        took = time.monotonic() - sent
    proc, _ = start(storage, port)
    with httpx.Client(base_url=url, headers={"x-api-key": key}, timeout=30) as client:
        details = client.get(f"/jobs/{job}/details").json()
    os.kill(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=120)
    return {"took": took, "left": left, "status": details["status"], "retry": details["retry"]}


def main(rounds: int) -> None:
    rows = []
    for how in ("main process", "process group", "every process"):
        runs = [one_stop(how) for _ in range(rounds)]
        took = [r["took"] for r in runs]
        beyond = [r["took"] - r["left"] for r in runs]
        reruns = sum(r["retry"] for r in runs)
        outcome = ", ".join(sorted({f"{r['status']}/retry {r['retry']}" for r in runs}))
        rows.append(
            (
                f"SIGTERM to {'every process' if how == 'every process' else 'the ' + how}:"
                f" exit, median of {rounds}",
                f"{statistics.median(took):.1f} s",
                f"range {min(took):.1f}-{max(took):.1f} s",
            )
        )
        if how != "every process":
            rows.append(
                (
                    "  beyond the job's remaining work",
                    f"{statistics.median(beyond):.1f} s",
                    "< 10 s",
                )
            )
        # After a stop with no drain the job is run again: RUNNING (its retry shows once it starts).
        rows.append(("  the job after a restart", outcome, f"{reruns} re-run(s) counted"))
    print_table(rows)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
