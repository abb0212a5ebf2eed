"""The `harness` command: one subcommand per stage, plus `run` (the whole flow) and `compare`."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import shlex
import sys
import traceback
from pathlib import Path
from typing import Any

from harness import console
from harness.errors import USAGE, UsageError, exit_code

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
    from harness.summary import Summary

    out = []
    for d in run_dirs:
        summary = Summary.read(Path(d) / "summary.json").to_json()
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
    from harness.plugins import EngineSettings, ScoringContext, load_plugins
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
                         cache_dir=cache,
                         engine=EngineSettings(args.engine, address=args.ray_address, workers=args.ray_workers))
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


def _check_options(args: argparse.Namespace, *exprs: str, names: tuple[str, ...] = ()) -> None:
    """--set and --model values the expressions (or filter names) would ignore are errors, before any
    work such as building the world."""
    from harness.expressions import parse, scorer_names
    from harness.plugins import load_plugins, validate_options

    load_plugins(args.plugins)
    validate_options([*names, *(n for expr in exprs for n in scorer_names(parse(expr)))],
                     {**_parse_settings(args.settings), "models": _parse_models(args.models)})


def cmd_score(args: argparse.Namespace) -> int:
    from harness.scoring import score

    _check_options(args, names=(args.filter,))
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

    _check_options(args, args.filter)
    ctx, cache = _scoring_context(args)
    info = select(ctx.pool, args.filter, args.out, ctx, cache, args.seed, compat=args.compat)
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
                       batch_size=args.batch_size, num_workers=args.workers, compat=args.compat)
    aggregates = summary.get("aggregates", {})
    if args.json:
        _print_json(aggregates)
    else:
        width = max((len(k) for k in aggregates), default=0)
        for key, value in aggregates.items():
            print(f"{key:<{width}}  {console.fmt_metric(value)}")
        print(f"results: {Path(args.out) / 'eval_results.jsonl'}")
    return 0


def _scoped(expr: str, options: dict[str, Any], models: dict[str, str],
            plugins: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The --set options and --model overrides that the expression's filters read."""
    from harness.expressions import parse, scorer_names
    from harness.plugins import load_plugins, scope_options

    load_plugins(plugins)
    scoped = scope_options(scorer_names(parse(expr)), {**options, "models": models})
    return {k: v for k, v in scoped.items() if k != "models"}, scoped.get("models", {})


def _run_config(args: argparse.Namespace, filter_expr: str, seed: int):
    from harness.run import RunConfig

    world, pool_dir = _source(args)
    options, models = _parse_settings(args.settings), _parse_models(args.models)
    if args.command == "compare":  # one set of flags for every expression: each gets what it reads
        options, models = _scoped(filter_expr, options, models, args.plugins)
    return RunConfig(filter=filter_expr, scale=args.scale, seed=seed, world=world, pool=pool_dir,
                     runs=args.runs, suite=args.suite, eval_data=args.eval_data,
                     models=models, plugins=args.plugins, options=options, device=args.device, gpus=args.gpus,
                     partial=args.partial, compat=args.compat, train_num_samples=args.test_train_samples, engine=args.engine, ray_address=args.ray_address,
                     ray_workers=args.ray_workers)


