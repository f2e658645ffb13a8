"""Why the JobStore refuses a call: the exceptions it raises as answers, not as crashes.

Kept apart from `tasks.jobstore` so the API can name them without importing
the actor (and with it the runner and the sandbox). Each maps to one HTTP
answer in `serve_app/errors.py`; `tasks.storage.StorageError` is the third.
"""

from __future__ import annotations


class Draining(Exception):
    """The service is shutting down and takes no new jobs (503)."""


class TooManyJobs(Exception):
    """The key already has as many unfinished jobs as it may (429)."""
