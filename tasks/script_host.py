"""The child process a custom script runs in (`python -m tasks.script_host SPEC.json`).

It builds the same ProgramContext built-in processes get, with progress sent to
the parent worker as JSON lines on a pipe, calls the script's entry function,
and writes `{"result": ...}` or `{"error", "traceback"}` to the result file.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import traceback
from pathlib import Path

from tasks.context import ProgramContext


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    events = os.fdopen(int(os.environ["PIXYZ_EVENTS_FD"]), "w", buffering=1, encoding="utf-8")

    def report(kind: str, payload: dict) -> None:
        events.write(json.dumps({"kind": kind, "payload": payload}) + "\n")

    pc = ProgramContext(
        job_id=spec["job_id"],
        input_dir=Path(spec["input_dir"]),
        input_file=Path(spec["input_file"]) if spec["input_file"] else None,
        output_dir=Path(spec["output_dir"]),
        params=spec["params"],
        info=spec["info"],
        report=report,
    )
    try:
        namespace = runpy.run_path(spec["script"], run_name="pixyz_script")
        entry = namespace.get(spec["entrypoint"])
        if not callable(entry):
            raise AttributeError(f"script has no function '{spec['entrypoint']}'")
        result = entry(pc, spec["params"])
        answer = {"result": result if result is not None else {}}
        text = json.dumps(answer, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v))
    except BaseException as exc:  # report every failure, SystemExit included, as the job's error
        text = json.dumps(
            {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        )
    Path(spec["result_path"]).write_text(text)
    events.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
