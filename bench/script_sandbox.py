"""What the custom-script sandbox costs: an empty script, run in it, end to end.

Runs `tasks.sandbox.scripts.run_script` directly (no Ray, no API), the way the job
runner calls it, in each form the host allows: its own uid (root) and a user
namespace. Prints the median and p90 of N runs.

    .venv/bin/python bench/script_sandbox.py [N]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from table import print_table

from tasks.context import ProgramContext
from tasks.sandbox import scripts as script_sandbox
from tasks.sandbox.scripts import ScriptLimits, run_script
from tasks.settings import Settings
from tasks.storage import Storage

EMPTY = "def main(pc, params):\n    return {}\n"


def one_run(root: Path, job_id: str) -> float:
    storage = Storage(str(root / "storage"))
    storage.fs.makedirs(storage.job_path(job_id, "script"), exist_ok=True)
    Path(storage.job_path(job_id, "script", "script.py")).write_text(EMPTY)
    work = Path(tempfile.mkdtemp(prefix="pixyz-bench-", dir=root))
    (work / "inputs").mkdir()
    (work / "outputs").mkdir()
    pc = ProgramContext(
        job_id=job_id,
        input_dir=work / "inputs",
        input_file=None,
        output_dir=work / "outputs",
        params={},
        info={},
        report=lambda *_: None,
    )
    spec = {
        "job_id": job_id,
        "entrypoint": "main",
        "params": {},
        "info": {"time_limit": 30},
        "script_limits": ScriptLimits.from_settings(Settings()),
    }
    started = time.perf_counter()
    run_script(work, spec, storage, pc, None, lambda *_: None)
    return time.perf_counter() - started


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    forms = {"user namespace": False}
    if os.geteuid() == 0:
        forms = {"own uid (root worker)": True, **forms}
    rows = []
    for name, as_root in forms.items():
        script_sandbox._worker_is_root = lambda as_root=as_root: as_root
        with tempfile.TemporaryDirectory() as folder:
            times = [one_run(Path(folder), f"{i:08x}" + "0" * 24) for i in range(runs)]
        times.sort()
        rows.append((f"empty script, {name}, p50", f"{statistics.median(times) * 1e3:.0f} ms", ""))
        rows.append((f"empty script, {name}, p90", f"{times[int(0.9 * runs)] * 1e3:.0f} ms", ""))
    print_table(rows)


if __name__ == "__main__":
    main()
