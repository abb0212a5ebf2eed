"""Filter plugin API: Needs, Scorer, Predicate, the registry and plugin discovery.

A filter is a class registered by name (``@register``). Plugins come from three places:
every module in ``baselines/`` (always), files given with ``--plugins path.py`` and installed
packages exposing the entry-point group ``datacomp_harness.filters``. See harness/filters_README.md.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness.engines.settings import EngineSettings
from harness.errors import UsageError
from harness.pool import MetadataBatch, Pool, Sample
from harness.registry import Registry

__all__ = [
    "ENTRY_POINT_GROUP",
    "DependencyScores",
    "EngineSettings",
    "Filter",
    "MetadataBatch",
    "Needs",
    "PluginError",
    "Predicate",
    "Sample",
    "Scorer",
    "ScoringContext",
    "declared_label",
    "describe_filters",
    "filter_label",
    "filter_names",
    "get_filter",
    "instantiate",
    "load_plugins",
    "option_names",
    "register",
    "scope_options",
    "validate_options",
]

ENTRY_POINT_GROUP = "datacomp_harness.filters"
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


class PluginError(UsageError):
    """A plugin that is badly declared, cannot be loaded, or misbehaves."""


@dataclass(frozen=True)
class Needs:
    columns: tuple[str, ...] = ()  # metadata parquet columns
    features: tuple[str, ...] = ()  # npz keys (b32_img, l14_txt, ...)
    images: bool = False  # decoded PIL images from the shards
    captions: bool = False  # captions from the shards
    models: tuple[str, ...] = ()  # model names, resolved by ScoringContext.model_path(name)

    def describe(self) -> str:
        parts = []
        if self.columns:
            parts.append("columns: " + ", ".join(self.columns))
        if self.features:
            parts.append("features: " + ", ".join(self.features))
        if self.images:
            parts.append("images")
        if self.captions:
            parts.append("captions")
        if self.models:
            parts.append("models: " + ", ".join(self.models))
        return "; ".join(parts) or "-"


@dataclass
class ScoringContext:
    """What a filter may use while it runs.

    ``options``: ``options["models"][<model name>]`` (or a top-level string ``options[<model name>]``)
    overrides where a model comes from (``{"models": {"dfn": "hf-hub:apple/DFN-public"}}``);
    ``options[<filter>]`` (a dict) or ``options["<filter>.<option>"]`` are passed to that filter's
    constructor (``{"hype": {"norm": "zscore"}}``). ``seed`` is the run's seed; a filter whose
    constructor takes ``seed`` receives it unless the user set ``<filter>.seed``.
    """

    pool: Pool
    models_dir: Path | None = None
    device: str = "cpu"
    batch_size: int = 256
    options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    # Where score tables are cached (a dependency's table too, when the engine was given no cache dir)
    # and which engine computes them; the engine never changes a table, so it is not in any cache key.
    cache_dir: Path | None = None
    engine: EngineSettings = field(default_factory=EngineSettings)
    # The run's compatibility mode (harness.compat): "datacomp" reproduces what
    # DataComp's pinned pipeline computes, "corrected" what it means to. A filter whose constructor
    # takes ``compat`` receives it (then it is in the filter's settings, hence its cache key).
    compat: str = "datacomp"

    def model_path(self, name: str) -> str:
        """options[name] if the user set it, else models_dir/name (a world model dir)."""
        models = self.options.get("models")
        if isinstance(models, dict) and name in models:
            return str(models[name])
        if name in self.options and isinstance(self.options[name], str | Path):
            return str(self.options[name])
        if self.models_dir is None:
            raise PluginError(
                f"model {name!r} is not available: pass --model {name}=PATH_OR_OPEN_CLIP_ID "
                "(no world models directory for this pool)"
            )
        path = Path(self.models_dir) / name
        if not path.exists():
            raise PluginError(f"model {name!r} not found at {path}; pass --model {name}=PATH_OR_OPEN_CLIP_ID")
        return str(path)

    def filter_options(self, filter_name: str) -> dict[str, Any]:
        prefix = filter_name + "."
        opts = {k[len(prefix) :]: v for k, v in self.options.items() if k.startswith(prefix)}
        nested = self.options.get(filter_name)
        if isinstance(nested, dict):  # {"hype": {"norm": "zscore"}} is accepted too
            opts = {**nested, **opts}
        return opts


@dataclass(frozen=True)
class DependencyScores:
    """Another filter's score table as the engine hands it to a filter that declared it (see
    Filter.dependencies): rows in the pool's metadata order, NaN where that filter had no image."""

    name: str
    key: str  # the table's cache key: it is part of the dependent filter's key
    terms: Mapping[str, np.ndarray]  # the table's columns ("keep", 1.0/0.0, for a predicate)
    combined: np.ndarray  # one score per row, higher = keep (a predicate: its keep column)


