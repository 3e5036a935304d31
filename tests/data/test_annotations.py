import numpy as np
import pytest

from cervix_jax.data import annotations


def test_parse_dat_reads_vertices_and_tolerates_blank_lines_and_spaces():
    text = "1.5,2.0\n\n  3,4 \n5.25\t6\n"
    got = annotations.parse_dat(text.encode(), "a.dat")
    np.testing.assert_allclose(got, [[1.5, 2.0], [3, 4], [5.25, 6]])
    assert got.dtype == np.float32


def test_format_then_parse_round_trips():
    poly = np.asarray([[0.125, 10.5], [20.0, 3.25], [7.0, 7.0]], np.float32)
    np.testing.assert_allclose(annotations.parse_dat(annotations.format_dat(poly)), poly)


@pytest.mark.parametrize(
    "text, line, found",
    [("1,2\n3,4\n5;x\n", 3, "5;x"), ("1,2\n3\n4,5\n", 2, "3"), ("1,2,3\n", 1, "1,2,3")],
)
def test_malformed_line_names_file_and_line(text, line, found):
    with pytest.raises(annotations.AnnotationError) as e:
        annotations.parse_dat(text, "im_X/001_cyt01.dat")
    message = str(e.value)
    assert f"im_X/001_cyt01.dat, line {line}" in message
    assert repr(found) in message


def test_too_few_vertices_and_binary_content_are_errors():
    with pytest.raises(annotations.AnnotationError, match="at least 3 vertices, found 2"):
        annotations.parse_dat("1,2\n3,4\n", "b.dat")
    with pytest.raises(annotations.AnnotationError, match="c.dat: not a text file"):
        annotations.parse_dat(b"\xff\xfe\x00\x81", "c.dat")


def test_rasterize_fills_exact_pixels_and_unions():
    square = np.asarray([[2, 1], [6, 1], [6, 4], [2, 4]], np.float32)  # x in [2,6), y in [1,4)
    mask = annotations.rasterize([square], 6, 8)
    assert mask.dtype == np.uint8 and mask.shape == (6, 8)
    expected = np.zeros((6, 8), np.uint8)
    expected[1:4, 2:6] = 1
    # PIL's polygon fill includes the boundary pixels; allow at most the one-pixel outline.
    assert np.all(mask[1:4, 2:6] == 1)
    assert mask.sum() - expected.sum() <= 2 * (4 + 3) + 1
    whole = annotations.rasterize([np.asarray([[0, 0], [8, 0], [8, 6], [0, 6]])], 6, 8)
    assert whole.all()
    other = np.asarray([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
    union = annotations.rasterize([square, other], 6, 8)
    assert union[0, 0] == 1 and union[2, 3] == 1


def test_pack_unpack_and_scale():
    polys = [np.ones((3, 2), np.float32), 2 * np.ones((5, 2), np.float32)]
    vertices, lengths = annotations.pack_polygons(polys)
    assert vertices.shape == (8, 2) and list(lengths) == [3, 5]
    back = annotations.unpack_polygons(vertices, lengths)
    assert [p.shape for p in back] == [(3, 2), (5, 2)]
    scaled = annotations.scale_polygons(back, 0.5, 2.0)
    np.testing.assert_allclose(scaled[1][0], [1.0, 4.0])
    assert annotations.unpack_polygons(*annotations.pack_polygons([])) == []


def _square(x0, y0, x1, y1):
    return np.asarray([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)


def test_label_maps_number_cells_in_stored_order_with_nuclei_on_top():
    # Cell 2 overlaps cell 1 (and lies on top of it); nucleus 1 sits in the overlap.
    cytoplasm = [_square(0, 0, 6, 6), _square(4, 0, 10, 6)]
    nuclei = [_square(4, 2, 6, 4), _square(7, 2, 9, 4)]
    cells, nucleus = annotations.label_maps(cytoplasm, nuclei, 8, 12)
    assert cells.dtype == nucleus.dtype == np.int32 and cells.shape == (8, 12)
    inside = [annotations.rasterize([p], 8, 12) > 0 for p in cytoplasm + nuclei]
    expected = np.zeros((8, 12), np.int32)
    expected_nucleus = np.zeros((8, 12), np.int32)
    expected[inside[0]] = 1
    expected[inside[1]] = 2
    expected_nucleus[inside[2]] = 1
    expected_nucleus[inside[3]] = 2
    # A nucleus stays its own cell's, above a neighbour's cytoplasm.
    expected[expected_nucleus > 0] = expected_nucleus[expected_nucleus > 0]
    assert (expected == 1).any() and (expected_nucleus[inside[1]] == 1).any()
    np.testing.assert_array_equal(cells, expected)
    np.testing.assert_array_equal(nucleus, expected_nucleus)
    np.testing.assert_array_equal(cells > 0, annotations.rasterize(cytoplasm, 8, 12) > 0)
    np.testing.assert_array_equal(nucleus > 0, annotations.rasterize(nuclei, 8, 12) > 0)


def test_label_maps_pair_a_missing_nucleus_by_overlap():
    # Three cells, two nuclei (the first cell lacks one): each nucleus goes to the cell it is in.
    cytoplasm = [_square(0, 0, 4, 4), _square(4, 0, 8, 4), _square(8, 0, 12, 4)]
    nuclei = [_square(5, 1, 7, 3), _square(9, 1, 11, 3)]
    _, nucleus = annotations.label_maps(cytoplasm, nuclei, 4, 12)
    assert set(np.unique(nucleus[:, 4:8])) == {0, 2} and set(np.unique(nucleus[:, 8:])) == {0, 3}
    assert not nucleus[:, :4].any()
    cells, nucleus = annotations.label_maps([], [], 3, 3)
    assert not cells.any() and not nucleus.any()
