"""WordNet 3.0 and the ImageNet-21k synset ids, for DataComp's ``text_based`` filter, offline.

DataComp (mlfoundations/datacomp ``baselines/apply_filter.py``) looks every whitespace word of a caption
up with NLTK's ``wordnet.synsets(word)`` and asks whether the FIRST synset's offset is an ImageNet-21k
class (``does_contain_text_entity``, lines 237-260); the class list is ``imagenet21k_wordnet_ids.txt``
(``baselines/utils.py``, lines 49-52), read as the integers after the leading ``n`` (apply_filter.py,
lines 491-493). Offsets only are compared, whatever the part of speech of the synset.

Here:

- WordNet 3.0 comes from Debian's ``wordnet-base`` package (``/usr/share/wordnet``; ``make setup``
  installs it), or the dict directory named by ``$HARNESS_WORDNET_DIR``. NLTK's reader needs a
  ``lexnames`` file that Debian leaves out and, since NLTK 3.9, data under one of ``nltk.data.path``'s
  roots, so the dict files are copied once into ``<cache>/nltk_data/corpora/wordnet`` with the 45
  standard lexicographer file names (WordNet's lexnames(5WN)) added. NLTK's WordNet corpus is the same
  WordNet 3.0 that ``nltk.download("wordnet")`` gives DataComp (apply_filter.py, line 662).
- The ImageNet-21k ids are timm's ``timm/data/_info/imagenet21k_goog_synsets.txt``, byte-identical to
  DataComp's ``imagenet21k_wordnet_ids.txt`` (the SHA-256 that utils.py line 51 checks); the hash is
  checked here too.
- The lookup is NLTK 3.8.1's ``synsets(word)[0]`` (DataComp pins nltk==3.8.1, requirements.txt line
  78): lower-case the word; for each part of speech in NLTK's order (noun, verb, adjective, adverb)
  find its base forms by WordNet's morphology (the exception list, else the detachment rules, applied
  again and again until some form is a WordNet lemma: NLTK >= 3.9 applies them only once), and take the
  first synset offset of the first form found. The harness reads NLTK's index maps and does this
  lookup itself, so any NLTK version gives DataComp's answer.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness.stages import sha256_file

DEBIAN_DICT = Path("/usr/share/wordnet")
ENV_DICT = "HARNESS_WORDNET_DIR"
ENV_CACHE = "HARNESS_CACHE_DIR"
# DataComp's imagenet21k_wordnet_ids.txt (baselines/utils.py, line 51)
IMAGENET21K_SHA256 = "66362bdedf36d933382edca5493fc562dcc17128ce36403c9e730a75f48cb2f2"
WORDNET_VERSION = "3.0"

_DICT_FILES = tuple(f"{kind}.{pos}" for kind in ("index", "data") for pos in ("noun", "verb", "adj", "adv")) + tuple(
    f"{pos}.exc" for pos in ("noun", "verb", "adj", "adv")
)
# WordNet 3.0's lexicographer files, numbered (lexnames(5WN)); NLTK reads them from "lexnames"
_LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling",
    "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object", "noun.person",
    "noun.phenomenon", "noun.plant", "noun.possession", "noun.process", "noun.quantity", "noun.relation",
    "noun.shape", "noun.state", "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition",
    "verb.communication", "verb.competition", "verb.consumption", "verb.contact", "verb.creation",
    "verb.emotion", "verb.motion", "verb.perception", "verb.possession", "verb.social", "verb.stative",
    "verb.weather", "adj.ppl",
)
_LEX_POS = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
POS_ORDER = ("n", "v", "a", "r")  # NLTK's POS_LIST, the order synsets() lists them in


class WordNetMissing(RuntimeError):
    """WordNet or the ImageNet-21k list is not installed or not the expected one."""


def cache_root() -> Path:
    base = os.environ.get(ENV_CACHE) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "datacomp-harness"
    )
    return Path(base)


def source_dir() -> Path:
    """The WordNet 3.0 dict directory to read: $HARNESS_WORDNET_DIR, else Debian's."""
    d = Path(os.environ.get(ENV_DICT) or DEBIAN_DICT).expanduser()
    missing = [f for f in _DICT_FILES if not (d / f).is_file()]
    if missing:
        raise WordNetMissing(
            f"text_based needs WordNet 3.0: {d} lacks {', '.join(missing)}. Install Debian's wordnet-base "
            f"(`make setup` does: `apt-get install wordnet-base`) or point {ENV_DICT} at a WordNet 3.0 dict directory"
        )
    return d


def prepared_dir(src: Path | None = None) -> Path:
    """An NLTK-readable copy of the WordNet dict files (made once, atomically), under the cache root."""
    src = source_dir() if src is None else src
    stamp = hashlib.sha256(
        "".join(f"{f}:{(src / f).stat().st_size}:{(src / f).stat().st_mtime_ns};" for f in _DICT_FILES).encode()
    ).hexdigest()[:12]
    root = cache_root() / f"nltk_data-{stamp}"
    dest = root / "corpora" / "wordnet"
    if (dest / "lexnames").is_file():
        return dest
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".wordnet-", dir=root.parent))
    try:
        (tmp / "corpora" / "wordnet").mkdir(parents=True)
        for f in _DICT_FILES:
            shutil.copyfile(src / f, tmp / "corpora" / "wordnet" / f)  # copies: NLTK refuses symlinks out of its roots
        if (src / "lexnames").is_file():
            shutil.copyfile(src / "lexnames", tmp / "corpora" / "wordnet" / "lexnames")
        else:
            lines = "".join(f"{i:02d}\t{name}\t{_LEX_POS[name.split('.')[0]]}\n" for i, name in enumerate(_LEXNAMES))
            (tmp / "corpora" / "wordnet" / "lexnames").write_text(lines)
        try:
            tmp.rename(root)
        except OSError:  # another process made it first
            if not (dest / "lexnames").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


