"""The world build's start order (harness.world.build.plan_order): the shortest simulated build,
with the pool waiting for both reference models. Exact arithmetic on step costs."""

from __future__ import annotations

import itertools

import pytest

from harness.world import build
from harness.world.reference_models import MODEL_BUILDERS

# the default world's steps, seconds in a one-thread worker (the 320 s build of world v5)
MEASURED = {"ref_b32": 87, "ref_l14": 134, "meru": 139, "dfn": 88, "pool": 113, "eval": 16}


def test_two_workers_get_the_best_order_not_the_longest_first():
    jobs = list(MEASURED)
    order = build.plan_order(jobs, 2, MEASURED)
    assert sorted(order) == sorted(jobs)
    # ref_l14 and dfn start; ref_b32 follows dfn (88-175) and MERU ref_l14 (134-273); the pool
    # starts when ref_b32 ends (175-288), the eval suite when MERU ends (273-289)
    assert build.simulated_makespan(order, 2, MEASURED) == 289
    longest_first = sorted(jobs, key=lambda j: -MEASURED[j])
    assert build.simulated_makespan(longest_first, 2, MEASURED) == 339  # MERU beside ref_l14, the pool last
    assert min(build.simulated_makespan(o, 2, MEASURED) for o in itertools.permutations(jobs)) == 289


def test_the_pool_waits_for_both_reference_models():
    cost = {"ref_b32": 10, "ref_l14": 20, "pool": 5, "eval": 1}
    for order in itertools.permutations(cost):
        # however it is ordered, the pool cannot start before ref_l14 ends at 20
        assert build.simulated_makespan(order, 3, cost) == 25
    # a reference model built earlier is no prerequisite: the pool starts at once
    assert build.simulated_makespan(["pool", "eval"], 2, {"pool": 5, "eval": 1}) == 5


def test_one_worker_runs_the_steps_one_after_another():
    assert build.simulated_makespan(build.plan_order(list(MEASURED), 1, MEASURED), 1, MEASURED) == sum(MEASURED.values())


def test_many_steps_fall_back_to_longest_first():
    cost = {f"m{i}": float(i) for i in range(build._PLAN_SEARCH_MAX + 1)}
    assert build.plan_order(list(cost), 2, cost) == [f"m{i}" for i in reversed(range(len(cost)))]


@pytest.mark.parametrize("name", build.DATA_JOBS)
def test_a_model_may_not_take_a_data_step_name(name, tmp_path):
    MODEL_BUILDERS.register(name, "harness.world.reference_models:build_ref_b32")
    try:
        with pytest.raises(ValueError, match=f"'{name}'.*taken by the build's data steps"):
            build.build_world(tmp_path / "w", models=(name,))
    finally:
        MODEL_BUILDERS.unregister(name)