class Filter:
    """Common base of Scorer and Predicate.

    Lifecycle, driven by the scoring engine: the filter is constructed with its options; the score
    tables of the filters it depends on (``dependencies(ctx)``) are computed or read from the cache and
    handed over (``bind_dependencies``); ``setup(ctx)`` runs once per engine worker before the filter
    sees any data; then ``keep`` / ``score_metadata`` / ``score_samples`` run batch by batch.
    """

    name: ClassVar[str]
    # How report tables name it ("CLIP L/14", "T-MARS"); "" shows the name. A subclass that takes a
    # new name does not inherit its parent's label (hype_img is not "HYPE"): see declared_label().
    label: ClassVar[str] = ""
    description: ClassVar[str] = ""
    needs: ClassVar[Needs] = Needs()
    default_percent: ClassVar[float | None] = None
    # False for filters that are cheaper to recompute than to read back (a metadata column as is)
    cache: ClassVar[bool] = True
    # Options are the constructor's named parameters (validate_options refuses others before any
    # work); a constructor taking **options may list more names here, or "*" to accept any.
    extra_options: ClassVar[tuple[str, ...]] = ()
    # Other filters this one instantiates or reads: their options and models apply to it too.
    uses: ClassVar[tuple[str, ...]] = ()
    # Other filters whose cached score tables this one reads (list them in `uses` too, for their
    # options). The engine computes each (or reads it from the score cache) before setup(), puts its
    # key into this filter's key, and hands it over: read it with self.scores_of(name).
    depends_on: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **options: Any):
        self.options = dict(options)

    def dependencies(self, ctx: ScoringContext) -> tuple[str, ...]:
        """The filters whose score tables this one reads in this context; default ``depends_on``."""
        return tuple(type(self).depends_on)

    def bind_dependencies(self, scores: Mapping[str, DependencyScores]) -> None:
        """Called by the engine before setup() with the table of every filter in dependencies(ctx)."""
        self.__dict__["_dependency_scores"] = dict(scores)

    def dependency_scores(self) -> dict[str, DependencyScores]:
        """What bind_dependencies() handed over (empty before)."""
        return dict(self.__dict__.get("_dependency_scores", {}))

    def scores_of(self, name: str) -> DependencyScores:
        """A declared dependency's score table; an error before the engine has handed it over."""
        got = self.__dict__.get("_dependency_scores", {}).get(name)
        if got is None:
            raise PluginError(f"filter {self.name!r}: no score table of {name!r} was handed over; declare it "
                              "in depends_on (or dependencies()) and let the scoring engine run the filter")
        return got

    def setup(self, ctx: ScoringContext) -> None:
        """Prepare once per engine worker, before the first batch: load a model, fit pool-wide state.
        The default does nothing."""

    def settings(self) -> dict[str, Any]:
        """JSON-able settings; part of the score-table cache key. Default: the options given."""
        return dict(self.options)

    @classmethod
    def kind(cls) -> str:
        if issubclass(cls, Predicate):
            return "predicate"
        if issubclass(cls, Scorer):
            return "model scorer" if cls.uses_samples() else "metadata scorer"
        return "filter"


