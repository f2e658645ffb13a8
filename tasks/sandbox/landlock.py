"""Landlock (Linux 5.13+): a process narrows what files it may open from now on. No root needed.

Used for the child processes that run native model readers (`tasks/steps/io/isolate.py`):
a hostile model that names `/etc/...` or another job's file gets "Permission denied"
from the kernel, whatever library follows the reference. Rules are allow-lists of
folder trees; everything else is refused. The restriction holds for the calling
thread and every thread and process it starts afterwards, and cannot be undone.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable

from tasks.sandbox.linux import PR_SET_NO_NEW_PRIVS, prctl

# Same numbers on every architecture (the syscalls postdate the per-arch tables).
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
READ = EXECUTE | READ_FILE | READ_DIR
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | (1 << 14) | (1 << 15)  # + TRUNCATE, IOCTL_DEV
# Every file-system right each ABI version knows (1: 13 rights, 2: REFER, 3: TRUNCATE, 5: IOCTL_DEV).
_ALL_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1}
_ALL_LATEST = (1 << 16) - 1

_libc = ctypes.CDLL(None, use_errno=True)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def abi_version() -> int:
    """The kernel's Landlock ABI version; 0 where Landlock is missing or disabled."""
    version = _libc.syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION)
    return max(0, version)


def restrict_files(readable: Iterable[str], writable: Iterable[str]) -> bool:
    """From now on, open only files under `readable` (read, list, execute) and `writable`
    (anything). Paths that do not exist are skipped. False (and nothing restricted) where
    the kernel has no Landlock; OSError if it has and a step fails."""
    version = abi_version()
    if version == 0:
        return False
    handled = _ALL_BY_ABI.get(version, _ALL_LATEST)
    attr = _RulesetAttr(handled)
    ruleset = _libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.sizeof(attr), 0)
    if ruleset < 0:
        raise _error("landlock_create_ruleset")
    try:
        for paths, rights in ((readable, READ), (writable, handled)):
            for path in paths:
                _allow(ruleset, path, rights & handled)
        prctl(PR_SET_NO_NEW_PRIVS, 1)
        if _libc.syscall(_RESTRICT_SELF, ruleset, 0) != 0:
            raise _error("landlock_restrict_self")
    finally:
        os.close(ruleset)
    return True


def _allow(ruleset: int, path: str, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        if not os.path.isdir(path):
            rights &= FILE_RIGHTS  # a file accepts file rights only
        rule = _PathBeneathAttr(rights, fd)
        if _libc.syscall(_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0) != 0:
            raise _error(f"landlock_add_rule({path})")
    finally:
        os.close(fd)


def _error(what: str) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{what}: {os.strerror(code)}")
