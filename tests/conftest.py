"""Shared fixtures: unique object names per test, and no /dev/shm entry left behind."""
from __future__ import annotations

import os
import signal
import sys
import uuid

import pytest

# A suite started in the background by a non-interactive shell (`cmd &`, nohup) inherits
# SIGINT ignored, and so would every child it starts: the Ctrl-C tests would then test the
# shell, not the library. Ctrl-C as a terminal user has it, for this process and its children.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

LINUX = sys.platform.startswith("linux")
WINDOWS = sys.platform == "win32"
# Under Wine, Windows CPython reports win32; tests mark Wine's known deviations with this.
WINE = WINDOWS and bool(os.environ.get("WINEPREFIX") or os.environ.get("SHAREDSTATE_WINE"))


def _shm_entries() -> set:
    try:
        return set(os.listdir("/dev/shm"))
    except OSError:
        return set()


_issued: list = []  # names handed out by unique_name during the current test


@pytest.fixture
def unique_name(request) -> str:
    """A name no other test (or earlier run) uses: sst-<test>-<random>."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40]
    name = f"sst-{base}-{uuid.uuid4().hex[:10]}"
    _issued.append(name)
    return name


@pytest.fixture(autouse=True)
def no_shm_leak(request):
    """Every test leaves /dev/shm as it found it (Linux): nothing named after a name the
    test was given (segments, "sem.NAME" semaphores, derived "NAME-..." objects)."""
    _issued.clear()
    yield
    if not LINUX or not _issued:
        return
    mine = tuple(_issued) + tuple("sem." + n for n in _issued)
    leaked = {e for e in _shm_entries() if e.startswith(mine)}
    for e in leaked:  # clean up so that one leak does not fail every later test
        try:
            os.unlink(os.path.join("/dev/shm", e))
        except OSError:
            pass
    if leaked and "allow_shm_leak" not in request.keywords:
        pytest.fail(f"test left /dev/shm entries behind: {sorted(leaked)}")


def pytest_configure(config):
    config.addinivalue_line("markers", "allow_shm_leak: the test removes its leftovers itself")
    config.addinivalue_line("markers", "wine_deviation(reason): Wine behaves differently from Windows here")
    config.addinivalue_line("markers", "slow: long-running soak test")
