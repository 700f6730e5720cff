"""Figure grids: layout, cell content and argument checks."""

import numpy as np
import pytest
from PIL import Image

from odssam.metrics.figures import figure_grid, save_figure_grid

CELL = 40


def _sample(height=20, width=30):
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[..., 2] = 200  # blue
    gt = np.zeros((height, width), dtype=bool)
    gt[5:15, 10:20] = True
    return image, gt


def _cell(grid, row, column, header):
    """Pixels of one cell (the grid adds a header of ``header`` pixels and 4-pixel gaps)."""
    top = header + row * (CELL + 4)
    left = 4 + column * (CELL + 4)
    return np.asarray(grid)[top : top + CELL, left : left + CELL]


def test_grid_has_one_row_per_sample_and_one_column_per_panel():
    image, gt = _sample()
    predictions = {"U-Net": [gt * 0.4, gt * 0.4], "Ours": [gt * 1.0, gt * 1.0]}
    grid = figure_grid([image, image], [gt, gt], predictions, cell_size=CELL, legend=False)
    columns = 2 + 2 + 1  # image, GT, two methods, overlay
    assert grid.width == 4 + columns * (CELL + 4)
    header = grid.height - 4 - 2 * (CELL + 4)
    assert header > 0

    # Cells are letterboxed: a 20x30 image fills the full width and 2/3 of the height.
    gt_cell = _cell(grid, 1, 1, header)
    assert gt_cell[CELL // 2, CELL // 2].tolist() == [255, 255, 255]  # inside the mask
    assert gt_cell[CELL // 2, 2].tolist() == [0, 0, 0]  # outside it
    assert _cell(grid, 0, 2, header)[CELL // 2, CELL // 2].tolist() == [102, 102, 102]  # 0.4 * 255
    overlay = _cell(grid, 0, 4, header)
    red, green, blue = overlay[CELL // 2, CELL // 2].tolist()
    assert red > 100 and blue < 150  # the prediction tints the blue image red
    assert (overlay == [40, 220, 60]).all(axis=-1).any()  # green ground-truth outline


def test_no_overlay_column_and_row_labels():
    image, gt = _sample()
    plain = figure_grid([image], [gt], {"Ours": [gt]}, overlay=None, cell_size=CELL, legend=False)
    labelled = figure_grid(
        [image], [gt], {"Ours": [gt]}, overlay=None, cell_size=CELL, row_labels=["case 7"], legend=False
    )
    assert plain.width == 4 + 3 * (CELL + 4)
    assert labelled.width > plain.width


def test_legend_strip_holds_the_grey_scale_and_the_overlay_colours():
    image, gt = _sample()
    predictions = {"Ours": [gt * 0.5]}
    bare = figure_grid([image], [gt], predictions, cell_size=CELL, legend=False)
    grid = figure_grid([image], [gt], predictions, cell_size=CELL)
    assert grid.width == bare.width and grid.height > bare.height
    assert np.array_equal(np.asarray(grid)[: bare.height], np.asarray(bare))  # the grid itself is unchanged
    strip = np.asarray(grid)[bare.height :]
    grey = strip[(strip[..., 0] == strip[..., 1]) & (strip[..., 1] == strip[..., 2])]
    assert len(np.unique(grey[:, 0])) > 30  # a ramp of grey levels, not just text
    assert (strip == [230, 40, 40]).all(axis=-1).any() and (strip == [40, 220, 60]).all(axis=-1).any()
    without_overlay = np.asarray(figure_grid([image], [gt], predictions, cell_size=CELL, overlay=None))
    assert not (without_overlay == [230, 40, 40]).all(axis=-1).any()


def test_save_writes_png_atomically(tmp_path):
    image, gt = _sample()
    path = save_figure_grid(tmp_path / "figs" / "grid.png", [image], [gt], {"Ours": [gt * 0.8]}, cell_size=CELL)
    assert path.exists()
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]
    with Image.open(path) as loaded:
        assert loaded.format == "PNG"


def test_argument_checks():
    image, gt = _sample()
    with pytest.raises(ValueError, match="same number of samples"):
        figure_grid([image, image], [gt], {"Ours": [gt, gt]})
    with pytest.raises(ValueError, match="overlay method 'SAM'"):
        figure_grid([image], [gt], {"Ours": [gt]}, overlay="SAM")
    with pytest.raises(ValueError, match="prediction of Ours is 10x10"):
        figure_grid([image], [gt], {"Ours": [np.zeros((10, 10))]})
