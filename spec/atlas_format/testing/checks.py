"""The conformance checks as plain functions, shared by the pytest kit and atlas-conformance.

Each returns a list of problems (empty = pass). Implementations are plugged in as:

* reader:    ``open(path) -> sequence`` (``len`` and ``[i]``, negative indices, IndexError);
* writer:    ``write(path, examples, params)`` with params ``format_version``,
             ``compression_strategy`` (0..3), ``codec`` ("none"/"zstd"/"lz4"),
             ``compression_level``, ``shard_size``, ``block_size``, ``compression_dict_size``;
* validator: ``validate(path)`` returning the error finding ids (an iterable of str), or an
             object with ``findings`` whose items have ``id`` and ``severity``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .equality import strict_equal
from .vectors import Vector

Reader = Callable[[Path], Sequence[Any]]
Writer = Callable[[Path, list[Any], dict[str, Any]], None]
Validator = Callable[[Path], Any]


def error_ids(result: Any) -> set[str]:
    """The error finding ids of a validator's result, whatever its shape."""
    findings = getattr(result, "findings", None)
    if findings is None:
        return {str(x) for x in result}
    return {str(f.id) for f in findings if str(getattr(f, "severity", "error")).lower().endswith("error")}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."


def check_reader_valid(vector: Vector, open_dataset: Reader) -> list[str]:
    """A valid vector reads back exactly: len, every index, negative indices, IndexError bounds."""
    expected = vector.examples()
    if expected is None:
        return [f"{vector.name}: no expected.json"]
    try:
        ds = open_dataset(vector.dataset)
        n = len(ds)
        if n != len(expected):
            return [f"{vector.name}: len {n}, expected {len(expected)}"]
        problems = [f"{vector.name}[{i}]: got {_short(ds[i])}, expected {_short(e)}"
                    for i, e in enumerate(expected) if not strict_equal(e, ds[i])]
        if n and not strict_equal(expected[-1], ds[-1]):
            problems.append(f"{vector.name}[-1] differs from the last example")
        if n and not strict_equal(expected[0], ds[-n]):
            problems.append(f"{vector.name}[-len] differs from the first example")
        for bad in (n, -n - 1):
            try:
                ds[bad]
            except IndexError:
                pass
            else:
                problems.append(f"{vector.name}[{bad}] did not raise IndexError")
        return problems
    except Exception as exc:  # noqa: BLE001 - any failure of the implementation is a finding here
        return [f"{vector.name}: {type(exc).__name__}: {exc}"]


def check_reader_invalid(vector: Vector, open_dataset: Reader,
                         allowed_errors: tuple[type[BaseException], ...] = (Exception,)) -> list[str]:
    """An invalid vector: every read raises an allowed error or returns the correct example
    (and a malicious example is always refused)."""
    expected = vector.examples()
    refuse = vector.must_refuse()
    try:
        ds = open_dataset(vector.dataset)
        n = len(ds)
    except allowed_errors:
        return []
    except Exception as exc:  # noqa: BLE001
        return [f"{vector.name}: open raised {type(exc).__name__} ({exc}), not an allowed error"]
    problems = []
    for i in range(n):
        try:
            value = ds[i]
        except allowed_errors:
            continue
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{vector.name}[{i}] raised {type(exc).__name__}, not an allowed error")
            continue
        if i in refuse:
            problems.append(f"{vector.name}[{i}] returned data for a malicious example instead of refusing it")
        elif expected is None or i >= len(expected) or not strict_equal(expected[i], value):
            problems.append(f"{vector.name}[{i}] returned WRONG data: {_short(value)}")
    return problems


def check_validator(vector: Vector, validate: Validator) -> list[str]:
    """Valid vectors give no error; invalid ones report at least the expected finding ids."""
    try:
        found = error_ids(validate(vector.dataset))
    except Exception as exc:  # noqa: BLE001
        return [f"{vector.name}: the validator raised {type(exc).__name__}: {exc}"]
    if vector.valid:
        return [f"{vector.name}: valid vector reported errors {sorted(found)}"] if found else []
    if not found:
        return [f"{vector.name}: invalid vector reported no error (expected {vector.findings})"]
    missing = set(vector.findings) - found
    return [f"{vector.name}: expected findings {sorted(missing)} missing (got {sorted(found)})"] if missing else []


