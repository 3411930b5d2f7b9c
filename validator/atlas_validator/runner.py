"""The validation driver: version detection, root checks, shards in parallel, merge in shard order.

Shards are independent, so full validation runs them in worker processes
(``concurrent.futures``); results are merged by shard position so the output does not
depend on scheduling. Every stage is wrapped: an unexpected exception becomes an
ATL990 finding at its location and the run goes on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from atlas_format import metadata
from atlas_format.constants import DEFAULT_LIMITS, META_FILE, TEMP_PREFIX, Limits
from atlas_format.errors import AtlasError
from atlas_format.remote import is_url

from . import checks_v1, checks_v2
from .common import ShardResult, Sink, entry_status, is_int, read_limited, regular_size, short_exc
from .example_index import shard_starts, with_indexes
from .findings import Report, Stats, make
from .layout import unfinished_write, v1_shard_folders, v2_root_entries
from .pickle_scan import DEFAULT_SCAN_LIMITS, ScanLimits
from .policy_notes import dataset_notes
from .tasks import ShardTask

Progress = Callable[[int], None]


def run_shard(task: ShardTask, progress: Progress | None = None) -> ShardResult:
    """Check one shard (the function worker processes run); never raises."""
    try:
        if task.version == 1:
            return checks_v1.check_shard(task, progress)
        return checks_v2.check_shard(task, progress)
    except Exception as exc:  # noqa: BLE001 - last line of defence
        return ShardResult(task.position, task.name, [make("ATL990", f"internal error: {short_exc(exc)}",
                                                           path=task.name, shard=task.name)], Stats(shards=1))


def validate(path: str | os.PathLike[str], *, quick: bool = False, jobs: int = 1, strict: bool = False,
             limits: Limits | None = None, scan_limits: ScanLimits | None = None,
             progress_factory: Callable[[int], Any] | None = None,
             allowed_globals: Iterable[tuple[str, str]] = (), storage_options: dict[str, Any] | None = None,
             executor: Any = None) -> Report:
    """Validate the dataset at ``path`` and return a Report; never raises for any dataset content.

    ``path`` may be a URL (s3://, https://, any fsspec protocol; ``storage_options`` are fsspec's): its files
    are mirrored into a temporary folder and validated there (``remote``).

    ``jobs`` > 1 checks shards in that many processes; ``executor`` (anything with ``submit(fn, *args)``
    returning futures with ``result()``: a ``distributed.Client``, a ``concurrent.futures`` executor) checks
    each shard as one of its tasks instead (the dataset's files must be where its workers can read them).
    ``progress_factory(total_bytes)``
    may return an object with ``update(n)`` and ``close()`` (a tqdm bar) for full runs.
    ``allowed_globals``: (module, name) pairs trusted completely, as the reader's ``allowed_globals``
    (the scan admits them as safe loading with them does).
    """
    if is_url(path):
        from .remote import validate_url

        return validate_url(str(path), storage_options=storage_options, quick=quick, limits=limits or DEFAULT_LIMITS,
                            jobs=jobs, strict=strict, scan_limits=scan_limits, progress_factory=progress_factory,
                            allowed_globals=allowed_globals, executor=executor)
    started = time.perf_counter()
    allowed = frozenset((str(m), str(n)) for m, n in allowed_globals)
    report = Report(path=str(path), level="quick" if quick else "full", strict=strict,
                    allowed_globals=[f"{m}:{n}" for m, n in sorted(allowed)])
    try:
        _validate(Path(path), report, quick=quick, jobs=max(1, int(jobs)), executor=executor,
                  limits=limits or DEFAULT_LIMITS,
                  scan_limits=scan_limits or DEFAULT_SCAN_LIMITS, progress_factory=progress_factory,
                  allowed=allowed)
    except Exception as exc:  # noqa: BLE001 - the validator must never crash
        report.findings.append(make("ATL990", f"internal error: {short_exc(exc)}", path="."))
    report.stats.seconds = time.perf_counter() - started
    return report


def _validate(root: Path, report: Report, *, quick: bool, jobs: int, executor: Any, limits: Limits,
              scan_limits: ScanLimits,
              progress_factory: Callable[[int], Any] | None, allowed: frozenset[tuple[str, str]]) -> None:
    sink = Sink()
    if not root.exists():
        unfinished = unfinished_write(root)
        if unfinished:  # V2-STATE-1: incomplete, not merely missing
            shown = ", ".join(unfinished[:5]) + (" ..." if len(unfinished) > 5 else "")
            report.findings.append(make(
                "ATL100", "no dataset: a write to it never finished (or is still running) and left "
                f"{shown} in {root.parent}; once no writer runs, `atlas-ds gc {root}` removes them",
                path=str(root), clause="V2-STATE-1"))
            return
        report.findings.append(make("ATL109", f"{root}: no such file or directory", path=str(root)))
        return
    if not root.is_dir():
        report.findings.append(make("ATL109", f"{root}: not a folder (a dataset is a folder)", path=str(root)))
        return
    if not os.access(root, os.R_OK | os.X_OK):
        report.findings.append(make("ATL109", f"{root}: permission denied", path=str(root)))
        return
    if entry_status(root, META_FILE) is None:
        leftovers = [p.name for p in root.iterdir() if p.name.startswith(TEMP_PREFIX)]
        hint = f" (leftovers: {', '.join(leftovers[:5])})" if leftovers else ""
        report.findings.append(make("ATL100", f"no root meta.json: not a complete dataset{hint}", path=META_FILE))
        return
    raw = read_limited(root, META_FILE, limits.max_metadata_size, sink, what="meta.json")
    if raw is None:
        report.findings.extend(sink.close())
        return
    version, doc = _detect_version(raw, sink)
    report.format_version = version
    if version is None:
        report.findings.extend(sink.close())
        return
    encoding = doc.get("encoding", "pickle") if version == 2 else "pickle"
    report.encoding = encoding if encoding in ("pickle", "typed") else None  # another: the schema reports it
    if version == 1:
        tasks, finish = _root_v1(root, sink, quick=quick, limits=limits, scan_limits=scan_limits, allowed=allowed)
        report.not_verifiable = list(checks_v1.NOT_VERIFIABLE_V1)
        sink.add("ATL590", "version 1 has no checksums; not verifiable: " + "; ".join(report.not_verifiable),
                 path=".")
    else:
        tasks, finish = _root_v2(root, sink, quick=quick, limits=limits, scan_limits=scan_limits, allowed=allowed)
    report.findings.extend(sink.close())
    results = _run_tasks(root, tasks, jobs=jobs, quick=quick, progress_factory=progress_factory, executor=executor)
    starts = shard_starts(results, "stored_examples" if version == 1 else "num_examples")
    for result in results:
        report.findings.extend(with_indexes(result.findings, starts))
        report.stats.shards += result.stats.shards
        report.stats.blocks += result.stats.blocks
        report.stats.bytes_read += result.stats.bytes_read
        report.stats.decoded_bytes += result.stats.decoded_bytes
    report.findings.extend(with_indexes(dataset_notes(results, allowed), starts))
    try:
        report.findings.extend(finish(results))
    except Exception as exc:  # noqa: BLE001
        report.findings.append(make("ATL990", f"internal error in cross-shard checks: {short_exc(exc)}", path="."))


def _detect_version(raw: bytes, sink: Sink) -> tuple[int | None, dict[str, Any]]:
    """(the format version from the root meta.json (GEN-5), or None with a finding; the parsed document)."""
    try:
        doc = metadata.parse_json(raw, path=META_FILE)
    except AtlasError as exc:
        sink.from_error("ATL200", exc, clause="V1-META-1, V2-META-1")
        return None, {}
    version = doc.get("version") if isinstance(doc, dict) else None
    if not is_int(version) or version not in (1, 2):
        sink.add("ATL201", f"version is {version!r}; this validator reads the integers 1 and 2", path=META_FILE)
        return None, {}
    return int(version), doc


def _root_v1(root: Path, sink: Sink, *, quick: bool, limits: Limits, scan_limits: ScanLimits,
             allowed: frozenset[tuple[str, str]]) -> tuple[list[ShardTask], Callable[[list[ShardResult]], list[Any]]]:
    doc = checks_v1.load_json(root, META_FILE, sink, limits=limits, schema="v1-root",
                              schema_id="ATL202")
    doc = doc if isinstance(doc, dict) else {}
    strategy = doc.get("compression_strategy")
    root_dict = None
    if strategy == 2:
        root_dict = checks_v1.check_root_dictionary(root, sink, limits)
    names = v1_shard_folders(root, sink, root_dict_expected=strategy == 2)
    expect: dict[str, Any] = {"root_dictionary": root_dict, "root_strategy": strategy}
    tasks = [ShardTask(str(root), name, k, 1, quick, limits, scan_limits, expect, allowed)
             for k, name in enumerate(names)]
    return tasks, lambda results: checks_v1.cross_shard(doc, names, results)


def _root_v2(root: Path, sink: Sink, *, quick: bool, limits: Limits, scan_limits: ScanLimits,
             allowed: frozenset[tuple[str, str]]) -> tuple[list[ShardTask], Callable[[list[ShardResult]], list[Any]]]:
    doc, listed, expect = checks_v2.check_root(root, sink, limits)
    present, refused = v2_root_entries(root, listed, sink, shared_dict_expected=doc.get("dictionary") == "shared")
    shards_value = doc.get("shards")
    shards = shards_value if isinstance(shards_value, list) else []
    tasks = []
    for k, name in enumerate(listed):
        if name in refused:  # reported (ATL111: a link or not a folder)
            continue
        if name not in present:
            sink.add("ATL101", f"shard {name} is listed in meta.json but its folder is missing", path=name,
                     shard=name, clause="V2-META-5, V2-READ-2")
            continue
        entry = shards[k] if isinstance(shards[k], dict) else {}
        tasks.append(ShardTask(str(root), name, k, 2, quick, limits, scan_limits, {**expect, "entry": entry},
                               allowed))
    return tasks, lambda results: checks_v2.cross_shard(doc, results) if len(results) == len(listed) else \
        checks_v2.cross_shard({k: v for k, v in doc.items() if k not in ("num_examples", "max_block_raw_size")},
                              results)


def _run_tasks(root: Path, tasks: list[ShardTask], *, jobs: int, quick: bool,
               progress_factory: Callable[[int], Any] | None, executor: Any = None) -> list[ShardResult]:
    if executor is not None:  # every shard a task of the engine, submitted at once
        futures = [(task, executor.submit(run_shard, task)) for task in tasks]
        return [_result(task, future.result) for task, future in futures]
    bar = None
    if progress_factory is not None and not quick and tasks:
        total = sum(regular_size(root, f"{t.name}/data.bin") or 0 for t in tasks)
        bar = progress_factory(total)
    try:
        if jobs <= 1 or len(tasks) <= 1:
            update = bar.update if bar is not None else None
            return [run_shard(task, update) for task in tasks]
        return _run_parallel(root, tasks, jobs, bar)
    finally:
        if bar is not None:
            bar.close()


def _run_parallel(root: Path, tasks: list[ShardTask], jobs: int, bar: Any) -> list[ShardResult]:
    results: dict[int, ShardResult] = {}
    with ProcessPoolExecutor(max_workers=min(jobs, len(tasks))) as pool:
        futures = {pool.submit(run_shard, task): task for task in tasks}
        for future in as_completed(futures):
            task = futures[future]
            results[task.position] = _result(task, future.result)
            if bar is not None:
                bar.update(regular_size(root, f"{task.name}/data.bin") or 0)
    return [results[t.position] for t in tasks]


def _result(task: ShardTask, get: Callable[[], ShardResult]) -> ShardResult:
    """A shard task's result, or ATL990 when the worker checking it failed (it died, or the engine lost it)."""
    try:
        return get()
    except Exception as exc:  # noqa: BLE001 - a worker that died (BrokenProcessPool, MemoryError, a lost task)
        return ShardResult(task.position, task.name, [make(
            "ATL990", f"internal error: the worker checking this shard failed: {short_exc(exc)}",
            path=task.name, shard=task.name)], Stats(shards=1))
