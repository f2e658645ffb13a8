"""An operator process whose 'reader' runs as long as asked, in the isolated reader child."""

import os
import time
from pathlib import Path


def main(pc, params):
    """Run `time.sleep(params["seconds"])` where native readers run (`run_isolated`).

    A step names the worker's pid first, so a test can find the reader child.
    """
    from tasks.steps.io.isolate import run_isolated

    pc.progress_next(f"worker pid {os.getpid()}")
    run_isolated(time.sleep, (params["seconds"],), Path("slow.bin"), "bin")
    return {}
