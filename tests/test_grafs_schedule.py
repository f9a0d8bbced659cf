"""GRAFS shrinking schedule (Appendix C) and Procedure DropOps."""

import math

import numpy as np
import pytest

from keras_actfn.expr import ops
from keras_actfn.search.grafs.schedule import (drop_ops, drop_schedule, shrink_start,
                                               total_operations)


def test_cell_has_110_operations():
    sizes = [len(ops.GRAFS_UNARY)] * 4 + [len(ops.GRAFS_BINARY)] * 2
    assert total_operations(sizes) == 4 * 23 + 2 * 9 == 110


def test_shrinking_starts_at_twice_the_warm_start():
    assert shrink_start(1) == 2  # Table 6/7: warmstart_epoch 1, start_shrinking_epoch 2
    assert shrink_start(100) == 200  # Table 9: 100 warm-start iterations, shrinking at 200
    assert shrink_start(0) == 1


def test_resnet_schedule_appendix_c():
    # Table 6: 50 search epochs, E0 = 1, S = 2; D - 6 = 104 drops
    sched = drop_schedule(110, 6, start=2, end=50)
    assert sum(sched.values()) == 104
    assert min(sched) == 2 and max(sched) == 49
    # independent count: point i = 2 * 25**(i/103) lies in [e, e+1) iff i is in the range
    # given by the logarithms; count those for every epoch
    ratio = math.log(50 / 2)
    for e in range(2, 50):
        lo = math.log(e / 2) / ratio * 103
        hi = math.log((e + 1) / 2) / ratio * 103
        expected = sum(1 for i in range(104) if lo <= i < hi or (e == 49 and i == 103))
        assert sched[e] == expected, e
    assert sched[2] == 13  # the aggressive early pruning of §3: log(1.5)/log(25)*103 -> 13
    # log spacing: drops per epoch never increase as the search goes on (up to binning
    # jitter of one operation)
    counts = [sched[e] for e in range(2, 50)]
    assert all(b <= a + 1 for a, b in zip(counts, counts[1:]))
    assert counts[0] > counts[-1]


def test_schedule_edge_cases():
    assert drop_schedule(110, 6, start=2, end=2) == {2: 104}
    short = drop_schedule(110, 6, start=2, end=3)
    assert short == {2: 104}
    assert drop_schedule(6, 6, 2, 10) == {}
    with pytest.raises(ValueError):
        drop_schedule(110, 6, start=5, end=3)
    with pytest.raises(ValueError):
        drop_schedule(110, 6, start=0, end=3)


def test_drop_ops_takes_the_fullest_position_and_its_weakest_op():
    active = [[0, 1, 2, 3], [0, 1], [0, 1, 2]]
    scores = [[0.5, 0.1, 0.9, 0.3], [1.0, 2.0], [0.2, 0.1, 0.3]]
    out = drop_ops(active, scores, 1)
    assert out == [[0, 2, 3], [0, 1], [0, 1, 2]]
    assert active[0] == [0, 1, 2, 3]  # input untouched
    out = drop_ops(active, scores, 3)
    # drop 1 from p0 (4->3); then p0 and p2 tie at 3: p0 first (drops 3), then p2 (drops 1)
    assert out == [[0, 2], [0, 1], [0, 2]]


def test_drop_ops_reaches_one_per_position_and_never_empties():
    rng = np.random.default_rng(0)
    sizes = [23] * 4 + [9] * 2
    active = [list(range(n)) for n in sizes]
    scores = [rng.random(n) for n in sizes]
    sched = drop_schedule(110, 6, 2, 50)
    for e in sorted(sched):
        active = drop_ops(active, scores, sched[e])
        assert all(len(a) >= 1 for a in active)
    assert all(len(a) == 1 for a in active)
    # the survivor of each position is its best-scoring op
    assert [a[0] for a in active] == [int(np.argmax(s)) for s in scores]
    with pytest.raises(ValueError):
        drop_ops(active, scores, 1)


def test_every_start_and_end_drops_exactly_d_minus_6():
    """Float round-off of 10**log10(E) must not push the last point out of range."""
    from keras_actfn.search.grafs.schedule import drop_schedule

    for end in range(2, 80):
        for start in range(1, end + 1):
            assert sum(drop_schedule(110, 6, start, end).values()) == 104, (start, end)


def test_operator_weight_plot_is_readable():
    """Each panel names its position's role, its top operators are told apart by colour
    and marker in a legend (the rest counted), and epochs tick as whole numbers."""
    from keras_actfn.expr import ops
    from keras_actfn.search.grafs.protocol import plot_operator_weights

    rng = np.random.default_rng(0)
    sizes = [len(ops.GRAFS_UNARY)] * 4 + [len(ops.GRAFS_BINARY)] * 2
    history = []
    for epoch in range(1, 8):
        weights = [rng.dirichlet(np.ones(n) * epoch) for n in sizes]
        history.append({"epoch": epoch, "weights": weights})
    fig = plot_operator_weights(history, top=4)
    fig.canvas.draw()
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("u0: unary on x") and titles[-1].startswith("b1: binary")
    for ax, n, p in zip(fig.axes, sizes, range(6)):
        texts = [t.get_text() for t in ax.get_legend().get_texts()]
        names = ops.GRAFS_UNARY if n == len(ops.GRAFS_UNARY) else ops.GRAFS_BINARY
        last = history[-1]["weights"][p]
        top = [names[k] for k in np.argsort(-last)[:4]]
        assert [t.split(" (")[0] for t in texts[:4]] == top
        assert texts[4] == f"{n - 4} other operators"
        styled = [(line.get_color(), line.get_marker()) for line in ax.get_lines()
                  if line.get_label() and not line.get_label().startswith("_")]
        assert len(set(styled)) == 4
        ticks = [t for t in ax.get_xticks() if 1 <= t <= 7]
        assert ticks and all(float(t).is_integer() for t in ticks)
