"""bin/run's market simulator: ``CCP_SIMULATOR_BOUND_SHARE`` (0 to 1, default 0) passes through to
``ccp_simulate --bound-share``; any other value stops bin/run with a message before anything starts, and the
command itself refuses it too."""

import sys

import pytest

from tests.processes import bin_stack

SIMULATE = [sys.executable, "manage.py", "ccp_simulate", "--url", "http://127.0.0.1:8123"]


@pytest.mark.parametrize(("env", "extra"), [
    ({}, []),  # today's simulator: nobody bound
    ({"CCP_SIMULATOR_BOUND_SHARE": ""}, []),
    ({"CCP_SIMULATOR_BOUND_SHARE": "0"}, []),
    ({"CCP_SIMULATOR_BOUND_SHARE": "0.3"}, ["--bound-share", "0.3"]),
    ({"CCP_SIMULATOR_BOUND_SHARE": " 0.30 "}, ["--bound-share", "0.3"]),
    ({"CCP_SIMULATOR_BOUND_SHARE": "1", "CCP_SIMULATOR": "1"}, ["--bound-share", "1.0"]),
])
def test_the_bound_share_passes_through_to_the_simulator(env, extra):
    assert bin_stack().simulator_command(env, 8123) == [*SIMULATE, *extra]


def test_no_simulator_no_check():
    assert bin_stack().simulator_command({"CCP_SIMULATOR": "0", "CCP_SIMULATOR_BOUND_SHARE": "2"}, 8123) is None


@pytest.mark.parametrize("value", ["1.5", "-0.1", "abc", "nan", "inf", "30%"])
def test_a_share_outside_0_to_1_stops_with_a_message(value):
    with pytest.raises(SystemExit) as stopped:
        bin_stack().simulator_command({"CCP_SIMULATOR_BOUND_SHARE": value}, 8123)
    assert str(stopped.value) == ("[ccp] CCP_SIMULATOR_BOUND_SHARE must be a number from 0 to 1 (the share of the "
                                  f"simulator's traders that are collateral-bound), not {value!r}")


def test_bin_run_stops_before_starting_anything(monkeypatch):
    stack = bin_stack()
    started = []
    monkeypatch.setattr(stack, "services", lambda *args, **kwargs: started.append(args))
    monkeypatch.setenv("CCP_SIMULATOR_BOUND_SHARE", "2")
    with pytest.raises(SystemExit, match="CCP_SIMULATOR_BOUND_SHARE must be a number from 0 to 1"):
        stack.cmd_run()
    assert started == []


@pytest.mark.parametrize("value", ["1.5", "-0.1", "nan", "abc"])
def test_the_simulator_itself_refuses_a_share_outside_0_to_1(value):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="from 0 to 1"):
        call_command("ccp_simulate", "--bound-share", value, "--rounds", "1")
