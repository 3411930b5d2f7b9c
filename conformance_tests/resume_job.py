"""A training job's data loop for test_sampler_resume (run as a script, so each run is a new process).

    python resume_job.py DATASET STATE WORLD_SIZE BATCHES

Every rank (run one after another here: each has its own StatefulDataLoader with 2 worker processes) reads
BATCHES batches of 4 and rank 0's loader state is saved to STATE; BATCHES -1 loads STATE into every rank's
loader instead and reads the rest of the epoch. Prints the example ids read, one batch per line.
"""

from __future__ import annotations

import sys

import torch
from torchdata.stateful_dataloader import StatefulDataLoader

from torch_atlas_ds import AtlasDataset, BlockShuffleSampler


def main() -> None:
    root, state_path, world_size, batches = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    ds = AtlasDataset(root)
    saved = torch.load(state_path, weights_only=True) if batches < 0 else None
    for rank in range(world_size):
        sampler = BlockShuffleSampler(ds, seed=11, rank=rank, world_size=world_size)
        loader = StatefulDataLoader(ds, batch_size=4, sampler=sampler, num_workers=2,
                                    collate_fn=lambda items: [x["i"] for x in items])
        if saved is not None:
            loader.load_state_dict(saved)
        for k, batch in enumerate(loader):
            print(" ".join(map(str, batch)))
            if k + 1 == batches:
                if rank == 0:
                    torch.save(loader.state_dict(), state_path)
                break


if __name__ == "__main__":
    main()
