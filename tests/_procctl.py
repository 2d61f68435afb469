"""Kill, stop and resume a child process the same way on Linux and Windows (test helper).

    kill(p)   Linux: SIGKILL.  Windows: TerminateProcess with exit code KILLED_CODE.
    stop(p)   Linux: SIGSTOP.  Windows: NtSuspendProcess (every thread of the process stops
              where it is, as with SIGSTOP; ntdll via ctypes).
    cont(p)   Linux: SIGCONT.  Windows: NtResumeProcess.
    killed(p) True if p's exit status says kill() ended it (p must have been waited for).
    owner_word(pid)  the library's owner word of a live process, `(pid << 32) | token` as
              docs/FORMAT.md defines it (Linux: start time from /proc; Windows: the creation
              FILETIME's halves XORed), computed here independently of the library.
    python_child(code, *args)  a child `python -c code args...`, returned once it has
              imported sharedstate (it says so on its stdout, a pipe).
    until(cond, timeout, what)  poll cond() until it holds (the seconds it took), or fail
              naming `what` after `timeout` s: for another process's progress.

p is a subprocess.Popen (or anything with .pid and, on Windows, ._handle / .returncode).
Nothing here kills by name: only the child the test started.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

WINDOWS = sys.platform == "win32"

if WINDOWS:
    import ctypes
    from ctypes import wintypes

    _k32 = ctypes.WinDLL("kernel32", use_last_error=True)
    _ntdll = ctypes.WinDLL("ntdll")
    _k32.OpenProcess.restype = wintypes.HANDLE
    _k32.OpenProcess.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.DWORD]
    _k32.CloseHandle.argtypes = [wintypes.HANDLE]
    _k32.TerminateProcess.argtypes = [wintypes.HANDLE, wintypes.UINT]
    _k32.TerminateProcess.restype = wintypes.BOOL
    _k32.GetProcessTimes.argtypes = [wintypes.HANDLE] + [ctypes.POINTER(wintypes.FILETIME)] * 4
    _k32.GetProcessTimes.restype = wintypes.BOOL
    _ntdll.NtSuspendProcess.argtypes = [wintypes.HANDLE]
    _ntdll.NtSuspendProcess.restype = ctypes.c_long
    _ntdll.NtResumeProcess.argtypes = [wintypes.HANDLE]
    _ntdll.NtResumeProcess.restype = ctypes.c_long

    PROCESS_TERMINATE = 0x0001
    PROCESS_SUSPEND_RESUME = 0x0800
    PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
    # An exit code no Python child ends with by itself (not 0/1, not STILL_ACTIVE = 259).
    KILLED_CODE = 0x6B11  # 27409

    def _open(pid: int, access: int):
        h = _k32.OpenProcess(access, False, pid)
        if not h:
            raise ctypes.WinError(ctypes.get_last_error())
        return h

    def _nt(call, p, what: str) -> None:
        h = _open(p.pid, PROCESS_SUSPEND_RESUME)
        try:
            status = call(h)
        finally:
            _k32.CloseHandle(h)
        if status < 0:
            raise OSError(f"{what}(pid {p.pid}) failed: NTSTATUS 0x{status & 0xFFFFFFFF:08X}")

    def kill(p) -> None:
        if p.poll() is not None:
            return
        # Popen's own handle: valid until the Popen is collected, so never another process.
        if not _k32.TerminateProcess(int(p._handle), KILLED_CODE):
            err = ctypes.get_last_error()
            if p.poll() is None:
                raise ctypes.WinError(err)

    def stop(p) -> None:
        _nt(_ntdll.NtSuspendProcess, p, "NtSuspendProcess")

    def cont(p) -> None:
        if p.poll() is None:
            _nt(_ntdll.NtResumeProcess, p, "NtResumeProcess")

    def killed(p) -> bool:
        return p.returncode == KILLED_CODE

    def owner_word(pid: int) -> int:
        h = _open(pid, PROCESS_QUERY_LIMITED_INFORMATION)
        try:
            c, e, k, u = (wintypes.FILETIME() for _ in range(4))
            if not _k32.GetProcessTimes(h, ctypes.byref(c), ctypes.byref(e), ctypes.byref(k), ctypes.byref(u)):
                raise ctypes.WinError(ctypes.get_last_error())
        finally:
            _k32.CloseHandle(h)
        token = (c.dwLowDateTime ^ c.dwHighDateTime) & 0xFFFFFFFF or 1
        return (pid << 32) | token

else:
    import signal
    from pathlib import Path

    KILLED_CODE = -signal.SIGKILL

    def _signal(p, sig) -> None:
        try:
            os.kill(p.pid, sig)
        except ProcessLookupError:
            pass

    def kill(p) -> None:
        _signal(p, signal.SIGKILL)

    def stop(p) -> None:
        os.kill(p.pid, signal.SIGSTOP)

    def cont(p) -> None:
        _signal(p, signal.SIGCONT)

    def killed(p) -> bool:
        return p.returncode == -signal.SIGKILL

    def owner_word(pid: int) -> int:
        stat = Path(f"/proc/{pid}/stat").read_text()
        start = int(stat[stat.rindex(")") + 2:].split()[19])
        token = start & 0xFFFFFFFF or 1
        return (pid << 32) | token


def python_child(code: str, *args: str, stdin: bool = False) -> subprocess.Popen:
    """A real child process running `code` (dedented) with sys.argv[1:] = args, returned once it
    has started and imported sharedstate: it prints "started" first. What a test times with the
    child (a 10 s accept, connect or acquire) then excludes the interpreter's start-up, which
    under Wine on a loaded machine has taken longer than that. The child's stdout is a pipe
    that the caller may read for more lines; with ``stdin=True`` its stdin is one too (a "go"
    line the test writes when it starts timing)."""
    prologue = "import sharedstate\nprint('started', flush=True)\n"
    p = subprocess.Popen([sys.executable, "-c", prologue + textwrap.dedent(code), *args],
                         stdin=subprocess.PIPE if stdin else None, stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    line = p.stdout.readline().strip()
    if line != "started":
        p.kill()
        p.wait()
        raise AssertionError(f"the child did not start (it said {line!r}, exit {p.returncode})")
    return p


def until(cond, timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.002)
    return time.monotonic() - t0
