"""GRAFS progressive shrinking: the logarithmic drop schedule (Appendix C) and DropOps.

The search cell starts with ``D = 4 x 23 + 2 x 9 = 110`` candidate operations. To end with
one operation per position, ``D - 6`` of them are dropped during the search: ``D - 6`` points
are spaced logarithmically between the epoch ``S`` at which shrinking starts (``S = 2 E0``)
and the last epoch ``E``, and binned into unit intervals ``[S, S+1), [S+1, S+2), ...,
[E-1, E]``. The count in the interval starting at epoch ``e`` is the number of operations
dropped at the start of epoch ``e``. The final point ``E`` falls in the last, closed
interval, so every drop happens by epoch ``E - 1`` and the last epoch trains the fully
discretized cell.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = ["total_operations", "shrink_start", "drop_schedule", "drop_ops"]


def total_operations(position_sizes: Sequence[int]) -> int:
    """``D``: the number of candidate operations over all positions of the cell."""
    return int(sum(position_sizes))


def shrink_start(warm_start_epochs: int) -> int:
    """``S = 2 E0`` (Appendix C); at least epoch 1 when there is no warm start."""
    if warm_start_epochs < 0:
        raise ValueError(f"warm_start_epochs must be >= 0, got {warm_start_epochs}")
    return max(2 * int(warm_start_epochs), 1)


def drop_schedule(total_ops: int, positions: int, start: int, end: int) -> dict[int, int]:
    """Operations to drop at the start of each epoch, ``{epoch: count}`` for ``start..end-1``.

    Args:
        total_ops: ``D``, the operations the cell starts with (110 for GRAFS).
        positions: the number of positions (6); ``D - positions`` operations are dropped.
        start: ``S``, the first epoch with drops.
        end: ``E``, the last epoch; ``end == start`` drops everything at ``start``.

    The counts always sum to ``total_ops - positions``.
    """
    drops = int(total_ops) - int(positions)
    if drops < 0:
        raise ValueError(f"{total_ops} operations cannot fill {positions} positions")
    if start < 1:
        raise ValueError(f"shrinking must start at an epoch >= 1 (log spacing), got {start}")
    if end < start:
        raise ValueError(f"the last epoch ({end}) comes before shrinking starts ({start})")
    if drops == 0:
        return {}
    if end == start:
        return {int(start): drops}
    points = np.logspace(math.log10(start), math.log10(end), drops)
    # 10**log10(E) can land a hair above E (e.g. 5.000000000000001): keep points in range
    points = np.clip(points, start, end)
    edges = np.arange(start, end + 1, dtype=float)
    counts, _ = np.histogram(points, bins=edges)
    schedule = {int(e): int(c) for e, c in zip(edges[:-1], counts)}
    if sum(schedule.values()) != drops:  # pragma: no cover - guarded by the clip above
        raise RuntimeError(f"drop schedule lost points: {schedule} for {drops} drops")
    return schedule


def drop_ops(active: Sequence[Sequence[int]], scores: Sequence[Sequence[float]], count: int,
             ) -> list[list[int]]:
    """Procedure DropOps: drop ``count`` operations, one at a time.

    Each drop takes the position (edge or vertex) with the most operations left -- ties go to
    the earlier position -- and removes its operation with the lowest activation parameter
    (``scores[position][op]``, e.g. the Dirichlet concentration). A position is never
    emptied: asking for more drops than leave one operation per position is an error.

    Args:
        active: per position, the indices of the operations still in play.
        scores: per position, one score per operation of the full operator list.
        count: how many operations to drop.

    Returns:
        The new active index lists (the inputs are not modified).
    """
    active = [list(a) for a in active]
    if len(scores) != len(active):
        raise ValueError(f"got scores for {len(scores)} positions, expected {len(active)}")
    spare = sum(len(a) - 1 for a in active)
    if count > spare:
        raise ValueError(f"cannot drop {count} operations: only {spare} can go while every "
                         f"position keeps one")
    for _ in range(int(count)):
        position = max(range(len(active)), key=lambda p: (len(active[p]), -p))
        ops = active[position]
        weakest = min(ops, key=lambda k: (float(scores[position][k]), k))
        ops.remove(weakest)
    return active
