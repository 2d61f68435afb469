"""Loaded by the Windows CPython that scripts/test-windows.sh runs under Wine (this directory is
on its PYTHONPATH), never by a real Windows or Linux python.

Python 3.13's platform module asks WMI (_wmi) for the Windows version; under Wine 8.0 that
aborts the process ("Unimplemented function propsys.dll.VariantToString"), and hypothesis'
pytest plugin calls platform at start-up. Without _wmi, platform falls back to GetVersionEx.

Debian's Wine 8.0 has no preloader: about one process start in a thousand, the new process's
Linux heap covers 0x7ffe0000 (Windows' shared user data) and it dies before its first
instruction ("wine: failed to map the shared user data: c0000018"); CreateProcess then fails with
ERROR_INTERNAL_ERROR (1359). docs/windows.md has the measurement. subprocess and multiprocessing
both start children through _winapi.CreateProcess, so that one call is repeated here (twice at
most, with a line on stderr) on that one error; a test is never rerun.
"""
import sys

sys.modules["_wmi"] = None  # "import _wmi" now raises ImportError

import _winapi  # noqa: E402  (a Windows python: the only one that loads this file)

_create_process = _winapi.CreateProcess
_ERROR_INTERNAL_ERROR = 1359


def _create_process_wine(*args, **kwargs):
    for attempt in (1, 2, 3):
        try:
            return _create_process(*args, **kwargs)
        except OSError as e:
            if e.winerror != _ERROR_INTERNAL_ERROR or attempt == 3:
                raise
            sys.stderr.write("(Wine: a child died before its first instruction, CreateProcess "
                             "error 1359; starting it again)\n")


_winapi.CreateProcess = _create_process_wine
