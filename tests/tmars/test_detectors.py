"""The detector registry and the PP-OCR (rapidocr) default on text rendered with PIL."""

import numpy as np
import pytest
from PIL import Image

from harness.baselines.tmars import TextDetector, detector_names, get_detector, register_detector
from harness.baselines.tmars.masking import mask_image, regions_to_rects
from harness.benchmarks.text_images import WORDS, render


@pytest.fixture(scope="module")
def rapidocr() -> TextDetector:
    return get_detector("rapidocr")


def _centre_in(region: np.ndarray, box: tuple[int, int, int, int]) -> bool:
    # the criterion used throughout: the true text box's centre lies in a detected region's bbox
    c0, r0, c1, r1 = regions_to_rects(region[None], 10**6, 10**6)[0]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return c0 <= cx <= c1 and r0 <= cy <= r1


def test_rapidocr_finds_rendered_text(rapidocr):
    rng = np.random.default_rng(1)
    images, truth = [], []
    for i in range(20):
        im, box = render(rng, WORDS[i % len(WORDS)], font_px=14)
        images.append(im)
        truth.append(box)
    found = rapidocr.detect(images)
    assert len(found) == len(images)
    hits = sum(any(_centre_in(r, box) for r in regions) for regions, box in zip(found, truth, strict=True))
    assert hits >= 18, f"found text in {hits}/20 images"
    for regions in found:
        assert regions.ndim == 3 and regions.shape[1:] == (4, 2)


def test_rapidocr_quiet_on_shapes_only(rapidocr):
    rng = np.random.default_rng(2)
    images = [render(rng, None)[0] for _ in range(20)]
    n = sum(len(r) for r in rapidocr.detect(images))
    assert n <= 2, f"{n} text boxes on 20 images without text"


def test_masking_detected_text_hides_it(rapidocr):
    rng = np.random.default_rng(3)
    im, box = render(rng, "banana", font_px=18)
    regions = rapidocr.detect([im])[0]
    res = mask_image(im, regions)
    assert res.n_boxes >= 1
    out = np.asarray(res.image).astype(int)
    # the text box is now (nearly) flat: ink and label collapsed to fill colours
    x0, y0, x1, y1 = box
    assert (
        out[y0:y1, x0:x1].std(axis=(0, 1)).max()
        < 0.25 * np.asarray(im).astype(int)[y0:y1, x0:x1].std(axis=(0, 1)).max() + 1
    )


def test_odd_inputs(rapidocr):
    tiny = Image.new("RGB", (5, 5), (255, 255, 255))
    grey = Image.new("L", (64, 40), 128)
    rgba = Image.new("RGBA", (300, 90), (10, 20, 30, 255))
    out = rapidocr.detect([tiny, grey, rgba])
    assert [r.shape[0] for r in out] == [0, 0, 0]


def test_registry_by_name_and_by_path():
    @register_detector("_test_fixed")
    class Fixed:
        def __init__(self, box=(1, 1, 3, 3)):
            self.box = np.asarray([box], np.float32)

        def detect(self, images):
            return [self.box for _ in images]

    assert "_test_fixed" in detector_names() and "rapidocr" in detector_names()
    det = get_detector("_test_fixed", box=(0, 0, 2, 2))
    assert det.detect([Image.new("RGB", (4, 4))])[0].tolist() == [[0, 0, 2, 2]]
    assert isinstance(get_detector("harness.baselines.tmars.detectors:RapidOCRDetector", upscale_to=0), TextDetector)
    with pytest.raises(ValueError, match="unknown text detector 'fast'"):
        get_detector("fast")
    with pytest.raises(ValueError, match="cannot import"):
        get_detector("no_such_module:Thing")
    with pytest.raises(ValueError, match="already registered"):
        register_detector("_test_fixed")(lambda: None)
