"""Every finding id of the catalog is triggered by a vector built and mutated here.

Each vector function builds a small dataset under ``tmp`` (with the independent test
writer of validator_vectors.py, a seed-v1 copy, or the reference writer's output) and
breaks exactly one rule; the test checks the expected id is reported with a location,
and that the validator itself never raised.
"""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import shutil
import struct
from pathlib import Path
from typing import Any

import grouped_vectors
import numpy as np
import pytest
import zstandard
from conftest import SEED_V1
from validator_vectors import (
    OsSystem,
    copy_seed,
    edit_json,
    examples,
    flip,
    resign,
    resign_shard,
    write_v1,
    write_v2,
)

from atlas_format.block_v2 import encode_block, parse_block
from atlas_format.constants import Limits
from atlas_format.index_v2 import IndexHeader, compute_index_checksum
from atlas_format.zstd_frame import ZstdFrameHeader, frame_header_fields
from atlas_validator import ScanLimits, validate
from atlas_validator.catalog import CATALOG

S0 = "000000"
VECTORS: dict[str, Any] = {}


def vector(finding_id: str):
    def register(fn):
        VECTORS.setdefault(finding_id, []).append(fn)
        return fn
    return register


def v2(tmp: Path, **kw: Any) -> Path:
    kw.setdefault("shard_size", 16)
    return write_v2(tmp / "ds", examples(kw.pop("n", 40)), **kw)


def v1(tmp: Path, **kw: Any) -> Path:
    return write_v1(tmp / "ds", examples(kw.pop("n", 40)), **kw)


def seed(tmp: Path, name: str) -> Path:
    return copy_seed(SEED_V1 / name / "dataset", tmp / "ds")


def _pickle_hook(replacement: bytes, at: tuple[int, int, int] = (0, 0, 0)):
    def hook(k, b, j, p):
        return replacement if (k, b, j) == at else p
    return hook


# -- layout -------------------------------------------------------------------------


@vector("ATL100")
def _no_root_meta(tmp):
    root = v2(tmp)
    (root / "meta.json").unlink()
    return root


@vector("ATL101")
def _missing_shard(tmp):
    root = v2(tmp)
    shutil.rmtree(root / "000001")
    return root


@vector("ATL101")
def _v1_missing_shard(tmp):
    root = v1(tmp)
    edit_json(root / "meta.json", lambda d: d["shard_sizes"].append(5))
    return root


@vector("ATL102")
def _v1_gap(tmp):
    root = seed(tmp, "01-s0-multishard")
    (root / "2").rename(root / "3")
    return root


@vector("ATL102")
def _v1_width(tmp):
    root = seed(tmp, "01-s0-multishard")
    (root / "2").rename(root / "02")
    return root


@vector("ATL103")
def _missing_index(tmp):
    root = v2(tmp)
    (root / S0 / "index.bin").unlink()
    return root


@vector("ATL104")
def _extra_dictionary(tmp):
    root = v2(tmp)
    (root / S0 / "zstd_dict.bin").write_bytes(b"\x37\xa4\x30\xec" + bytes(100))
    return root


@vector("ATL105")
def _v1_data_in_empty_shard(tmp):
    root = seed(tmp, "26-empty-s0")
    (root / "0" / "data.bin").write_bytes(b"")
    return root


@vector("ATL105")
def _v1_stray_root_dictionary(tmp):
    root = seed(tmp, "02-s1-multishard")
    shutil.copy(SEED_V1 / "03-s2-shared-dict" / "dataset" / "zstd_dict.bin", root / "zstd_dict.bin")
    return root


@vector("ATL105")
def _stray_file(tmp):
    root = v2(tmp)
    (root / S0 / "README").write_text("x")
    return root


@vector("ATL112")
def _v1_extra_folder(tmp):
    root = seed(tmp, "01-s0-multishard")
    (root / "notes").mkdir()
    return root


@vector("ATL113")
def _v1_over_padded(tmp):
    root = seed(tmp, "01-s0-multishard")
    for name in ("0", "1", "2"):
        (root / name).rename(root / name.zfill(2))
    return root


