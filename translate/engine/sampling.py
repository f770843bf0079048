"""Deterministic, resumable batch order: batch ``k`` is a pure function of ``(seed, k)``.

Each yielded item is ``(index, draw)``: ``draw = k * batch_size + position`` numbers the sample in
the run, so a dataset draws fresh augmentation for every serving and a resumed run replays it.
"""

from __future__ import annotations

from typing import Iterator, List, Tuple

import torch
from torch.utils.data import Sampler


class StepBatchSampler(Sampler[List[Tuple[int, int]]]):
    """Endless batches; epoch ``e`` is a permutation drawn from ``seed + e``.

    Starting at ``start_batch`` reproduces exactly the batches an uninterrupted run would
    have drawn from that point on, which is what makes ``--resume`` bit-identical.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int = 0, start_batch: int = 0):
        if num_samples < batch_size:
            raise ValueError(f"{num_samples} training samples are fewer than batch_size {batch_size}")
        self.num_samples, self.batch_size = num_samples, batch_size
        self.seed, self.start_batch = seed, start_batch
        self.batches_per_epoch = num_samples // batch_size

    def _epoch_order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.num_samples, generator=generator)

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        batch = self.start_batch
        epoch, order = -1, None
        while True:
            this_epoch, position = divmod(batch, self.batches_per_epoch)
            if this_epoch != epoch:
                epoch, order = this_epoch, self._epoch_order(this_epoch)
            start = position * self.batch_size
            indices = order[start:start + self.batch_size].tolist()
            yield [(index, batch * self.batch_size + j) for j, index in enumerate(indices)]
            batch += 1

    def __len__(self) -> int:  # endless; DataLoader only needs a length for progress displays
        return self.batches_per_epoch
