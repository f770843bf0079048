"""Pair the real IBSI soft-tissue-sarcoma CT/MR data into the layout the toolkit trains from.

    python benchmarks/real_data/prepare.py [--src ../shared/data/ibsi_sts] [--out data/ibsi_paired]

Each patient's T1-weighted MR is resampled onto its CT's grid with the identity transform (both
share one frame of reference; see the data's README) and written beside the CT with a ``valid``
mask (where the MR has data) and the tumour mask: ``<out>/STS_xxx/{ct,mr,valid,tumour}.nii.gz``,
plus ``<out>/split.json`` from ``ibsi_split.json`` and ``<out>/pairing.json``. I/O only: about a
second per patient. ``split.json`` also holds ``train_a`` / ``train_b``, the training patients cut into
two disjoint halves (:func:`translate.data.phantom.unpaired_halves`, seed 0) for the unpaired recipe
(``recipes/mr2ct-cyclegan-real.yaml``: MR of one half, CT of the other, no pair ever seen).

The split (``ibsi_split.json``, in the repository so every table uses the same patients) was made
by :func:`make_split`: the 24 patient IDs sorted, shuffled with ``numpy.random.default_rng(0)``,
the first 16 for training, the next 4 for validation and the last 4 for testing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SPLIT_FILE = HERE / "ibsi_split.json"


def make_split(ids, seed: int = 0, sizes=(16, 4, 4)) -> dict:
    """Patient-level split: sorted IDs, seeded shuffle, then train / val / test (each list sorted)."""
    ids = sorted(ids)
    if len(ids) != sum(sizes):
        raise ValueError(f"make_split: {len(ids)} patients; expected {sum(sizes)}")
    order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    train, val = sizes[0], sizes[0] + sizes[1]
    return {"train": sorted(order[:train]), "val": sorted(order[train:val]), "test": sorted(order[val:])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=REPO.parent / "shared" / "data" / "ibsi_sts",
                        help="folder of STS_xxx/{ct,mr_t1,tumour}.nii.gz (default: ../shared/data/ibsi_sts)")
    parser.add_argument("--out", type=Path, default=REPO / "data" / "ibsi_paired", help="paired output folder")
    parser.add_argument("--split", type=Path, default=SPLIT_FILE, help="split JSON (default: ibsi_split.json)")
    args = parser.parse_args(argv)

    from translate.data.pairing import pair_folder
    from translate.errors import TranslateError

    from translate.atomic import write_text_atomic
    from translate.data.phantom import unpaired_halves

    split = json.loads(args.split.read_text())
    subjects = sorted(sum(split.values(), []))
    try:
        summaries = pair_folder(args.src, args.out, subjects, split=split, target="ct", source="mr_t1",
                                extra=("tumour",))
    except TranslateError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    # the unpaired halves overlap "train" on purpose, so they join split.json after pair_folder checked it
    written = json.loads((args.out / "split.json").read_text())
    write_text_atomic(args.out / "split.json", json.dumps({**written, **unpaired_halves(split["train"], seed=0)}, indent=2))
    where = {subject: name for name, ids in split.items() for subject in ids}
    print("| patient | split | CT size (x, y, z) | MR covers | valid |")
    print("|---|---|---|---|---|")
    for subject, summary in summaries.items():
        size = " x ".join(str(n) for n in summary["size"])
        print(f"| {subject} | {where[subject]} | {size} | {100 * summary['source_coverage']:.1f} % "
              f"| {100 * summary['valid_fraction']:.1f} % |")
    print(f"paired {len(summaries)} patients -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
