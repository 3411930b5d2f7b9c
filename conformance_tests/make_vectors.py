#!/usr/bin/env python
"""Generate the version 2 golden corpus (``vectors/v2/``) with the reference writer.

Each vector folder gets ``dataset/``, ``expected.json`` (examples, tagged JSON where JSON
cannot hold a value), ``case.json`` (verdict, parameters, description) and
``manifest.json`` (size and sha256 of every file); ``vectors/README.md`` lists every
vector of every corpus. Deterministic for a given zstandard/lz4 version.

    python conformance_tests/make_vectors.py            # regenerate vectors/v2 and the README
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from atlas_format.testing.vectors import VECTORS_ROOT, encode_example, iter_vectors

HERE = Path(__file__).resolve().parent
VECTORS = VECTORS_ROOT

WORDS = ("atlas shard block index offset pickle zstd lz4 dictionary tensor example dataset train valid "
         "image label caption token batch epoch loader worker the a of and to in is for on").split()


def records(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{"id": i, "text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14))),
             "tokens": [rng.randint(0, 50000) for _ in range(rng.randint(0, 12))],
             "score": round(rng.uniform(-5, 5), 3), "label": rng.choice([True, False, None, "cat", "dog"])}
            for i in range(n)]


def typed_examples(n: int, seed: int) -> list[dict[Any, Any]]:
    """Values of the typed set (no tensors: expected.json has no tag for them): records with arrays, tuples,
    bytes, an int key, NaN and -0.0."""
    rng = np.random.default_rng(seed)
    dtypes = ("uint8", "<i2", "<f4", "<f8", "bool", "<i8", "<c8")
    out: list[dict[Any, Any]] = []
    for i, record in enumerate(records(n, seed)):
        dtype = dtypes[i % len(dtypes)]
        raw = rng.integers(0, 256, size=(i % 5) * np.dtype(dtype).itemsize, dtype=np.uint8)
        array = (raw % 2 if dtype == "bool" else raw).view(dtype)
        out.append({**record, "array": array.reshape(-1), "pair": (i, record["text"][:5]),
                    "raw": bytes([i % 256]) * (i % 4), 7: [float("nan"), -0.0] if i % 10 == 0 else [],
                    "nested": {"deep": [[i], ()]}})
    return out


def images(n: int, shape: tuple[int, ...], seed: int) -> list[dict[str, Any]]:
    """Image-like examples: a smooth uint8 array (it compresses) and a label."""
    rng = np.random.default_rng(seed)
    ramp = np.add.outer(np.arange(shape[-2]), np.arange(shape[-1])).astype(np.uint8)
    return [{"image": (np.broadcast_to(ramp, shape) + rng.integers(0, 4, shape)).astype(np.uint8),
             "label": int(rng.integers(0, 10))} for _ in range(n)]


def non_json_examples() -> list[Any]:
    """Values JSON cannot hold directly (stored in expected.json with tags)."""
    rng = np.random.default_rng(7)
    return [
        b"", b"\x00\xff bytes", (1, "two", 3.0), float("nan"), float("inf"), float("-inf"), -0.0,
        {1: "int key", (2, 3): "tuple key"}, {"$not_a_tag": 1},
        np.arange(12, dtype="<i4").reshape(3, 4), rng.standard_normal((2, 3)).astype("<f4"),
        np.array([True, False]), np.zeros((0, 5), dtype="<f8"), np.array(3.5),
        rng.integers(0, 256, (3, 8, 8), dtype=np.uint8), "\U0001f600 non-BMP", 2**100, [b"nested", (None,)],
    ]


def big_examples() -> list[Any]:
    rng = random.Random(11)
    return [{"id": i, "blob": bytes(rng.getrandbits(8) for _ in range(70_000)) if i == 1 else b"small"}
            for i in range(5)]


# name, description, examples factory, writer keywords, optional post-step (append)
Spec = tuple[str, str, Callable[[], list[Any]], dict[str, Any], list[list[Any]] | None]


def specs() -> list[Spec]:
    return [
        ("01-none-multishard", "codec none, 3 shards (40,40,20), partial last block",
         lambda: records(100, 1), dict(shard_size=40, block_size=8, compression_strategy=0), None),
        ("02-zstd-multishard", "zstd without dictionary, 3 shards",
         lambda: records(100, 2), dict(shard_size=40, block_size=8, compression_strategy=1), None),
        ("03-zstd-shared-dict", "zstd with a shared dictionary trained on shard 0 (8 blocks); root zstd_dict.bin",
         lambda: records(150, 3), dict(shard_size=64, block_size=8, compression_strategy=2), None),
        ("04-zstd-shard-dicts-fallback", "zstd with per-shard dictionaries; the last shard (6 blocks) falls back "
         "to none while root says shard", lambda: records(160, 4),
         dict(shard_size=56, block_size=8, compression_strategy=3), None),
        ("05-lz4", "LZ4 frames, 2 shards", lambda: records(120, 5),
         dict(shard_size=64, block_size=8, codec="lz4"), None),
        ("06-shared-dict-fallback", "shared dictionary requested, shard 0 has 4 blocks: the dataset falls back to "
         "none", lambda: records(70, 6), dict(shard_size=32, block_size=8, compression_strategy=2), None),
        ("07-empty", "zero examples: no shard at all", lambda: [],
         dict(shard_size=10, block_size=4, compression_strategy=2), None),
        ("08-single-example-lz4", "one example, block larger than the data", lambda: records(1, 8),
         dict(shard_size=64, block_size=8, codec="lz4"), None),
        ("09-block-size-1", "block_size 1 with a shared dictionary", lambda: records(30, 9),
         dict(shard_size=10, block_size=1, compression_strategy=2), None),
        ("10-block-larger-than-shard", "shard_size 3 < block_size 8: one partial block per shard",
         lambda: records(10, 10), dict(shard_size=3, block_size=8, compression_strategy=1), None),
        ("11-eleven-shards", "11 shards: names stay six digits (000000..000010)", lambda: records(171, 11),
         dict(shard_size=16, block_size=2, compression_strategy=2), None),
        ("12-appended", "written (64 examples) then appended twice (40 + 30): generation 3, shared dictionary "
         "reused", lambda: records(64, 12), dict(shard_size=32, block_size=4, compression_strategy=2),
         [records(40, 121), records(30, 122)]),
        ("13-non-json-values", "bytes, tuples, nan, inf, -0.0, non-string keys, numpy arrays, big ints "
         "(tagged in expected.json)", non_json_examples, dict(shard_size=8, block_size=3, compression_strategy=1),
         None),
        ("14-large-example", "one 70 KB incompressible example among small ones (block bigger than usual)",
         big_examples, dict(shard_size=5, block_size=2, compression_strategy=1), None),
        ("15-user-metadata", "user_metadata stored in the root meta.json", lambda: records(20, 15),
         dict(shard_size=20, block_size=4, compression_strategy=0,
              user_metadata={"source": "conformance", "license": "CC0", "nested": {"k": [1, 2, None]}}), None),
        ("16-level-19-shard-dicts", "zstd level 19 with per-shard dictionaries", lambda: records(120, 16),
         dict(shard_size=64, block_size=8, compression_strategy=3, compression_level=19), None),
        ("17-example-frames-shared-dict", "framing example: one zstd frame per example with the shared "
         "dictionary; the block tables stored uncompressed (V2-FRAME)", lambda: records(150, 17),
         dict(shard_size=64, block_size=8, compression_strategy=2, framing="example"), None),
        ("18-example-frames-lz4", "framing example with LZ4, then appended (the append keeps the framing)",
         lambda: records(50, 18), dict(shard_size=32, block_size=4, codec="lz4", framing="example"),
         [records(20, 181)]),
        ("19-list-shared-dict", "framing list: each block one protocol-4 pickle of its list (version 1's block "
         "bytes) in one zstd frame with the shared dictionary (V2-FRAME-5)", lambda: records(150, 19),
         dict(shard_size=64, block_size=8, compression_strategy=2, framing="list"), None),
        ("20-list-none-appended", "framing list without compression, partial last blocks, then appended (the "
         "append keeps the framing)", lambda: records(45, 20),
         dict(shard_size=20, block_size=6, compression_strategy=0, framing="list"), [records(13, 201)]),
        ("21-grouped-shared-dict", "framing grouped (the default): blocks of 8, one magicless zstd frame each with "
         "the shared dictionary, group table and per-shard preamble (V2-FRAME-6)", lambda: records(150, 21),
         dict(shard_size=64, block_size=8, compression_strategy=2, framing="grouped"), None),
        ("22-grouped-shard-dicts-40", "framing grouped, blocks of 40 (two frames of 32 + 8 under a head of frame "
         "starts and group offsets), "
         "per-shard dictionaries", lambda: records(330, 22),
         dict(shard_size=300, block_size=40, compression_strategy=3, framing="grouped"), None),
        ("23-grouped-lz4-appended", "framing grouped with LZ4, blocks of 40 and a partial one, then appended (the "
         "new shard has its own preamble)", lambda: records(90, 23),
         dict(shard_size=50, block_size=40, codec="lz4", framing="grouped"), [records(30, 231)]),
        ("24-grouped-none", "framing grouped without compression, blocks of 5, two shards (40 + 30)",
         lambda: records(70, 24), dict(shard_size=40, block_size=5, compression_strategy=0, framing="grouped"),
         None),
        ("25-grouped-numpy", "framing grouped over numpy arrays and non-JSON values: the preamble memoizes the "
         "numpy reconstructors and dtypes", lambda: non_json_examples() * 3,
         dict(shard_size=64, block_size=8, compression_strategy=1, framing="grouped"), None),
        ("26-grouped-groups-of-1", "framing grouped over 2.3 KB uint8 images: the writer chooses groups of 1 "
         "(meta.json group_size 1, index flags 0x1c), blocks of 40 (frames of 32 + 8, a head offset per example)",
         lambda: images(90, (3, 24, 32), 26), dict(shard_size=60, block_size=40, compression_strategy=1,
                                                   framing="grouped"), None),
        ("27-grouped-groups-of-2", "framing grouped over 1.1 KB uint8 images: groups of 2 (group_size 2, flags "
         "0x14); blocks of 20 are one frame whose table holds 10 groups", lambda: images(45, (1, 33, 33), 27),
         dict(shard_size=45, block_size=20, compression_strategy=1, framing="grouped"), None),
        ("28-typed-block", "encoding typed (spec 3.12): each example one MessagePack object, framing block (the "
         "typed default until TYPED-7), zstd with the shared dictionary; numpy arrays of several dtypes (data "
         "16-byte aligned), tuples, bytes, int keys, NaN and -0.0", lambda: typed_examples(150, 28),
         dict(shard_size=64, block_size=8, compression_strategy=2, encoding="typed", framing="block"), None),
        ("29-typed-list-none-appended", "encoding typed, framing list without compression (a block is one "
         "MessagePack array of its examples), then appended (the append keeps the encoding)",
         lambda: typed_examples(45, 29), dict(shard_size=20, block_size=6, compression_strategy=0, encoding="typed",
                                              framing="list"), [typed_examples(13, 291)]),
        ("30-typed-grouped-shared-dict", "encoding typed, framing grouped (TYPED-7, the typed default with zstd): "
         "blocks of 40 are framing list's MessagePack array in two magicless frames (32 + 8) under a head of the "
         "frame start and group offsets, no preamble; two shards (100 + 50), the shared dictionary",
         lambda: typed_examples(150, 30), dict(shard_size=100, block_size=40, compression_strategy=2,
                                               encoding="typed", framing="grouped"), None),
        ("31-typed-grouped-images-none", "encoding typed, framing grouped without compression over 2.3 KB uint8 "
         "images: groups of 1 (group_size 1), blocks of 8 are one frame whose head holds 7 group offsets",
         lambda: images(20, (3, 24, 32), 31), dict(shard_size=20, block_size=8, compression_strategy=0,
                                                  encoding="typed", framing="grouped"), None),
    ]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest(folder: Path) -> None:
    files = [{"path": p.relative_to(folder).as_posix(), "size": p.stat().st_size, "sha256": _sha256(p)}
             for p in sorted(folder.rglob("*"), key=lambda q: q.relative_to(folder).as_posix())
             if p.is_file() and p.name != "manifest.json"]
    (folder / "manifest.json").write_text(json.dumps({"files": files}, indent=2) + "\n")


def write_dataset(root: Path, examples: list[Any], kwargs: dict[str, Any]) -> None:
    from torch_atlas_ds import AtlasDatasetWriter

    # vectors 01-20 were written before grouped became the default: they keep framing block, byte for byte
    with AtlasDatasetWriter(root, **{"framing": "block", **kwargs}) as writer:
        for example in examples:
            writer.add_example(example)


def build(out: Path, spec: Spec) -> None:
    from torch_atlas_ds import AtlasDatasetWriter

    name, description, factory, kwargs, appends = spec
    folder = out / name
    folder.mkdir(parents=True)
    examples = factory()
    write_dataset(folder / "dataset", examples, kwargs)
    for extra in appends or []:
        with AtlasDatasetWriter.append(folder / "dataset") as writer:
            for example in extra:
                writer.add_example(example)
        examples = examples + extra
    writer_params = {k: v for k, v in kwargs.items() if k != "user_metadata"}
    writer_params.setdefault("compression_strategy", 2)
    writer_params.setdefault("compression_level", 3)
    writer_params.setdefault("compression_dict_size", 0.01)
    if writer_params.get("codec") == "lz4":
        writer_params["compression_strategy"] = 1
    case = {"name": name, "format_version": 2, "verdict": "valid", "findings": [], "description": description,
            "writer": writer_params, "appends": [len(a) for a in appends or []], "source": None,
            "generator": "torch_atlas_ds reference writer (conformance_tests/make_vectors.py)"}
    (folder / "case.json").write_text(json.dumps(case, indent=2) + "\n")
    (folder / "expected.json").write_text(
        '{\n "examples": [\n' + ",\n".join("  " + json.dumps(encode_example(e)) for e in examples)
        + ("\n" if examples else "") + " ]\n}\n")
    write_manifest(folder)


def readme_row(vector: Any) -> str:
    w = vector.case.get("writer", {})
    params = ", ".join(f"{k}={w[k]}" for k in ("shard_size", "block_size", "compression_strategy", "codec",
                                                "compression_level", "framing", "encoding") if k in w)
    findings = ", ".join(vector.findings) or "—"
    return (f"| `{vector.folder.parent.name}/{vector.name}` | {vector.case.get('format_version')} | {params} | "
            f"{vector.case['verdict']} | {findings} | {vector.case.get('description', '')} |")


def write_readme() -> None:
    lines = [
        "# Golden vectors",
        "",
        "Language-neutral test data for any implementation of the Atlas format (see",
        "`spec/FORMAT.md`). Each vector folder holds `dataset/` (the files), `case.json` (the expected",
        "verdict, the finding ids a validator must report, the writer parameters), `expected.json`",
        "(the examples, for valid vectors; tagged JSON for values JSON cannot hold: `$bytes`, `$tuple`,",
        "`$float`, `$dict`, `$ndarray`, see `atlas_format/testing/vectors.py`) and `manifest.json`",
        "(size and sha256 of every file).",
        "",
        "Corpora: `seed-v1/` written by the original `torch_atlas_ds` 0.1.0 (its own README has the",
        "details); `v2/` written by this project's reference writer (`make_vectors.py`); `invalid/`,",
        "where each case isolates one defect of a valid vector (`source` in `case.json`) and names the",
        "finding ids the validator must report (`make_invalid_vectors.py`); `warnings/`, valid vectors",
        "made the same way whose one defect the original reader reads through (version 1), so a",
        "validator reports the listed ids as warnings and readers SHOULD return the source's examples (the",
        "kit passes a reader that reads them exactly or refuses them, never one that returns other data).",
        "Run them against any implementation with `atlas-conformance` or the kit in",
        "`atlas_format.testing.kit`.",
        "",
        "| vector | version | writer parameters | verdict | findings | covers |",
        "|---|---|---|---|---|---|",
    ]
    lines += [readme_row(v) for v in iter_vectors(VECTORS)]
    (VECTORS / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> int:
    out = VECTORS / "v2"
    tmp = Path(tempfile.mkdtemp(prefix="v2-", dir=VECTORS))
    try:
        for spec in specs():
            build(tmp, spec)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
        out.chmod(0o755)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    write_readme()
    print(f"wrote {len(specs())} vectors to {out} and {VECTORS / 'README.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
