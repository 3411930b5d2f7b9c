"""Conversion and import: rewrite a dataset with new settings, or create one from JSONL or HF.

A conversion is written to a hidden sibling folder, checked by the standalone validator
(run as a separate process: this package never imports it), and only then renamed to the
destination. Imports fail with the file and line of the first bad record and publish
nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from atlas_format.errors import AtlasError, FormatError

from ._util import publish_folder
from .dataset import AtlasDataset
from .parallel import write_dataset


class ValidationFailedError(AtlasError):
    """The converted dataset did not pass the standalone validator; it was not published."""


def validate_with_standalone_validator(path: Path, allowed_globals: Iterable[tuple[str, str]] = ()) -> None:
    """Run ``python -m atlas_validator --format json PATH``, admitting the globals the source was read with
    (``--allow module:name``); raise ValidationFailedError on findings."""
    allow = [arg for module, name in allowed_globals for arg in ("--allow", f"{module}:{name}")]
    done = subprocess.run([sys.executable, "-m", "atlas_validator", "--format", "json", *allow, str(path)],
                          capture_output=True, text=True)
    if done.returncode == 0:
        return
    try:
        report = json.loads(done.stdout)["reports"][0]
        errors = [f"{f['id']} {f['message']}" for f in report["findings"] if f["severity"] == "error"][:5]
    except (ValueError, KeyError, IndexError):
        errors = [done.stderr.strip() or done.stdout.strip()]
    raise ValidationFailedError("the converted dataset failed validation: " + "; ".join(errors), path=path)


def _staging_sibling(dst: Path) -> Path:
    return dst.with_name(f".atlas-tmp-convert-{dst.name}-{uuid.uuid4().hex[:8]}")


def convert(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, jobs: int = 1, validate: bool = True,
            progress: bool | None = None, trust: bool = False, allowed_globals: Iterable[tuple[str, str]] = (),
            **writer_args: Any) -> Path:
    """Rewrite ``src`` into ``dst`` with ``writer_args`` (format_version, compression_strategy, codec,
    compression_level, block_size, shard_size, compression_dict_size), in ``jobs`` processes.

    The source is read with safe loading unless ``trust`` (``allowed_globals``: extra (module, name)
    pairs it admits, as AtlasDataset's); the result is validated before it is
    published (``validate=False`` skips it). Version 2 user metadata is carried over.
    """
    src, dst, allowed_globals = Path(src), Path(dst), tuple(allowed_globals)
    if os.path.lexists(dst):
        raise FileExistsError(f"[Errno 17] File exists: '{dst}'")
    source = AtlasDataset(src, safe=not trust, allowed_globals=allowed_globals)
    if writer_args.get("format_version", 2) == 2 and source.v2_metadata is not None:
        writer_args.setdefault("user_metadata", source.v2_metadata.get("user_metadata") or None)
    staging = _staging_sibling(dst)
    try:
        write_dataset(source, staging, num_workers=jobs, progress=progress, desc="converting", **writer_args)
        if validate:
            validate_with_standalone_validator(staging, allowed_globals)
        publish_folder(staging, dst)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return dst


def _jsonl_records(files: Sequence[Path]) -> Iterator[Any]:
    for path in files:
        with open(path, "rb") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                    reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
                    raise FormatError(f"line {number} is not valid JSON ({reason}); nothing was written",
                                      path=path) from None


def create_from_jsonl(files: Sequence[str | os.PathLike[str]], dst: str | os.PathLike[str], *, jobs: int = 1,
                      progress: bool | None = None, **writer_args: Any) -> int:
    """Create ``dst`` from JSON Lines files (one example per non-blank line, files in order)."""
    paths = [Path(f) for f in files]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")
    result = write_dataset(_jsonl_records(paths), dst, num_workers=jobs, progress=progress, desc="importing",
                           **writer_args)
    return len(AtlasDataset(result))


def create_from_hf(name_or_path: str, dst: str | os.PathLike[str], *, jobs: int = 1, progress: bool | None = None,
                   **writer_args: Any) -> int:
    """Create ``dst`` from a HuggingFace ``datasets`` folder saved with ``save_to_disk``.

    Needs the optional ``datasets`` package (``pip install 'torch-atlas-ds[hf]'``). A DatasetDict
    must name its split as ``PATH:split``. Rows become dicts; workers read row ranges directly.
    """
    try:
        import datasets
    except ImportError:
        raise ImportError("--from-hf needs the 'datasets' package: pip install 'torch-atlas-ds[hf]'") from None
    path, _, split = name_or_path.partition(":")
    loaded = datasets.load_from_disk(path)
    if isinstance(loaded, datasets.DatasetDict):
        if not split:
            raise ValueError(f"{path} holds splits {sorted(loaded)}: name one as {path}:<split>")
        loaded = loaded[split]
    write_dataset(_HFRows(loaded), dst, num_workers=jobs, progress=progress, desc="importing", **writer_args)
    return len(loaded)


class _HFRows:
    """Index access to a HuggingFace dataset as plain dicts (picklable: Arrow files are memory-mapped)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:
        return dict(self.dataset[int(i)])

    def __getitems__(self, indices: list[int]) -> list[Any]:
        batch = self.dataset[indices[0]:indices[-1] + 1] if indices == list(range(indices[0], indices[-1] + 1)) \
            else self.dataset.select(indices)[:]
        keys = list(batch)
        return [dict(zip(keys, values, strict=True)) for values in zip(*(batch[k] for k in keys), strict=True)]