@vector("ATL106")
def _tmp_leftover(tmp):
    root = v2(tmp)
    (root / ".atlas-tmp-abc123").mkdir()
    return root


@vector("ATL107")
def _unlisted_shard(tmp):
    root = v2(tmp)
    shutil.copytree(root / S0, root / "000009")
    return root


@vector("ATL109")
def _no_path(tmp):
    return tmp / "does-not-exist"


@vector("ATL110")
def _io_error(tmp, monkeypatch):
    from atlas_format.files import RegularFile

    root = v2(tmp)
    read = RegularFile.read

    def failing(self: RegularFile, n: int | None = None) -> bytes:
        if self.location.name == "index.bin":
            raise OSError(errno.EIO, "Input/output error")
        return read(self, n)

    monkeypatch.setattr(RegularFile, "read", failing)
    return root


@vector("ATL111")
def _data_is_folder(tmp):
    root = v2(tmp)
    (root / S0 / "data.bin").unlink()
    (root / S0 / "data.bin").mkdir()
    return root


@vector("ATL111")
def _shard_folder_is_a_link(tmp):
    root = v1(tmp)
    (tmp / "elsewhere").mkdir()
    os.rename(root / "1", tmp / "elsewhere" / "1")
    (root / "1").symlink_to(tmp / "elsewhere" / "1", target_is_directory=True)
    return root


# -- metadata -----------------------------------------------------------------------


@vector("ATL200")
def _bad_json(tmp):
    root = v1(tmp)
    (root / "0" / "meta.json").write_bytes(b'{"version": 1, "version": 1}')
    return root


@vector("ATL201")
def _version_true(tmp):
    root = v1(tmp)
    edit_json(root / "meta.json", lambda d: d.update(version=True))
    return root


@vector("ATL202")
def _root_schema(tmp):
    root = v1(tmp)
    edit_json(root / "meta.json", lambda d: d.update(shard_sizes="many"))
    return root


@vector("ATL203")
def _shard_schema(tmp):
    root = v1(tmp)
    edit_json(root / "1" / "meta.json", lambda d: d.update(compression_level="high"))
    return root


@vector("ATL215")
def _v1_missing_key(tmp):
    root = v1(tmp)
    edit_json(root / "1" / "meta.json", lambda d: d.pop("compression_level"))
    return root


@vector("ATL215")
def _v1_unknown_key(tmp):
    root = v1(tmp)
    edit_json(root / "meta.json", lambda d: d.update(note="x"))
    return root


@vector("ATL204")
def _shard_sizes(tmp):
    root = v1(tmp)
    edit_json(root / "meta.json", lambda d: d["shard_sizes"].__setitem__(0, 15))
    return root


@vector("ATL205")
def _shard_too_big(tmp):
    return v2(tmp, root_meta_hook=lambda d: d.update(shard_size=8))


@vector("ATL205")
def _v1_shape(tmp):
    root = write_v1(tmp / "ds", examples(16), shard_size=4)
    small = write_v1(tmp / "small", examples(2), shard_size=4)
    shutil.rmtree(root / "1")
    shutil.copytree(small / "0", root / "1")
    edit_json(root / "meta.json", lambda d: d["shard_sizes"].__setitem__(1, 2))
    return root


@vector("ATL206")
def _level_differs(tmp):
    return v2(tmp, shard_meta_hook=lambda k, d: d.update(compression_level=9) if k == 1 else None)


@vector("ATL206")
def _v1_strategy(tmp):
    root = v1(tmp)
    edit_json(root / "meta.json", lambda d: d.update(compression_strategy=0))
    return root


@vector("ATL207")
def _root_entry(tmp):
    return v2(tmp, root_meta_hook=lambda d: d["shards"][0].update(data_size=d["shards"][0]["data_size"] + 1))


@vector("ATL208")
def _num_blocks(tmp):
    root = v2(tmp)
    resign_shard(root, S0, lambda d: d.update(num_blocks=d["num_blocks"] + 1))
    return root


@vector("ATL209")
def _root_total(tmp):
    return v2(tmp, root_meta_hook=lambda d: d.update(num_examples=d["num_examples"] + 1))


@vector("ATL210")
def _unknown_member(tmp):
    return v2(tmp, root_meta_hook=lambda d: d.update(future_member=1))


