"""`mailctl test --jobs`: how the scenarios are split into lanes."""

import subprocess

import pytest

from mailctl import scenarios
from mailctl.errors import MailctlError
from mailctl.paths import share_dir
from mailctl.scenarios import CI_SECONDS, plan_lanes, run_scenarios, scenario_names


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


def _fake_checkout(tmp_path, names):
    for name in names:
        (tmp_path / "molecule" / name).mkdir(parents=True)
        (tmp_path / "molecule" / name / "molecule.yml").write_text("---\n")
    return tmp_path


def test_lanes_run_every_scenario_print_each_output_whole_and_time_it(
        tmp_path, monkeypatch, capsysbinary):
    root = _fake_checkout(tmp_path, ["default", "cyrus", "faults"])
    monkeypatch.setattr(scenarios, "share_dir", lambda: root)
    times = tmp_path / "times"
    monkeypatch.setenv("MAILCTL_SCENARIO_TIMES", str(times))

    def molecule(argv, cwd, env, check, stdout=None, stderr=None):
        name = argv[-1]
        stdout.write(f"log of {name}\n".encode())
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(scenarios.subprocess, "run", molecule)
    lines = []
    durations = run_scenarios(None, lines.append, jobs=2)
    assert sorted(durations) == ["cyrus", "default", "faults"]
    assert lines[0] == "lanes: cyrus | default, faults"
    out = capsysbinary.readouterr().out.decode()
    assert all(f"log of {n}\n" in out for n in durations)
    assert sorted(line.split()[0] for line in times.read_text().splitlines()) == sorted(durations)


def test_a_failed_scenario_stops_its_lane_and_is_named(tmp_path, monkeypatch):
    # lanes: cyrus, faults | default, faults-cyrus
    root = _fake_checkout(tmp_path, ["default", "cyrus", "faults", "faults-cyrus"])
    monkeypatch.setattr(scenarios, "share_dir", lambda: root)
    monkeypatch.delenv("MAILCTL_SCENARIO_TIMES", raising=False)
    ran = []

    def molecule(argv, cwd, env, check, stdout=None, stderr=None):
        ran.append(argv[-1])
        return subprocess.CompletedProcess(argv, 1 if argv[-1] == "cyrus" else 0)

    monkeypatch.setattr(scenarios.subprocess, "run", molecule)
    with pytest.raises(MailctlError, match="failed: cyrus"):
        run_scenarios(None, lambda line: None, jobs=2)
    assert "faults" not in ran  # it came after cyrus in cyrus's lane


def test_a_failed_scenario_output_before_its_clean_up_is_repeated_last(tmp_path, monkeypatch):
    # a CI log keeps only its tail, where the other lane's output would otherwise be
    root = _fake_checkout(tmp_path, ["default", "cyrus"])
    monkeypatch.setattr(scenarios, "share_dir", lambda: root)
    monkeypatch.delenv("MAILCTL_SCENARIO_TIMES", raising=False)

    def molecule(argv, cwd, env, check, stdout=None, stderr=None):
        if argv[-1] == "default":
            # molecule's own words and colours
            stdout.write("INFO     \x1b[32mdefault\x1b[0m ➜ \x1b[33mdestroy\x1b[0m: Executing\n"
                         "INFO     \x1b[32mdefault\x1b[0m ➜ \x1b[33mverify\x1b[0m: Executing\n"
                         "TASK [x]\nfatal: [mail]: FAILED! the reason\n"
                         "INFO     \x1b[32mdefault\x1b[0m ➜ \x1b[33mcleanup\x1b[0m: Executing\n"
                         "cleaned\n"
                         "INFO     \x1b[32mdefault\x1b[0m ➜ \x1b[33mdestroy\x1b[0m: Executing\n"
                         "PLAY RECAP destroyed\n".encode())
            return subprocess.CompletedProcess(argv, 2)
        stdout.write(b"cyrus ok\n")
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(scenarios.subprocess, "run", molecule)
    lines = []
    with pytest.raises(MailctlError, match="failed: default"):
        run_scenarios(None, lines.append, jobs=2)
    repeated = lines[lines.index("== molecule test -s default FAILED: its last 4 lines again"):]
    # up to the clean-up after the failed action (the destroy before create is kept)
    assert repeated[3:] == ["TASK [x]", "fatal: [mail]: FAILED! the reason"]
