"""AQuaSurF figures: embedding (6.4), search progress (6.7), space map (6.8) — data checks."""

import numpy as np
import pytest

from keras_actfn.search.aquasurf.plots import (GID_BASELINE, GID_BEST, GID_BEST_LINE,
                                               GID_EVALUATED, GID_FAILED, GID_LABELS,
                                               GID_MISSING, GID_POINTS, GID_SPACE,
                                               GID_VALUED, MISSING_COLOR, plot_embedding,
                                               plot_search_progress, plot_space_map)


def _artists(fig, gid):
    ax = fig.axes[0]
    return [a for a in list(ax.collections) + list(ax.lines) if a.get_gid() == gid]


def _one(fig, gid):
    found = _artists(fig, gid)
    assert len(found) == 1, (gid, len(found))
    return found[0]


def _luminance(rgba):
    rgba = np.asarray(rgba)
    return 0.2126 * rgba[:, 0] + 0.7152 * rgba[:, 1] + 0.0722 * rgba[:, 2]


@pytest.fixture
def points():
    rng = np.random.default_rng(3)
    coords = rng.normal(size=(40, 2))
    values = rng.uniform(0.1, 0.9, size=40)
    values[[4, 17, 30]] = np.nan
    return coords, values


def test_embedding_points_and_colours(points, tmp_path):
    coords, values = points
    path = tmp_path / "emb.png"
    fig = plot_embedding(coords, values, path, labels={"ReLU": 2, "tanh": 9})
    fig.canvas.draw()
    valued = _one(fig, GID_VALUED)
    ok = np.flatnonzero(~np.isnan(values))
    order = ok[np.argsort(values[ok])]  # lowest first, the best drawn on top
    np.testing.assert_allclose(valued.get_offsets(), coords[order])
    np.testing.assert_allclose(valued.get_array(), values[order])
    colours = valued.get_facecolors()
    assert colours.shape == (ok.size, 4)
    # viridis: lightness rises with the value, so luminance never falls along sorted values
    # (equal where two values share one of the colormap's 256 entries)
    lum = _luminance(colours)
    assert np.all(np.diff(lum) >= 0) and lum[-1] > lum[0] + 0.5
    # the colour scale spans the values: lowest and highest at the colormap's ends
    from matplotlib import colormaps
    np.testing.assert_allclose(colours[0], colormaps["viridis"](0.0))
    np.testing.assert_allclose(colours[-1], colormaps["viridis"](1.0))
    missing = _one(fig, GID_MISSING)
    np.testing.assert_allclose(missing.get_offsets(), coords[[4, 17, 30]])
    from matplotlib.colors import to_rgba
    for colour in missing.get_facecolors():
        np.testing.assert_allclose(colour, to_rgba(MISSING_COLOR))
    marks = _artists(fig, GID_LABELS)
    np.testing.assert_allclose(np.vstack([m.get_offsets() for m in marks]), coords[[2, 9]])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["ReLU", "tanh"]
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread
    assert imread(str(path)).shape[:2] == (500, 600)  # 6 x 5 inches at 100 dpi


def test_embedding_skips_rows_without_coordinates_and_checks_input(points):
    coords, values = points
    coords = coords.copy()
    coords[0] = np.nan
    fig = plot_embedding(coords, values)
    offsets = np.vstack([c.get_offsets() for c in fig.axes[0].collections])
    assert offsets.shape[0] == 39 and np.isfinite(offsets).all()
    # no values at all: every point grey, no colour bar
    fig = plot_embedding(points[0])
    assert _artists(fig, GID_VALUED) == [] and len(_one(fig, GID_MISSING).get_offsets()) == 40
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        plot_embedding(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="entries for 40 points"):
        plot_embedding(points[0], np.zeros(39))
    with pytest.raises(ValueError, match="outside"):
        plot_embedding(points[0], labels={"x": 40})


