"""The ``atlas-validate`` command line.

Exit codes: 0 valid (warnings allowed unless --strict), 1 invalid, 2 usage or I/O
error (a path that does not exist or cannot be read, a bad --allow value). ``--format json``
prints one document following ``report.schema.json`` (shipped in this package).
``--min-severity`` filters what is printed, never the verdict or the counts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from .catalog import INFO, markdown
from .findings import REPORT_SCHEMA_ID, SEVERITY_ALIASES, SEVERITY_ORDER, Report
from .remote import parse_storage_options
from .runner import validate

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="atlas-validate", description="Validate Atlas datasets (versions 1 and 2) "
                                "without running anything from them.")
    p.add_argument("paths", nargs="*", metavar="PATH", help="dataset folder(s) or URL(s)")
    level = p.add_mutually_exclusive_group()
    level.add_argument("--quick", action="store_true", help="metadata, layout and index only; no block is read")
    level.add_argument("--full", action="store_true", help="every check, every block (the default)")
    p.add_argument("--strict", action="store_true", help="warnings make the dataset invalid (exit 1)")
    p.add_argument("--format", choices=("human", "json"), default="human", help="output format")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing; the exit code tells")
    p.add_argument("--jobs", "-j", type=int, default=None,
                   help="worker processes for full validation (default: CPU count)")
    p.add_argument("--min-severity", choices=(*SEVERITY_ORDER, *SEVERITY_ALIASES), default=INFO,
                   help="print findings of this severity and above (default: info, every finding; 'note' is "
                        "info); the verdict and the counts always include every finding")
    p.add_argument("--allow", action="append", default=[], metavar="MODULE:NAME",
                   help="trust this global outside the pickle policy completely, as the reader's "
                        "allowed_globals=[(module, name)] (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    p.add_argument("--storage-options", default=None, metavar="JSON",
                   help="for a PATH that is a URL (s3://, https://...): fsspec's options as a JSON object, e.g. "
                        "'{\"client_kwargs\": {\"endpoint_url\": \"http://127.0.0.1:9000\"}}'")
    p.add_argument("--catalog-markdown", action="store_true", help="print FINDINGS.md (the findings catalog)")
    p.add_argument("--version", action="version", version=f"atlas-validate {__version__}")
    return p


def _cpu_count() -> int:
    """CPUs this process may run on (affinity-aware where the OS tells)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _progress_factory(enabled: bool) -> Any:
    if not enabled:
        return None

    def factory(total: int) -> Any:
        from tqdm import tqdm

        return tqdm(total=total, unit="B", unit_scale=True, desc="validating", file=sys.stderr, leave=False)

    return factory


def parse_allow(value: str) -> tuple[str, str]:
    """``module:name`` of --allow as the (module, name) pair of the reader's ``allowed_globals``; ValueError
    naming the value when it is not a dotted module, a colon and a dotted name."""
    module, sep, name = value.partition(":")
    if not sep or not all(part.isidentifier() for part in module.split(".")) \
            or not all(part.isidentifier() for part in name.split(".")):
        raise ValueError(f"--allow {value!r}: expected MODULE:NAME, e.g. mypkg.types:Box")
    return module, name


def render_human(report: Report, min_severity: str = INFO) -> str:
    """One line per finding of ``min_severity`` and above (severity, id, location, message), then a summary
    (counting every finding, and saying how many lines the filter left out) and the throughput."""
    shown = report.shown(min_severity)
    lines = [f"{f.severity.upper():7} {f.id} {f.location()}: {f.message} [{f.clause}]" for f in shown]
    verdict = "VALID" if report.ok else "INVALID"
    version = f"version {report.format_version}" if report.format_version else "unknown version"
    lines.append(f"{report.path}: {verdict} ({version}, {report.level}): {len(report.errors)} errors, "
                 f"{len(report.warnings)} warnings, {len(report.infos)} notes")
    hidden = len(report.findings) - len(shown)
    if hidden:
        lines.append(f"  {hidden} findings below {SEVERITY_ALIASES.get(min_severity, min_severity)} not shown "
                     "(--min-severity info shows every one)")
    if report.allowed_globals:
        lines.append(f"  trusted with --allow: {', '.join(report.allowed_globals)}")
    if report.encoding == "typed" and report.safe_load is not None:  # nothing to unpickle (spec 3.12)
        lines.append("  typed examples (MessagePack, never unpickled): " + (
            "every example decodes" if report.safe_load else "not every example decodes (the dataset is not valid)"))
    elif report.safe_load is None:
        lines.append("  safe loading: not checked (--quick reads no pickle)")
    elif report.safe_load:
        lines.append("  safe loading: every example loads under the pickle policy" + (
            " with allowed_globals of the --allow globals" if report.allowed_globals else ""))
    else:
        refused = report.pickles_refused
        lines.append("  safe loading: refuses this dataset" + (
            f" ({refused} pickles break the pickle policy)" if refused else " (it is not valid)"))
    for note in report.not_verifiable:
        lines.append(f"  not verifiable in version 1: {note}")
    s = report.stats
    lines.append(f"  {s.shards} shards, {s.blocks} blocks, {s.bytes_read / 1e6:.1f} MB read "
                 f"({s.decoded_bytes / 1e6:.1f} MB decoded) in {s.seconds:.2f} s: {s.mb_per_s:.1f} MB/s")
    return "\n".join(lines)


def exit_code(report: Report) -> int:
    if report.io_error:
        return EXIT_USAGE
    return EXIT_OK if report.ok else EXIT_INVALID


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # output piped into `head`: not an error of the dataset
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        except OSError:
            pass
        return EXIT_OK
    except KeyboardInterrupt:
        return 130


def _main(argv: Sequence[str] | None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help/--version
        return int(exc.code or 0)
    if args.catalog_markdown:
        sys.stdout.write(markdown())
        return EXIT_OK
    if not args.paths:
        parser.print_usage(sys.stderr)
        print("atlas-validate: error: at least one PATH is required", file=sys.stderr)
        return EXIT_USAGE
    if args.jobs is not None and args.jobs < 1:
        print("atlas-validate: error: --jobs must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    try:
        allowed = [parse_allow(value) for value in args.allow]
        storage_options = parse_storage_options(args.storage_options)
    except ValueError as exc:
        print(f"atlas-validate: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    jobs = args.jobs or _cpu_count()
    show_bar = not (args.quiet or args.no_progress or args.quick) and sys.stderr.isatty()
    reports: list[Report] = []
    code = EXIT_OK
    for path in args.paths:
        report = validate(path, quick=args.quick, jobs=jobs, strict=args.strict,
                          progress_factory=_progress_factory(show_bar), allowed_globals=allowed,
                          storage_options=storage_options)
        reports.append(report)
        code = max(code, exit_code(report))
        if report.io_error and not args.quiet:
            for f in report.findings:
                print(f"atlas-validate: error: {f.message}", file=sys.stderr)
        if args.format == "human" and not args.quiet and not report.io_error:
            print(render_human(report, args.min_severity), flush=True)
    if args.format == "json" and not args.quiet:
        doc = {"schema": REPORT_SCHEMA_ID, "ok": code == EXIT_OK, "exit_code": code,
               "reports": [r.to_dict(args.min_severity) for r in reports]}
        print(json.dumps(doc, indent=2))
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
