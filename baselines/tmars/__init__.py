"""T-MARS (Maini et al., ICLR 2024): mask the text in an image, re-score it against its caption.

- ``detectors``: the ``TextDetector`` interface, a registry, PP-OCR detection (default, offline).
- ``masking``: fill each text box with its own mean colour.
The scorer plugin lives in ``plugin.py``; see README.md in this folder.
"""

from harness.baselines.tmars.detectors import (
    RapidOCRDetector,
    TextDetector,
    detector_names,
    get_detector,
    register_detector,
)
from harness.baselines.tmars.masking import MaskResult, mask_image, mask_images, regions_to_rects

__all__ = [
    "MaskResult",
    "RapidOCRDetector",
    "TextDetector",
    "detector_names",
    "get_detector",
    "mask_image",
    "mask_images",
    "regions_to_rects",
    "register_detector",
]
