"""The `harness` command: one subcommand per stage, plus `run` (the whole flow) and `compare`."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import traceback
from pathlib import Path
from typing import Any

from harness import console
from harness.errors import FAILURE, UsageError, exit_code

DEFAULT_WORLD = Path(".cache/world-seed0")


def resolve_device(device: str) -> str:
    """`auto` is CUDA when torch sees a GPU, else the CPU; anything else is passed on as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _resolve_devices(args: argparse.Namespace) -> None:
    """`--device auto` becomes cuda or cpu, and an unset `--gpus` follows it (1 on CUDA, else CPU
    training), once, before any command runs."""
    if getattr(args, "device", None) == "auto":
        args.device = resolve_device("auto")
    if hasattr(args, "gpus") and args.gpus is None:
        args.gpus = 1 if resolve_device(getattr(args, "device", "auto")).startswith("cuda") else 0


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _runs_json(run_dirs: list[Path]) -> list[dict[str, Any]]:
    """One record per run for --json: what the table shows, at full precision."""
    out = []
    for d in run_dirs:
        summary = json.loads((Path(d) / "summary.json").read_text())
        out.append({k: summary.get(k) for k in ("filter", "scale", "seed", "samples", "unique_samples", "uniform",
                                                 "partial", "aggregates")} | {"run_dir": str(d)})
    return out


def _add_source(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--world", type=Path, help=f"a generated tiny world (built if missing; default {DEFAULT_WORLD})")
    src.add_argument("--pool", type=Path, help="a real DataComp pool directory (metadata/ and shards/)")
    p.add_argument("--plugins", action="append", default=[], metavar="FILE",
                   help="load extra filter plugins from a Python file (repeatable)")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="FILTER.KEY=VALUE",
                   help="a filter option, e.g. --set hype.normalisation=rank (repeatable)")
    p.add_argument("--model", dest="models", action="append", default=[], metavar="NAME=SPEC",
                   help="override a model: a path or open_clip id, e.g. dfn=hf-hub:apple/DFN-public")
    p.add_argument("--device", default="auto", help="auto (cuda when present, else cpu), cpu, cuda or cuda:N")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="scoring engine: this process, or Ray actors/tasks (pip install '.[ray]')")
    p.add_argument("--ray-address", default=None, help="Ray cluster (auto, ray://host:10001); default: local")
    p.add_argument("--ray-workers", type=int, default=None, help="Ray actors/tasks (default: one per CPU)")


def _parse_settings(items: list[str]) -> dict[str, dict[str, str]]:
    options: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        name, dot, option = key.partition(".")
        if not sep or not dot or not name or not option:
            raise UsageError(f"--set expects FILTER.KEY=VALUE, got {item!r}")
        options.setdefault(name, {})[option] = value
    return options


def _parse_models(items: list[str]) -> dict[str, str]:
    models = {}
    for item in items:
        name, sep, spec = item.partition("=")
        if not sep or not name or not spec:
            raise UsageError(f"--model expects NAME=SPEC, got {item!r}")
        models[name] = spec
    return models


