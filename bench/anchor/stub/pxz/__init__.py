"""A stand-in for the Pixyz SDK's `pxz` module, for benchmarking the Celery anchor
(Unity's pixyz-scheduler) without the SDK: enough for its worker to start and for its
`api_test` and `sleep` processes to run. Session calls are no-ops; any real SDK function
raises, so a process that needs the SDK fails loudly instead of pretending to work."""

from . import algo, core, io, material, polygonal, scene, view  # noqa: F401

__all__ = ["algo", "core", "io", "material", "polygonal", "scene", "view"]

_session = None


def initialize(*args, **kwargs):
    global _session
    _session = object()
    return _session


def release(session=None):
    global _session
    _session = None


def get_current_session():
    return _session


def set_current_session(session):
    global _session
    _session = session


def __getattr__(name):
    from ._missing import missing

    return missing(f"pxz.{name}")