@vector("ATL211")
def _shard_name(tmp):
    return v2(tmp, shard_meta_hook=lambda k, d: d.update(shard="000007") if k == 0 else None)


@vector("ATL212")
def _dict_id_without_dictionary(tmp):
    root = v2(tmp)
    resign_shard(root, S0, lambda d: d.update(dict_id=5))
    return root


@vector("ATL213")
def _no_checksum_line(tmp):
    root = v2(tmp)
    doc = json.loads((root / S0 / "meta.json").read_bytes())
    (root / S0 / "meta.json").write_text(json.dumps(doc))
    return root


@vector("ATL214")
def _framing_example_codec_none(tmp):
    return v2(tmp, codec="none", framing="example")


# -- index ----------------------------------------------------------------------------


@vector("ATL300")
def _truncated_index(tmp):
    root = v2(tmp)
    path = root / S0 / "index.bin"
    path.write_bytes(path.read_bytes()[:30])
    return root


@vector("ATL300")
def _v1_truncated_index(tmp):
    root = v1(tmp)
    path = root / "0" / "index.npy"
    path.write_bytes(path.read_bytes()[:-1])
    return root


def _np_bytes(values, dtype):
    buf = io.BytesIO()
    np.save(buf, np.array(values, dtype=dtype))
    return buf.getvalue()


@vector("ATL301")
def _float_index(tmp):
    root = v1(tmp)
    offsets = np.load(root / "0" / "index.npy")
    (root / "0" / "index.npy").write_bytes(_np_bytes(offsets, "<f8"))
    return root


@vector("ATL312")
def _signed_index(tmp):
    root = v1(tmp)
    offsets = np.load(root / "0" / "index.npy")
    (root / "0" / "index.npy").write_bytes(_np_bytes(offsets, "<i8"))
    return root


@vector("ATL312")
def _big_endian_index(tmp):
    root = v1(tmp)
    offsets = np.load(root / "0" / "index.npy")
    (root / "0" / "index.npy").write_bytes(_np_bytes(offsets, ">u2"))
    return root


@vector("ATL302")
def _wide_index(tmp):
    root = v1(tmp, strategy=1, n=8, block_size=8)  # one small compressed block: u1 suffices
    offsets = np.load(root / "0" / "index.npy")
    (root / "0" / "index.npy").write_bytes(_np_bytes(offsets, "<u8"))
    return root


@vector("ATL303")
def _index_count(tmp):
    root = v1(tmp)
    edit_json(root / "0" / "meta.json", lambda d: d.update(stored_examples=8))
    return root


@vector("ATL304")
def _first_offset(tmp):
    def hook(k, header, entries):
        if k == 0:
            entries[0] = (1,) + tuple(entries[0][1:])
    return v2(tmp, index_hook=hook)


@vector("ATL305")
def _v1_not_increasing(tmp):
    root = v1(tmp)
    offsets = [int(x) for x in np.load(root / "0" / "index.npy")]
    offsets[2] = offsets[1]
    (root / "0" / "index.npy").write_bytes(_np_bytes(offsets, "<u2"))
    return root


@vector("ATL313")
def _v1_data_longer(tmp):
    root = v1(tmp)
    with open(root / "0" / "data.bin", "ab") as handle:
        handle.write(b"xyz")
    return root


@vector("ATL306")
def _v1_data_shorter(tmp):
    root = v1(tmp)
    path = root / "0" / "data.bin"
    path.write_bytes(path.read_bytes()[:-3])
    return root


@vector("ATL307")
def _header_vs_meta(tmp):
    return v2(tmp, index_hook=lambda k, header, entries: header.update(example_count=99) if k == 0 else None)


@vector("ATL307")
def _flags_vs_framing(tmp):
    return v2(tmp, framing="example", index_hook=lambda k, header, entries: header.update(flags=0) if k == 0 else None)