def _source(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    if args.pool is not None:
        return None, args.pool
    return (args.world or DEFAULT_WORLD), None


def _scoring_context(args: argparse.Namespace):
    from harness.plugins import ScoringContext, load_plugins
    from harness.pool import Pool
    from harness.run import ensure_world

    load_plugins(args.plugins)
    world, pool_dir = _source(args)
    if world is not None:
        ensure_world(world)
        pool_dir, models_dir = world / "pool", world / "models"
    else:
        models_dir = None
    options: dict[str, Any] = _parse_settings(args.settings)
    if args.models:
        options["models"] = _parse_models(args.models)
    cache = Path(args.runs) / Path(world or pool_dir).resolve().name / "scores"
    ctx = ScoringContext(pool=Pool(pool_dir), models_dir=models_dir, device=args.device, options=options,
                         cache_dir=cache, engine=args.engine, ray_address=args.ray_address,
                         ray_workers=args.ray_workers)
    return ctx, cache


# --- subcommands -----------------------------------------------------------------------------------

def cmd_world(args: argparse.Namespace) -> int:
    from harness.world import build_world

    models = tuple(args.models.split(",")) if args.models else None
    info = build_world(args.out, seed=args.seed, profile=args.profile, models=models)
    print(json.dumps({k: info[k] for k in ("seed", "profile") if k in info}))
    return 0


def cmd_filters(args: argparse.Namespace) -> int:
    from harness.plugins import describe_filters, load_plugins

    load_plugins(args.plugins)
    rows = describe_filters()
    if args.json:
        _print_json(rows)
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        pct = "" if r.get("default_percent") is None else f"{r['default_percent']:g}%"
        print(f"{r['name']:<{width}}  {r['kind']:<15} {pct:>5}  {r['description']}")
        print(f"{'':<{width}}  needs: {r['needs']}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from harness.scoring import score

    ctx, cache = _scoring_context(args)
    table = score(ctx.pool, args.filter, ctx, cache)
    stats = table.describe()
    if args.json:
        _print_json(stats.to_dict())
    else:
        print(stats.round(console.DIGITS).to_string())
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    from harness.selection import select

    ctx, cache = _scoring_context(args)
    info = select(ctx.pool, args.filter, args.out, ctx, cache, args.seed)
    print(json.dumps(info, indent=2, default=str))
    return 0


def cmd_reshard(args: argparse.Namespace) -> int:
    from harness.pool import Pool
    from harness.reshard import reshard

    info = reshard(Pool(args.pool), args.subset, args.out, workers=args.workers)
    print(json.dumps(info, indent=2, default=str))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from harness.training import train

    print(train(args.shards, args.out, scale=args.scale, seed=args.seed, gpus=args.gpus))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from harness.evaluation import evaluate

    summary = evaluate(args.model, args.suite, args.data, args.out, device=args.device, partial=args.partial,
                       batch_size=args.batch_size, num_workers=args.workers)
    aggregates = summary.get("aggregates", {})
    if args.json:
        _print_json(aggregates)
    else:
        width = max((len(k) for k in aggregates), default=0)
        for key, value in aggregates.items():
            print(f"{key:<{width}}  {console.fmt_metric(value)}")
        print(f"results: {Path(args.out) / 'eval_results.jsonl'}")
    return 0


def _run_config(args: argparse.Namespace, filter_expr: str, seed: int):
    from harness.run import RunConfig

    world, pool_dir = _source(args)
    return RunConfig(filter=filter_expr, scale=args.scale, seed=seed, world=world, pool=pool_dir,
                     runs=args.runs, suite=args.suite, eval_data=args.eval_data,
                     models=_parse_models(args.models), plugins=args.plugins,
                     options=_parse_settings(args.settings), device=args.device, gpus=args.gpus,
                     partial=args.partial, train_num_samples=args.test_train_samples, engine=args.engine, ray_address=args.ray_address,
                     ray_workers=args.ray_workers)


def cmd_run(args: argparse.Namespace) -> int:
    from harness.report import format_table, summary_row
    from harness.run import run

    summary = run(_run_config(args, args.filter, args.seed))
    if args.json:
        _print_json(summary)
        return 0
    print(format_table([summary_row(summary)]))
    print(f"run directory: {summary['provenance']['run_dir']}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.report import build_report
    from harness.run import run, run_dir

    filters = shlex.split(args.filters)
    dirs = []
    for expr in filters:
        for seed in range(args.seeds):
            cfg = _run_config(args, expr, seed)
            run(cfg)
            dirs.append(run_dir(cfg))
    written = build_report(dirs, args.out, scale=args.scale)
    if args.json:
        _print_json(_runs_json(dirs))
        return 0
    print(Path(written["markdown"]).read_text())
    for kind, path in written.items():
        print(f"{kind}: {path}", file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report import build_report

    run_dirs = []
    for root in args.runs_dirs:
        run_dirs += sorted(p.parent for p in Path(root).rglob("summary.json"))
    if not run_dirs:
        raise UsageError(f"no summary.json under {', '.join(map(str, args.runs_dirs))}")
    written = build_report(run_dirs, args.out, scale=args.scale)
    if args.json:
        _print_json(_runs_json(run_dirs))
        return 0
    print(Path(written["markdown"]).read_text())
    return 0


def cmd_ws_analysis(args: argparse.Namespace) -> int:
    from harness.ws.analysis import analysis_for_pool

    ctx, cache = _scoring_context(args)
    print(analysis_for_pool(ctx, cache))
    return 0


def cmd_download_eval(args: argparse.Namespace) -> int:
    from harness.evaluation.download import download_eval

    download_eval(args.suite, args.dir)
    return 0


# --- parser ----------------------------------------------------------------------------------------

_RUNS_HELP = "root of run directories and score caches"
_GPUS_DEFAULT = "Default: 1 when --device resolves to cuda, else 0"

class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" where there is a default worth showing (not None, False or an empty list)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        default = action.default
        if action.required or default is None or default is False or default == [] or default == argparse.SUPPRESS:
            return action.help or ""
        return super()._get_help_string(action)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    def v(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "not installed"

    return (f"harness {v('datacomp-harness')} (open_clip {v('open_clip_torch')}, torch {v('torch')}, "
            f"python {sys.version.split()[0]})")


def _add_verbosity(p: argparse.ArgumentParser, default: Any) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", default=default,
                       help="warnings and errors only, no progress bars")
    group.add_argument("-v", "--verbose", action="store_true", default=default,
                       help="debug lines, every library's info lines and tracebacks")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description="DataComp benchmark harness: filter a pool, train the fixed CLIP recipe, "
                    "score the zero-shot suite, compare.",
        formatter_class=_HelpFormatter,
        epilog="exit status: 0 success, 1 failure, 2 usage error, 130 interrupted",
    )
    parser.add_argument("--version", action="version", version=_version(), help="print versions and exit")
    _add_verbosity(parser, False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=_HelpFormatter)
        p.set_defaults(fn=fn)
        _add_verbosity(p, argparse.SUPPRESS)  # also accepted after the command: `harness run -v`
        return p

    p = add("world", cmd_world, "generate the tiny DataComp-layout world (pool, reference models, eval suite)")
    p.add_argument("--seed", type=int, default=0, help="world seed: same seed, same world")
    p.add_argument("--out", type=Path, default=DEFAULT_WORLD, help="directory to build (or finish) the world in")
    p.add_argument("--profile", default="default", help="default (12,800 samples) or test (about 2,000)")
    p.add_argument("--models", default=None,
                   help="comma-separated world models to build (default: all: ref_b32,ref_l14,dfn,meru)")

    p = add("filters", cmd_filters, "list every filter: kind, needs, default keep percent, description")
    p.add_argument("--plugins", action="append", default=[], metavar="FILE",
                   help="load extra filter plugins from a Python file (repeatable)")
    p.add_argument("--json", action="store_true", help="print the list as JSON")

    p = add("score", cmd_score, "compute (or reuse) one scorer's table over the pool")
    p.add_argument("--filter", required=True, help="a scorer name, e.g. hype or clip_l14")
    _add_source(p)
    p.add_argument("--runs", type=Path, default=Path("runs"), help=_RUNS_HELP)
    p.add_argument("--json", action="store_true", help="print the score statistics as JSON (full precision)")

    p = add("select", cmd_select, "turn a filter expression into a DataComp subset (.npy + provenance)")
    p.add_argument("--filter", required=True, help="expression, e.g. 'hype10+dfn' or 'clip_b32>=0.28 & basic'")
    p.add_argument("--out", type=Path, required=True, help="directory for subset.npy and its provenance")
    p.add_argument("--seed", type=int, default=0, help="seed for random filters and tie-breaking")
    _add_source(p)
    p.add_argument("--runs", type=Path, default=Path("runs"), help=_RUNS_HELP)

    p = add("reshard", cmd_reshard, "write training shards for a subset, as DataComp's resharder does")
    p.add_argument("--pool", type=Path, required=True, help="the pool directory (metadata/ and shards/)")
    p.add_argument("--subset", type=Path, required=True, help="the subset .npy to reshard (from `harness select`)")
    p.add_argument("--out", type=Path, required=True, help="directory for the training shards")
    p.add_argument("--workers", type=int, default=2, help="worker processes")

    p = add("train", cmd_train, "train the fixed CLIP recipe for a scale on resharded data")
    p.add_argument("--shards", type=Path, required=True, help="directory of resharded NNNNNNNN.tar shards")
    p.add_argument("--out", type=Path, required=True, help="training run directory (logs, checkpoints)")
    p.add_argument("--scale", default="tiny", choices=["tiny", "small", "medium", "large", "xlarge"],
                   help="the recipe's DataComp scale")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--gpus", type=int, default=None,
                   help=f"0 trains on the CPU, 1 on one GPU, N > 1 launches torchrun with the global batch kept. {_GPUS_DEFAULT}")

    p = add("evaluate", cmd_evaluate, "run a zero-shot suite on a checkpoint; writes eval_results.jsonl")
    p.add_argument("--model", required=True, help="checkpoint file, world model dir or open_clip id")
    p.add_argument("--suite", default="tiny", help="tiny, datacomp, or a YAML file")
    p.add_argument("--data", type=Path, required=True, help="root of the suite's data")
    p.add_argument("--out", type=Path, required=True, help="directory for eval_results.jsonl and eval_summary.json")
    p.add_argument("--device", default="auto", help="auto (cuda when present, else cpu), cpu, cuda or cuda:N")
    p.add_argument("--partial", action="store_true", help="aggregate even if scored tasks are missing")
    p.add_argument("--batch-size", type=int, default=64, help="images per batch")
    p.add_argument("--json", action="store_true", help="print the aggregates as JSON (full precision)")
    p.add_argument("--workers", type=int, default=2,
                   help="decode processes shared by the whole suite (0: decode in this process)")

    for name, fn, text in (("run", cmd_run, "the whole flow for one filter expression, each stage cached"),
                           ("compare", cmd_compare, "run several filters x seeds and write the comparison report")):
        p = add(name, fn, text)
        if name == "run":
            p.add_argument("--filter", default="hype10+dfn", help="a filter expression (see `harness filters`)")
            p.add_argument("--seed", type=int, default=0, help="run seed (selection and training)")
        else:
            p.add_argument("--filters", required=True, help="space-separated expressions")
            p.add_argument("--seeds", type=int, default=1, help="seeds per expression: 0..N-1")
            p.add_argument("--out", type=Path, default=Path("runs/report"), help="where the report is written")
        p.add_argument("--scale", default="tiny", choices=["tiny", "small", "medium", "large", "xlarge"],
                       help="DataComp scale: the training recipe and pool size")
        p.add_argument("--runs", type=Path, default=Path("runs"), help=_RUNS_HELP)
        p.add_argument("--suite", default=None, help="evaluation suite: tiny, datacomp or a YAML file "
                                                     "(default: tiny for a world, datacomp for a pool)")
        p.add_argument("--eval-data", type=Path, default=None,
                       help="root of the suite's data (default: the world directory)")
        p.add_argument("--gpus", type=int, default=None,
                       help=f"0 trains on the CPU, 1 on one GPU, N > 1 with torchrun. {_GPUS_DEFAULT}")
        p.add_argument("--partial", action="store_true", help="aggregate even if scored tasks are missing")
        p.add_argument("--json", action="store_true", help="print the result as JSON (full precision) "
                                                           "instead of the table")
        p.add_argument("--test-train-samples", type=int, default=None, metavar="N",
                       help="TEST ONLY: train on N samples instead of the recipe's (the run is marked test-only)")
        _add_source(p)

    p = add("report", cmd_report, "tables (md/csv/tex), plots and an HTML page from run directories")
    p.add_argument("runs_dirs", nargs="+", type=Path, help="run directories or folders holding them")
    p.add_argument("--out", type=Path, default=Path("runs/report"), help="where the report is written")
    p.add_argument("--scale", default=None, help="only this scale (default: every scale found)")
    p.add_argument("--json", action="store_true", help="print the runs as JSON (full precision) instead of the table")

    p = add("ws-analysis", cmd_ws_analysis, "coverage, overlaps, conflicts, learned accuracy of WS labeling functions")
    _add_source(p)
    p.add_argument("--runs", type=Path, default=Path("runs"), help=_RUNS_HELP)

    p = add("download-eval", cmd_download_eval, "fetch an evaluation suite from the Hugging Face hub")
    p.add_argument("--suite", default="datacomp", help="datacomp or a YAML file")
    p.add_argument("--dir", type=Path, required=True, help="where the suite's data is stored")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help / --version (0) and argparse's usage errors (2)
        return exit_code(stop)
    verbose, quiet = getattr(args, "verbose", False), getattr(args, "quiet", False)
    # One handler on the root logger, one format, for the harness and every library it drives.
    console.setup(console.VERBOSE if verbose else console.QUIET if quiet else console.NORMAL)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        _resolve_devices(args)
        return int(args.fn(args) or 0)
    except (Exception, KeyboardInterrupt) as error:  # every exit status is decided in harness.errors
        code = exit_code(error)
        expected = isinstance(error, ValueError | LookupError | OSError | RuntimeError | KeyboardInterrupt)
        if verbose or not expected:  # an unexpected type is a bug: show where it happened
            traceback.print_exc()
        if isinstance(error, KeyboardInterrupt):
            print("harness: interrupted", file=sys.stderr)
        elif code == FAILURE:
            print(f"harness {args.command}: error: {error}", file=sys.stderr)
        else:
            print(f"harness {args.command}: usage error: {error} (see harness {args.command} --help)",
                  file=sys.stderr)
        return code


if __name__ == "__main__":
    raise SystemExit(main())
