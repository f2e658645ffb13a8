"""Linux namespaces and mounts for the custom-script sandbox (ctypes; no external tools).

`tasks/sandbox/scripts.py` decides *what* a script may see; this module does it:
new mount, network, PID and IPC namespaces (inside a user namespace when the
worker is not root), a file-system view where the chosen folders are empty and
read-only, every other mount read-only, the job's scratch folder the only
writable place, a fresh `/proc` that shows only the sandbox's processes, and an
unprivileged user id with no capabilities for the script itself.
"""

from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
_SYS_CAPSET = 126  # x86_64
_CAP_VERSION_3 = 0x20080522

# Per-mount options that a read-only remount must keep (they are locked in a user namespace).
_KEPT_FLAGS = {
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "noatime": MS_NOATIME,
    "nodiratime": MS_NODIRATIME,
    "relatime": MS_RELATIME,
    "strictatime": MS_STRICTATIME,
}

_libc = ctypes.CDLL("libc.so.6", use_errno=True)


class SandboxSetupError(OSError):
    """The host refused a namespace or mount the sandbox needs."""


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise SandboxSetupError(code, f"{what}: {os.strerror(code)}")


def prctl(option: int, value: int) -> None:
    _check(_libc.prctl(option, value, 0, 0, 0), f"prctl({option})")


def unshare_namespaces(*, network: bool, as_root: bool) -> None:
    """Enter new namespaces (call in the child before exec). Without root, via a user namespace."""
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | (0 if network else CLONE_NEWNET)
    if as_root:
        _check(_libc.unshare(flags), "cannot create the sandbox's namespaces")
        return
    uid, gid = os.geteuid(), os.getegid()
    _check(_libc.unshare(flags | CLONE_NEWUSER), "cannot create a user namespace for the sandbox")
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
    Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None):
    _check(
        _libc.mount(
            None if source is None else source.encode(),
            target.encode(),
            None if fstype is None else fstype.encode(),
            ctypes.c_ulong(flags),
            None if data is None else data.encode(),
        ),
        f"mount {target}",
    )


@dataclass
class FileView:
    """What the script sees: `hidden` folders are empty and read-only, except `keep_*` inside them."""

    hidden: list[str]
    keep_writable: list[str]
    keep_readonly: list[str] = field(default_factory=list)


def build_view(view: FileView) -> None:
    """Apply `view` in the current (new, private) mount namespace; needs CAP_SYS_ADMIN there."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    keeps = [(p, True) for p in view.keep_writable] + [(p, False) for p in view.keep_readonly]
    # Open every folder to keep before anything is hidden; bind from the open handle later.
    handles = {
        path: (os.open(path, os.O_PATH | os.O_DIRECTORY), writable)
        for path, writable in keeps
        if os.path.isdir(path)
    }
    hidden_now: list[str] = []
    for folder in sorted({os.path.realpath(h) for h in view.hidden}, key=_depth):
        if _inside_any(folder, hidden_now) or not os.path.isdir(folder):
            continue  # already hidden with its parent, or nothing to hide
        mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k")
        hidden_now.append(folder)
    writable_binds = []
    for path, (handle, writable) in sorted(handles.items(), key=lambda item: _depth(item[0])):
        if writable:
            writable_binds.append(path)
        if _inside_any(path, hidden_now):
            os.makedirs(path, mode=0o755, exist_ok=True)
            mount(f"/proc/self/fd/{handle}", path, None, MS_BIND | MS_REC)
            if not writable:
                mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        os.close(handle)  # the script must not inherit a handle on a hidden folder
    _remount_all_readonly(except_under=writable_binds)
    # A writable folder that was not hidden stays writable through its own bind.
    for path in writable_binds:
        if not _inside_any(path, hidden_now):
            mount(path, path, None, MS_BIND | MS_REC)
            mount(None, path, None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV)


def mount_fresh_proc() -> None:
    """Show only this PID namespace's processes in /proc (call as its first process)."""
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def drop_to(uid: int | None) -> None:
    """Become `uid` (root only) or, in a user namespace, keep the uid and drop every capability."""
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)  # leaving uid 0 clears all capabilities
        return
    header = (ctypes.c_uint32 * 2)(_CAP_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    _check(_libc.syscall(_SYS_CAPSET, header, data), "cannot drop capabilities")


def _remount_all_readonly(except_under: list[str]) -> None:
    for point, options in _mounts():
        if point in ("/proc", "/sys") or point.startswith(("/proc/", "/sys/")):
            continue
        if any(point == w or point.startswith(w.rstrip("/") + "/") for w in except_under):
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        for option in options:
            flags |= _KEPT_FLAGS.get(option, 0)
        try:
            mount(None, point, None, flags)
        except SandboxSetupError as exc:
            # Under a hidden folder, a mount point is gone (ENOENT) or is now a plain folder
            # of the tmpfs (EINVAL): nothing of it is reachable. Anything else stays writable.
            if point == "/" or exc.errno not in (errno.ENOENT, errno.EINVAL):
                raise


def _mounts() -> list[tuple[str, list[str]]]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        point = fields[4].encode().decode("unicode_escape")
        found.append((point, fields[5].split(",")))
    return found


def _depth(path: str) -> int:
    return path.rstrip("/").count("/")


def _inside_any(path: str, folders: list[str]) -> bool:
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in folders)


