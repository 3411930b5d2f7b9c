"""Mutation properties: one change to one file of a valid dataset (a byte flip, a truncation, an
extension, a deletion, or a swap of two shards' files).

Version 2: the validator reports an error, and the reader raises an AtlasError or returns the
correct example at every index, never wrong data. Version 1: the reader never returns wrong data
for a mutation the validator can detect; what it cannot detect is the class spec/FORMAT.md DETECT-2
lists (bytes inside a block that still decode to a list of the right length, informational
metadata, swaps of identically shaped shards)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atlas_format.testing.equality import strict_equal
from atlas_validator import validate
from torch_atlas_ds import AtlasDataset, AtlasDatasetWriter, AtlasError, Codec, CompressionStrategy

S = CompressionStrategy
CONFIGS = {
    "v2-none": (2, dict(compression_strategy=S.NO_COMPRESSION)),
    "v2-zstd": (2, dict(compression_strategy=S.STANDARD_COMPRESSION)),
    "v2-shared": (2, dict(compression_strategy=S.SHARED_DICTIONARY_COMPRESSION)),
    "v2-shard-dicts": (2, dict(compression_strategy=S.DICTIONARY_COMPRESSION)),
    "v2-lz4": (2, dict(codec=Codec.LZ4)),
    "v2-shared-frames": (2, dict(compression_strategy=S.SHARED_DICTIONARY_COMPRESSION, framing="example")),
    "v2-lz4-frames": (2, dict(codec=Codec.LZ4, framing="example")),
    "v2-shared-list": (2, dict(compression_strategy=S.SHARED_DICTIONARY_COMPRESSION, framing="list")),
    "v2-none-list": (2, dict(compression_strategy=S.NO_COMPRESSION, framing="list")),
    "v1-none": (1, dict(compression_strategy=S.NO_COMPRESSION)),
    "v1-zstd": (1, dict(compression_strategy=S.STANDARD_COMPRESSION)),
    "v1-shared": (1, dict(compression_strategy=S.SHARED_DICTIONARY_COMPRESSION)),
}
EXAMPLES = [{"id": i, "text": f"example {i} " * (i % 5 + 1), "v": [i, -i, i * 0.5]} for i in range(150)]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> dict[str, Path]:
    out = {}
    for name, (version, kwargs) in CONFIGS.items():
        root = tmp_path_factory.mktemp("pristine") / name
        with AtlasDatasetWriter(root, shard_size=64, block_size=8, format_version=version, **kwargs) as writer:
            for example in EXAMPLES:
                writer.add_example(example)
        out[name] = root
    return out


@dataclass(frozen=True)
class Mutation:
    kind: str
    file_pick: int
    position: float
    amount: int

    def apply(self, root: Path) -> str:
        """Mutate the copy at ``root``; return the relative path of the file changed."""
        files = sorted(p for p in root.rglob("*") if p.is_file())
        target = files[self.file_pick % len(files)]
        rel = target.relative_to(root).as_posix()
        data = bytearray(target.read_bytes())
        at = int(self.position * max(len(data) - 1, 0))
        if self.kind == "flip" and data:
            data[at] ^= 1 << (self.amount % 8)
        elif self.kind == "truncate" and data:
            del data[at:]
        elif self.kind == "extend":
            data += bytes([self.amount % 256]) * (1 + self.amount % 9)
        elif self.kind == "delete":
            target.unlink()
            return rel
        elif self.kind == "swap":
            shards = sorted(p for p in root.iterdir() if p.is_dir())
            peer = shards[(shards.index(target.parent) + 1) % len(shards)] / target.name \
                if target.parent in shards else None
            if peer is None or not peer.exists():
                return self.kind + ":noop"
            tmp = target.with_name(target.name + ".tmp")
            target.rename(tmp)
            peer.rename(target)
            tmp.rename(peer)
            return rel
        else:
            return self.kind + ":noop"
        target.write_bytes(bytes(data))
        return rel


mutations = st.builds(Mutation, st.sampled_from(["flip", "flip", "flip", "truncate", "extend", "delete", "swap"]),
                      st.integers(0, 1000), st.floats(0, 1), st.integers(0, 255))


def read_all(root: Path) -> tuple[list[int], list[int]]:
    """(indices returning WRONG data, indices raising a non-Atlas exception); Atlas errors are fine."""
    wrong, foreign = [], []
    try:
        ds = AtlasDataset(root, safe=True)
        n = len(ds)
    except AtlasError:
        return [], []
    except Exception:  # noqa: BLE001 - any other exception type is a finding of this test
        return [], [-1]
    for i in range(n):
        try:
            value = ds[i]
        except AtlasError:
            continue
        except Exception:  # noqa: BLE001
            foreign.append(i)
            continue
        if i >= len(EXAMPLES) or not strict_equal(EXAMPLES[i], value):
            wrong.append(i)
    return wrong, foreign


@settings()
@given(name=st.sampled_from(sorted(n for n in CONFIGS if n.startswith("v2"))), mutation=mutations)
def test_v2_every_mutation_is_reported_and_never_read_as_wrong_data(pristine, tmp_path_factory, name, mutation):
    root = tmp_path_factory.mktemp("mut") / name
    shutil.copytree(pristine[name], root)
    changed = mutation.apply(root)
    if changed.endswith(":noop") or (root / changed).exists() and (root / changed).read_bytes() == (
            pristine[name] / changed).read_bytes():
        return  # the mutation changed nothing (e.g. a swap of identical files)
    report = validate(root)
    assert not report.ok, f"{mutation} of {changed} not reported"
    wrong, foreign = read_all(root)
    assert not wrong, f"{mutation} of {changed}: wrong data at {wrong}"
    assert not foreign, f"{mutation} of {changed}: non-Atlas exception at {foreign}"


def _undetectable_in_v1(changed: str) -> bool:
    """DETECT-2: block or dictionary bytes that still decode, informational or unused metadata, swaps."""
    return changed.endswith(("data.bin", "meta.json", "zstd_dict.bin")) or changed.endswith(":noop")


@settings()
@given(name=st.sampled_from(sorted(n for n in CONFIGS if n.startswith("v1"))), mutation=mutations)
def test_v1_mutations_are_detected_unless_the_format_cannot_see_them(pristine, tmp_path_factory, name, mutation):
    root = tmp_path_factory.mktemp("mut") / name
    shutil.copytree(pristine[name], root)
    changed = mutation.apply(root)
    report = validate(root)  # never raises, whatever the mutation
    wrong, foreign = read_all(root)
    assert not foreign, f"{mutation} of {changed}: non-Atlas exception at {foreign}"
    if wrong:
        assert _undetectable_in_v1(changed), f"{mutation} of {changed}: wrong data at {wrong} outside DETECT-2"
    # reported as an error, or as a warning when readers read it correctly (V1-READ-5: bytes after the index array)
    if report.ok and not report.warnings and not _undetectable_in_v1(changed) and mutation.kind != "swap":
        same = (root / changed).exists() and (root / changed).read_bytes() == (pristine[name] / changed).read_bytes()
        assert same, f"{mutation} of {changed}: a detectable mutation was not reported"
