"""MoNuSeg XML parsing and polygon rasterisation."""

from __future__ import annotations

import numpy as np
import pytest

from odssam.data.polygons import count_regions, rasterize_polygons, read_polygon_mask, read_polygons
from odssam.errors import OdsSamError

from data_layouts import MONUSEG_REGIONS, monuseg_expected_mask, write_monuseg_xml


def test_read_polygons_skips_regions_without_area(tmp_path):
    path = write_monuseg_xml(tmp_path / "a.xml", MONUSEG_REGIONS)
    polygons = read_polygons(path)
    assert count_regions(path) == 3
    assert len(polygons) == 2
    np.testing.assert_array_equal(polygons[0][1], [14.0, 4.0])  # (x, y)


def test_overlapping_polygons_are_united(tmp_path):
    path = write_monuseg_xml(tmp_path / "a.xml", MONUSEG_REGIONS)
    mask = read_polygon_mask(path, 32, 32)
    np.testing.assert_array_equal(mask, monuseg_expected_mask())


def test_x_is_column_and_y_is_row():
    mask = rasterize_polygons([np.array([(10.0, 1.0), (12.0, 1.0), (12.0, 3.0), (10.0, 3.0)])], 6, 16)
    assert mask[1:3, 10:12].all() and mask.sum() == 4


def test_centre_rule_on_fractional_vertices():
    # Triangle x >= 0.2, y <= 4.8, y >= x: centres (col, row) strictly inside, and the
    # diagonal ties left out by the half-open rule (a shared edge is counted once).
    triangle = np.array([(0.2, 0.2), (4.8, 4.8), (0.2, 4.8)])
    mask = rasterize_polygons([triangle], 6, 6)
    rows, cols = np.mgrid[:6, :6]
    expected = (cols >= 1) & (cols < rows) & (rows <= 4)
    np.testing.assert_array_equal(mask, expected)


def test_shared_edge_is_covered_once_and_without_gap():
    left = np.array([(0.0, 0.0), (3.0, 0.0), (3.0, 4.0), (0.0, 4.0)])
    right = np.array([(3.0, 0.0), (6.0, 0.0), (6.0, 4.0), (3.0, 4.0)])
    both = rasterize_polygons([left, right], 5, 8)
    assert rasterize_polygons([left], 5, 8).sum() + rasterize_polygons([right], 5, 8).sum() == both.sum()
    assert both[:4, :6].all() and both.sum() == 24


def test_pil_rule_fills_edges_too():
    square = [np.array([(2.0, 2.0), (6.0, 2.0), (6.0, 6.0), (2.0, 6.0)])]
    centre = rasterize_polygons(square, 10, 10, rule="centre")
    pil = rasterize_polygons(square, 10, 10, rule="pil")
    assert centre.sum() == 16 and pil.sum() == 25
    assert (pil | centre).sum() == pil.sum()
    with pytest.raises(ValueError, match="rule"):
        rasterize_polygons(square, 10, 10, rule="nope")


def test_polygon_outside_the_image_is_clipped():
    mask = rasterize_polygons([np.array([(-5.0, -5.0), (3.0, -5.0), (3.0, 3.0), (-5.0, 3.0)])], 8, 8)
    assert mask[:3, :3].all() and mask.sum() == 9


def test_malformed_xml_names_the_file(tmp_path):
    path = tmp_path / "bad.xml"
    path.write_text("<Annotations><Region>")
    with pytest.raises(OdsSamError, match="bad.xml: not a valid XML annotation"):
        read_polygons(path)


def test_vertex_without_coordinates_names_the_file(tmp_path):
    path = tmp_path / "v.xml"
    path.write_text('<Annotations><Regions><Region Id="7"><Vertices><Vertex X="1"/></Vertices></Region></Regions></Annotations>')
    with pytest.raises(OdsSamError, match="v.xml: region 7"):
        read_polygons(path)


def test_missing_annotation_names_the_file(tmp_path):
    with pytest.raises(OdsSamError, match="none.xml: annotation file not found"):
        read_polygons(tmp_path / "none.xml")