@lru_cache(maxsize=2)
def reader(src: str | None = None) -> Any:
    """NLTK's WordNetCorpusReader over the prepared copy (WordNet 3.0 checked)."""
    try:
        import nltk
        from nltk.corpus.reader.wordnet import WordNetCorpusReader
    except ImportError as exc:
        raise WordNetMissing("text_based needs NLTK: run `make setup` or `pip install nltk`") from exc
    dest = prepared_dir(Path(src) if src else None)
    data_root = str(dest.parent.parent)
    if data_root not in nltk.data.path:
        nltk.data.path.append(data_root)  # NLTK reads corpora only under its data roots
    class WordNet30Reader(WordNetCorpusReader):
        def map_wn(self, version: str = "wordnet") -> None:
            # NLTK >= 3.9 maps the loaded WordNet's synsets to its own corpus's (index.sense, which Debian
            # ships in another package) for its multilingual data; this IS WordNet 3.0: no map.
            return None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available": not used
        wn = WordNet30Reader(str(dest), None)
    version = wn.get_version()
    if version != WORDNET_VERSION:
        raise WordNetMissing(
            f"text_based needs WordNet {WORDNET_VERSION} (ImageNet's synset ids are its offsets); "
            f"{source_dir()} holds WordNet {version}"
        )
    return wn


def _forms(wn: Any, form: str, pos: str) -> list[str]:
    """NLTK 3.8.1's ``_morphy(form, pos)``: the base forms of ``form`` that are WordNet lemmas of ``pos``."""
    index = wn._lemma_pos_offset_map
    exceptions = wn._exception_map[pos]
    rules = wn.MORPHOLOGICAL_SUBSTITUTIONS[pos]

    def lemmas(forms: Iterable[str]) -> list[str]:
        return list(dict.fromkeys(f for f in forms if f in index and pos in index[f]))

    def detach(forms: Iterable[str]) -> list[str]:
        # distinct forms only: the same lemmas come out, without 3^depth copies of a long word's forms
        return list(dict.fromkeys(f[: -len(old)] + new for f in forms for old, new in rules if f.endswith(old)))

    if form in exceptions:
        return lemmas([form, *exceptions[form]])
    forms = detach([form])
    found = lemmas([form, *forms])
    while not found and forms:  # 3.8.1 keeps detaching until some form is a lemma
        forms = detach(forms)
        found = lemmas(forms)
    return found


def first_synset_offset(word: str, wn: Any | None = None) -> int | None:
    """The offset of ``wordnet.synsets(word)[0]`` under NLTK 3.8.1, or None when there is no synset."""
    wn = reader() if wn is None else wn
    return _first_offset(wn, word.lower())


@lru_cache(maxsize=1 << 18)
def _first_offset(wn: Any, lemma: str) -> int | None:
    index = wn._lemma_pos_offset_map
    for pos in POS_ORDER:
        for form in _forms(wn, lemma, pos):
            offsets = index[form].get(pos, [])
            if offsets:
                return int(offsets[0])
    return None


def imagenet21k_file() -> Path:
    """timm's copy of the list, found without importing timm (which imports torch)."""
    import importlib.util

    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        raise WordNetMissing("text_based reads the ImageNet-21k synset list from timm: `pip install timm`")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "_info" / "imagenet21k_goog_synsets.txt"


@lru_cache(maxsize=4)
def imagenet21k_offsets(path: str | None = None) -> frozenset[int]:
    """The ImageNet-21k classes as WordNet noun offsets (``n01440764`` -> 1440764)."""
    p = Path(path).expanduser() if path else imagenet21k_file()
    if not p.is_file():
        raise WordNetMissing(f"text_based: ImageNet-21k synset list {p} does not exist")
    if path is None and sha256_file(p) != IMAGENET21K_SHA256:
        raise WordNetMissing(
            f"text_based: {p} is not DataComp's imagenet21k_wordnet_ids.txt (SHA-256 {sha256_file(p)}, expected "
            f"{IMAGENET21K_SHA256}); pass DataComp's file with --set text_based.synsets=PATH"
        )
    ids = [line.strip() for line in p.read_text().splitlines() if line.strip()]
    bad = [i for i in ids if not (i[:1] == "n" and i[1:].isdigit())]
    if bad:
        raise WordNetMissing(f"text_based: {p} holds entries that are not WordNet noun ids, e.g. {bad[:3]}")
    return frozenset(int(i[1:]) for i in ids)


def describe(synsets_path: str | None = None) -> dict[str, str]:
    """What the filter's answer depends on: the WordNet files' and the class list's hashes."""
    src = source_dir()
    lst = Path(synsets_path).expanduser() if synsets_path else imagenet21k_file()
    state = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in [*(src / f for f in _DICT_FILES), lst])
    return _describe(state)


@lru_cache(maxsize=8)
def _describe(state: tuple[tuple[str, int, int], ...]) -> dict[str, str]:
    *dict_files, lst = (Path(s[0]) for s in state)
    h = hashlib.sha256()
    for f in dict_files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return {"wordnet": f"WordNet {WORDNET_VERSION} {dict_files[0].parent} sha256:{h.hexdigest()[:16]}",
            "imagenet21k": f"{lst.name} sha256:{sha256_file(lst)[:16]}",
            "lookup": "nltk-3.8.1 synsets(word)[0]"}
