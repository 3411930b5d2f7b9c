"""Micro-benchmark of the reader's read paths (not a test): is a refactor of the read path free?

For text dicts (~20k) and numpy image dicts (~5k), blocks of 64 and 8, every framing
(block, example, list) with every codec (zstd + shared dictionary, lz4, none; framing
"example" needs a codec), it times four ways of reading through a fresh ``AtlasDataset``:

    random     ds[i] at 2,000 random indices
    in-order   ds[i] for i in range(len(ds))
    iterate    for x in ds
    batch      ds.__getitems__ of 256 random indices, 8 batches

Each figure is the median of ``--reps`` runs (default 5); runs alternate over the
configurations, each with a new dataset object (cold cache) after a garbage collection. The datasets are written by
the code under test into a temporary folder. Results go to a JSON file, and
``--compare BASE.json NEW.json`` prints a markdown table of both with the speed ratio
(base time / new time: above 1 is faster) and each side's spread ((max - min) / median).

    PYTHONPATH=spec:reference python benchmarks/bench_read_paths.py --out new.json
    python benchmarks/bench_read_paths.py --compare base.json new.json
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workloads import noisy_image, text_of_length

MEASURES = ("random", "in-order", "iterate", "batch")


def text_examples(n: int) -> list[dict[str, Any]]:
    rng = random.Random(1234)
    out = []
    for i in range(n):
        text = text_of_length(rng, rng.randint(80, 700))
        out.append({"text": text, "id": i, "lang": rng.choice(("en", "de", "fr")),
                    "score": rng.random()})
    return out


def image_examples(n: int) -> list[dict[str, Any]]:
    import numpy as np

    rng = np.random.default_rng(1234)
    out = []
    for i in range(n):
        out.append({"image": noisy_image(rng), "label": i % 10,
                    "box": rng.random(4, dtype=np.float32)})
    return out


def variants() -> dict[str, dict[str, Any]]:
    from torch_atlas_ds import Codec, CompressionStrategy, Framing

    codecs: dict[str, dict[str, Any]] = {
        "zstd+dict": {"compression_strategy": CompressionStrategy.SHARED_DICTIONARY_COMPRESSION},
        "lz4": {"codec": Codec.LZ4},
        "none": {"compression_strategy": CompressionStrategy.NO_COMPRESSION},
    }
    out = {}
    for framing in (Framing.BLOCK, Framing.EXAMPLE, Framing.LIST):
        for name, codec in codecs.items():
            if framing is Framing.EXAMPLE and name == "none":
                continue  # codec none has no frames
            out[f"{framing.value}/{name}"] = {**codec, "framing": framing}
    return out


def write(root: Path, examples: list[Any], block_size: int, variant: dict[str, Any]) -> None:
    from torch_atlas_ds import AtlasDatasetWriter

    with AtlasDatasetWriter(root, 10_000, block_size, **variant) as w:
        for ex in examples:
            w.add_example(ex)


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(root: Path, n: int, what: str, seed: int) -> float:
    """Seconds per example read for one way of reading, on a new dataset object."""
    from torch_atlas_ds import AtlasDataset

    ds = AtlasDataset(root)
    rng = random.Random(seed)
    if what == "random":
        idx = [rng.randrange(n) for _ in range(2_000)]
        return timed(lambda: [ds[i] for i in idx]) / len(idx)
    if what == "in-order":
        return timed(lambda: [ds[i] for i in range(n)]) / n
    if what == "iterate":
        return timed(lambda: [x for x in ds]) / n  # noqa: C416 - the iterator is what is timed
    batches = [[rng.randrange(n) for _ in range(256)] for _ in range(8)]
    return timed(lambda: [ds.__getitems__(b) for b in batches]) / (256 * 8)


def run(reps: int, text_n: int, image_n: int) -> dict[str, Any]:
    workloads = {"text": text_examples(text_n), "images": image_examples(image_n)}
    with tempfile.TemporaryDirectory(prefix="bench_read_paths_") as tmp:
        configs: list[tuple[str, Path, int]] = []
        for wname, examples in workloads.items():
            for block in (64, 8):
                for vname, variant in variants().items():
                    root = Path(tmp) / f"{wname}-{block}-{vname.replace('/', '-')}"
                    write(root, examples, block, variant)
                    configs.append((f"{wname} | {block} | {vname}", root, len(examples)))
        del workloads, examples  # a small heap: garbage collections cost little and vary less
        gc.collect()
        times: dict[str, dict[str, list[float]]] = {c[0]: {m: [] for m in MEASURES} for c in configs}
        for rep in range(reps):
            for key, root, n in configs:
                for what in MEASURES:
                    gc.collect()
                    times[key][what].append(measure(root, n, what, seed=rep))
            print(f"rep {rep + 1}/{reps} done", file=sys.stderr)
    return {"python": sys.version.split()[0], "reps": reps, "times": times}


def _fmt_us(seconds: float) -> str:
    return f"{seconds * 1e6:.2f}"


def compare(base_file: str, new_file: str) -> str:
    base = json.loads(Path(base_file).read_text())["times"]
    new = json.loads(Path(new_file).read_text())["times"]
    lines = ["| workload | block | framing/codec | read | base µs/ex (spread) | new µs/ex (spread) | speed ratio |",
             "|---|---|---|---|---|---|---|"]
    for key in base:
        if key not in new:
            continue
        for what in MEASURES:
            b, m = base[key][what], new[key][what]
            bm, nm = statistics.median(b), statistics.median(m)
            spread_b, spread_n = (max(b) - min(b)) / bm, (max(m) - min(m)) / nm
            lines.append(f"| {key} | {what} | {_fmt_us(bm)} ({spread_b:.0%}) | {_fmt_us(nm)} ({spread_n:.0%}) "
                         f"| {bm / nm:.2f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--text", type=int, default=20_000)
    parser.add_argument("--images", type=int, default=5_000)
    parser.add_argument("--out", default="bench_read_paths.json")
    parser.add_argument("--compare", nargs=2, metavar=("BASE", "NEW"))
    args = parser.parse_args()
    if args.compare:
        print(compare(*args.compare), end="")
        return
    result = run(args.reps, args.text, args.images)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
