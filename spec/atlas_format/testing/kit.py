"""Base test classes of the conformance kit: subclass them to test another implementation.

    from atlas_format.testing.kit import ReaderConformance, ValidatorConformance, WriterConformance

    class TestMyReader(ReaderConformance):
        def open_dataset(self, path):
            return mypkg.open(path)

    class TestMyWriter(WriterConformance):
        def write_dataset(self, path, examples, params): mypkg.write(path, examples, **params)
        def open_dataset(self, path): return mypkg.open(path)

    class TestMyValidator(ValidatorConformance):
        def validate(self, path): return mypkg.error_ids(path)

Golden vectors come from ``vectors_root`` (default: the ones installed with this package,
``atlas_format/vectors``); the writer is also driven by Hypothesis over every strategy, codec,
version and layout (``supported`` filters what an implementation offers).

A kit run cannot pass vacuously: no vectors is a collection error, and the pytest plugin of
this package (``atlas_format.testing.plugin``) fails a session whose kit tests all skipped.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from . import checks, strategies
from .equality import strict_equal
from .vectors import Vector, default_vectors_root, iter_vectors


def _require(problems: list[str]) -> None:
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


class _VectorKit:
    """Parametrizes ``valid_vector`` and ``invalid_vector`` arguments from the corpus."""

    #: marks the kit's test classes for the plugin that fails all-skipped runs
    atlas_conformance_kit = True
    vectors_root: Path | None = None

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        root = self.vectors_root or default_vectors_root()
        vectors = list(iter_vectors(root))
        for argument, valid in (("valid_vector", True), ("invalid_vector", False)):
            if argument in metafunc.fixturenames:
                chosen = [v for v in vectors if v.valid == valid]
                if not chosen:
                    pytest.fail(f"atlas conformance kit: no {'valid' if valid else 'invalid'} golden vector under "
                                f"{root}: a run that checks nothing fails (set vectors_root)", pytrace=False)
                metafunc.parametrize(argument, chosen, ids=[f"{v.folder.parent.name}/{v.name}" for v in chosen])


class ReaderConformance(_VectorKit):
    """A reader returns exactly the golden examples and never wrong data from a broken dataset."""

    #: exceptions that count as "refused" for invalid vectors (narrow this to your error types)
    reader_errors: tuple[type[BaseException], ...] = (Exception,)
    #: True when open_dataset loads through an allow-list; otherwise malicious vectors are skipped
    #: (their pickles run a harmless ``touch atlas-pwned-*`` when unpickled unsafely)
    safe_loading: bool = False

    def open_dataset(self, path: Path) -> Sequence[Any]:
        raise NotImplementedError

    def test_reads_valid_vector(self, valid_vector: Vector) -> None:
        problems = checks.check_reader_valid(valid_vector, self.open_dataset)
        _require(problems)

    def test_never_returns_wrong_data(self, invalid_vector: Vector) -> None:
        if invalid_vector.malicious and not self.safe_loading:
            pytest.skip("malicious vector: only for readers with safe loading")
        problems = checks.check_reader_invalid(invalid_vector, self.open_dataset, self.reader_errors)
        _require(problems)


class ValidatorConformance(_VectorKit):
    """A validator accepts every valid vector and reports the expected findings on invalid ones."""

    def validate(self, path: Path) -> Any:
        raise NotImplementedError

    def test_valid_vector(self, valid_vector: Vector) -> None:
        problems = checks.check_validator(valid_vector, self.validate)
        _require(problems)

    def test_invalid_vector(self, invalid_vector: Vector) -> None:
        problems = checks.check_validator(invalid_vector, self.validate)
        _require(problems)


class WriterConformance(_VectorKit):
    """A writer's datasets read back exactly, for golden parameters and Hypothesis ones."""

    #: True when the writer reproduces the original's version 1 files byte for byte
    v1_byte_identical: bool = False
    #: Hypothesis example strategy (override to exclude what the implementation cannot pickle)
    example_strategy = strategies.examples(numpy=True, torch=False, large=True, max_leaves=8)

    def write_dataset(self, path: Path, examples: list[Any], params: dict[str, Any]) -> None:
        raise NotImplementedError

    def open_dataset(self, path: Path) -> Sequence[Any]:
        raise NotImplementedError

    def supported(self, config: strategies.WriterConfig) -> bool:
        """Whether this implementation writes ``config`` (override to narrow)."""
        return True

    def test_rewrites_valid_vector(self, valid_vector: Vector) -> None:
        problems = checks.check_writer(valid_vector, self.write_dataset, self.open_dataset,
                                       byte_identical=self.v1_byte_identical)
        _require(problems)

    @given(config=strategies.writer_configs(), data=st.data())
    def test_round_trip(self, config: strategies.WriterConfig, data: st.DataObject) -> None:
        if not self.supported(config):
            return
        examples = data.draw(st.lists(self.example_strategy, max_size=3 * config.shard_size + 5), label="examples")
        tmp = Path(tempfile.mkdtemp(prefix="atlas-kit-"))
        try:
            params = {**asdict(config), "compression_strategy": int(config.compression_strategy),
                      "codec": config.codec.label, "framing": config.framing.value}
            self.write_dataset(tmp / "ds", examples, params)
            ds = self.open_dataset(tmp / "ds")
            if len(ds) != len(examples):
                pytest.fail(f"{config.label()}: len {len(ds)}, wrote {len(examples)}")
            order = data.draw(st.permutations(range(len(examples))), label="read order")
            for i in order:
                for index in (i, i - len(examples)):
                    if not strict_equal(examples[i], ds[index]):
                        pytest.fail(f"{config.label()}: [{index}] read back differs from what was written")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
