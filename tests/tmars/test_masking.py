"""Masking on constructed images: exact fill colours, untouched pixels, border clipping, overlaps."""

import numpy as np
import pytest
from PIL import Image

from harness.baselines.tmars.masking import mask_image, mask_images, regions_to_rects


def _gradient(w: int = 10, h: int = 8) -> np.ndarray:
    # every pixel differs, so a box that is off by one pixel gives a different mean
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 20, y * 30, (x + y) * 7 + 1], axis=-1).astype(np.uint8)


def _outside(shape: tuple[int, ...], *blocks: tuple[slice, slice]) -> np.ndarray:
    keep = np.ones(shape[:2], bool)
    for rows, cols in blocks:
        keep[rows, cols] = False
    return keep


def test_single_box_exact_colour_and_untouched_pixels():
    arr = _gradient()
    res = mask_image(Image.fromarray(arr), np.array([[2, 1, 5, 4]]))
    out = np.asarray(res.image)
    # columns 2..4, rows 1..3: mean x = 3, mean y = 2 -> (60, 60, (3+2)*7+1 = 36)
    assert np.all(out[1:4, 2:5] == [60, 60, 36])
    keep = _outside(arr.shape, (slice(1, 4), slice(2, 5)))
    assert np.array_equal(out[keep], arr[keep])
    assert res.n_boxes == 1
    assert res.area_fraction == pytest.approx(9 / 80)
    # the input image is not modified
    assert np.array_equal(np.asarray(Image.fromarray(arr)), arr)


def test_mean_rounds_half_up():
    arr = np.zeros((2, 2, 3), np.uint8)
    arr[0, 0] = [1, 3, 255]
    arr[0, 1] = [2, 4, 254]  # means over the 2-pixel box: 1.5 -> 2, 3.5 -> 4, 254.5 -> 255
    out = np.asarray(mask_image(Image.fromarray(arr), np.array([[0, 0, 2, 1]])).image)
    assert out[0].tolist() == [[2, 4, 255], [2, 4, 255]]
    assert out[1].tolist() == [[0, 0, 0], [0, 0, 0]]


def test_fractional_box_covers_every_touched_pixel():
    arr = _gradient()
    # (1.5, 0.2)-(3.1, 1.9) touches columns 1..3 and rows 0..1
    res = mask_image(Image.fromarray(arr), np.array([[1.5, 0.2, 3.1, 1.9]]))
    out = np.asarray(res.image)
    # mean x = 2 -> 40; mean y = 0.5 -> 15; (2+0.5)*7+1 = 18.5 -> 19
    assert np.all(out[0:2, 1:4] == [40, 15, 19])
    keep = _outside(arr.shape, (slice(0, 2), slice(1, 4)))
    assert np.array_equal(out[keep], arr[keep])


def test_box_clipped_at_border_uses_only_inside_pixels():
    arr = _gradient()
    res = mask_image(Image.fromarray(arr), np.array([[7, -3, 14, 2]]))
    out = np.asarray(res.image)
    # inside part: columns 7..9, rows 0..1: mean x = 8 -> 160, mean y = 0.5 -> 15, (8.5)*7+1 = 60.5 -> 61
    assert np.all(out[0:2, 7:10] == [160, 15, 61])
    keep = _outside(arr.shape, (slice(0, 2), slice(7, 10)))
    assert np.array_equal(out[keep], arr[keep])
    assert res.area_fraction == pytest.approx(6 / 80)


def test_box_fully_outside_is_dropped():
    arr = _gradient()
    res = mask_image(Image.fromarray(arr), np.array([[20, 20, 30, 30], [-5, 0, 0, 8]]))
    assert res.n_boxes == 0 and res.area_fraction == 0.0
    assert np.array_equal(np.asarray(res.image), arr)


def test_overlapping_boxes_means_from_original_later_box_wins():
    arr = _gradient()
    boxes = np.array([[0, 0, 4, 2], [2, 0, 6, 2]])
    res = mask_image(Image.fromarray(arr), boxes)
    out = np.asarray(res.image)
    # box A: cols 0..3 rows 0..1: x=1.5 -> 30, y=0.5 -> 15, (2)*7+1 = 15
    # box B: cols 2..5 rows 0..1 from the ORIGINAL pixels: x=3.5 -> 70, 15, (4)*7+1 = 29
    assert np.all(out[0:2, 0:2] == [30, 15, 15])
    assert np.all(out[0:2, 2:6] == [70, 15, 29])
    keep = _outside(arr.shape, (slice(0, 2), slice(0, 6)))
    assert np.array_equal(out[keep], arr[keep])
    assert res.n_boxes == 2
    assert res.area_fraction == pytest.approx(12 / 80)  # the union, not the sum (16)


def test_quadrilateral_uses_its_bounding_box():
    arr = _gradient()
    quad = np.array([[[3, 2], [6, 3], [5, 6], [2, 5]]], dtype=np.float32)  # a rotated square
    rects = regions_to_rects(quad, 10, 8)
    assert rects.tolist() == [[2, 2, 6, 6]]
    out = np.asarray(mask_image(Image.fromarray(arr), quad).image)
    # cols 2..5 rows 2..5: x=3.5 -> 70, y=3.5 -> 105, 7*7+1 = 50
    assert np.all(out[2:6, 2:6] == [70, 105, 50])


def test_no_boxes_returns_identical_image_and_grey_is_converted():
    grey = Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4), "L")
    res = mask_image(grey, np.zeros((0, 4, 2)))
    assert res.image.mode == "RGB" and res.n_boxes == 0
    assert np.array_equal(np.asarray(res.image)[:, :, 0], np.asarray(grey))
    res = mask_image(grey, np.array([[0, 0, 4, 3]]))
    assert np.all(np.asarray(res.image) == 6)  # mean of 0..11 is 5.5 -> 6
    assert res.area_fraction == 1.0


def test_bad_region_shapes_are_refused():
    im = Image.new("RGB", (4, 4))
    with pytest.raises(ValueError, match="shape"):
        mask_image(im, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        mask_image(im, np.array([[0, 0, np.nan, 2]]))
    with pytest.raises(ValueError, match="2 images but 1"):
        mask_images([im, im], [np.zeros((0, 4))])
