"""atlas-ds: the command line of torch-atlas-ds (inspect, validate, print, convert, create).

``info`` reads metadata through ``atlas_format`` alone and ``validate`` runs the
standalone validator in its own process (this package never imports it), so neither
needs torch. Exit status: 0 success, 1 the operation failed (invalid dataset, bad
data), 2 bad arguments or a bad path (missing, the wrong kind, unreadable; ``_cli_paths``).
"""

from __future__ import annotations

import argparse
import json
import os
import pprint
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._cli_paths import UsageError, input_file, new_destination, readable_folder
from .leftovers import human_size

EPILOG = """examples:
  atlas-ds info data/train                      # what is in a dataset
  atlas-ds info data/train --json               # the same as JSON (schema: torch_atlas_ds/info.schema.json)
  atlas-ds validate data/train --strict         # the standalone validator (no torch, no unpickling)
  atlas-ds show data/train 0 -1 42              # print examples (safe loading unless --trust)
  atlas-ds head data/train -n 5 --allow mypkg.types:Box   # also admit a global you trust
  atlas-ds convert old_v1 new_v2 --jobs 2       # version 1 -> 2 (validated before it is published)
  atlas-ds convert big small --codec lz4 --block-size 8
  atlas-ds create out --from-jsonl a.jsonl b.jsonl --shard-size 10000
  atlas-ds --version                            # package version, format versions read and written
"""


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit status 2)."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# -- info -----------------------------------------------------------------------------