def cmd_run(args: argparse.Namespace) -> int:
    from harness.report import format_table, summary_row
    from harness.run import run

    summary = run(_run_config(args, args.filter, args.seed))
    if args.json:
        _print_json(summary)
        return 0
    print(format_table([summary_row(summary)]))
    if summary["provenance"].get("world_fingerprint"):  # the README's table names the world it was made on
        print(f"world fingerprint: {summary['provenance']['world_fingerprint']}")
    print(f"run directory: {summary['provenance']['run_dir']}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.report import build_report
    from harness.run import run, run_dir

    filters = shlex.split(args.filters)
    # every --set/--model must be read by some expression (a union); each run gets the part it reads
    _check_options(args, *filters)
    configs = [_run_config(args, expr, seed) for expr in filters for seed in range(args.seeds)]
    done, skipped = run_all(configs, run, run_dir, lock_wait=args.lock_wait)
    if not done:
        raise RuntimeError("compare: every run is locked by another process: " + ", ".join(map(str, skipped)))
    written = build_report(done, args.out, scale=args.scale)
    if args.json:
        _print_json(_runs_json(done))
        return 0
    print(Path(written["markdown"]).read_text())
    for kind, path in written.items():
        print(f"{kind}: {path}", file=sys.stderr)
    if skipped:  # the report covers the others; say which are missing from it, and exit 3
        print(f"harness: compare: {len(skipped)} run(s) left out of the report, locked by another process: "
              + ", ".join(map(str, skipped)), file=sys.stderr)
        return 3
    return 0


def run_all(configs: list[Any], run: Any, run_dir: Any, lock_wait: float = 0.0,
            poll: float = 2.0) -> tuple[list[Path], list[Path]]:
    """Run each config; one locked by another process is retried after the others, waiting up to
    ``lock_wait`` seconds for it, then skipped. Returns (run directories done, run directories skipped)."""
    import time

    from harness.stages import RunLockedError

    done: list[Path | None] = []
    later: list[int] = []
    for cfg in configs:
        try:
            run(cfg)
            done.append(run_dir(cfg))
        except RunLockedError as exc:
            logging.getLogger("harness.compare").warning("compare: %s; retrying it after the other runs", exc)
            done.append(None)
            later.append(len(done) - 1)
    skipped: list[Path] = []
    for i in later:
        deadline = time.monotonic() + lock_wait
        while True:
            try:
                run(configs[i])
                done[i] = run_dir(configs[i])
                break
            except RunLockedError:
                if time.monotonic() >= deadline:
                    skipped.append(run_dir(configs[i]))
                    break
                time.sleep(poll)
    return [d for d in done if d is not None], skipped


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report import build_report

    run_dirs = []
    for root in args.runs_dirs:
        run_dirs += sorted(p.parent for p in Path(root).rglob("summary.json"))
    if not run_dirs and not args.external:
        raise UsageError(f"no summary.json under {', '.join(map(str, args.runs_dirs)) or '(no directory given)'}")
    written = build_report(run_dirs, args.out, scale=args.scale, external=args.external)
    if args.json:
        _print_json(_runs_json(run_dirs))
        return 0
    print(Path(written["markdown"]).read_text())
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from harness.interchange import export_open_clip

    record = export_open_clip(args.checkpoint, args.out, overwrite=args.force)
    print(f"exported {record['open_clip_config']} ({record['parameters']:,} parameters) to {args.out}")
    for how in record["load_with"].values():
        print(f"  {how}")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from harness.submit import build_bundle, submit_command, validate_bundle

    if args.validate_only:
        info = validate_bundle(args.run_dir)
        print(f"{args.run_dir}: valid ({info['scale']} scale, {info['tasks']} tasks, {info['samples']:,} uids)")
        return 0
    missing = ["--out"] if args.out is None else []
    missing += [f"--{n.replace('_', '-')}" for n in ("method_name", "author", "email", "hf_username", "hf_repo_name")
               if not getattr(args, n)]
    if missing:
        print(f"harness submit: error: {', '.join(missing)} required (DataComp's --submit needs them)", file=sys.stderr)
        return 2
    build_bundle(args.run_dir, args.out, method_name=args.method_name, author=args.author, email=args.email,
                 hf_username=args.hf_username, hf_repo_name=args.hf_repo_name, track=args.track,
                 writeup=args.writeup, include_checkpoint=args.upload_checkpoint, overwrite=args.force)
    info = validate_bundle(args.out)
    print(f"bundle written and validated: {args.out} ({info['scale']} scale, {info['tasks']} tasks, "
          f"{info['samples']:,} uids)")
    print("To upload it (needs the network and your Hugging Face token: `huggingface-cli login`, then create "
          "the model repo), run from a checkout of mlfoundations/datacomp:")
    print("  " + submit_command(args.out))
    return 0


def cmd_ws_analysis(args: argparse.Namespace) -> int:
    from harness.baselines.ws.analysis import analysis_for_pool

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
    from harness.versions import harness_version, package_version

    return (f"harness {harness_version()} (open_clip {package_version('open_clip_torch')}, "
            f"torch {package_version('torch')}, python {sys.version.split()[0]})")


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
    p.add_argument("--compat", choices=["datacomp", "corrected"], default=None,
                   help="datacomp (default): explicit thresholds meet float32 scores as DataComp's numpy "
                        "compares them (threshold cast to float32); corrected: compare in float64")
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
    p.add_argument("--compat", choices=["datacomp", "corrected"], default=None,
                   help="datacomp (default): what DataComp's pinned evaluator computes (FMoW worst region "
                        "counts 'Other', blank class-name lines dropped); corrected: what it means to compute")
    p.add_argument("--batch-size", type=int, default=64, help="images per batch")
    p.add_argument("--json", action="store_true", help="print the aggregates as JSON (full precision)")
    p.add_argument("--workers", type=int, default=2,
                   help="decode processes shared by the whole suite (0: decode in this process)")

    p = add("export", cmd_export, "write a checkpoint as an open_clip hub-style folder (local-dir:/hf-hub: loadable)")
    p.add_argument("checkpoint", help="open_clip_train checkpoint, world model dir or <config>:<checkpoint>")
    p.add_argument("--out", type=Path, required=True, help="folder to write (open_clip_config.json + safetensors)")
    p.add_argument("--force", action="store_true", help="replace a previous export in --out")

    p = add("submit", cmd_submit, "prepare and validate the DataComp leaderboard bundle of a run (offline)")
    p.add_argument("run_dir", type=Path, help="a finished run directory (with --validate-only: a bundle)")
    p.add_argument("--out", type=Path, help="bundle folder to write")
    p.add_argument("--method-name", help="method name shown on the leaderboard (public)")
    p.add_argument("--author", help="author name(s) (public)")
    p.add_argument("--email", help="contact email (not public)")
    p.add_argument("--hf-username", help="Hugging Face user that will hold the upload")
    p.add_argument("--hf-repo-name", help="Hugging Face model repo for the upload")
    p.add_argument("--track", choices=["filtering", "byod"], default="filtering", help="competition track")
    p.add_argument("--writeup", default=None, help="optional link to a paper or blog post (public)")
    p.add_argument("--upload-checkpoint", action="store_true", help="include the final checkpoint")
    p.add_argument("--force", action="store_true", help="replace a previous bundle in --out")
    p.add_argument("--validate-only", action="store_true", help="only check an existing bundle (RUN_DIR)")

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
            p.add_argument("--lock-wait", type=float, default=0.0, metavar="SECONDS",
                           help="wait this long for a run another process holds, then leave it out (exit 3)")
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
        p.add_argument("--compat", choices=["datacomp", "corrected"], default=None,
                       help="datacomp (default): compute what DataComp's pinned pipeline computed, quirks "
                            "included; corrected: what it means to compute. Recorded in every summary")
        p.add_argument("--test-train-samples", type=int, default=None, metavar="N",
                       help="TEST ONLY: train on N samples instead of the recipe's (the run is marked test-only)")
        _add_source(p)

    p = add("report", cmd_report, "tables (md/csv/tex), plots and an HTML page from run directories")
    p.add_argument("runs_dirs", nargs="*", type=Path, help="run directories or folders holding them")
    p.add_argument("--out", type=Path, default=Path("runs/report"), help="where the report is written")
    p.add_argument("--scale", default=None, help="only this scale (default: every scale found)")
    p.add_argument("--json", action="store_true", help="print the runs as JSON (full precision) instead of the table")
    p.add_argument("--external", action="append", default=[], metavar="DIR=LABEL[@SCALE]",
                   help="a run evaluated elsewhere: a folder with DataComp's eval_results.jsonl (and optionally "
                        "the subset .npy, info.pkl), shown as LABEL (repeatable)")

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
            return code
        # one line: the stage (the one `harness run` was in, marked by harness.run.in_stage, else the
        # subcommand) and the cause; a usage error points at the command's help
        stage = getattr(error, "harness_stage", None) or args.command
        text = str(error) if str(error).startswith(f"{stage}:") else f"{stage}: {error}"
        hint = f" (see harness {args.command} --help)" if code == USAGE else ""
        print(f"harness: error: {text}{hint}", file=sys.stderr)
        return code


def console_main() -> int:
    """The `harness` executable: main(), then a quick exit.

    By the time main() returns every result is written and closed. What is left is the interpreter's
    final garbage collection, which walks every object torch, torchvision and open_clip created at
    import: 1.5-3 s on a 2-core machine (BENCHMARKS.md). Frozen objects are skipped by that walk;
    atexit handlers (logging's flush, multiprocessing's clean-up) still run. Not done in main(),
    which tests call in-process.
    """
    code = main()
    gc.freeze()
    return code


if __name__ == "__main__":
    raise SystemExit(console_main())