# --- A seccomp filter: the system calls a script has no business making --------------------

_AUDIT_ARCH_X86_64 = 0xC000003E
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2
_RET_ALLOW, _RET_KILL = 0x7FFF0000, 0x80000000
_RET_EPERM, _RET_ENOSYS = 0x00050000 | 1, 0x00050000 | 38
_NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET

# x86_64 numbers: namespaces and mounts (new ones would undo the sandbox's view), kernel
# keyrings, eBPF, perf, ptrace, userfaultfd, modules, and other whole-machine switches.
DENIED_SYSCALLS = {
    "ptrace": 101, "syslog": 103, "pivot_root": 155, "chroot": 161, "acct": 163,
    "settimeofday": 164, "mount": 165, "umount2": 166, "swapon": 167, "swapoff": 168,
    "reboot": 169, "sethostname": 170, "setdomainname": 171, "iopl": 172, "ioperm": 173,
    "init_module": 175, "delete_module": 176, "quotactl": 179, "kexec_load": 246,
    "add_key": 248, "request_key": 249, "keyctl": 250, "unshare": 272, "perf_event_open": 298,
    "open_by_handle_at": 304, "setns": 308, "finit_module": 313, "kexec_file_load": 320,
    "bpf": 321, "userfaultfd": 323, "open_tree": 428, "move_mount": 429, "fsopen": 430,
    "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
}  # fmt: skip
_CLONE, _CLONE3 = 56, 435


class _Filter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint32)]  # fmt: skip


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Filter))]


def deny_syscalls() -> bool:
    """Install the filter for this process and its children; False where it does not apply."""
    if os.uname().machine != "x86_64":
        return False
    load, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    denied = sorted(DENIED_SYSCALLS.values())
    # Layout: [arch check][x32 check][one jeq per denied call][clone, clone3][allow]
    #         [clone flags check][EPERM][ENOSYS]
    code: list[tuple[int, int, int, int]] = [
        (load, 0, 0, 4),  # seccomp_data.arch
        (jeq, 1, 0, _AUDIT_ARCH_X86_64),
        (ret, 0, 0, _RET_KILL),
        (load, 0, 0, 0),  # seccomp_data.nr
    ]
    n_checks = 1 + len(denied) + 2
    eperm = len(code) + n_checks + 1 + 3  # index of the EPERM return
    code.append((jge, eperm - len(code) - 1, 0, 0x40000000))  # the x32 ABI
    for number in denied:
        code.append((jeq, eperm - len(code) - 1, 0, number))
    clone_check = len(code) + 3
    code.append((jeq, clone_check - len(code) - 1, 0, _CLONE))
    code.append((jeq, eperm + 1 - len(code) - 1, 0, _CLONE3))  # ENOSYS: libc falls back to clone
    code.append((ret, 0, 0, _RET_ALLOW))
    code.append((load, 0, 0, 16))  # low half of the clone flags
    code.append((jset, 1, 0, _NAMESPACE_FLAGS))
    code.append((ret, 0, 0, _RET_ALLOW))
    assert len(code) == eperm
    code.append((ret, 0, 0, _RET_EPERM))
    code.append((ret, 0, 0, _RET_ENOSYS))
    filters = (_Filter * len(code))(*[_Filter(c, jt, jf, k) for c, jt, jf, k in code])
    program = _Program(len(code), filters)
    _check(
        _libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(program), 0, 0),
        "cannot install the system-call filter",
    )
    return True