def _bytes_on_disk(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (symlinks not followed; absent: 0)."""
    try:
        status = os.lstat(path)
    except OSError:
        return 0
    if not stat.S_ISDIR(status.st_mode):
        return status.st_size
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total


def _dataset_bytes(root: Path, shards: Sequence[str]) -> int:
    """Bytes of the dataset's own files: root meta.json and dictionary, and the shard folders it reads
    (anything else in root, leftovers included, is not part of the dataset's size)."""
    from atlas_format.constants import DICT_FILE, META_FILE

    return sum(_bytes_on_disk(root / name) for name in (META_FILE, DICT_FILE, *shards))


def _remote_bytes(dataset: Any, doc: dict[str, Any]) -> int:
    """Bytes of a dataset behind a URL: the files its metadata names, as the store reports their sizes."""
    from atlas_format.constants import DATA_FILE, DEFAULT_LIMITS, DICT_FILE, META_FILE, V2_INDEX_FILE

    limit = DEFAULT_LIMITS.max_data_size
    names = [META_FILE, *([DICT_FILE] if doc["shared_dictionary"] else [])]
    for entry in doc["shards"]:
        names += [f"{entry['name']}/{f}" for f in (META_FILE, V2_INDEX_FILE, DATA_FILE)]
        if entry["dictionary"] == "shard":
            names.append(f"{entry['name']}/{DICT_FILE}")
    return sum((dataset / name).info(limit=limit)[0] for name in names)


def _leftovers(root: Path) -> list[dict[str, Any]]:
    """Entries inside root left by interrupted writes and appends (FORMAT.md V2-STATE-1), as
    ``atlas-ds gc`` sees them (``leftovers.list_leftovers``); a running writer's are marked, not counted."""
    from .leftovers import list_leftovers

    found = [{"name": x.path.name, "kind": x.kind, "bytes": x.size, "writer_alive": x.writer_alive}
             for x in list_leftovers(root) if x.path.parent == root]
    return sorted(found, key=lambda leftover: leftover["name"])


def _dict_id(location: Any) -> int | None:
    from atlas_format.binary import parse
    from atlas_format.constants import DEFAULT_LIMITS
    from atlas_format.errors import MissingShardError
    from atlas_format.files import open_regular
    from atlas_format.zstd_frame import ZstdDictionaryHeader

    try:
        with open_regular(location, limit=DEFAULT_LIMITS.max_dictionary_size) as f:
            return int(parse(ZstdDictionaryHeader, f.read(8), path=location.path).dict_id)
    except MissingShardError:
        return None


def _reader_shards(root: Path, version: int) -> list[Any]:
    """The shards of the dataset at ``root`` as the reader opens them (``shards.py``: metadata checked, each
    index read and checked on first use), without torch."""
    from atlas_format.constants import DEFAULT_LIMITS, META_FILE
    from atlas_format.files import Location

    from .shard_files import read_json_file
    from .shards import open_v1_shards, open_v2_shards

    if version == 1:
        _, doc = read_json_file(Location(root, META_FILE), DEFAULT_LIMITS)
        return open_v1_shards(root, doc)[1]
    return open_v2_shards(root)[2]


def dataset_info(root: Path | str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``atlas-ds info`` prints, from metadata and index files only (no example is decoded). Files are
    opened as the readers open them (``atlas_format.files``: no symlink followed, never blocking, bounded); a
    URL's through fsspec (``storage_options``), version 2 only."""
    from atlas_format import metadata
    from atlas_format.constants import DATA_FILE, DEFAULT_LIMITS, DICT_FILE, META_FILE
    from atlas_format.enums import Codec, CompressionStrategy, DictionaryMode, v2_to_strategy
    from atlas_format.errors import IncompleteDatasetError, MissingShardError
    from atlas_format.files import Location, open_regular, read_regular
    from atlas_format.layout import v1_shard_folders
    from atlas_format.remote import RemoteLocation

    from .shards import open_v2_shards, root_location

    limits = DEFAULT_LIMITS
    dataset = root_location(root, storage_options)
    remote = isinstance(dataset, RemoteLocation)
    meta_path = dataset.path / META_FILE
    try:
        raw = read_regular(dataset / META_FILE, limit=limits.max_metadata_size)
    except MissingShardError:
        raise IncompleteDatasetError("no root meta.json: not a complete Atlas dataset", path=meta_path) from None
    doc = metadata.parse_json(raw, path=meta_path)
    version = doc.get("version") if isinstance(doc, dict) else None
    info: dict[str, Any] = {"path": str(root), "format_version": version}
    if version == 2:
        metadata.verify_checksummed_json(raw, path=meta_path)
        metadata.validate_schema(doc, "v2-root", path=meta_path)
        decoded = 0
        dict_ids = []
        if doc["shared_dictionary"]:
            dict_ids.append(doc["shared_dictionary"]["dict_id"])
        shards: list[Any] = open_v2_shards(dataset, root_meta=(raw, doc))[2]  # indexes checked as the reader does
        for shard in shards:
            decoded += shard.decoded_bytes()
            if shard.dictionary == "shard":
                dict_ids.append(shard.dict_id)
        codec, mode = Codec.from_label(doc["codec"]), DictionaryMode(doc["dictionary"])
        strategy = v2_to_strategy(codec, mode)
        data_bytes = sum(s["data_size"] for s in doc["shards"])
        info.update({
            "num_shards": len(doc["shards"]), "num_examples": doc["num_examples"],
            "shard_sizes": [s["num_examples"] for s in doc["shards"]],
            "compression_strategy": None if strategy is None else int(strategy),
            "strategy_name": None if strategy is None else strategy.name,
            "codec": doc["codec"], "dictionary": doc["dictionary"], "framing": doc.get("framing", "block"),
            "encoding": doc.get("encoding", "pickle"),
            "compression_level": doc["compression_level"],
            "block_size": doc["block_size"], "shard_size": doc["shard_size"], "data_bytes": data_bytes,
            "decoded_bytes": decoded, "dictionary_ids": dict_ids, "user_metadata": doc["user_metadata"],
            "generation": doc["generation"], "writer": doc["writer"],
            "bytes_on_disk": _remote_bytes(dataset, doc) if isinstance(dataset, RemoteLocation)
            else _dataset_bytes(Path(root), [s["name"] for s in doc["shards"]]),
            "leftovers": [] if remote else _leftovers(Path(root)),
        })
    elif version == 1 and remote:
        from atlas_format.errors import VersionError

        raise VersionError("a version 1 dataset is read from a local folder (its shards are found by listing it)",
                           path=meta_path)
    elif version == 1:
        root, dataset = Path(root), Location(Path(root))

        metadata.validate_schema(doc, "v1-root", path=meta_path)
        strategy = CompressionStrategy(doc["compression_strategy"])
        names = v1_shard_folders(root)
        sizes, blocks, levels, data_bytes, decoded = [], set(), set(), 0, 0
        dict_ids = [i for i in [_dict_id(dataset / DICT_FILE)] if i is not None]
        for name, shard in zip(names, _reader_shards(root, 1), strict=True):  # read and checked as the reader does
            sizes.append(shard.num_examples)
            blocks.add(shard.block_size)
            levels.add(shard.metadata.compression_level)
            decoded += shard.decoded_bytes()
            if shard.num_blocks:
                with open_regular(dataset / name / DATA_FILE, limit=limits.max_data_size, shard=name) as data:
                    data_bytes += data.size
            shard_id = _dict_id(dataset / name / DICT_FILE)
            if shard_id is not None:
                dict_ids.append(shard_id)
        codec_label, mode_label = {0: ("none", "none"), 1: ("zstd", "none"), 2: ("zstd", "shared"),
                                   3: ("zstd", "shard")}[int(strategy)]
        info.update({
            "num_shards": len(names), "num_examples": sum(sizes), "shard_sizes": sizes,
            "compression_strategy": int(strategy), "strategy_name": strategy.name, "codec": codec_label,
            "dictionary": mode_label, "framing": "block", "encoding": "pickle",
            "compression_level": levels.pop() if len(levels) == 1 else None,
            "block_size": blocks.pop() if len(blocks) == 1 else sorted(blocks),
            "shard_size": max(sizes, default=0), "data_bytes": data_bytes, "decoded_bytes": decoded,
            "dictionary_ids": dict_ids, "user_metadata": None, "generation": None, "writer": None,
            "bytes_on_disk": _dataset_bytes(root, names), "leftovers": _leftovers(root),
        })
    else:
        from atlas_format.errors import VersionError

        raise VersionError(f"format version {version!r} is not 1 or 2", path=meta_path)
    info["compression_ratio"] = round(info["decoded_bytes"] / info["data_bytes"], 3) if info["data_bytes"] else None
    return info


_FRAMING_TEXT = {"block": "block (one codec frame per block)", "example": "example (one codec frame per example)",
                 "list": "list (one codec frame per block over a pickled list)",
                 "grouped": "grouped (a pickled list per block that also unpickles in groups)"}

_LEFTOVER_TEXT = {"write": "temporary folder of an unfinished write",
                  "append": "temporary entry of an unfinished append",
                  "shard": "shard folder not listed in meta.json",
                  "lock": "lock file of a writer that is gone"}


def _leftovers_text(path: str, leftovers: list[dict[str, Any]]) -> str:
    if not leftovers:
        return "none"
    total = sum(leftover["bytes"] for leftover in leftovers)
    named = "; ".join(f"{leftover['name']} ({_LEFTOVER_TEXT[leftover['kind']]}, {human_size(leftover['bytes'])}"
                      f"{', its writer is still running' if leftover['writer_alive'] else ''})"
                      for leftover in leftovers)
    return (f"{len(leftovers)} ({human_size(total)}, not counted above): {named}; "
            f"remove them with atlas-ds gc {path}")


def render_info(info: dict[str, Any]) -> str:
    strategy = info["strategy_name"] or "(none: v2 only)"
    lines = [
        f"path               {info['path']}",
        f"format version     {info['format_version']}",
        f"examples           {info['num_examples']:,} in {info['num_shards']} shard(s)",
        f"codec              {info['codec']} (dictionary: {info['dictionary']}; strategy {strategy})",
        f"framing            {_FRAMING_TEXT.get(info['framing'], info['framing'])}",
        f"encoding           {info['encoding']}" + (" (MessagePack, never unpickled)" if info["encoding"] == "typed"
                                                    else ""),
        f"compression level  {info['compression_level']}",
        f"block size         {info['block_size']} examples; shard size {info['shard_size']}",
        f"bytes on disk      {human_size(info['bytes_on_disk'])} ({info['bytes_on_disk']:,} bytes)",
        f"decoded blocks     {human_size(info['decoded_bytes'])}; compression ratio {info['compression_ratio']}",
        f"dictionary ids     {', '.join(map(str, info['dictionary_ids'])) or '-'}",
        f"leftovers          {_leftovers_text(info['path'], info['leftovers'])}",
    ]
    if info["format_version"] == 2:
        lines.append(f"generation         {info['generation']} (written by {info['writer']['library']} "
                     f"{info['writer']['version']})")
        lines.append(f"user metadata      {json.dumps(info['user_metadata'])}")
    return "\n".join(lines)


def cmd_info(args: argparse.Namespace) -> int:
    from atlas_format.remote import is_url

    storage_options = json.loads(args.storage_options) if args.storage_options else None
    if storage_options is not None and not isinstance(storage_options, dict):
        raise UsageError("--storage-options must be a JSON object")
    info = dataset_info(args.path if is_url(args.path) else readable_folder(args.path), storage_options)
    print(json.dumps(info, indent=2) if args.json else render_info(info))
    return 0


# -- validate ---------------------------------------------------------------------------


def cmd_validate(validator_args: Sequence[str]) -> int:
    """atlas-validate with these arguments, in a separate process: the validator must not share this
    process's imports (torch, us)."""
    command = [sys.executable, "-m", "atlas_validator", *validator_args]
    if sys.stdout is sys.__stdout__ and sys.stderr is sys.__stderr__:
        return subprocess.call(command)  # the terminal is the validator's (its progress bar shows)
    done = subprocess.run(command, capture_output=True, text=True)
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    return done.returncode


# -- show / head --------------------------------------------------------------------------


def _allowed_global(value: str) -> tuple[str, str]:
    """``--allow module:name`` as the (module, name) pair of ``allowed_globals``."""
    module, sep, name = value.partition(":")
    if not sep or not all(part.isidentifier() for part in [*module.split("."), *name.split(".")]):
        raise argparse.ArgumentTypeError(f"{value!r} is not module:name (for example --allow mypkg.types:Box)")
    return module, name


def _allowed_globals(args: argparse.Namespace) -> list[tuple[str, str]]:
    if args.allow and args.trust:
        raise UsageError("--allow extends safe loading; --trust turns it off (use one of them)")
    return list(args.allow)


def _open(path: Path, args: argparse.Namespace) -> Any:
    from . import AtlasDataset

    return AtlasDataset(path, safe=not args.trust, allowed_globals=_allowed_globals(args))


def _print_example(index: int, example: Any) -> None:
    text = pprint.pformat(example, width=100, compact=True)
    print(f"[{index}] {text}")


def cmd_show(args: argparse.Namespace) -> int:
    ds = _open(readable_folder(args.path), args)
    n = len(ds)
    for index in args.indices:
        if not -n <= index < n:
            raise UsageError(f"index {index} out of range for {n} examples")
    for index in args.indices:
        _print_example(index, ds[index])
    return 0


def cmd_head(args: argparse.Namespace) -> int:
    if args.n < 0:
        raise UsageError("-n must be >= 0")
    ds = _open(readable_folder(args.path), args)
    for index in range(min(args.n, len(ds))):
        _print_example(index, ds[index])
    return 0


# -- convert / create --------------------------------------------------------------------


def _writer_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    group = parser.add_argument_group("writer options" + ("" if defaults else " (default: keep the source's)"))
    group.add_argument("--format-version", type=int, choices=(1, 2), default=None,
                       help="1 (the original's format) or 2 (default)")
    group.add_argument("--strategy", choices=("none", "standard", "shared-dictionary", "dictionary"),
                       default="shared-dictionary" if defaults else None, help="zstd dictionary use")
    group.add_argument("--codec", choices=("none", "zstd", "lz4"), default=None,
                       help="block codec (lz4: version 2, no dictionary)")
    group.add_argument("--framing", choices=("grouped", "block", "example", "list"), default=None,
                       help="a list per block (pickled, or typed) that also decodes in groups (default of "
                            "version 2 with zstd), one codec frame per block (the default with lz4 and none), per "
                            "example (fast random reads, more bytes), or per block over a list (version 1's blocks)")
    group.add_argument("--encoding", choices=("pickle", "typed"), default=None,
                       help="examples as pickles, or as typed MessagePack objects read without unpickling (spec "
                            "3.12; the default of create --from-jsonl); convert keeps the source's")
    group.add_argument("--level", type=int, default=3 if defaults else None, help="compression level")
    group.add_argument("--block-size", type=int, default=64 if defaults else None, help="examples per block")
    group.add_argument("--shard-size", type=int, default=10_000 if defaults else None, help="examples per shard")
    group.add_argument("--dict-size", type=float, default=0.01 if defaults else None,
                       help="dictionary size as a fraction of the training bytes")
    group.add_argument("--jobs", type=int, default=1, help="parallel worker processes (default 1)")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")


def _resolved_writer_args(args: argparse.Namespace, source: dict[str, Any] | None) -> dict[str, Any]:
    from atlas_format.enums import CompressionStrategy

    names = {"none": CompressionStrategy.NO_COMPRESSION, "standard": CompressionStrategy.STANDARD_COMPRESSION,
             "shared-dictionary": CompressionStrategy.SHARED_DICTIONARY_COMPRESSION,
             "dictionary": CompressionStrategy.DICTIONARY_COMPRESSION}
    src = source or {}
    out: dict[str, Any] = {
        "format_version": args.format_version or 2,  # converting migrates to the current version by default
        "compression_level": args.level if args.level is not None else (src.get("compression_level") or 3),
        "block_size": args.block_size or src.get("block_size") or 64,
        "shard_size": args.shard_size or src.get("shard_size") or 10_000,
        "compression_dict_size": args.dict_size if args.dict_size is not None else 0.01,
    }
    codec = args.codec
    if args.strategy is not None:
        out["compression_strategy"] = names[args.strategy]
    elif codec is None and src.get("compression_strategy") is not None:
        out["compression_strategy"] = CompressionStrategy(src["compression_strategy"])
    if codec is None and args.strategy is None and src.get("codec") == "lz4" and out["format_version"] == 2:
        codec = "lz4"
    if codec == "none":
        out["compression_strategy"] = CompressionStrategy.NO_COMPRESSION
    elif codec == "zstd" and out.get("compression_strategy") in (None, CompressionStrategy.NO_COMPRESSION):
        out["compression_strategy"] = CompressionStrategy.STANDARD_COMPRESSION
    elif codec == "lz4":
        if out["format_version"] == 1:
            raise UsageError("version 1 has no LZ4 codec")
        out["codec"] = "lz4"
        if args.strategy in (None, "standard"):
            out.pop("compression_strategy", None)
        else:
            raise UsageError("LZ4 has no dictionary: use --strategy standard (or leave it out) with --codec lz4")
    uncompressed = out.get("compression_strategy") == CompressionStrategy.NO_COMPRESSION
    if args.framing is not None:
        if out["format_version"] == 1 and args.framing != "block":
            raise UsageError(f"version 1 has no framing {args.framing!r}")
        if uncompressed and args.framing == "example":
            raise UsageError("--framing example needs a codec (zstd or lz4): codec none has no frames")
        out["framing"] = args.framing
    elif args.framing is None and out["format_version"] == 2 and (
            src.get("framing") in ("list", "grouped") or (src.get("framing") == "example" and not uncompressed)):
        out["framing"] = src["framing"]  # keep the source's framing (a source in "block" becomes "grouped")
    encoding = args.encoding or src.get("encoding") or "pickle"
    if encoding == "typed":
        if out["format_version"] == 1:
            raise UsageError("--encoding typed needs version 2 (version 1 examples are pickles)")
        out["encoding"] = "typed"
    if out["block_size"] < 1 or out["shard_size"] < 1:
        raise UsageError("--block-size and --shard-size must be >= 1")
    return out


def cmd_convert(args: argparse.Namespace) -> int:
    from .convert import convert

    src = readable_folder(args.src)
    dst = new_destination(args.dst)
    if args.jobs < 1:
        raise UsageError("--jobs must be >= 1")
    allowed_globals = _allowed_globals(args)
    source = dataset_info(src)
    source["compression_level"] = source.get("compression_level")
    writer_args = _resolved_writer_args(args, source)
    convert(src, dst, jobs=args.jobs, validate=not args.no_validate,
            progress=False if args.no_progress else None,
            trust=args.trust, allowed_globals=allowed_globals, **writer_args)
    print(f"converted {source['num_examples']:,} examples: {args.src} (v{source['format_version']}) -> "
          f"{args.dst} (v{writer_args['format_version']})")
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    from .convert import create_from_hf, create_from_jsonl

    dst = new_destination(args.dst)
    if args.jobs < 1:
        raise UsageError("--jobs must be >= 1")
    # JSON values are always encodable: JSON Lines become typed examples unless asked otherwise (version 2)
    typed_default = {"encoding": "typed"} if args.from_jsonl and args.format_version in (None, 2) else {}
    writer_args = _resolved_writer_args(args, typed_default)
    if args.from_jsonl:
        files = [input_file(f) for f in args.from_jsonl]
        count = create_from_jsonl(files, dst, jobs=args.jobs, progress=False if args.no_progress else None,
                                  **writer_args)
    else:
        readable_folder(args.from_hf.partition(":")[0], "a HuggingFace dataset saved with save_to_disk")
        count = create_from_hf(args.from_hf, dst, jobs=args.jobs,
                               progress=False if args.no_progress else None, **writer_args)
    print(f"created {args.dst}: {count:,} examples")
    return 0


# -- main ------------------------------------------------------------------------------------


def _load_options(parser: argparse.ArgumentParser, what: str = "the dataset") -> None:
    """--trust and --allow: how examples are unpickled (safe loading by default)."""
    parser.add_argument("--trust", action="store_true",
                        help=f"unpickle {what} without the pickle policy (only for data you trust)")
    parser.add_argument("--allow", action="append", type=_allowed_global, default=[], metavar="MODULE:NAME",
                        help="also admit this pickle global in safe loading (repeatable; the allowed_globals= "
                             "of AtlasDataset); trust it completely")


def _version() -> str:
    """The package version from its installed metadata (the source tree's __version__ when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    from atlas_format import LATEST_VERSION, SPEC_VERSION, SUPPORTED_VERSIONS

    try:
        package = version("torch-atlas-ds")
    except PackageNotFoundError:
        package = getattr(sys.modules[__package__], "__version__", "unknown")
    versions = ", ".join(map(str, SUPPORTED_VERSIONS))
    return (f"atlas-ds (torch-atlas-ds) {package}: reads Atlas format versions {versions}, "
            f"writes {versions} (default {LATEST_VERSION}); spec {SPEC_VERSION}")


class _VersionAction(argparse.Action):
    """--version, computed only when asked for (reading package metadata costs every other command time)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(_version())
        parser.exit(0)


def cmd_gc(args: argparse.Namespace) -> int:
    """Remove the leftovers of dead writers to PATH (a dataset folder, or a path whose write never finished)."""
    from .leftovers import list_leftovers, remove_leftovers

    path = Path(args.path)
    if os.path.lexists(path):
        readable_folder(args.path)  # a file, or unreadable: exit 2
    elif not list_leftovers(path):
        raise UsageError(f"no such path: {args.path} (and no leftovers of a write to it)")
    result = remove_leftovers(path, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for x in result.removed:
        who = f", writer pid {x.writer_pid} not running" if x.writer_pid is not None else ""
        print(f"{verb} {x.path} ({x.kind} leftover, {human_size(x.size)}{who})")
    for x in result.kept:
        print(f"kept {x.path}: its writer (pid {x.writer_pid}) is still running")
    freed = result.bytes_freed
    print(f"{'would free' if args.dry_run else 'freed'} {human_size(freed)} ({freed} bytes)"
          if result.removed else "nothing to remove")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="atlas-ds", description="Inspect, validate, print, convert and create Atlas datasets.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=_VersionAction,
                        help="print the package version and the format versions it reads and writes")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("info", help="version, shards, examples, codec, sizes, compression ratio, dictionaries",
                       description="Summarize a dataset from its metadata and index (no example is decoded).")
    p.add_argument("path")
    p.add_argument("--json", action="store_true", help="print JSON (schema: torch_atlas_ds/info.schema.json)")
    p.add_argument("--storage-options", default=None, metavar="JSON",
                   help="for a PATH that is a URL (s3://, https://...): fsspec's options as a JSON object")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("validate", help="run the standalone validator (every argument goes to atlas-validate)",
                       description="Run atlas-validate in a separate process (no torch, no unpickling), with every "
                                   "argument after 'validate': PATH, and options such as --quick, --strict, "
                                   "--format json, --jobs N, --allow MODULE:NAME, --min-severity before or after it.")
    p.add_argument("path")
    p.set_defaults(func=None)

    p = sub.add_parser("show", help="print the examples at the given indices",
                       description="Print examples by index (negative indices count from the end). Loading is "
                                   "safe (allow-listed pickle globals only) unless --trust.")
    p.add_argument("path")
    p.add_argument("indices", type=int, nargs="+", metavar="INDEX")
    _load_options(p)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("head", help="print the first examples", description="Print the first N examples.")
    p.add_argument("path")
    p.add_argument("-n", type=int, default=5, help="how many (default 5)")
    _load_options(p)
    p.set_defaults(func=cmd_head)

    p = sub.add_parser("convert", help="rewrite a dataset: v1 <-> v2, strategy, codec, level, block or shard size",
                       description="Rewrite SRC into DST with new settings (unset options keep SRC's). The result "
                                   "is validated before it is published; DST must not exist.")
    p.add_argument("src")
    p.add_argument("dst")
    _writer_options(p, defaults=False)
    p.add_argument("--no-validate", action="store_true", help="skip validating the result before publishing")
    _load_options(p, "SRC")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("create", help="create a dataset from JSON Lines files or a HuggingFace dataset on disk",
                       description="Import data you already have. Each JSONL line is one example (any JSON value).")
    p.add_argument("dst")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-jsonl", nargs="+", metavar="FILE", help="JSON Lines files, read in order")
    source.add_argument("--from-hf", metavar="PATH[:SPLIT]",
                        help="a HuggingFace datasets folder saved with save_to_disk; PATH:SPLIT picks a split "
                             "of a DatasetDict (needs the 'hf' extra)")
    _writer_options(p, defaults=True)
    p.set_defaults(func=cmd_create)

    p = sub.add_parser("gc", help="remove the leftovers of interrupted writes and appends (never a running writer's)",
                       description="Remove what dead writers left: temporary .atlas-tmp-* folders beside PATH or "
                                   "inside it, shard folders root meta.json does not list, stale lock files. A "
                                   "running writer's files are kept. PATH is a dataset folder or a path whose "
                                   "write never finished.")
    p.add_argument("path")
    p.add_argument("--dry-run", action="store_true", help="print what would be removed, remove nothing")
    p.set_defaults(func=cmd_gc)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["validate"] and not {"-h", "--help"} & set(argv[1:]):
        # everything after "validate" is atlas-validate's (options before or after PATH; it checks the path)
        return cmd_validate(argv[1:])
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"atlas-ds: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("atlas-ds: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a file of the dataset or of the input: named, without Python's "[Errno n]"
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"atlas-ds: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the command line reports any failure in one line
        from atlas_format.errors import AtlasError

        # a TypeError here is a value a typed dataset cannot hold, named by its example and path
        kind = "error" if isinstance(exc, (AtlasError, OSError, ValueError, TypeError)) else type(exc).__name__
        print(f"atlas-ds: {kind}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
