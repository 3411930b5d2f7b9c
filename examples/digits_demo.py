"""The main job: write, validate, inspect and train from a real dataset.

The handwritten digits that scikit-learn ships inside its package (1,797 8x8 images,
no download) are written as an Atlas dataset (version 2, zstd with a shared
dictionary), checked by the standalone validator, summarized by ``atlas-ds info``, and
used to train a small classifier through a DataLoader with 2 workers and the
block-aware sampler. The same data is also written as version 1 to compare sizes.

    python examples/digits_demo.py [--out DIR] [--epochs N]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from torch_atlas_ds import AtlasDataset, AtlasDatasetWriter, BlockShuffleSampler, CompressionStrategy


def write(path: Path, images: np.ndarray, labels: np.ndarray, *, format_version: int, desc: str) -> None:
    with AtlasDatasetWriter(path, shard_size=512, block_size=32,
                            compression_strategy=CompressionStrategy.SHARED_DICTIONARY_COMPRESSION,
                            format_version=format_version,
                            **({"user_metadata": {"source": "sklearn.datasets.load_digits",
                                                  "fields": {"image": "uint8[8,8], 0..16", "label": "int 0..9"}}}
                               if format_version == 2 else {})) as writer:
        for image, label in tqdm(zip(images, labels, strict=True), total=len(labels), desc=desc, unit="ex",
                                 disable=not sys.stderr.isatty()):
            writer.add_example({"image": image, "label": int(label)})


def run(cmd: list[str]) -> int:
    print("$", " ".join(Path(c).name if i == 0 else c for i, c in enumerate(cmd)), flush=True)
    return subprocess.call(cmd)


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def to_batch(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return batch["image"].reshape(len(batch["label"]), -1).float() / 16.0, batch["label"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo-out"))
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)

    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    images = digits.images[order].astype(np.uint8)
    labels = digits.target[order]
    n_train = 1500

    print(f"== 1. write {len(labels)} digits as Atlas version 2 (zstd, shared dictionary)")
    train_v2, test_v2 = args.out / "digits-train-v2", args.out / "digits-test-v2"
    start = time.perf_counter()
    write(train_v2, images[:n_train], labels[:n_train], format_version=2, desc="train v2")
    write(test_v2, images[n_train:], labels[n_train:], format_version=2, desc="test v2")
    print(f"   written in {time.perf_counter() - start:.2f} s")

    print("== 2. validate with the standalone validator (no torch, no unpickling)")
    for path in (train_v2, test_v2):
        if run([sys.executable, "-m", "atlas_validator", str(path)]) != 0:
            print("validation failed", file=sys.stderr)
            return 1

    print("== 3. atlas-ds info")
    run([sys.executable, "-m", "torch_atlas_ds.cli", "info", str(train_v2)])

    print("== 4. train a small classifier: DataLoader, 2 workers, BlockShuffleSampler, safe loading")
    train_ds = AtlasDataset(train_v2, safe=True)
    test_ds = AtlasDataset(test_v2, safe=True)
    sampler = BlockShuffleSampler(train_ds, seed=0)
    loader = DataLoader(train_ds, batch_size=64, sampler=sampler, num_workers=2, persistent_workers=True)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()
    seen, train_time = 0, 0.0
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        model.train()
        start = time.perf_counter()
        total_loss = 0.0
        for batch in loader:
            x, y = to_batch(batch)
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(y)
            seen += len(y)
        train_time += time.perf_counter() - start
        model.eval()
        with torch.no_grad():
            x, y = to_batch(torch.utils.data.default_collate(test_ds.__getitems__(list(range(len(test_ds))))))
            accuracy = float((model(x).argmax(1) == y).float().mean())
        print(f"   epoch {epoch + 1}: loss {total_loss / len(train_ds):.3f}, test accuracy {accuracy:.3f}")
    print(f"   training: {seen / train_time:,.0f} examples/s (2 workers, incl. worker start and backprop)")
    start = time.perf_counter()
    loaded = sum(len(batch["label"]) for batch in loader)
    print(f"   loading only: {loaded / (time.perf_counter() - start):,.0f} examples/s for one more epoch")

    print("== 5. the same data as version 1 (the original format)")
    train_v1 = args.out / "digits-train-v1"
    write(train_v1, images[:n_train], labels[:n_train], format_version=1, desc="train v1")
    v1_ds = AtlasDataset(train_v1)
    same = all(np.array_equal(v1_ds[i]["image"], train_ds[i]["image"]) for i in range(len(v1_ds)))
    print(f"   version 2: {folder_size(train_v2):,} bytes; version 1: {folder_size(train_v1):,} bytes "
          f"(v2 adds checksums, an index header and per-example offsets); same examples: {same}")
    print(f"final test accuracy {accuracy:.3f}")
    return 0 if accuracy > 0.9 and same else 1


if __name__ == "__main__":
    raise SystemExit(main())
