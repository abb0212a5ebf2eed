"""The filter expression language.

Grammar (docs/architecture.md)::

    expr   := term (("+" | "&" | "-") term)*      left-assoc, one precedence level
    term   := "(" expr ")" | atom
    atom   := NAME [ "_"? PERCENT ]               hype10, clip_l14_30, random30, dfn (default percent)
            | NAME (">=" | ">" | "<=" | "<") NUMBER   clip_b32>=0.28 (on the combined score)
            | "uids:" PATH                        a DataComp subset file (.npy of u8,u8, sorted)

``+`` is union, ``&`` intersection, ``-`` difference (``a - b``: the rows of a not in b). A PATH runs to
the next space, "(", ")", "+" or "&" (quote it, ``uids:"my file.npy"``, if it holds those), so write
spaces around a "-" that follows a path. Expressions are parsed to an AST before any work; errors
show the position with a caret and suggest the nearest known filter names.

Percent rule (DataComp's ``get_threshold``): with n pool rows and p percent,
``threshold = sorted_descending(score)[int(n * (p / 100))]`` and a row is kept when
``score >= threshold``, so ties at the threshold are all kept. The index is computed in float64
exactly as DataComp computes ``int(len(df) * fraction)``; at 100% (where DataComp would index past the
end) the threshold is the smallest score. NaN scores (samples without a decodable image) sort last
and never pass. Percentages must lie in (0, 100].

Percent base: for DataComp's metadata-column filters (``clip_b32``, ``clip_l14``, and every metadata
scorer) n is every metadata row, as DataComp's ``get_threshold`` counts ``len(df)``
(mlfoundations/datacomp ``baselines/apply_filter.py``, lines 375-394). For a model-scored filter
(``hype*``, ``dfn``, ``tmars``, any scorer that reads images) n is the number of samples that HAVE the
score (a decodable image): the HYPE paper's medium sizes (11.6M / 23.1M / 34.7M at 10 / 20 / 30%) and
DFN's 17.1M at 15% are fractions of the ~115M samples with an image, not of the 128M metadata rows.
The base and its row count are recorded per term in subset.json.

Explicit thresholds (``clip_b32>=0.35``) and the compatibility mode ``compat``: DataComp compares a
float32 score column with a Python float (``df[key] >= threshold``, apply_filter.py line 331), and
numpy then casts the threshold to float32. ``compat="datacomp"`` (the default) does the same for any
score stored as float32 (or float16): ``clip_b32>=0.35`` keeps a score equal to float32(0.35) =
0.3499999940..., which a float64 comparison drops. ``compat="corrected"`` compares in float64.

With ``uids:`` terms a result can hold repeats (upsampling); counts then combine as multisets:
union = max, intersection = min, difference = the left count where the right one is 0.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.compat import DEFAULT_COMPAT, check_compat
from harness.errors import UsageError
from harness.pool import UID_DTYPE, is_sorted_uids, uid_ranges

OPS = {"+": "union", "&": "intersection", "-": "difference"}
CMPS = (">=", "<=", ">", "<")

# percent bases: every metadata row (DataComp's get_threshold) or the rows that have the score
PERCENT_BASES = ("pool", "scored")


def threshold_as_compared(value: float, dtype: Any, compat: str = DEFAULT_COMPAT) -> float:
    """The threshold a score of ``dtype`` is compared with: in ``datacomp`` mode a float32/float16 score
    meets the threshold cast to its own dtype (numpy's rule for ``array >= python_float``, what DataComp's
    ``df[key] >= threshold`` does); otherwise the float64 value."""
    check_compat(compat)
    dt = np.dtype(dtype)
    if compat == "datacomp" and dt.kind == "f" and dt.itemsize < 8:
        return float(np.asarray(value, dtype=dt))
    return float(value)


class ExpressionError(UsageError):
    """A bad filter expression; ``str()`` shows the expression with a caret at the fault."""

    def __init__(self, message: str, expr: str, pos: int):
        self.message, self.expr, self.pos = message, expr, pos
        caret = " " * max(0, pos) + "^"
        super().__init__(f"{message} (at position {pos})\n  {expr}\n  {caret}")


# ---------------------------------------------------------------------------------------------
# AST


@dataclass(frozen=True)
class Atom:
    """A filter term: ``name`` with a percent, a comparison, or neither (default percent / predicate)."""

    name: str
    percent: float | None = None
    cmp: str | None = None
    value: float | None = None
    text: str = ""
    pos: int = 0
    is_predicate: bool = False

    def __str__(self) -> str:
        return self.text or self.name


@dataclass(frozen=True)
class UidsAtom:
    path: str
    text: str = ""
    pos: int = 0

    def __str__(self) -> str:
        return self.text or f"uids:{self.path}"


@dataclass(frozen=True)
class BinOp:
    op: str  # "+", "&", "-"
    left: Node
    right: Node
    pos: int = 0

    def __str__(self) -> str:
        return f"({self.left} {self.op} {self.right})"


Node = Atom | UidsAtom | BinOp


def atoms(node: Node) -> Iterator[Atom | UidsAtom]:
    if isinstance(node, BinOp):
        yield from atoms(node.left)
        yield from atoms(node.right)
    else:
        yield node


def scorer_names(node: Node) -> list[str]:
    """Distinct filter names the expression needs, in order of appearance."""
    return list(dict.fromkeys(a.name for a in atoms(node) if isinstance(a, Atom)))


# ---------------------------------------------------------------------------------------------
# tokenizer and parser

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_PERCENT = re.compile(r"_?(\d+(?:\.\d+)?)")
_PATH_STOP = set(" \t\n()+&")


@dataclass
class Token:
    """One token of a filter expression; ``pos`` is its offset (errors point a caret at it)."""

    kind: str  # word, op, cmp, num, lpar, rpar, uids, end
    text: str
    pos: int
    value: Any = None


def tokenize(expr: str) -> list[Token]:
    """The expression's tokens, ending with one of kind "end"; a malformed one is an ExpressionError.
    (The report's method labels read expressions with it too.)"""
    toks: list[Token] = []
    i, n = 0, len(expr)
    while i < n:
        c = expr[i]
        if c.isspace():
            i += 1
        elif c == "(":
            toks.append(Token("lpar", c, i))
            i += 1
        elif c == ")":
            toks.append(Token("rpar", c, i))
            i += 1
        elif expr.startswith("uids:", i):
            start, j = i, i + 5
            if j < n and expr[j] in "\"'":
                end = expr.find(expr[j], j + 1)
                if end < 0:
                    raise ExpressionError("unterminated quoted path", expr, j)
                path, i = expr[j + 1 : end], end + 1
            else:
                k = j
                while k < n and expr[k] not in _PATH_STOP:
                    k += 1
                path, i = expr[j:k], k
            if not path:
                raise ExpressionError("uids: needs a path to a subset .npy", expr, j)
            toks.append(Token("uids", expr[start:i], start, path))
        elif expr.startswith(CMPS, i):
            op = next(o for o in CMPS if expr.startswith(o, i))
            toks.append(Token("cmp", op, i))
            i += len(op)
            while i < n and expr[i].isspace():
                i += 1
            m = _NUMBER.match(expr, i)
            if not m:
                raise ExpressionError(f"expected a number after {op!r}", expr, i)
            toks.append(Token("num", m.group(), i, float(m.group())))
            i = m.end()
        elif c in OPS:
            toks.append(Token("op", c, i))
            i += 1
        elif m := _WORD.match(expr, i):
            toks.append(Token("word", m.group(), i))
            i = m.end()
        elif c.isdigit():
            raise ExpressionError("a term must start with a filter name (percent goes after it: clip_l14_30)", expr, i)
        else:
            raise ExpressionError(f"unexpected character {c!r}", expr, i)
    toks.append(Token("end", "", n))
    return toks


@dataclass
class _Known:
    """What the parser knows about each filter name."""

    names: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {predicate, default_percent}


def _known_from_registry() -> _Known:
    from harness.plugins import Predicate, filter_names, get_filter

    k = _Known()
    for name in filter_names():
        cls = get_filter(name)
        k.names[name] = {"predicate": issubclass(cls, Predicate), "default_percent": cls.default_percent}
    return k


def _suggest(word: str, names: list[str]) -> str:
    stem = re.sub(r"_?\d+(\.\d+)?$", "", word) or word
    near = list(dict.fromkeys(difflib.get_close_matches(word, names, n=3, cutoff=0.5)
                              + difflib.get_close_matches(stem, names, n=3, cutoff=0.5)))[:3]
    return f"; did you mean {', '.join(near)}?" if near else f"; known filters: {', '.join(sorted(names))}"


# Limits that keep every recursive walk of the AST (evaluation, printing) far below Python's recursion
# limit; a real expression is a handful of terms.
MAX_DEPTH = 50  # nested parentheses
MAX_TERMS = 256  # terms in the whole expression (a chain a+b+c... nests one level per operator)


class _Parser:
    def __init__(self, expr: str, known: _Known):
        self.expr, self.known = expr, known
        self.toks = tokenize(expr)
        self.i = 0
        self.depth = 0
        self.terms = 0

    def peek(self) -> Token:
        return self.toks[self.i]

    def take(self) -> Token:
        t = self.toks[self.i]
        self.i += 1
        return t

    def error(self, msg: str, pos: int) -> ExpressionError:
        return ExpressionError(msg, self.expr, pos)

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise self.error("empty filter expression", 0)
        node = self.parse_expr()
        t = self.peek()
        if t.kind != "end":
            if t.kind == "rpar":
                raise self.error("unmatched ')'", t.pos)
            raise self.error(f"expected an operator (+, &, -) before {t.text!r}", t.pos)
        return node

    def parse_expr(self) -> Node:
        node = self.parse_term()
        while self.peek().kind == "op":
            op = self.take()
            right = self.parse_term()
            node = BinOp(op.text, node, right, op.pos)
        return node

    def parse_term(self) -> Node:
        t = self.peek()
        if t.kind in ("lpar", "uids", "word"):
            self.terms += 1
            if self.terms > MAX_TERMS:
                raise self.error(f"expression too long: more than {MAX_TERMS} terms", t.pos)
        if t.kind == "lpar":
            self.take()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.error(f"parentheses nested more than {MAX_DEPTH} deep", t.pos)
            node = self.parse_expr()
            self.depth -= 1
            close = self.peek()
            if close.kind != "rpar":
                raise self.error(f"expected ')' to close the '(' at position {t.pos}", close.pos)
            self.take()
            return node
        if t.kind == "uids":
            self.take()
            return UidsAtom(t.value, t.text, t.pos)
        if t.kind == "word":
            return self.parse_atom()
        if t.kind == "end":
            raise self.error("expected a filter term, got the end of the expression", t.pos)
        raise self.error(f"expected a filter term, got {t.text!r}", t.pos)

    def parse_atom(self) -> Atom:
        t = self.take()
        word, names = t.text, self.known.names
        name, percent = self.split_word(word, t.pos)
        info = names[name]
        if self.peek().kind == "cmp":
            cmp_tok, num = self.take(), self.take()
            if percent is not None:
                raise self.error(f"{word!r}: use a percent or a threshold, not both", cmp_tok.pos)
            if info["predicate"]:
                raise self.error(f"{name!r} is a predicate (keep/drop); it takes no threshold", cmp_tok.pos)
            if not math.isfinite(num.value):
                raise self.error("threshold must be a finite number", num.pos)
            text = self.expr[t.pos : num.pos + len(num.text)]
            return Atom(name, None, cmp_tok.text, num.value, text, t.pos, False)
        if info["predicate"]:
            if percent is not None:
                raise self.error(f"{name!r} is a predicate (keep/drop); it takes no percent", t.pos + len(name))
            return Atom(name, None, None, None, word, t.pos, True)
        if percent is None:
            percent = info["default_percent"]
            if percent is None:
                raise self.error(
                    f"{name!r} has no default percent: write e.g. {name}_30 or {name}>=VALUE", t.pos + len(name)
                )
        return Atom(name, float(percent), None, None, word, t.pos, False)

    def split_word(self, word: str, pos: int) -> tuple[str, float | None]:
        names = self.known.names
        if word in names:
            return word, None
        best = None
        for name in names:
            if word.startswith(name) and len(word) > len(name):
                m = _PERCENT.fullmatch(word, len(name))
                if m and (best is None or len(name) > len(best[0])):
                    best = (name, m.group(1))
        if best is None:
            raise self.error(f"unknown filter {word!r}" + _suggest(word, list(names)), pos)
        name, pct = best
        value = float(pct)
        if not (0 < value <= 100):
            raise self.error(f"percent {pct} of {name!r} is outside (0, 100]", pos + len(name))
        return name, value


def parse(expr: str, known: dict[str, dict[str, Any]] | None = None) -> Node:
    """Parse an expression to its AST, checking every name against the filter registry.

    ``known`` (tests) maps name -> {"predicate": bool, "default_percent": float | None}.
    """
    if not isinstance(expr, str):
        raise TypeError("a filter expression is a string")
    k = _Known(dict(known)) if known is not None else _known_from_registry()
    return _Parser(expr, k).parse()


# ---------------------------------------------------------------------------------------------
# thresholds and evaluation


def percent_threshold(scores: np.ndarray, percent: float, base: str = "pool") -> float:
    """DataComp's threshold: ``-np.sort(-scores)[int(n * fraction)]`` (NaN last), clamped at 100%.

    ``base="pool"``: n counts every row, as DataComp's get_threshold (apply_filter.py, lines 391-392);
    ``base="scored"``: n counts the rows with a score (not NaN), the base of model-scored filters.
    """
    if base not in PERCENT_BASES:
        raise ValueError(f"unknown percent base {base!r}; choose one of {', '.join(PERCENT_BASES)}")
    if len(scores) == 0:
        return math.inf
    if not (0 < percent <= 100):
        raise ValueError(f"percent {percent} outside (0, 100]")
    nan = np.isnan(scores)
    finite = scores[~nan] if nan.any() else scores
    n = len(finite) if base == "scored" else len(scores)
    idx = int(n * (percent / 100.0))
    m = len(finite)
    if m == 0:
        return math.inf
    if idx >= m:  # 100%, or the index lands among the NaNs: keep every scored row
        return float(finite.min())
    k = m - 1 - idx  # descending position idx == ascending position m-1-idx
    return float(kth_smallest(finite, k))


def kth_smallest(a: np.ndarray, k: int, small: int = 1 << 20) -> Any:
    """``np.partition(a, k)[k]`` (a without NaN) without copying all of a large array.

    A strided sample brackets the k-th value; only the values inside the bracket are copied and
    partitioned. The answer is exact either way: when the bracket misses (odd data), the whole
    array is partitioned. Arrays of at most ``small`` values are partitioned whole.
    """
    m = len(a)
    if m <= max(small, 1):
        return np.partition(a, k)[k]
    step = max(1, m // 65536)
    sample = np.sort(a[::step])
    at = k * (len(sample) - 1) // (m - 1)
    margin = 2048  # sample positions; a 64K sample's quantile error is about 120
    low = sample[max(0, at - margin)]
    high = sample[min(len(sample) - 1, at + margin)]
    below = int(np.count_nonzero(a < low))
    band = a[(a >= low) & (a <= high)]
    if below <= k < below + len(band) and len(band) < m // 4:
        return np.partition(band, k - below)[k - below]
    return np.partition(a, k)[k]


def compare(scores: np.ndarray, cmp: str, value: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        if cmp == ">=":
            return scores >= value
        if cmp == ">":
            return scores > value
        if cmp == "<=":
            return scores <= value
        if cmp == "<":
            return scores < value
    raise ValueError(cmp)


def load_subset(path: str | Path, npy_only: bool = False) -> np.ndarray:
    """A DataComp subset: ``np.save``d u8,u8 (or a raw u8,u8 buffer, as DataComp's resharder accepts,
    unless ``npy_only``: a ``uids:`` term takes only a .npy, so a stray text file is never read as uids)."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_file():
        raise ValueError(f"subset file {path} is not a regular file")
    if not path.is_file():
        raise FileNotFoundError(f"subset file {path} does not exist")
    with path.open("rb") as f:
        magic = f.read(6)
    try:
        if magic == b"\x93NUMPY":
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        elif npy_only:
            raise ValueError(f"{path}: not a .npy file (a uids: term takes an np.save'd u8,u8 array)")
        else:
            if path.stat().st_size % UID_DTYPE.itemsize or path.stat().st_size == 0:
                raise ValueError(f"{path}: neither a .npy file nor a raw u8,u8 buffer")
            arr = np.memmap(path, UID_DTYPE, mode="r")
    except (ValueError, OSError, EOFError) as exc:  # numpy's messages do not name the file
        if str(path) in str(exc):
            raise
        raise ValueError(f"{path}: unreadable subset file ({exc})") from exc
    if arr.dtype != UID_DTYPE:
        raise ValueError(f"{path}: dtype {arr.dtype}, expected DataComp's np.dtype('u8,u8') (high, low 64 bits)")
    if arr.ndim != 1:
        raise ValueError(f"{path}: expected a 1-d array, got shape {arr.shape}")
    arr = np.asarray(arr)
    if not is_sorted_uids(arr):
        raise ValueError(f"{path}: uids are not sorted (DataComp subsets are sorted; np.sort the array)")
    return arr


def subset_counts(pool_uids: np.ndarray, subset: np.ndarray) -> tuple[np.ndarray, int]:
    """How many times each pool row appears in a sorted subset; also how many subset rows are not in the pool."""
    start, end = uid_ranges(subset, pool_uids)
    counts = (end - start).astype(np.int64, copy=False)
    outside = len(subset) - int(counts.sum())
    return counts, outside


@dataclass
class TermResult:
    text: str
    name: str | None
    kept: int
    percent: float | None = None
    threshold: float | None = None
    cmp: str | None = None
    value: float | None = None
    path: str | None = None
    not_in_pool: int | None = None
    compared_with: float | None = None  # the threshold as compared, when compat casts it
    percent_base: str | None = None
    base_rows: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def _combine(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype == bool and b.dtype == bool:
        if op == "+":
            return a | b
        if op == "&":
            return a & b
        return a & ~b
    a = a.astype(np.int64)
    b = b.astype(np.int64)
    if op == "+":
        return np.maximum(a, b)
    if op == "&":
        return np.minimum(a, b)
    return np.where(b > 0, 0, a)


def evaluate(
    node: Node,
    n: int,
    scores: Callable[[str], np.ndarray],
    pool_uids: Callable[[], np.ndarray] | None = None,
    compat: str = DEFAULT_COMPAT,
    score_dtype: Callable[[str], Any] | None = None,
    percent_base: Callable[[str], str] | None = None,
) -> tuple[np.ndarray, list[TermResult]]:
    """Evaluate over the pool's n rows.

    ``scores(name)`` gives the combined score per row (a predicate's 1.0 keep / 0.0 drop);
    ``pool_uids()`` the pool's u8,u8 uids (only needed for ``uids:`` terms);
    ``score_dtype(name)`` the dtype the score is stored in (default float64; explicit thresholds
    follow it in ``compat="datacomp"``); ``percent_base(name)`` "pool" (default) or "scored".
    Returns a boolean mask, or int64 counts when a ``uids:`` subset holds repeats, and per-term results.
    """
    results: list[TermResult] = []

    def atom_mask(a: Atom | UidsAtom) -> np.ndarray:
        if isinstance(a, UidsAtom):
            if pool_uids is None:
                raise ValueError("uids: terms need the pool's uids")
            counts, outside = subset_counts(pool_uids(), load_subset(a.path, npy_only=True))
            res: np.ndarray = counts > 0 if counts.max(initial=0) <= 1 else counts
            results.append(TermResult(str(a), None, int(counts.sum()), path=a.path, not_in_pool=outside))
            return res
        s = scores(a.name)
        if len(s) != n:
            raise ValueError(f"filter {a.name!r} gave {len(s)} scores for a pool of {n} rows")
        if a.is_predicate:
            m = s > 0.5
            results.append(TermResult(str(a), a.name, int(m.sum())))
        elif a.cmp is not None:
            assert a.value is not None
            dtype = score_dtype(a.name) if score_dtype is not None else np.float64
            value = threshold_as_compared(a.value, dtype, compat)
            m = compare(s, a.cmp, value)
            results.append(TermResult(str(a), a.name, int(m.sum()), cmp=a.cmp, value=a.value,
                                      compared_with=value if value != a.value else None))
        else:
            assert a.percent is not None
            base = percent_base(a.name) if percent_base is not None else "pool"
            t = percent_threshold(s, a.percent, base)
            m = compare(s, ">=", t)
            rows = len(s) if base == "pool" else int(len(s) - np.count_nonzero(np.isnan(s)))
            results.append(TermResult(str(a), a.name, int(m.sum()), percent=a.percent, threshold=t,
                                      percent_base=base, base_rows=rows))
        return m

    def ev(node: Node) -> np.ndarray:
        if isinstance(node, BinOp):
            return _combine(node.op, ev(node.left), ev(node.right))
        return atom_mask(node)

    out = ev(node)
    return out, results
