"""The errors a user of the toolbox sees: one line each, naming the file and what went wrong.

Steps raise these instead of library exceptions so a job's failure reads like
"cannot read 'x.stl' as STL: the file ends inside triangle 12" rather than a traceback.
"""

from __future__ import annotations


class StepError(Exception):
    """Base of every error a step raises on purpose."""


class UnsupportedFormatError(StepError):
    """The file extension (or requested format) has no reader or writer."""


class ReadError(StepError):
    """A file could not be turned into a scene: ``cannot read 'x.stl' as STL: <reason>``."""


class WriteError(StepError):
    """A scene could not be written: ``cannot write 'x.fbx' as FBX: <reason>``."""


class OptionsError(StepError):
    """An option has a value the step cannot use."""


class RenderError(StepError):
    """A thumbnail or view could not be rendered (no OpenGL device, bad camera)."""