class Scorer(Filter):
    """Produces per-sample score terms; ``combine`` turns them into one score (higher = keep)."""

    terms: ClassVar[tuple[str, ...]] = ("score",)

    def fingerprint(self, ctx: ScoringContext) -> str:
        """Model fingerprint ("" for metadata scorers); part of the cache key."""
        return ""

    def model_identity(self) -> dict[str, Any] | None:
        """What the loaded model is (source, resolved hub revision, file hashes), recorded in the score
        table and subset.json; None for no model or not loaded yet (LoadedClip.identity for CLIPs)."""
        return None

    def score_metadata(self, batch: MetadataBatch, ctx: ScoringContext) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def score_samples(self, samples: list[Sample], ctx: ScoringContext) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def combine(self, terms: Any) -> np.ndarray:
        """One score per row from the whole pool's term table (a pandas DataFrame)."""
        if len(self.terms) != 1:
            raise PluginError(f"filter {self.name!r} has terms {self.terms}: it must define combine()")
        return terms[self.terms[0]].to_numpy(dtype=np.float64)

    @classmethod
    def uses_samples(cls) -> bool:
        """True when the scorer reads shards (score_samples) rather than metadata."""
        return cls.score_samples is not Scorer.score_samples and cls.score_metadata is Scorer.score_metadata


class Predicate(Filter):
    """Keeps or drops a sample; takes no percent in expressions."""

    def keep(self, batch: MetadataBatch, ctx: ScoringContext) -> np.ndarray:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# registry

_FAILED: dict[str, str] = {}  # module or file -> error, for "unknown filter" messages


def _failed_hint() -> str:
    if not _FAILED:
        return ""
    return "; plugin modules that failed to import: " + "; ".join(f"{k}: {v}" for k, v in _FAILED.items())


_REGISTRY: Registry[type[Filter]] = Registry("filter", PluginError, hint=_failed_hint)
_LOADED_FILES: set[str] = set()
_builtins_loaded = False
_entry_points_loaded = False


def _validate(cls: type) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Filter)) or cls in (Filter, Scorer, Predicate):
        raise PluginError(f"{cls!r}: only Scorer or Predicate subclasses can be registered")
    where = f"{cls.__module__}.{cls.__qualname__}"
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise PluginError(f"{where}: name {name!r} must match {NAME_RE.pattern} (lowercase, digits, _)")
    if not isinstance(cls.label, str):
        raise PluginError(f"{where}: label must be a string, got {cls.label!r}")
    if not isinstance(cls.needs, Needs):
        raise PluginError(f"{where}: needs must be a Needs(...) instance")
    dp = cls.default_percent
    if dp is not None and not (isinstance(dp, int | float) and 0 < dp <= 100):
        raise PluginError(f"{where}: default_percent {dp!r} must be in (0, 100] or None")
    if issubclass(cls, Scorer):
        terms = cls.terms
        if not terms or not all(isinstance(t, str) and t and t != "uid" for t in terms):
            raise PluginError(f"{where}: terms must be non-empty strings other than 'uid', got {terms!r}")
        if len(set(terms)) != len(terms):
            raise PluginError(f"{where}: duplicate terms {terms!r}")
        has_meta = cls.score_metadata is not Scorer.score_metadata
        has_samples = cls.score_samples is not Scorer.score_samples
        if has_meta == has_samples:
            raise PluginError(f"{where}: implement exactly one of score_metadata and score_samples")
    if issubclass(cls, Predicate) and cls.keep is Predicate.keep:
        raise PluginError(f"{where}: a Predicate must implement keep()")


def register(cls: type[Filter]) -> type[Filter]:
    """Class decorator: add a filter to the registry under ``cls.name``."""
    _validate(cls)
    old = _REGISTRY.get(cls.name, None)
    if old is not None and old is not cls:
        same = (old.__module__, old.__qualname__) == (cls.__module__, cls.__qualname__)
        if not same:
            raise PluginError(
                f"filter name {cls.name!r} is taken by {old.__module__}.{old.__qualname__}; "
                f"{cls.__module__}.{cls.__qualname__} must use another name"
            )
    # the same class defined again (a reloaded module) replaces the old definition
    _REGISTRY.register(cls.name, cls, replace=True)
    return cls


def unregister(name: str) -> None:
    """Remove a filter (tests)."""
    _REGISTRY.unregister(name)


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    from harness import baselines

    _FAILED.update(baselines.load_all())


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:  # a broken third-party package must not break the rest
            _FAILED[f"entry point {ep.name} ({ep.value})"] = f"{type(exc).__name__}: {exc}"
            continue
        if isinstance(obj, type) and issubclass(obj, Filter) and obj.__dict__.get("name"):
            register(obj)
        elif callable(obj) and not isinstance(obj, type):
            obj()  # a hook that registers filters itself


