"""atlas-conformance: run the golden vectors against an implementation, print a pass/fail table.

    atlas-conformance --reader mypkg.atlas:open --reader-error mypkg.atlas:AtlasError \
                      --writer mypkg.atlas:write --validator mypkg.atlas:errors

Each option names ``module:function`` (see ``atlas_format.testing.checks`` for the
signatures); give any subset. Exit status 0 when every check passes, 1 otherwise,
2 for bad arguments.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from typing import Any

from . import checks
from .vectors import default_vectors_root, iter_vectors


def load(spec: str) -> Any:
    """Import ``module:attribute`` (attribute may be dotted)."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"{spec!r} is not of the form module:function")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    obj: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{spec} is not callable")
    return obj


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="atlas-conformance", description=__doc__.splitlines()[0],
                                     epilog="Example: atlas-conformance --reader torch_atlas_ds:AtlasDataset "
                                            "--validator atlas_validator:validate")
    parser.add_argument("--reader", help="module:function, path -> sequence of examples")
    parser.add_argument("--writer", help="module:function, (path, examples, params) -> None (needs --reader)")
    parser.add_argument("--validator", help="module:function, path -> error finding ids or a report")
    parser.add_argument("--reader-error", action="append", default=[], metavar="MODULE:CLASS",
                        help="an exception class the reader refuses bad data with (repeatable); "
                             "any other exception on an invalid vector fails (default: any exception)")
    parser.add_argument("--vectors", type=Path, default=None, help="vectors root (default: the checkout's)")
    parser.add_argument("--v1-byte-identical", action="store_true",
                        help="also require version 1 rewrites to reproduce the original's files")
    parser.add_argument("--safe-reader", action="store_true",
                        help="the reader loads through an allow-list: also run the malicious vectors")
    parser.add_argument("--only", default="", help="run only vectors whose name contains this text")
    args = parser.parse_args(argv)
    if not (args.reader or args.validator):
        parser.error("give at least --reader or --validator")
    if args.writer and not args.reader:
        parser.error("--writer needs --reader to read the written datasets back")
    try:
        reader = load(args.reader) if args.reader else None
        writer = load(args.writer) if args.writer else None
        validator = load(args.validator) if args.validator else None
        reader_errors = tuple(load(spec) for spec in args.reader_error) or (Exception,)
    except (ImportError, AttributeError, ValueError) as exc:
        parser.error(str(exc))
    for error in reader_errors:
        if not (isinstance(error, type) and issubclass(error, BaseException)):
            parser.error(f"--reader-error {error!r} is not an exception class")
    root = args.vectors or default_vectors_root()
    if root is None or not root.is_dir():
        parser.error(f"vectors folder not found: {root} (pass --vectors)")
    vectors = [v for v in iter_vectors(root) if args.only in v.name]
    if not vectors:
        print(f"atlas-conformance: no vector under {root} matches {args.only!r}: nothing was checked",
              file=sys.stderr)
        return 1
    columns = ["reader", "writer", "validator"]
    rows = []
    for vector in vectors:
        results: dict[str, list[str] | str | None] = {c: None for c in columns}
        if reader is not None:
            if vector.malicious and not args.safe_reader:
                results["reader"] = "skipped: malicious (runs only with --safe-reader)"
            else:
                results["reader"] = (checks.check_reader_valid(vector, reader) if vector.valid
                                     else checks.check_reader_invalid(vector, reader, reader_errors))
        if writer is not None and reader is not None:
            results["writer"] = (checks.check_writer(vector, writer, reader, byte_identical=args.v1_byte_identical)
                                 if vector.valid else "skipped: invalid vector")
        if validator is not None:
            results["validator"] = checks.check_validator(vector, validator)
        rows.append((f"{vector.folder.parent.name}/{vector.name} ({vector.case['verdict']})", results))
    given = [c for c, impl in zip(columns, (reader, writer, validator), strict=True) if impl is not None]
    table, ok = checks.summarize(rows, given)
    print(table)
    print()
    for column in given:
        counts = checks.tally(rows, column)
        print(f"{column}: {counts['pass']} passed, {counts['fail']} failed, {counts['skipped']} skipped")
        if counts["pass"] + counts["fail"] == 0:
            print(f"{column}: FAILURE: no vector was checked (a conformance run that checks nothing fails)")
            ok = False
    print(f"\n{len(rows)} vectors: {'all passed' if ok else 'FAILURES'}")
    return 0 if ok else 1

if __name__ == "__main__":
    raise SystemExit(main())