def test_search_progress_points_best_line_and_baselines(tmp_path):
    values = np.array([0.5, 0.42, np.nan, 0.61, 0.58, np.nan, 0.7, 0.66, 0.69, 0.72])
    fig = plot_search_progress(values, tmp_path / "p.png",
                               baselines={"ReLU": 0.6, "Swish": 0.65}, start_size=8)
    pts = _one(fig, GID_POINTS).get_offsets()
    ok = np.flatnonzero(np.isfinite(values))
    np.testing.assert_allclose(pts, np.column_stack([ok + 1, values[ok]]))
    # best so far, by a plain loop (failures do not move it)
    best, expected = -np.inf, []
    for v in values:
        if np.isfinite(v):
            best = max(best, v)
        expected.append(best)
    line = _one(fig, GID_BEST_LINE)
    np.testing.assert_allclose(line.get_xdata(), np.arange(1, 11))
    np.testing.assert_allclose(line.get_ydata(), expected)
    assert line.get_drawstyle() == "steps-post"
    lines = _artists(fig, GID_BASELINE)
    assert [l.get_label() for l in lines] == ["ReLU", "Swish"]
    assert [l.get_ydata()[0] for l in lines] == [0.6, 0.65]
    assert lines[0].get_color() != lines[1].get_color()
    failed = _one(fig, GID_FAILED).get_offsets()
    np.testing.assert_allclose(failed[:, 0], [3, 6])
    low, high = fig.axes[0].get_ylim()
    assert np.all(failed[:, 1] < np.nanmin(values)) and low < failed[0, 1] < high
    assert low < 0.42 and high > 0.72
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="no evaluations"):
        plot_search_progress([])


def test_space_map_layers_and_best(tmp_path):
    rng = np.random.default_rng(0)
    coords = rng.normal(size=(300, 2))
    evaluated = np.array([5, 77, 12, 250, 3, 140])
    values = np.array([0.3, 0.8, np.nan, 0.55, 0.86, 0.1])
    fig = plot_space_map(coords, evaluated, values, tmp_path / "m.png")
    np.testing.assert_allclose(_one(fig, GID_SPACE).get_offsets(), coords)
    shown = np.isfinite(values)
    pts = _one(fig, GID_EVALUATED)
    np.testing.assert_allclose(pts.get_offsets(), coords[evaluated[shown]])
    np.testing.assert_allclose(pts.get_array(), values[shown])
    fig.canvas.draw()
    lum = _luminance(pts.get_facecolors())
    assert np.array_equal(np.argsort(lum), np.argsort(values[shown]))
    np.testing.assert_allclose(_one(fig, GID_MISSING).get_offsets(), coords[[12]])
    np.testing.assert_allclose(_one(fig, GID_BEST).get_offsets(), coords[[3]])
    # coloured by evaluation order: 1..m, every evaluated point (failed too)
    fig = plot_space_map(coords, evaluated, values, color_by="order")
    pts = _one(fig, GID_EVALUATED)
    np.testing.assert_allclose(pts.get_offsets(), coords[evaluated])
    np.testing.assert_allclose(pts.get_array(), np.arange(1, 7))
    np.testing.assert_allclose(_one(fig, GID_BEST).get_offsets(), coords[[3]])
    with pytest.raises(ValueError, match="outside"):
        plot_space_map(coords, [300], [0.5])
    with pytest.raises(ValueError, match="color_by"):
        plot_space_map(coords, [1], [0.5], color_by="size")
    with pytest.raises(ValueError, match="entries for 2 points"):
        plot_space_map(coords, [1, 2], [0.5])


def test_no_pyplot_figures_left_open(points):
    import sys
    before = None
    if "matplotlib.pyplot" in sys.modules:
        before = sys.modules["matplotlib.pyplot"].get_fignums()
    plot_embedding(*points)
    plot_search_progress(points[1])
    plot_space_map(points[0], [0, 1], points[1][:2])
    if before is not None:
        assert sys.modules["matplotlib.pyplot"].get_fignums() == before