def _load_file(path: Path) -> None:
    key = str(path.resolve())
    if key in _LOADED_FILES:
        return
    if not path.is_file():
        raise PluginError(f"plugin file {path} does not exist")
    mod_name = f"harness_user_plugins.{path.stem}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"plugin file {path} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    before = set(_REGISTRY)
    try:
        spec.loader.exec_module(module)
    except PluginError:
        sys.modules.pop(mod_name, None)
        raise
    except Exception as exc:
        sys.modules.pop(mod_name, None)
        raise PluginError(f"plugin file {path} failed to import: {type(exc).__name__}: {exc}") from exc
    _LOADED_FILES.add(key)
    if set(_REGISTRY) == before:
        # a file without @register: register the Filter subclasses it defines
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and issubclass(obj, Filter)
                and obj.__module__ == mod_name
                and "name" in obj.__dict__
            ):
                register(obj)


def load_plugins(paths: list[str] | tuple[str, ...] = ()) -> None:
    """Load baselines/ (always), entry points, then user plugins (files or importable module names)."""
    _load_builtins()
    _load_entry_points()
    for p in paths or ():
        path = Path(p).expanduser()
        if path.suffix == ".py" or path.exists():
            _load_file(path)
        else:
            try:
                importlib.import_module(p)
            except ImportError as exc:
                raise PluginError(f"plugin {p!r} is neither a file nor an importable module: {exc}") from exc


def filter_names() -> list[str]:
    load_plugins()
    return _REGISTRY.names()


def get_filter(name: str) -> type[Filter]:
    """The filter class registered as ``name``; an unknown name is a PluginError naming the closest
    and all known names, and the plugin modules that failed to import."""
    load_plugins()
    return _REGISTRY.get(name)


def declared_label(cls: type[Filter]) -> str:
    """``cls``'s table label: a ``label`` declared by the class that gives it its name or by a subclass
    of that class, else the name itself."""
    for klass in cls.__mro__:
        label = vars(klass).get("label")
        if label:
            return label
        if "name" in vars(klass):  # labels above the class that named the filter belong to other names
            break
    return cls.name


def filter_label(name: str) -> str:
    """The table label of the filter called ``name``; a name no loaded plugin has is shown as written
    (a run made with a plugin file the report was not given)."""
    load_plugins()
    cls = _REGISTRY.get(name, None)
    return declared_label(cls) if cls is not None else name


def failed_plugins() -> dict[str, str]:
    load_plugins()
    return dict(_FAILED)


def instantiate(name: str, ctx: ScoringContext | None = None, **extra: Any) -> Filter:
    """Make a filter with the user's options for it (ctx.options["<name>.<opt>"]) and the run's seed."""
    cls = get_filter(name)
    opts: dict[str, Any] = dict(ctx.filter_options(name)) if ctx is not None else {}
    opts.update(extra)
    params = inspect.signature(cls.__init__).parameters
    if ctx is not None and "seed" in params and "seed" not in opts:
        opts["seed"] = ctx.seed
    if ctx is not None and "compat" in params and "compat" not in opts:
        opts["compat"] = ctx.compat
    try:
        return cls(**opts)
    except TypeError as exc:
        raise PluginError(f"filter {name!r}: bad options {opts}: {exc}") from exc
    except ValueError as exc:  # e.g. int("abc"): name the option whose value the message quotes
        if isinstance(exc, PluginError):
            raise
        bad = [k for k, v in opts.items() if isinstance(v, str) and repr(v) in str(exc)]
        which = f"option {bad[0]!r}={opts[bad[0]]!r}" if len(bad) == 1 else f"options {opts}"
        raise PluginError(f"filter {name!r}: bad value for {which}: {exc}") from exc


def option_names(cls: type[Filter]) -> frozenset[str] | None:
    """The options a filter accepts (None: any): its constructor's named parameters + extra_options."""
    if "*" in cls.extra_options:
        return None
    if cls.__init__ is Filter.__init__:  # no constructor of its own: it takes no options
        return frozenset(cls.extra_options)
    params = inspect.signature(cls.__init__).parameters.values()
    named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self"}
    return frozenset(named | set(cls.extra_options))


