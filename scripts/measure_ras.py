"""How often repetition-aware sampling (RAS) would fire on real speech codes, per window and threshold.

    python scripts/measure_ras.py results/demo/codes/shard-*.parquet

RAS resamples a code when it already fills `tau` of the last `window` codes. CosyVoice's window of 10 at
tau 0.1 was set at 25 codes/s (400 ms); at 75 codes/s the same window is 133 ms, and tau 0.1 means any
repeat at all, so it also fires on the long runs of one code that silence and steady vowels make. On
ground-truth codes every firing is a false alarm: the table shows, per (window, tau), the share of steps
on which RAS would have replaced a code the real speech used, overall and inside silence-like runs (the
code equals the previous one).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from stages.common.tables import CODES, read_table

WINDOWS = (10, 20, 30)
TAUS = (0.1, 0.2, 0.3, 0.5)


def fire_mask(codes: np.ndarray, window: int, tau: float) -> np.ndarray:
    """Per position t: whether codes[t] occurs at least window * tau times among codes[t - window: t]."""
    need = window * tau
    fires = np.zeros(len(codes), dtype=bool)
    for t in range(1, len(codes)):
        history = codes[max(0, t - window): t]
        fires[t] = np.count_nonzero(history == codes[t]) >= need
    return fires


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shards", type=Path, nargs="+")
    parser.add_argument("--utterances", type=int, default=300, help="utterances read (from the train split)")
    args = parser.parse_args(argv)
    utterances = []
    for path in args.shards:
        table = read_table(path, CODES, columns=["split", "codes"]).to_pylist()
        utterances += [np.asarray(r["codes"], dtype=np.int64) for r in table if r["split"] == "train"]
    utterances = utterances[: args.utterances]
    total = sum(len(u) for u in utterances)
    runs = np.concatenate([np.r_[False, u[1:] == u[:-1]] for u in utterances])
    print(f"{len(utterances)} utterances, {total} codes; {runs.mean():.1%} of codes repeat the previous one")
    print(f"{'window':>6} {'ms @75/s':>8} {'tau':>5} {'fires':>7} {'in runs':>8} {'elsewhere':>9}")
    for window in WINDOWS:
        for tau in TAUS:
            fires = np.concatenate([fire_mask(u, window, tau) for u in utterances])
            print(f"{window:>6} {window / 75 * 1000:>8.0f} {tau:>5.1f} {fires.mean():>7.1%} "
                  f"{fires[runs].mean() if runs.any() else 0:>8.1%} {fires[~runs].mean():>9.1%}")


if __name__ == "__main__":
    main()