def _with_extension(index: bytes, header_ext: int = 0, entry_ext: int = 0, extra: bytes = b"") -> bytes:
    header = dict(IndexHeader.parse(index[:64]))
    header.pop("_io", None)
    header.update(header_size=64 + header_ext, entry_size=24 + entry_ext, checksum=0)
    body = index[64:]
    entries = b"".join(body[i:i + 24] + bytes(entry_ext) for i in range(0, len(body), 24))
    raw = bytearray(IndexHeader.build(header) + bytes(header_ext) + entries + extra)
    raw[56:64] = struct.pack("<Q", compute_index_checksum(bytes(raw)))
    return bytes(raw)


@vector("ATL308")
def _index_extra_bytes(tmp):
    return v2(tmp, index_bytes_hook=lambda k, raw: _with_extension(raw, extra=bytes(24)) if k == 0 else raw)


@vector("ATL309")
def _header_flags(tmp):  # bit 6 is not defined (0..2 framings, 3..4 grouped size, 5 typed: *framing.py, *typed.py)
    return v2(tmp, index_hook=lambda k, header, entries: header.update(flags=0x40))


@vector("ATL310")
def _raw_size_none(tmp):
    def hook(k, header, entries):
        entries[0] = entries[0][:2] + (entries[0][2] + 1,) + entries[0][3:]
    return v2(tmp, codec="none", index_hook=hook)


@vector("ATL311")
def _index_extension(tmp):
    return v2(tmp, index_bytes_hook=lambda k, raw: _with_extension(raw, header_ext=8, entry_ext=8))


# -- blocks, codecs, dictionaries ---------------------------------------------------------


@vector("ATL400")
def _not_a_frame(tmp):
    return v1(tmp, stored_hook=lambda k, b, s: b"garbage!" if (k, b) == (0, 1) else s)


@vector("ATL400")
def _v2_corrupt_frame(tmp):
    return v2(tmp, stored_hook=lambda k, b, s: s[:-4] if (k, b) == (0, 1) else s)


def _recompress(stored: bytes, **kw: Any) -> bytes:
    raw = zstandard.ZstdDecompressor().decompress(stored)
    return zstandard.ZstdCompressor(level=3, **kw).compress(raw)


@vector("ATL401")
def _no_content_size(tmp):
    return v1(tmp, stored_hook=lambda k, b, s: _recompress(s, write_content_size=False) if b == 0 else s)


@vector("ATL403")
def _declared_differs(tmp):
    def hook(k, b, s):
        raw = zstandard.ZstdDecompressor().decompress(s)
        return zstandard.ZstdCompressor().compress(raw + b"!") if (k, b) == (0, 0) else s
    return v2(tmp, stored_hook=hook)


@vector("ATL403")
def _example_frame_declared_differs(tmp):
    def hook(k, b, j, frame):
        raw = zstandard.ZstdDecompressor().decompress(frame)
        return zstandard.ZstdCompressor().compress(raw + b"!") if (k, b, j) == (0, 1, 2) else frame
    return v2(tmp, framing="example", frame_hook=hook)


@vector("ATL404")
def _after_frame(tmp):
    return v2(tmp, stored_hook=lambda k, b, s: s + b"\0\0\0" if (k, b) == (1, 2) else s)


@vector("ATL404")
def _v1_after_frame(tmp):
    return v1(tmp, stored_hook=lambda k, b, s: s + s if (k, b) == (1, 2) else s)


@vector("ATL406")
def _content_checksum(tmp):
    return v1(tmp, stored_hook=lambda k, b, s: _recompress(s, write_checksum=True) if b == 0 else s)


@vector("ATL407")
def _swapped_dictionaries(tmp):
    root = seed(tmp, "04-s3-own-dicts-7-block-boundary")
    shards = sorted(p for p in root.iterdir() if (p / "zstd_dict.bin").exists())
    a, b = shards[0] / "zstd_dict.bin", shards[1] / "zstd_dict.bin"
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)
    return root


@vector("ATL408")
def _garbage_dictionary(tmp):
    root = seed(tmp, "03-s2-shared-dict")
    (root / "zstd_dict.bin").write_bytes(b"not a dictionary")
    return root


@vector("ATL409")
def _dict_id_record(tmp):
    root = v2(tmp, dictionary="shard", n=64, shard_size=32, block_size=4)
    resign_shard(root, S0, lambda d: d["dictionary_file"].update(dict_id=d["dict_id"] + 1))
    return root


