"""A shard's small files, read and checked as every reader reads them: metadata (meta.json) and zstd
dictionaries. Both versions' shard readers and the writer's append use them (one copy, no import
between the shard readers). Files are opened through ``atlas_format.files`` (FILE-1..4).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import zstandard

from atlas_format.codecs import codec_info
from atlas_format.constants import Limits
from atlas_format.enums import Codec
from atlas_format.files import Location, open_regular, read_regular
from atlas_format.metadata import file_checksum_text, parse_json, validate_schema, verify_checksummed_json
from atlas_format.remote import RemoteLocation

from .errors import (
    AtlasError,
    ChecksumError,
    CodecError,
    FormatError,
    LimitError,
    MetadataError,
    MissingShardError,
    VersionError,
)


def read_json_file(location: Location | RemoteLocation, limits: Limits, *,
                   missing: type[AtlasError] = MissingShardError, shard: str | None = None) -> tuple[bytes, Any]:
    """(bytes, parsed JSON) of a metadata file; absent is ``missing``, too large a LimitError (before reading)."""
    data = read_regular(location, limit=limits.max_metadata_size, missing=missing, shard=shard)
    return data, parse_json(data, path=location.path, limits=limits)


def check_version(doc: Any, path: Path | str) -> int:
    """The format version of a parsed meta.json: exactly the integer 1 or 2, else VersionError."""
    if not isinstance(doc, dict):
        raise MetadataError("meta.json is not a JSON object", path=path)
    version = doc.get("version")
    if type(version) is not int or version not in (1, 2):
        raise VersionError(f"unsupported format version {version!r} (this reader reads versions 1 and 2)",
                           path=path)
    return version


def load_dictionary(location: Location, expected: dict[str, Any], limits: Limits, shard: str | None = None) -> bytes:
    """A dictionary file checked against its metadata record (size, checksum, dict_id)."""
    data = read_regular(location, limit=limits.max_dictionary_size, what="zstd dictionary named by the metadata",
                        shard=shard)
    _check_dictionary(data, location.path, expected, shard)
    return data


def _check_dictionary(data: bytes, path: Path | str, expected: dict[str, Any], shard: str | None) -> None:
    if len(data) != expected["size"]:
        raise FormatError(f"dictionary is {len(data)} bytes, metadata says {expected['size']}", path=path,
                          shard=shard)
    text = file_checksum_text(data)
    if text != expected["checksum"]:
        raise ChecksumError(f"dictionary checksum mismatch: metadata says {expected['checksum']}, file hashes "
                            f"to {text}", path=path, shard=shard)
    try:
        dict_id = zstandard.ZstdCompressionDict(data).dict_id()
    except zstandard.ZstdError as exc:
        raise FormatError(f"not a zstd dictionary: {exc}", path=path, shard=shard) from None
    if dict_id != expected["dict_id"]:
        raise FormatError(f"dictionary id {dict_id}, metadata says {expected['dict_id']}", path=path, shard=shard)


# Dictionaries read in this process, shared by every shard that uses one (and dropped from
# pickled readers: workers read them again, once). Keyed so that a changed file is re-read.
_DICTIONARIES: dict[tuple[Any, ...], bytes] = {}


def read_dictionary(location: Location | RemoteLocation, expected: dict[str, Any] | None, limits: Limits,
                    shard: str | None = None) -> bytes:
    """A dictionary file, verified against ``expected`` (its metadata record) when given; memoized per process
    by the file's identity (a local file's device, inode, size and time; a URL's size and the store's tag)."""
    what = "the zstd dictionary this shard uses"
    checksum = None if expected is None else expected["checksum"]
    if isinstance(location, RemoteLocation):
        size, identity = location.info(limit=limits.max_dictionary_size, what=what, shard=shard)
        return _memoized((*identity, checksum), lambda: location.read(limit=limits.max_dictionary_size, what=what,
                                                                      shard=shard, size=size),
                         location, expected, shard)
    with open_regular(location, limit=limits.max_dictionary_size, what=what, shard=shard) as f:
        st = f.status
        key = (str(location), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, checksum)
        return _memoized(key, f.read, location, expected, shard)


def _memoized(key: tuple[Any, ...], read: Any, location: Location | RemoteLocation,
              expected: dict[str, Any] | None, shard: str | None) -> bytes:
    """The dictionary held for ``key``, or ``read()`` checked against ``expected`` and kept (8 at most)."""
    data: bytes | None = _DICTIONARIES.get(key)
    if data is None:
        data = read()
        if expected is not None:
            _check_dictionary(data, location.path, expected, shard)
        if len(_DICTIONARIES) >= 8:
            _DICTIONARIES.clear()
        _DICTIONARIES[key] = data
    return data


def read_v2_meta(location: Location | RemoteLocation, schema: str, limits: Limits, shard: str | None = None,
                 read: tuple[bytes, Any] | None = None) -> tuple[dict[str, Any], str]:
    """A version 2 meta.json: version, codec, checksum and schema checked; returns (doc, checksum text).
    ``read``: its (bytes, parsed JSON) when the caller read it already (``read_json_file``)."""
    data, doc = read if read is not None else read_json_file(location, limits, shard=shard)
    path = location.path
    if check_version(doc, path) != 2:
        raise VersionError("expected version 2 metadata here", path=path)
    codec_label = doc.get("codec")
    if not isinstance(codec_label, str):
        raise MetadataError(f"codec must be a string, got {codec_label!r}", path=path)
    try:
        codec_info(codec_label)
    except CodecError as exc:
        raise CodecError(exc.message, path=path) from None
    text = verify_checksummed_json(data, path=path)
    validate_schema(doc, schema, path=path)
    return doc, text


def check_v2_shard_meta(doc: dict[str, Any], meta_text: str, codec: Codec, framing: str, encoding: str,
                        limits: Limits, expected: dict[str, Any] | None, where: dict[str, Any]) -> None:
    """A version 2 shard meta.json (its schema checked) against itself, the limits and, when given, what the
    root says of the shard (``expected``: its record, framing and encoding)."""
    blocks, examples, block_size = doc["num_blocks"], doc["num_examples"], doc["block_size"]
    if blocks != math.ceil(examples / block_size):
        raise MetadataError(f"num_blocks {blocks} does not match {examples} examples in blocks of {block_size}",
                            **where)
    if examples > limits.max_examples_per_shard or block_size > limits.max_examples_per_block:
        raise LimitError("num_examples or block_size above the limits", **where)
    if doc["max_block_raw_size"] > limits.max_block_raw_size or doc["data_size"] > limits.max_data_size:
        raise LimitError("max_block_raw_size or data_size above the limits", **where)
    if codec == Codec.NONE and doc["dictionary"] != "none":
        raise MetadataError("codec none cannot use a dictionary", **where)
    if codec == Codec.LZ4 and doc["dictionary"] != "none":
        raise MetadataError("codec lz4 cannot use a zstd dictionary", **where)
    if codec == Codec.NONE and framing == "example":
        raise MetadataError("framing 'example' needs a codec: codec none has no frames", **where)
    if expected is None:
        return
    for key, mine in (("num_examples", examples), ("num_blocks", blocks), ("data_size", doc["data_size"]),
                      ("index_size", doc["index"]["size"]), ("meta_checksum", meta_text),
                      ("dictionary", doc["dictionary"]), ("framing", framing), ("encoding", encoding)):
        if expected.get(key) != mine:
            raise MetadataError(f"root meta.json says {key} {expected.get(key)!r} for this shard, its meta.json says "
                                f"{mine!r}", **where)
