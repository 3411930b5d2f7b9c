"""Validating a dataset behind a URL (``s3://``, ``https://``, any fsspec protocol): its files are mirrored into a
temporary folder and validated there by the same checks as a local dataset, so nothing is checked twice or
differently.

Mirrored: the files the metadata names (root ``meta.json``, the shared dictionary, and each listed shard's
``meta.json``, ``index.bin``, ``data.bin`` and dictionary), plus whatever the store lists under the root when
it can list (object stores; a plain HTTP server cannot), so stray files are reported as for a folder. A file
is fetched only when the checks read it: ``--quick`` reads no block, so ``data.bin`` becomes a sparse file of
the size the store reports; a file above its limit (LIM-1) is mirrored the same way, and the local check
reports the size before anything is read. A full run fetches every byte of the dataset once, streamed to disk.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from atlas_format.constants import DATA_FILE, DICT_FILE, META_FILE, V1_INDEX_FILE, V2_INDEX_FILE, Limits
from atlas_format.metadata import parse_json
from atlas_format.remote import RemoteRoot

from .findings import Report, make

_CHUNK = 1 << 22


def validate_url(url: str, *, storage_options: dict[str, Any] | None, quick: bool, limits: Limits,
                 **kwargs: Any) -> Report:
    """The report of the dataset at ``url`` (its path the URL); ``kwargs`` go to ``validate``."""
    from .runner import validate

    root = RemoteRoot(url, storage_options)
    with tempfile.TemporaryDirectory(prefix="atlas-validate-") as tmp:
        local = Path(tmp) / (root.url.name or "dataset")
        local.mkdir()
        try:
            _mirror(root, local, quick=quick, limits=limits)
        except FileNotFoundError:
            return _failed(url, quick, "ATL109", f"{url}: no dataset there (no meta.json)")
        except OSError as exc:
            return _failed(url, quick, "ATL110", f"{url}: cannot read the store: {exc}")
        report = validate(local, quick=quick, limits=limits, **kwargs)
    report.path = url
    return report


def _failed(url: str, quick: bool, finding: str, message: str) -> Report:
    report = Report(path=url, level="quick" if quick else "full")
    report.findings.append(make(finding, message, path="."))
    return report


def _limit(name: str, limits: Limits) -> int:
    return {META_FILE: limits.max_metadata_size, DICT_FILE: limits.max_dictionary_size,
            V2_INDEX_FILE: limits.max_index_size, V1_INDEX_FILE: limits.max_index_size}.get(name, limits.max_data_size)


def _mirror(root: RemoteRoot, local: Path, *, quick: bool, limits: Limits) -> None:
    fs = root.fs()
    names = {META_FILE}
    meta = _fetch(root, META_FILE, local, quick=quick, limits=limits)
    try:
        doc = parse_json(meta, limits=limits) if meta is not None else None
    except Exception:  # noqa: BLE001 - the local run reports what is wrong with it
        doc = None
    if isinstance(doc, dict):
        names.add(DICT_FILE)
        for entry in doc.get("shards") or []:
            name = entry.get("name") if isinstance(entry, dict) else None
            if isinstance(name, str) and name.isdigit():
                names.update(f"{name}/{f}" for f in (META_FILE, V2_INDEX_FILE, DATA_FILE, DICT_FILE))
    try:
        base = root.key("").rstrip("/")
        names.update(p[len(base) + 1:] for p in fs.find(base) if p.startswith(base + "/"))
    except (OSError, NotImplementedError, ValueError):
        pass  # a store that cannot list: the files the metadata names
    for rel in sorted(names - {META_FILE}):
        if all(part not in ("", ".", "..") for part in rel.split("/")):
            _fetch(root, rel, local, quick=quick, limits=limits, optional=True)


def _fetch(root: RemoteRoot, rel: str, local: Path, *, quick: bool, limits: Limits,
           optional: bool = False) -> bytes | None:
    """Mirror file ``rel``: fetched (streamed) when the checks read it, else a sparse file of its size. Returns
    the bytes of a small file (meta.json), None otherwise. An absent optional file is left absent."""
    fs, key = root.fs(), root.key(rel)
    try:
        size = int(fs.info(key)["size"])
    except FileNotFoundError:
        if optional:
            return None
        raise
    target = local / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    name = Path(rel).name
    if size > _limit(name, limits) or (quick and name == DATA_FILE):
        with open(target, "wb") as f:
            f.truncate(size)  # the local check reads its size only
        return None
    with fs.open(key, "rb", block_size=_CHUNK) as source, open(target, "wb") as out:
        while True:
            chunk = source.read(_CHUNK)
            if not chunk:
                break
            out.write(chunk)
    return target.read_bytes() if name == META_FILE else None


def parse_storage_options(text: str | None) -> dict[str, Any] | None:
    """``--storage-options``: a JSON object of fsspec options (endpoint, credentials)."""
    if text is None:
        return None
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("--storage-options must be a JSON object")
    return value
