"""pytest plugin of the conformance kit: a session whose kit tests all skipped fails.

Loaded through the ``pytest11`` entry point of atlas-ds-format. It counts the outcomes of
tests in classes derived from the kit's (``atlas_conformance_kit``); if some were collected
and none passed, the run checked nothing, and the exit status becomes 1 with a line saying so.
"""

from __future__ import annotations

from typing import Any

import pytest

_outcomes: dict[str, int] = {"passed": 0, "failed": 0, "skipped": 0}
_kit_items: set[str] = set()


def pytest_sessionstart(session: pytest.Session) -> None:
    _outcomes.update(passed=0, failed=0, skipped=0)
    _kit_items.clear()


def pytest_collection_finish(session: pytest.Session) -> None:
    _kit_items.update(item.nodeid for item in session.items
                      if getattr(getattr(item, "cls", None), "atlas_conformance_kit", False))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.nodeid in _kit_items and (report.when == "call" or report.outcome != "passed"):
        _outcomes[report.outcome] = _outcomes.get(report.outcome, 0) + 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: Any) -> None:
    if _kit_items and _outcomes["passed"] == 0 and int(exitstatus) == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _kit_items:
        line = (f"atlas conformance kit: {_outcomes['passed']} passed, {_outcomes['failed']} failed, "
                f"{_outcomes['skipped']} skipped of {len(_kit_items)} kit tests")
        if _outcomes["passed"] == 0:
            line += ": FAILURE, no kit test passed (a conformance run that checks nothing fails)"
        terminalreporter.write_line(line)
