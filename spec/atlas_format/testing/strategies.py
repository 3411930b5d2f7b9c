"""Hypothesis strategies for the conformance suite: examples, layouts, writer configurations.

Examples cover what datasets hold: None, bool, int (big ones too), float (nan, inf, -0.0,
subnormals), str (non-BMP code points), bytes, lists, tuples, dicts, numpy arrays of
several dtypes and shapes, torch tensors, and examples larger than a usual block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from ..enums import Codec, CompressionStrategy, Framing

NUMPY_DTYPES = ("uint8", "int16", "int32", "int64", "float16", "float32", "float64", "bool", "complex64")
TORCH_DTYPES = ("float32", "float64", "float16", "bfloat16", "int64", "int32", "uint8", "bool")


def scalars() -> st.SearchStrategy[Any]:
    """Leaves: every JSON-like scalar plus bytes, big ints and special floats."""
    return st.one_of(
        st.none(), st.booleans(),
        st.integers(), st.integers(min_value=-(2**200), max_value=2**200),
        st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True),
        st.sampled_from([0.0, -0.0, float("inf"), float("-inf"), float("nan"), 5e-324]),
        st.text(max_size=40), st.text(alphabet=st.characters(min_codepoint=0x10000), max_size=8),
        st.binary(max_size=64),
    )


def numpy_arrays() -> st.SearchStrategy[Any]:
    import numpy as np
    from hypothesis.extra import numpy as hnp

    return st.sampled_from(NUMPY_DTYPES).flatmap(
        lambda dtype: hnp.arrays(np.dtype(dtype), hnp.array_shapes(min_dims=0, max_dims=3, max_side=5)))


def torch_tensors() -> st.SearchStrategy[Any]:
    """Tensors built from numpy arrays (torch is imported only when this strategy is drawn)."""
    def build(args: tuple[str, list[float]]) -> Any:
        import torch

        dtype, values = args
        t = torch.tensor(values, dtype=torch.float64)
        if dtype == "bool":
            return t > 0
        return t.to(getattr(torch, dtype))

    values = st.lists(st.floats(-1e3, 1e3, allow_nan=False, width=16), max_size=12)
    return st.tuples(st.sampled_from(TORCH_DTYPES), values).map(build)


def typed_examples(*, numpy: bool = True, torch: bool = False, max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """One example of the typed encoding's closed set (spec 3.12): the leaves above within its integer range,
    arrays and tensors of its dtypes, and containers whose dict keys are str or int."""
    leaves = st.one_of(
        st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
        st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True),
        st.sampled_from([0.0, -0.0, float("inf"), float("-inf"), float("nan"), 5e-324]),
        st.text(max_size=40), st.text(alphabet=st.characters(min_codepoint=0x10000), max_size=8),
        st.binary(max_size=64))
    if numpy:
        leaves = leaves | numpy_arrays()
    if torch:
        leaves = leaves | torch_tensors()
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.tuples(inner, inner),
            st.dictionaries(st.one_of(st.text(max_size=6), st.integers(-5, 5)), inner, max_size=4)),
        max_leaves=max_leaves)


def large_examples(min_size: int = 20_000, max_size: int = 120_000) -> st.SearchStrategy[Any]:
    """An example bigger than a usual block (a blob, or a long string)."""
    return st.one_of(st.binary(min_size=min_size, max_size=max_size),
                     st.integers(min_size, max_size).map(lambda n: "x" * n))


def examples(*, numpy: bool = True, torch: bool = False, large: bool = True,
             max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """One example: a recursive mix of containers and leaves."""
    leaves = scalars()
    if numpy:
        leaves = leaves | numpy_arrays()
    if torch:
        leaves = leaves | torch_tensors()
    tree = st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.tuples(inner, inner),
            st.dictionaries(st.one_of(st.text(max_size=6), st.integers(-5, 5)), inner, max_size=4)),
        max_leaves=max_leaves)
    if large:
        return st.one_of(tree, tree, tree, tree, tree, tree, tree, tree, tree, large_examples())
    return tree


@dataclass(frozen=True)
class WriterConfig:
    """One way to write a dataset: version, strategy, codec, level, layout, framing."""

    format_version: int
    compression_strategy: CompressionStrategy
    codec: Codec
    compression_level: int
    shard_size: int
    block_size: int
    compression_dict_size: float = 0.01
    framing: Framing = Framing.BLOCK
    encoding: str = "pickle"  # or "typed" (spec 3.12, version 2; every framing)

    def label(self) -> str:
        return (f"v{self.format_version}-{self.compression_strategy.name.lower()}-{self.codec.label}"
                f"-l{self.compression_level}-s{self.shard_size}-b{self.block_size}-{self.framing.value}"
                f"-{self.encoding}")


def layouts(max_shard: int = 40, max_block: int = 16) -> st.SearchStrategy[tuple[int, int]]:
    """(shard_size, block_size) from 1 upward, including blocks larger than shards."""
    return st.tuples(st.integers(1, max_shard), st.integers(1, max_block))


def writer_configs(*, versions: tuple[int, ...] = (1, 2), max_shard: int = 40,
                   max_block: int = 16) -> st.SearchStrategy[WriterConfig]:
    """Every strategy x codec (LZ4 in version 2 only) x version x layout x level x framing x encoding (v2)."""
    def build(args: tuple[int, CompressionStrategy, bool, int, tuple[int, int], Framing, str]) -> WriterConfig:
        version, strategy, use_lz4, level, (shard_size, block_size), framing, encoding = args
        codec = Codec.NONE if strategy == CompressionStrategy.NO_COMPRESSION else Codec.ZSTD
        if use_lz4 and version == 2:
            strategy, codec = CompressionStrategy.STANDARD_COMPRESSION, Codec.LZ4
        if version == 1 or (framing is Framing.EXAMPLE and codec == Codec.NONE):
            framing = Framing.BLOCK  # version 1 has no framing; codec none has no frames to split
        if version == 1:
            encoding = "pickle"  # version 1 examples are pickles
        return WriterConfig(version, strategy, codec, level, shard_size, block_size, framing=framing,
                            encoding=encoding)

    return st.tuples(st.sampled_from(versions), st.sampled_from(list(CompressionStrategy)), st.booleans(),
                     st.sampled_from([1, 3, 9]), layouts(max_shard, max_block),
                     st.sampled_from(list(Framing)), st.sampled_from(["pickle", "typed"])).map(build)