def _writer_params(vector: Vector) -> dict[str, Any]:
    writer = dict(vector.case.get("writer", {}))
    strategy = int(writer.get("compression_strategy", 2))
    codec = writer.get("codec") or ("none" if strategy == 0 else "zstd")
    return {"format_version": int(vector.case.get("format_version", 2)), "compression_strategy": strategy,
            "codec": codec, "compression_level": int(writer.get("compression_level", 3)),
            "shard_size": int(writer.get("shard_size", 1000)), "block_size": int(writer.get("block_size", 64)),
            "compression_dict_size": float(writer.get("compression_dict_size", 0.01))}


def check_writer(vector: Vector, write: Writer, open_dataset: Reader, *, byte_identical: bool = False) -> list[str]:
    """Writing a valid vector's examples with its parameters reads back exactly (and, for version 1
    with ``byte_identical``, reproduces every file of the vector)."""
    expected = vector.examples()
    if not vector.valid or expected is None:
        return []
    params = _writer_params(vector)
    if params["shard_size"] < 1:
        return []  # degenerate original input; new writers may refuse it
    tmp = Path(tempfile.mkdtemp(prefix="atlas-conformance-"))
    try:
        target = tmp / "dataset"
        try:
            write(target, list(expected), params)
        except Exception as exc:  # noqa: BLE001
            return [f"{vector.name}: the writer raised {type(exc).__name__}: {exc}"]
        problems: list[str] = []
        ds = open_dataset(target)
        if len(ds) != len(expected):
            problems.append(f"{vector.name}: rewritten dataset has len {len(ds)}, expected {len(expected)}")
        else:
            problems += [f"{vector.name}: rewritten [{i}] differs" for i, e in enumerate(expected)
                         if not strict_equal(e, ds[i])]
        if byte_identical and params["format_version"] == 1:
            problems += _compare_files(vector, target)
        return problems
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _compare_files(vector: Vector, target: Path) -> list[str]:
    manifest_path = vector.folder / "manifest.json"
    if not manifest_path.exists():
        return []
    manifest = json.loads(manifest_path.read_text("utf-8"))
    wanted = {e["path"][len("dataset/"):]: e["sha256"] for e in manifest["files"] if e["path"].startswith("dataset/")}
    written = {p.relative_to(target).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
               for p in target.rglob("*") if p.is_file()}
    problems = [f"{vector.name}: {name} differs from the original writer's" for name in sorted(wanted)
                if written.get(name) != wanted[name]]
    problems += [f"{vector.name}: extra file {name}" for name in sorted(set(written) - set(wanted))]
    return problems


Results = dict[str, "list[str] | str | None"]


def summarize(rows: Iterable[tuple[str, Results]], columns: Sequence[str]) -> tuple[str, bool]:
    """A Markdown table (pass, FAIL, or why a check was skipped) and whether every check ran passed.

    A cell holds the problems of a check that ran (empty: passed), a str saying why it was
    skipped, or None when the column does not apply."""
    lines = ["| vector | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    ok = True
    details = []
    for name, results in rows:
        cells = []
        for column in columns:
            outcome = results.get(column)
            if outcome is None:
                cells.append("—")
            elif isinstance(outcome, str):
                cells.append(outcome)
            elif outcome:
                ok = False
                cells.append("FAIL")
                details += [f"{column}: {problem}" for problem in outcome]
            else:
                cells.append("pass")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if details:
        lines += ["", "Failures (which vector, and why):"] + [f"- {d}" for d in details]
    return "\n".join(lines), ok


def tally(rows: Iterable[tuple[str, Results]], column: str) -> dict[str, int]:
    """How many checks of ``column`` passed, failed and were skipped."""
    counts = {"pass": 0, "fail": 0, "skipped": 0}
    for _, results in rows:
        outcome = results.get(column)
        if isinstance(outcome, str):
            counts["skipped"] += 1
        elif outcome is not None:
            counts["fail" if outcome else "pass"] += 1
    return counts
