"""Options that would be ignored are errors before any work (issue 20 item 6): an unknown option of a
known filter, an unknown filter, options for a filter the expression does not use, an unknown or
unused `--model` name."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from harness.plugins import (
    Needs,
    PluginError,
    Scorer,
    get_filter,
    option_names,
    register,
    scope_options,
    unregister,
    validate_options,
)


@pytest.fixture()
def cli_main():
    """harness.cli.main, with the `harness` logger it configures put back afterwards."""
    from harness.cli import main

    logger = logging.getLogger("harness")
    saved = (list(logger.handlers), logger.propagate, logger.level)
    yield main
    logger.handlers[:], logger.propagate, logger.level = saved


def test_options_come_from_constructor_signatures() -> None:
    assert option_names(get_filter("clip_l14")) == frozenset()  # no constructor of its own
    assert option_names(get_filter("dfn")) == {"model"}
    assert {"norm", "normalisation", "weights", "reference", "model_name", "chunk"} <= option_names(get_filter("hype"))
    assert option_names(get_filter("random")) == {"seed"}
    # a constructor taking **options accepts only its named parameters
    assert "lid_model" in option_names(get_filter("basic")) and "foo" not in option_names(get_filter("basic"))


def test_unknown_option_of_a_known_filter() -> None:
    with pytest.raises(PluginError, match=r"filter 'clip_l14' has no option\(s\) fraction; its options: none"):
        validate_options(["clip_l14"], {"clip_l14": {"fraction": "0.5"}})
    with pytest.raises(PluginError, match=r"filter 'dfn' has no option\(s\) modle; its options: model"):
        validate_options(["dfn"], {"dfn.modle": "x"})
    with pytest.raises(PluginError, match=r"filter 'basic' has no option\(s\) foo; its options: lid_model"):
        validate_options(["basic"], {"basic": {"foo": "1"}})


def test_unknown_filter_suggests_the_near_one() -> None:
    with pytest.raises(PluginError, match=r"option 'clp_l14.x': unknown filter 'clp_l14'; did you mean clip_l14") as err:
        validate_options(["clip_l14"], {"clp_l14": {"x": "1"}})
    assert "known: " in str(err.value)


def test_options_for_a_filter_not_in_the_expression() -> None:
    with pytest.raises(PluginError, match=r"option 'hype.norm': filter 'hype' is not in the expression.*"
                                          r"filters used: clip_l14, basic"):
        validate_options(["clip_l14", "basic"], {"hype": {"norm": "rank"}})
    # a shared context (several expressions) may carry it: scoped=False checks names only
    validate_options(["clip_l14"], {"hype": {"norm": "rank"}}, scoped=False)
    with pytest.raises(PluginError, match="has no option"):
        validate_options(["clip_l14"], {"hype": {"nrom": "rank"}}, scoped=False)


def test_filters_used_by_others_take_their_options_and_models() -> None:
    validate_options(["hype_in"], {"image_based": {"k": "8"}, "models": {"imagenet_like": "x", "meru": "y"}})
    validate_options(["ws"], {"dfn": {"model": "x"}, "models": {"dfn": "x", "meru": "y", "ref_b32": "z"}})
    with pytest.raises(PluginError, match="not in the expression"):
        validate_options(["hype"], {"image_based": {"k": "8"}})


def test_known_options_pass() -> None:
    validate_options(["hype", "dfn"], {"hype": {"norm": "rank", "chunk": "4"}, "dfn.model": "ViT-B-32:openai",
                                       "models": {"meru": "/m", "dfn": "hf-hub:apple/DFN-public"}})
    validate_options(["tmars"], {"tmars.model": "x", "tmars.detector_options": {"upscale_to": 0}})


def test_unknown_and_unused_model_names() -> None:
    with pytest.raises(PluginError, match=r"--model dfm: unknown model name 'dfm'; filters load: .*dfn.*meru"):
        validate_options(["dfn"], {"models": {"dfm": "hf-hub:apple/DFN-public"}})
    with pytest.raises(PluginError, match=r"--model dfn: only filter\(s\) .*dfn.* load model 'dfn', and the "
                                          r"expression does not use them \(its models: none\)"):
        validate_options(["clip_l14"], {"models": {"dfn": "x"}})
    # the older spelling options[<model name>] = spec is checked the same way
    with pytest.raises(PluginError, match="unknown model name 'mreu'"):
        validate_options(["hype"], {"mreu": "/path"})
    validate_options(["hype"], {"meru": "/path"})


def test_a_plugin_may_declare_extra_options() -> None:
    @register
    class FreeForm(Scorer):
        name = "free_form_probe"
        needs = Needs(columns=("text",))
        extra_options = ("*",)

        def score_metadata(self, batch, ctx):  # pragma: no cover - never run
            raise NotImplementedError

    try:
        assert option_names(FreeForm) is None
        validate_options(["free_form_probe"], {"free_form_probe": {"anything": "1"}})
    finally:
        unregister("free_form_probe")


def test_scope_options_keeps_what_an_expression_reads() -> None:
    opts = {"hype": {"norm": "rank"}, "dfn.model": "x", "image_based": {"k": "8"},
            "models": {"dfn": "a", "meru": "b"}}
    assert scope_options(["clip_l14"], opts) == {}
    assert scope_options(["dfn"], opts) == {"dfn.model": "x", "models": {"dfn": "a"}}
    # hype_in's own options are hype_in.*; it reads image_based's
    assert scope_options(["hype_in"], opts) == {"image_based": {"k": "8"}, "models": {"meru": "b"}}


def test_select_refuses_before_scoring(tmp_path) -> None:
    from harness.selection import select

    class Boom:  # any use of the pool would be work done before the check
        def __getattr__(self, name):
            raise AssertionError(f"pool.{name} used before the options were checked")

    from harness.plugins import ScoringContext

    ctx = ScoringContext(pool=Boom(), options={"clip_l14": {"fraction": "0.5"}})  # type: ignore[arg-type]
    with pytest.raises(PluginError, match="has no option"):
        select(Boom(), "clip_l14_30", tmp_path / "sel", ctx, None)  # type: ignore[arg-type]
    assert not (tmp_path / "sel").exists()


def test_run_refuses_before_building_the_world(tmp_path) -> None:
    from harness.run import RunConfig, run

    world = tmp_path / "world-seed0"
    with pytest.raises(PluginError, match="unknown filter 'clp_l14'"):
        run(RunConfig(filter="clip_l14_30", world=world, runs=tmp_path / "runs", options={"clp_l14": {"x": "1"}}))
    with pytest.raises(PluginError, match="unknown model name 'dfm'"):
        run(RunConfig(filter="dfn", world=world, runs=tmp_path / "runs", models={"dfm": "x"}))
    assert not world.exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["select", "--filter", "clip_l14_30", "--set", "clip_l14.fraction=0.5"],
     "filter 'clip_l14' has no option(s) fraction"),
    (["select", "--filter", "clip_l14_30", "--set", "clp_l14.x=1"], "unknown filter 'clp_l14'"),
    (["score", "--filter", "clip_l14", "--set", "hype.norm=rank"], "filter 'hype' is not in the expression"),
    (["run", "--filter", "clip_l14_30", "--model", "dfm=x"], "unknown model name 'dfm'"),
    (["run", "--filter", "clip_l14_30", "--model", "dfn=x"], "only filter(s)"),
    (["compare", "--filters", "clip_l14_30 basic", "--set", "dfn.model=x"], "filter 'dfn' is not in the expression"),
])
def test_cli_errors_before_any_work(cli_main, tmp_path, capsys, argv, message) -> None:
    world = tmp_path / "world-seed0"
    extra = ["--out", str(tmp_path / "out")] if argv[0] == "select" else []
    code = cli_main([*argv, "--world", str(world), "--runs", str(tmp_path / "runs"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err
    assert not world.exists() and not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()


def test_compare_hands_each_expression_its_own_options(tmp_path) -> None:
    from harness.cli import _run_config, build_parser

    args = build_parser().parse_args(
        ["compare", "--filters", "clip_l14_30 dfn", "--model", "dfn=hf-hub:apple/DFN-public",
         "--set", "dfn.model=ViT-B-32:openai", "--world", str(tmp_path / "w")])
    clip_cfg, dfn_cfg = _run_config(args, "clip_l14_30", 0), _run_config(args, "dfn", 0)
    assert clip_cfg.models == {} and clip_cfg.options == {}
    assert dfn_cfg.models == {"dfn": "hf-hub:apple/DFN-public"} and dfn_cfg.options == {"dfn": {"model": "ViT-B-32:openai"}}
    # `run` keeps exactly what was given (and validates it)
    run_args = build_parser().parse_args(["run", "--filter", "dfn", "--model", "dfn=x", "--world", str(tmp_path / "w")])
    assert _run_config(run_args, "dfn", 0).models == {"dfn": "x"}
    assert Path(tmp_path / "w").exists() is False
