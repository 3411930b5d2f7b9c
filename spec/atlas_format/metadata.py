"""JSON metadata: strict parsing, JSON Schema validation, and checksummed JSON (version 2).

A version 2 ``meta.json`` starts with the fixed line ``{\\n  "checksum": "<alg>:<hex>",\\n``;
the checksum covers every byte after that line. Any JSON parser reads the file as
ordinary JSON, and any language verifies it without re-serializing (spec V2-META).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from os import PathLike
from typing import Any

import jsonschema

from .checksum import DEFAULT_CHECKSUM, ChecksumAlgorithm, parse_checksum_text
from .constants import DEFAULT_LIMITS, Limits
from .errors import ChecksumError, FormatError, MetadataError

SCHEMA_NAMES = ("v1-root", "v1-shard", "v2-root", "v2-shard")
CHECKSUM_PREFIX = b'{\n  "checksum": "'
CHECKSUM_LINE_END = b'",\n'

PathArg = str | PathLike[str] | None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def parse_json(data: bytes, *, path: PathArg = None, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, no duplicate keys, size within the limit."""
    if len(data) > limits.max_metadata_size:
        raise MetadataError(f"metadata is {len(data)} bytes, above the limit of {limits.max_metadata_size}",
                            path=path)
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError as exc:
        raise MetadataError(f"metadata is not UTF-8: {exc.reason}", path=path, offset=exc.start) from None
    except json.JSONDecodeError as exc:
        raise MetadataError(f"metadata is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                            path=path, offset=len(data.decode("utf-8")[:exc.pos].encode("utf-8"))) from None
    except (ValueError, RecursionError) as exc:
        raise MetadataError(f"metadata is not valid JSON: {exc}", path=path) from None


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The JSON Schema shipped with atlas_format ('v1-root', 'v1-shard', 'v2-root', 'v2-shard')."""
    if name not in SCHEMA_NAMES:
        raise KeyError(f"unknown schema {name!r}; known: {', '.join(SCHEMA_NAMES)}")
    text = resources.files(__package__).joinpath("schemas", f"{name}.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    schema = load_schema(name)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator: jsonschema.protocols.Validator = cls(schema)
    return validator


def schema_errors(doc: Any, name: str) -> list[tuple[str, str]]:
    """Every schema violation as (JSON pointer, message), sorted by location."""
    found = []
    for err in _validator(name).iter_errors(doc):
        pointer = "/" + "/".join(str(p) for p in err.absolute_path)
        found.append((pointer, err.message))
    return sorted(found)


def validate_schema(doc: Any, name: str, *, path: PathArg = None) -> None:
    """Raise MetadataError listing every violation of the named schema."""
    errors = schema_errors(doc, name)
    if errors:
        listed = "; ".join(f"{ptr}: {msg}" for ptr, msg in errors[:10])
        more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
        raise MetadataError(f"metadata does not match schema {name}: {listed}{more}", path=path)


# -- checksummed JSON (version 2) ------------------------------------------------------


def dump_checksummed_json(doc: Mapping[str, Any], algorithm: ChecksumAlgorithm = DEFAULT_CHECKSUM) -> bytes:
    """The bytes of a version 2 meta.json: checksum line first, the rest indented by 2."""
    body = {k: v for k, v in doc.items() if k != "checksum"}
    if not body:
        raise ValueError("metadata needs at least one member besides the checksum")
    text = json.dumps(body, indent=2, ensure_ascii=True, allow_nan=False) + "\n"
    covered = text[2:].encode("ascii")  # drop the opening "{\n"
    value = algorithm.text(algorithm.of(covered))
    return CHECKSUM_PREFIX + value.encode("ascii") + CHECKSUM_LINE_END + covered


def split_checksummed_json(data: bytes, *, path: PathArg = None) -> tuple[str, bytes]:
    """(checksum text, covered bytes) of a version 2 meta.json, or MetadataError."""
    if not data.startswith(CHECKSUM_PREFIX):
        raise MetadataError('version 2 metadata must start with the line {"checksum": ...} '
                            "(spec V2-META-2)", path=path, offset=0)
    end = data.find(CHECKSUM_LINE_END, len(CHECKSUM_PREFIX), len(CHECKSUM_PREFIX) + 80)
    if end < 0:
        raise MetadataError("the checksum line of version 2 metadata is not terminated by '\",\\n'",
                            path=path, offset=len(CHECKSUM_PREFIX))
    text = data[len(CHECKSUM_PREFIX):end].decode("ascii", "replace")
    return text, data[end + len(CHECKSUM_LINE_END):]


def verify_checksummed_json(data: bytes, *, path: PathArg = None) -> str:
    """Check a version 2 meta.json's own checksum; return the checksum text."""
    text, covered = split_checksummed_json(data, path=path)
    try:
        algorithm, value = parse_checksum_text(text)
    except FormatError as exc:
        raise MetadataError(exc.message, path=path, offset=len(CHECKSUM_PREFIX)) from None
    actual = algorithm.of(covered)
    if actual != value:
        raise ChecksumError(f"metadata checksum mismatch: file says {text}, content hashes to "
                            f"{algorithm.text(actual)}", path=path, offset=len(CHECKSUM_PREFIX))
    return text


def file_checksum_text(data: bytes | bytearray | memoryview,
                       algorithm: ChecksumAlgorithm = DEFAULT_CHECKSUM) -> str:
    """'<alg>:<hex>' of a whole file's bytes (metadata files, dictionaries)."""
    return algorithm.text(algorithm.of(data))


# -- version 1 ----------------------------------------------------------------------


def dump_v1_json(doc: Mapping[str, Any]) -> bytes:
    """A version 1 meta.json exactly as the original writes it (json.dump, indent=4)."""
    return json.dumps(dict(doc), indent=4).encode("utf-8")