def _with_dependencies(names: Iterable[str]) -> list[str]:
    """The filters and, transitively, the registered filters they use."""
    out: list[str] = []
    todo = list(names)
    while todo:
        name = todo.pop(0)
        if name in out:
            continue
        out.append(name)
        todo += [u for u in get_filter(name).uses if u in _REGISTRY]
    return out


def _split_options(options: Mapping[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """({filter: {option: value}}, {model name: spec}) from a ScoringContext-style options dict."""
    per_filter: dict[str, dict[str, Any]] = {}
    models: dict[str, Any] = {}
    for key, value in options.items():
        if key == "models":
            if not isinstance(value, Mapping):
                raise PluginError(f"options['models'] must map model names to specs, got {value!r}")
            models.update(value)
        elif "." in key:
            name, _, opt = key.partition(".")
            per_filter.setdefault(name, {})[opt] = value
        elif isinstance(value, Mapping):
            per_filter.setdefault(key, {}).update(value)
        else:  # options[<model name>] = spec, the older spelling of options["models"]
            models[key] = value
    return per_filter, models


def validate_options(filters: Iterable[str], options: Mapping[str, Any], scoped: bool = True) -> None:
    """Refuse, before any work, options that would be ignored: an unknown filter or option, an unknown
    model name and, when ``scoped`` (the options were given for these filters alone, as on the command
    line), options for a filter the expression does not use or a model none of its filters loads."""
    load_plugins()
    used = _with_dependencies(filters)
    per_filter, models = _split_options(options)
    for name, opts in per_filter.items():
        shown = f"{name}.{next(iter(opts))}" if opts else name
        if name not in _REGISTRY:
            try:
                get_filter(name)
            except PluginError as exc:
                raise PluginError(f"option {shown!r}: {exc}") from None
        if scoped and name not in used:
            raise PluginError(f"option {shown!r}: filter {name!r} is not in the expression, so the option "
                              f"would be ignored (filters used: {', '.join(used)})")
        known = option_names(_REGISTRY[name])
        unknown = sorted(set(opts) - known) if known is not None else []
        if unknown:
            raise PluginError(f"filter {name!r} has no option(s) {', '.join(unknown)}; "
                              f"its options: {', '.join(sorted(known)) or 'none'}")
    wanted = {m: n for n in used for m in _REGISTRY[n].needs.models}
    for model in models:
        if model in wanted:
            continue
        users = sorted(n for n, c in _REGISTRY.items() if model in c.needs.models)
        if users and not scoped:
            continue
        if users:
            raise PluginError(f"--model {model}: only filter(s) {', '.join(users)} load model {model!r}, and the "
                              f"expression does not use them (its models: {', '.join(sorted(wanted)) or 'none'})")
        every = sorted({m for c in _REGISTRY.values() for m in c.needs.models})
        raise PluginError(f"--model {model}: unknown model name {model!r}; filters load: {', '.join(every)}")


def scope_options(filters: Iterable[str], options: Mapping[str, Any]) -> dict[str, Any]:
    """The part of ``options`` that the filters (and those they use) read; what `compare` hands each
    expression after validating the union."""
    load_plugins()
    used = _with_dependencies(filters)
    wanted = {m for n in used for m in _REGISTRY[n].needs.models}
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key == "models" and isinstance(value, Mapping):
            kept = {m: s for m, s in value.items() if m in wanted}
            if kept:
                out["models"] = kept
        elif "." in key:
            if key.partition(".")[0] in used:
                out[key] = value
        elif key in used or key in wanted:
            out[key] = value
    return out


def describe_filters() -> list[dict[str, Any]]:
    """One dict per registered filter, for ``harness filters``."""
    rows = []
    for name in filter_names():
        cls = _REGISTRY[name]
        rows.append(
            {
                "name": name,
                "kind": cls.kind(),
                "needs": cls.needs.describe(),
                "needs_detail": asdict(cls.needs),
                "default_percent": cls.default_percent,
                "terms": list(getattr(cls, "terms", ())) if issubclass(cls, Scorer) else [],
                "description": cls.description,
                "module": cls.__module__,
            }
        )
    return rows
