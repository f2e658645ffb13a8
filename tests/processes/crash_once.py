"""An operator process (loaded from PIXYZ_PROCESS_PATH) that kills its own worker on the first try."""

import os
import signal


def main(pc, params):
    """Crash the Ray worker on attempt 1 (as a segfaulting native library would); succeed after.

    Result: `{"attempt": <n>}`.
    """
    if pc["attempt"] == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return {"attempt": pc["attempt"]}
