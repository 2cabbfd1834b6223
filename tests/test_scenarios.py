"""`mailctl test --jobs`: how the scenarios are split into lanes."""

from mailctl.paths import share_dir
from mailctl.scenarios import CI_SECONDS, plan_lanes, scenario_names


def test_every_scenario_has_a_ci_time():
    # a scenario without one counts as the longest: add its time after its first CI run
    assert set(scenario_names(share_dir())) == set(CI_SECONDS)


def test_lanes_hold_every_scenario_once_and_balance_the_time():
    names = sorted(CI_SECONDS)
    lanes = plan_lanes(names, 2)
    assert sorted(n for lane in lanes for n in lane) == names
    loads = [sum(CI_SECONDS[n] for n in lane) for lane in lanes]
    assert max(loads) - min(loads) <= max(CI_SECONDS.values())
    assert max(loads) < sum(loads) * 0.6


def test_one_job_is_one_lane_in_order_of_length_and_jobs_never_exceed_scenarios():
    assert plan_lanes(["faults", "cyrus"], 1) == [["cyrus", "faults"]]
    assert plan_lanes(["faults"], 4) == [["faults"]]
    assert plan_lanes(["faults", "cyrus"], 2) == [["cyrus"], ["faults"]]


def test_an_unknown_scenario_counts_as_the_longest():
    lanes = plan_lanes(["new", "default", "faults"], 2)
    assert lanes[0] == ["new"]
