"""pytest plugin used by scripts/test-windows.sh (loaded with ``-p wine_summary`` from scripts/wine_site).

Counts the outcomes of the run and the tests marked ``wine_deviation`` and writes them as
shell assignments to $SHAREDSTATE_SUMMARY_FILE, and prints every marked deviation with its
reason, so that Wine's known differences from Windows are visible in every run instead of
being silently skipped.
"""
from __future__ import annotations

import os

_outcomes: dict = {}
_deviations: dict = {}


def _reason(mark) -> str:
    return str(mark.kwargs.get("reason") or (mark.args[0] if mark.args else "no reason given"))


def pytest_collection_modifyitems(session, config, items):
    for item in items:
        mark = item.get_closest_marker("wine_deviation")
        if mark is not None:
            _deviations[item.nodeid] = [_reason(mark), "not run"]


def pytest_collectreport(report):
    # A module that cannot even be imported on Windows counts as an error, not as nothing.
    if report.failed:
        _outcomes[report.nodeid or "<collection>"] = "error"


def pytest_runtest_logreport(report):
    # One outcome per test: the first failing phase wins, else the call phase.
    nodeid = report.nodeid
    if hasattr(report, "wasxfail"):
        outcome = "xfailed" if report.skipped else "xpassed"
    elif report.failed:
        outcome = "failed" if report.when == "call" else "error"
    elif report.skipped:
        outcome = "skipped"
    elif report.when == "call":
        outcome = "passed"
    else:
        return
    prev = _outcomes.get(nodeid)
    if prev in ("failed", "error", "skipped", "xfailed", "xpassed"):
        if outcome == "error" and prev == "failed":
            pass  # a teardown error after a failure: still one failed test
        return
    _outcomes[nodeid] = outcome
    if nodeid in _deviations:
        _deviations[nodeid][1] = outcome


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    counts = {k: 0 for k in ("passed", "failed", "error", "skipped", "xfailed", "xpassed")}
    for outcome in _outcomes.values():
        counts[outcome] += 1
    run = sum(counts.values()) - counts["skipped"]
    tr = terminalreporter
    if _deviations:
        tr.write_sep("-", f"{len(_deviations)} tests marked wine_deviation (Wine differs from Windows)")
        for nodeid, (reason, outcome) in sorted(_deviations.items()):
            tr.write_line(f"{outcome.upper():8} {nodeid}: {reason}")
    path = os.environ.get("SHAREDSTATE_SUMMARY_FILE")
    if path:
        with open(path, "w", encoding="ascii", newline="\n") as f:
            f.write(f"PY_RUN={run}\nPY_PASSED={counts['passed']}\nPY_FAILED={counts['failed']}\n"
                    f"PY_ERRORS={counts['error']}\nPY_SKIPPED={counts['skipped']}\n"
                    f"PY_XFAILED={counts['xfailed']}\nPY_XPASSED={counts['xpassed']}\n"
                    f"PY_DEVIATIONS={len(_deviations)}\nPY_EXIT={int(exitstatus)}\n")
            for nodeid, (reason, outcome) in sorted(_deviations.items()):
                f.write(f"# DEV {outcome.upper():8} {nodeid}: {reason}\n")
