"""Language identification for the caption filters.

DataComp uses fastText's lid.176 (top-1 label, newlines replaced by spaces). That model is not
redistributable with the harness, so it is used when the user supplies the file
(``HARNESS_LID176=/path/lid.176.bin`` or ``detector(path=...)``), read with ``fasttext-predict``.
Otherwise py3langid, whose model ships inside its package, stands in. ``detector_name()`` says
which one ran; selection records it in subset.json.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

ENV_VAR = "HARNESS_LID176"


class _FastText:
    def __init__(self, path: Path):
        import fasttext

        if not path.is_file():
            raise FileNotFoundError(f"{ENV_VAR}: fastText model {path} does not exist")
        self.model = fasttext.load_model(str(path))
        self.name = f"fasttext-lid.176 ({path.name})"

    def detect(self, texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
        if not texts:
            return [], np.empty(0)
        labels, probs = self.model.predict([t.replace("\n", " ") for t in texts], k=1)
        langs = [lab[0].replace("__label__", "") if lab else "und" for lab in labels]
        return langs, np.array([p[0] if len(p) else 0.0 for p in probs], dtype=np.float64)


class _Py3Langid:
    def __init__(self) -> None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        self.model = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        self.name = f"py3langid-{importlib.metadata.version('py3langid')}"

    def detect(self, texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
        langs, probs = [], np.empty(len(texts), dtype=np.float64)
        for i, t in enumerate(texts):
            lang, p = self.model.classify(t.replace("\n", " "))
            langs.append(lang)
            probs[i] = p
        return langs, probs


@lru_cache(maxsize=4)
def _detector(path: str | None):
    return _FastText(Path(path).expanduser()) if path else _Py3Langid()


def detector(path: str | os.PathLike | None = None):
    """The detector in use: fastText lid.176 when a file is given (argument or $HARNESS_LID176)."""
    path = path or os.environ.get(ENV_VAR) or None
    return _detector(str(path) if path else None)


def detector_name(path: str | os.PathLike | None = None) -> str:
    return detector(path).name


def detect(texts: Sequence[str], path: str | os.PathLike | None = None) -> tuple[list[str], np.ndarray]:
    """(top-1 language code per text, its probability)."""
    return detector(path).detect(list(texts))


def detect_english(texts: Sequence[str], path: str | os.PathLike | None = None) -> np.ndarray:
    """Boolean array: the top-1 language is English (DataComp's ``== "en"``)."""
    langs, _ = detect(texts, path)
    return np.array([lang == "en" for lang in langs], dtype=bool)
