"""The golden vectors: language-neutral folders of files plus JSON that says what to expect.

A vector folder holds::

    dataset/        the dataset's files
    case.json       {"name", "format_version", "verdict": "valid" | "invalid",
                     "findings": [finding ids a validator must report], "description",
                     "writer": {parameters}, "source": name of the valid vector it was derived from | null}
    expected.json   {"examples": [...]} for valid vectors (JSON, with the tagged forms below)
    manifest.json   size and sha256 of every other file (optional)

Examples that JSON cannot hold are tagged objects: ``{"$bytes": base64}``,
``{"$tuple": [...]}``, ``{"$float": "nan" | "inf" | "-inf" | "-0.0"}``,
``{"$dict": [[key, value], ...]}`` (non-string keys, or keys starting with "$"), and
``{"$ndarray": {"dtype": "<f4", "shape": [...], "data": base64}}``. Plain JSON values
stand for themselves (the seed-v1 corpus uses only those).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def encode_example(value: Any) -> Any:
    """A JSON-compatible form of an example (inverse of ``decode_example``)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return {"$float": "nan"}
        if math.isinf(value):
            return {"$float": "inf" if value > 0 else "-inf"}
        if value == 0.0 and math.copysign(1.0, value) < 0:
            return {"$float": "-0.0"}
        return value
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, tuple):
        return {"$tuple": [encode_example(v) for v in value]}
    if isinstance(value, list):
        return [encode_example(v) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: encode_example(v) for k, v in value.items()}
        return {"$dict": [[encode_example(k), encode_example(v)] for k, v in value.items()]}
    if type(value).__module__ == "numpy" and hasattr(value, "dtype") and hasattr(value, "shape"):
        import numpy as np

        array = np.asarray(value)  # (ascontiguousarray would turn a 0-d array into 1-d)
        if array.dtype.hasobject:
            raise TypeError("object arrays have no JSON form")
        return {"$ndarray": {"dtype": array.dtype.str, "shape": list(array.shape),
                             "data": base64.b64encode(array.tobytes(order="C")).decode("ascii")}}
    raise TypeError(f"no JSON form for {type(value).__name__}")


def decode_example(value: Any) -> Any:
    """The example that ``encode_example`` encoded."""
    if isinstance(value, list):
        return [decode_example(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (tag, body), = value.items()
        if tag == "$bytes":
            return base64.b64decode(body)
        if tag == "$tuple":
            return tuple(decode_example(v) for v in body)
        if tag == "$float":
            return float(body)
        if tag == "$dict":
            return {decode_example(k): decode_example(v) for k, v in body}
        if tag == "$ndarray":
            import numpy as np

            return np.frombuffer(base64.b64decode(body["data"]), dtype=np.dtype(body["dtype"])).reshape(
                body["shape"]).copy()
    return {k: decode_example(v) for k, v in value.items()}


@dataclass(frozen=True)
class Vector:
    """One golden vector folder."""

    folder: Path
    case: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.case["name"])

    @property
    def dataset(self) -> Path:
        return self.folder / "dataset"

    @property
    def valid(self) -> bool:
        return bool(self.case["verdict"] == "valid")

    @property
    def malicious(self) -> bool:
        """Its pickles run a (harmless) command when unpickled without an allow-list."""
        return bool(self.case.get("malicious", False))

    def must_refuse(self) -> set[int]:
        """Indices a safe reader must refuse (the malicious examples)."""
        path = self.folder / "expected.json"
        if not path.exists():
            return set()
        return {int(i) for i in json.loads(path.read_text("utf-8")).get("must_refuse", [])}

    @property
    def findings(self) -> list[str]:
        return list(self.case.get("findings", []))

    def examples(self, corpus_root: Path | None = None) -> list[Any] | None:
        """The expected examples: this vector's, or for an invalid vector its source's."""
        folder = self.folder
        if not (folder / "expected.json").exists() and self.case.get("source"):
            folder = (corpus_root or folder.parent.parent) / self.case["source"]
            if not (folder / "expected.json").exists():
                folder = next((p for p in folder.parent.parent.glob(f"*/{self.case['source']}")), folder)
        path = folder / "expected.json"
        if not path.exists():
            return None
        return [decode_example(e) for e in json.loads(path.read_text("utf-8"))["examples"]]


#: the golden vectors, shipped as package data of atlas-ds-format (``atlas_format/vectors``)
VECTORS_ROOT = Path(__file__).resolve().parent.parent / "vectors"


def default_vectors_root() -> Path | None:
    """The golden vectors installed with this package (None when a packager stripped them)."""
    return VECTORS_ROOT if VECTORS_ROOT.is_dir() else None


def iter_vectors(root: Path | None = None) -> Iterator[Vector]:
    """Every vector under ``root`` (all corpora), sorted by corpus and name."""
    root = root or default_vectors_root()
    if root is None:
        return
    for case_file in sorted(root.glob("*/*/case.json")):
        yield Vector(case_file.parent, json.loads(case_file.read_text("utf-8")))
