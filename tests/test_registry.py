"""One Registry class behind filters, text detectors, task kinds and world model builders: lookups,
refusals and the errors that name the unknown key and the known ones."""

from __future__ import annotations

import pytest

from harness.registry import Registry


class Oops(ValueError):
    pass


def test_register_get_names_unregister():
    r: Registry[int] = Registry("widget", Oops)
    r.register("b", 2)
    assert r.register("a", 1) == 1

    @r.register("c")
    def c() -> int:
        return 3

    assert r.get("a") == 1 and r["b"] == 2 and r.get("c") is c
    assert r.names() == ["a", "b", "c"]
    assert list(r) == ["b", "a", "c"], "iteration keeps registration order"
    assert "a" in r and "z" not in r and len(r) == 3
    assert dict(r.items()) == {"b": 2, "a": 1, "c": c}
    r.unregister("a")
    r.unregister("a")  # absent: no error
    assert r.names() == ["b", "c"]


def test_unknown_name_names_it_the_closest_and_all_known():
    r: Registry[int] = Registry("widget", Oops, hint=lambda: "; see the docs")
    for name in ("clip_l14", "clip_b32", "dfn"):
        r.register(name, 0)
    with pytest.raises(Oops) as err:
        r.get("clip_l41")
    assert str(err.value) == ("unknown widget 'clip_l41'; did you mean clip_l14, clip_b32? "
                              "(known: clip_b32, clip_l14, dfn); see the docs")
    with pytest.raises(Oops, match=r"^unknown widget 'zzz' \(known: clip_b32, clip_l14, dfn\); see the docs$"):
        r["zzz"]
    assert r.get("zzz", None) is None and r.get("zzz", 7) == 7  # with a default it reads like dict.get
    assert Registry("gadget", Oops).unknown_message("x") == "unknown gadget 'x' (known: none)"


def test_a_taken_name_is_refused_unless_replaced():
    r: Registry[object] = Registry("widget", Oops)
    first, second = object(), object()
    r.register("a", first)
    r.register("a", first)  # the same object again: no-op
    with pytest.raises(Oops, match="widget 'a' is already registered"):
        r.register("a", second)
    assert r.get("a") is first
    r.register("a", second, replace=True)
    assert r.get("a") is second
    r["a"] = first  # item assignment replaces too (monkeypatch.setitem in tests)
    assert r.get("a") is first
    del r["a"]
    with pytest.raises(KeyError):
        del r["a"]
    with pytest.raises(Oops, match="non-empty string"):
        r.register("", first)


def test_monkeypatch_setitem_restores(monkeypatch):
    r: Registry[int] = Registry("widget", Oops)
    r.register("a", 1)
    with monkeypatch.context() as m:
        m.setitem(r, "a", 10)
        m.setitem(r, "new", 5)
        assert (r["a"], r["new"]) == (10, 5)
    assert r["a"] == 1 and "new" not in r


def test_load_runs_once_on_first_lookup_and_again_after_a_failure():
    calls = []
    r: Registry[int] = Registry("widget", Oops, load=lambda: (calls.append(1), r.register("x", 1)))
    r.register("early", 0)  # registering does not load
    assert calls == []
    assert r.names() == ["early", "x"] and "x" in r and r.get("x") == 1
    assert calls == [1]

    failing = {"n": 0}

    def load() -> None:
        failing["n"] += 1
        if failing["n"] == 1:
            raise ImportError("not yet")
        bad.register("y", 2)

    bad: Registry[int] = Registry("widget", Oops, load=load)
    with pytest.raises(ImportError, match="not yet"):
        bad.get("y")
    assert bad.get("y") == 2 and failing["n"] == 2


def test_filters_use_the_registry():
    from harness import plugins
    from harness.plugins import PluginError, get_filter

    assert isinstance(plugins._REGISTRY, Registry)
    assert get_filter("clip_l14").name == "clip_l14"
    with pytest.raises(PluginError) as err:
        get_filter("clip_l41")
    msg = str(err.value)
    assert msg.startswith("unknown filter 'clip_l41'; did you mean clip_l14")
    assert "(known: " in msg and "no_filter" in msg and "tmars" in msg


def test_text_detectors_use_the_registry():
    from harness.baselines.tmars.detectors import detector_names, get_detector, register_detector

    with pytest.raises(ValueError) as err:
        get_detector("rapidocx")
    assert str(err.value) == ("unknown text detector 'rapidocx'; did you mean rapidocr? "
                              f"(known: {', '.join(detector_names())}); or give a 'module:Class' path")
    with pytest.raises(ValueError, match="text detector 'rapidocr' is already registered"):
        register_detector("rapidocr")(lambda: None)


NINE_KINDS = ["dollar_street", "fairface", "geode", "wilds_camelyon17", "wilds_fmow", "wilds_iwildcam",
              "winogavil", "zeroshot_classification", "zeroshot_retrieval"]


def test_task_kinds_registry_and_an_unknown_kind_in_a_suite(tmp_path):
    from harness.evaluation.runners import run_fairface, run_task
    from harness.evaluation.suites import TASK_KINDS, SuiteError, load_suite

    assert TASK_KINDS.names() == NINE_KINDS
    assert TASK_KINDS.get("fairface") is run_fairface and callable(run_task)
    path = tmp_path / "mine.yaml"
    path.write_text("suite: mine\ntasks:\n  - {key: cars, name: Cars, source: {format: wds, path: cars},\n"
                    "     task: zeroshot_clasification, main_metric: acc1}\n")
    with pytest.raises(SuiteError) as err:
        load_suite(path)
    msg = str(err.value)
    assert msg.startswith(f"{path} task #0 (cars): unknown task kind 'zeroshot_clasification'; "
                          "did you mean zeroshot_classification")
    assert msg.endswith(f"(known: {', '.join(NINE_KINDS)})")
    path.write_text("suite: mine\ntasks:\n  - {key: cars, name: Cars, source: {format: wds, path: cars},\n"
                    "     task: [a, b], main_metric: acc1}\n")
    with pytest.raises(SuiteError, match=r"unknown task kind \['a', 'b'\]"):
        load_suite(path)


def test_world_model_builders_use_the_registry():
    from harness.world import reference_models as RM

    assert list(RM.MODEL_BUILDERS) == ["ref_b32", "ref_l14", "dfn", "meru"], "the default build order"
    assert RM.MODEL_BUILDERS["dfn"] == "harness.world.reference_models:build_dfn"
    assert RM.resolve_builder("ref_b32") is RM.build_ref_b32
    with pytest.raises(ValueError) as err:
        RM.resolve_builder("ref_b23")
    assert str(err.value) == ("unknown world model 'ref_b23'; did you mean ref_b32, ref_l14? "
                              "(known: dfn, meru, ref_b32, ref_l14)")