def _raw_edit(edit):
    def hook(k, b, raw):
        return edit(raw) if (k, b) == (0, 1) else raw
    return hook


@vector("ATL410")
def _table_offsets(tmp):
    def edit(raw):
        raw = bytearray(raw)
        struct.pack_into("<I", raw, 4, 1)
        return bytes(raw)
    return v2(tmp, raw_hook=_raw_edit(edit))


@vector("ATL410")
def _frame_table_offsets(tmp):
    def hook(k, b, stored):
        return stored[:-1] if (k, b) == (0, 1) else stored  # 8 + 4n + offsets[n] != stored_size
    return v2(tmp, framing="example", stored_hook=hook)


@vector("ATL411")
def _v2_count(tmp):
    return v2(tmp, raw_hook=_raw_edit(lambda raw: encode_block(list(parse_block(raw).examples)[:-1])))


@vector("ATL411")
def _v1_count(tmp):
    return v1(tmp, block_hook=lambda k, b, p: pickle.dumps(pickle.loads(p)[:-1], protocol=4) if b == 1 else p)


@vector("ATL412")
def _v1_not_list(tmp):
    return v1(tmp, block_hook=lambda k, b, p: pickle.dumps({"a": 1}, protocol=4) if b == 1 else p)


@vector("ATL413")
def _truncated_pickle(tmp):
    return v1(tmp, strategy=0, block_hook=lambda k, b, p: p[:-5] if b == 1 else p)


@vector("ATL413")
def _v2_truncated_pickle(tmp):
    return v2(tmp, pickle_hook=lambda k, b, j, p: p[:-1] if (k, b, j) == (0, 0, 1) else p)


@vector("ATL414")
def _after_stop(tmp):
    return v1(tmp, strategy=0, block_hook=lambda k, b, p: p + b"junk" if b == 1 else p)


@vector("ATL414")
def _v2_after_stop(tmp):
    return v2(tmp, pickle_hook=lambda k, b, j, p: p + b"." if (k, b, j) == (0, 0, 1) else p)


@vector("ATL415")
def _protocol_4(tmp):
    return v2(tmp, protocol=4)


# -- checksums --------------------------------------------------------------------------


def _edit_bytes(path: Path, old: bytes, new: bytes) -> None:
    data = path.read_bytes()
    assert old in data
    path.write_bytes(data.replace(old, new, 1))


@vector("ATL500")
def _root_checksum(tmp):
    root = v2(tmp)
    _edit_bytes(root / "meta.json", b'"generation": 1', b'"generation": 2')
    return root


@vector("ATL501")
def _shard_checksum(tmp):
    root = v2(tmp)
    _edit_bytes(root / S0 / "meta.json", b'"compression_level": 3', b'"compression_level": 4')
    return root


@vector("ATL502")
def _meta_checksum_binding(tmp):
    root = v2(tmp)
    resign(root / S0 / "meta.json", lambda d: d["writer"].update(version="2"))
    return root


@vector("ATL503")
def _index_checksum(tmp):
    root = v2(tmp)
    flip(root / S0 / "index.bin", 64 + 16)  # entry 0's block checksum
    return root


@vector("ATL504")
def _index_binding(tmp):
    root = v2(tmp)
    resign_shard(root, S0, lambda d: d["index"].update(checksum="xxh3_64:" + "0" * 16))
    return root


@vector("ATL505")
def _dictionary_checksum(tmp):
    root = v2(tmp, dictionary="shared", n=64, shard_size=32, block_size=4)
    path = root / "zstd_dict.bin"
    flip(path, len(path.read_bytes()) - 1)
    return root


@vector("ATL506")
def _block_checksum(tmp):
    root = v2(tmp)
    flip(root / "000001" / "data.bin", 20)
    return root


@vector("ATL507")
def _checksum_algorithm(tmp):
    root = v2(tmp)
    _edit_bytes(root / S0 / "meta.json", b'"checksum": "xxh3_64:', b'"checksum": "xxh9_64:')
    return root


@vector("ATL590")
def _any_v1(tmp):
    return v1(tmp)


# -- pickle security ----------------------------------------------------------------------


@vector("ATL600")
def _unlisted_global(tmp):
    import pathlib

    return v2(tmp, pickle_hook=_pickle_hook(pickle.dumps(pathlib.PosixPath("x"), protocol=5)))


@vector("ATL601")
def _os_system(tmp):
    return v2(tmp, pickle_hook=_pickle_hook(pickle.dumps(OsSystem("true"), protocol=5)))


class _Persisting(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        return "external" if obj == "magic" else None


@vector("ATL602")
def _persistent_id(tmp):
    buf = io.BytesIO()
    _Persisting(buf, protocol=5).dump(["magic"])
    return v2(tmp, pickle_hook=_pickle_hook(buf.getvalue()))


# PROTO 5, BININT1 1, SHORT_BINUNICODE 'abc', STACK_GLOBAL, STOP: the module is an integer.
UNRESOLVED_STACK_GLOBAL = b"\x80\x05K\x01\x8c\x03abc\x93."
# torch.storage._load_from_bytes(b"not a stream"): not the legacy torch stream of PICKLE-12.
LOAD_FROM_BYTES_NOT_ZIP = (b"\x80\x05\x8c\x0dtorch.storage\x8c\x10_load_from_bytes\x93C\x0cnot a stream\x85R.")
# Hand-made pickles, one per rule of the pickle policy (PICKLE-2, PICKLE-6 to PICKLE-10).
POLICY_PICKLES = {
    "ATL606": b"I1\n.",  # protocol 0 INT
    "ATL607": b"\x80\x04\x8c\x08builtins\x8c\tbytearray\x93J\x00\xca\x9a;\x85R.",  # bytearray(10**9)
    "ATL608": b"\x80\x04\x8c\x08builtins\x8c\x04list\x93}b.",  # BUILD on the list type itself
    "ATL609": b"\x80\x04}K\x01a.",  # APPEND to a dict
    "ATL610": b"\x80\x04}]K\x01s.",  # a list as a dict key
    "ATL611": b"\x80\x04K\x01r\x00\x00\x00\x10.",  # LONG_BINPUT 2**28
}


@vector("ATL603")
def _unresolved_stack_global(tmp):
    return v2(tmp, pickle_hook=_pickle_hook(UNRESOLVED_STACK_GLOBAL))


def _policy_vector(finding_id: str) -> Any:
    def build(tmp):
        return v2(tmp, pickle_hook=_pickle_hook(POLICY_PICKLES[finding_id]))
    build.__name__ = f"_policy_{finding_id.lower()}"
    return vector(finding_id)(build)


for _finding_id in POLICY_PICKLES:
    _policy_vector(_finding_id)


@vector("ATL604")
def _archive_not_zip(tmp):
    return v2(tmp, pickle_hook=_pickle_hook(LOAD_FROM_BYTES_NOT_ZIP))


@vector("ATL605")
def _allowed_global(tmp):
    import collections

    return v2(tmp, pickle_hook=_pickle_hook(pickle.dumps(collections.OrderedDict(a=1), protocol=5)))


# -- limits and internal ----------------------------------------------------------------------


@vector("ATL900")
def _metadata_limit(tmp):
    return v2(tmp), {"limits": Limits(max_metadata_size=512)}


def _bomb(k, b, s):
    if (k, b) != (0, 0):
        return s
    return ZstdFrameHeader.build(frame_header_fields(1 << 40, None)) + b"\x01\x00\x00"


@vector("ATL901")
def _zstd_bomb(tmp):
    return v1(tmp, stored_hook=_bomb)


@vector("ATL901")
def _limit_raw(tmp):
    return v1(tmp), {"limits": Limits(max_block_raw_size=100)}


@vector("ATL902")
def _scan_limit(tmp):
    return v2(tmp), {"scan_limits": ScanLimits(max_items=1)}


@vector("ATL990")
def _internal_error(tmp, monkeypatch):
    from atlas_validator import checks_v2

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(checks_v2, "_check_block", boom)
    return v2(tmp)


# -- framing grouped: the crafted defects of grouped_vectors, and a list fallback --------------------------


def _crafted(name: str):
    def build(tmp):
        return grouped_vectors.write_crafted(name, tmp / "ds")
    build.__name__ = "_grouped_" + name.replace("-", "_")
    return build


for _name, (_finding_id, _description, _options) in sorted(grouped_vectors.CRAFTED.items()):
    vector(_finding_id)(_crafted(_name))


@vector("ATL423")
def _grouped_fallback(tmp):
    return v2(tmp, framing="grouped", block_size=8, fallback=lambda k, b: b == 0)


# -- typed examples (spec 3.12): one example of a typed dataset replaced by crafted MessagePack bytes ------------


def _typed_with(example_bytes: bytes, **kw: Any):
    """A typed dataset (the independent test writer, msgpack) whose example 3 of shard 0 is ``example_bytes``."""
    def build(tmp):
        return v2(tmp, encoding="typed", codec="zstd", block_size=8,
                  pickle_hook=lambda k, b, j, p: example_bytes if (k, b, j) == (0, 0, 3) else p, **kw)
    return build


def _typed_array(shape: tuple[int, ...], dtype: int, body: bytes, pad: int = 0, reserved: int = 0) -> bytes:
    """The map {"a": <ndarray extension>}: its data starts 3 + 6 + header + pad bytes into the example."""
    from atlas_format import typed

    payload = typed.ARRAY_HEAD.pack(dtype, len(shape), pad, reserved) + typed.shape_struct(len(shape)).pack(*shape)
    payload += bytes(pad) + body
    return b"\x81\xa1a\xc9" + struct.pack(">I", len(payload)) + bytes((typed.EXT_NDARRAY,)) + payload


vector("ATL700")(_typed_with(b"\x93\x01\x02"))  # an array of 3 holding 2
vector("ATL701")(_typed_with(b"\x82\xa1a\x01\xa1a\x02"))  # key 'a' twice
vector("ATL702")(_typed_with(b"\xa3\xed\xa0\x80"))  # an encoded surrogate
vector("ATL703")(_typed_with(b"\xd4\x07\x00"))  # fixext 1 of type 7
vector("ATL704")(_typed_with(_typed_array((2, 3), 6, bytes(5), pad=3)))  # 6 bytes of uint8 declared, 5 held
vector("ATL705")(_typed_with(_typed_array((2,), 6, b"\x01\x02")))  # data 21 bytes in: not on 16
vector("ATL706")(_typed_with(b"\x91" * 65 + b"\xc0"))  # 65 containers deep


@vector("ATL700")
def _typed_list_block_not_an_array(tmp):
    return v2(tmp, encoding="typed", framing="list", codec="none", block_size=6,
              raw_hook=lambda k, b, raw: b"\x01" if (k, b) == (0, 1) else raw)


@vector("ATL307")
def _typed_bit_without_the_encoding(tmp):
    return v2(tmp, index_hook=lambda k, header, entries: header.update(flags=0x20) if k == 0 else None)


CASES = [(fid, fn) for fid, fns in sorted(VECTORS.items()) for fn in fns]


def test_every_catalog_id_has_a_vector():
    assert sorted(VECTORS) == sorted(CATALOG), set(CATALOG) ^ set(VECTORS)


@pytest.mark.parametrize("finding_id,build", CASES, ids=[f"{fid}-{fn.__name__.strip('_')}" for fid, fn in CASES])
def test_vector_triggers_its_finding(tmp_path, monkeypatch, finding_id, build):
    made = build(tmp_path, monkeypatch) if "monkeypatch" in build.__code__.co_varnames else build(tmp_path)
    root, options = made if isinstance(made, tuple) else (made, {})
    report = validate(root, **options)
    ids = report.ids()
    assert finding_id in ids, [f.to_dict() for f in report.findings]
    found = [f for f in report.findings if f.id == finding_id]
    entry = CATALOG[finding_id]
    for f in found:
        assert f.severity == entry.severity_for(report.format_version)
        assert f.clause and f.message
        assert f.path is not None, f
    if entry.severity_for(report.format_version) == "error":
        assert not report.ok
    if finding_id not in ("ATL990",):
        assert "ATL990" not in ids, [f.to_dict() for f in report.findings if f.id == "ATL990"]
