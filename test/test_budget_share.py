# SPDX-License-Identifier: Apache-2.0
"""Several cameras on one computer: weights, activity, freed shares, refusals."""

import math

import pytest

from dynvit_ros.budget.share import CameraShares, parse_cameras, parse_weights


def test_weights_divide_the_budget_among_active_cameras():
    shares = CameraShares({"/front": 2.0, "/rear": 1.0}, timeout_s=3.0)
    cams = ["/front", "/rear"]
    # Nobody active yet: each is offered what it would get if it joined alone.
    assert shares.budgets(cams, 90.0, 5.0, now=0.0) == {"/front": 90.0, "/rear": 90.0}
    shares.seen("/front", 1.0)
    shares.seen("/rear", 1.0)
    got = shares.budgets(cams, 90.0, 5.0, now=2.0)
    assert got["/front"] == pytest.approx(60.0) and got["/rear"] == pytest.approx(30.0)
    # rear stops: after the timeout front has the whole budget again.
    shares.seen("/front", 4.5)
    assert shares.budgets(cams, 90.0, 5.0, now=4.6)["/front"] == pytest.approx(90.0)
    # A camera that comes back is counted at once.
    shares.seen("/rear", 5.0)
    assert shares.budgets(cams, 90.0, 5.0, now=5.0)["/rear"] == pytest.approx(30.0)


def test_parallel_nodes_keep_more_of_the_budget():
    # Single-threaded nodes on two cores: two can run at once.
    shares = CameraShares({"/front": 2.0, "/rear": 1.0}, timeout_s=3.0, parallel=2.0)
    shares.seen("/front", 0.0)
    shares.seen("/rear", 0.0)
    got = shares.budgets(["/front", "/rear"], 90.0, 5.0, now=0.1)
    assert got["/front"] == pytest.approx(90.0) and got["/rear"] == pytest.approx(60.0)


def test_a_node_on_fewer_threads_than_cores_takes_as_long_for_less_of_the_machine():
    # The monitor's budget is the machine's share over the period: 44 ms at 10 Hz on two
    # cores. A one-thread node uses half the machine while it runs: 88 ms for that share.
    shares = CameraShares(cores=2)
    assert shares.budgets([""], 44.0, 5.0, 0.0, max_budget_ms=100.0) == {"": 44.0}
    shares.seen("", 0.0, threads=1)
    assert shares.parallel_of("") == 2.0
    assert shares.budgets([""], 44.0, 5.0, 0.1, max_budget_ms=100.0)[""] == pytest.approx(88.0)
    # Never beyond the largest budget; an unsaid count (0) or nonsense keeps the last one.
    assert shares.budgets([""], 60.0, 5.0, 0.1, max_budget_ms=100.0)[""] == 100.0
    shares.seen("", 0.2, threads=0)
    shares.seen("", 0.3, threads=-3)
    assert shares.parallel_of("") == 2.0
    shares.seen("", 0.4, threads=2)
    assert shares.budgets([""], 44.0, 5.0, 0.5, max_budget_ms=100.0)[""] == pytest.approx(44.0)
    # Two one-thread cameras, weights 2:1: 58.7 + 29.3 ms on one core each is 44% of two.
    shares = CameraShares({"/front": 2.0, "/rear": 1.0}, cores=2)
    for cam in ("/front", "/rear"):
        shares.seen(cam, 0.0, threads=1)
    got = shares.budgets(["/front", "/rear"], 44.0, 5.0, 0.1, max_budget_ms=100.0)
    assert got["/front"] == pytest.approx(88 * 2 / 3) and got["/rear"] == pytest.approx(88 / 3)
    shares.forget("/rear")
    assert shares.parallel_of("/rear") == 1.0


def test_a_budget_set_by_hand_is_a_time_per_frame_not_sized_for_threads():
    shares = CameraShares(cores=2)
    shares.seen("", 0.0, threads=1)
    assert shares.budgets([""], 37.5, 5.0, 0.1, 100.0, 0.0, machine_share=False) == {"": 37.5}
    shares = CameraShares({"/front": 3.0, "/rear": 1.0}, cores=2)
    for cam in ("/front", "/rear"):
        shares.seen(cam, 0.0, threads=1)
    got = shares.budgets(["/front", "/rear"], 40.0, 5.0, 0.1, 100.0, 0.0, machine_share=False)
    assert got["/front"] == pytest.approx(30.0) and got["/rear"] == pytest.approx(10.0)


def test_minimum_budget_and_unlisted_weight():
    shares = CameraShares({}, timeout_s=3.0)
    for i in range(30):
        shares.seen(f"/c{i}", 0.0)
    assert shares.budgets(["/c0"], 90.0, 5.0, now=0.1)["/c0"] == 5.0
    assert shares.weight("/unknown") == 1.0


@pytest.mark.parametrize(
    "text",
    ["front=0", "front=-1", "front=nan", "front=inf", "front", "=2", "front=fast", "fr ont=1"],
)
def test_bad_weights_are_refused_with_a_reason(text):
    with pytest.raises(ValueError, match="weight|namespace|NAMESPACE"):
        parse_weights(text)


def test_parsing():
    assert parse_weights(" front=2, rear=1.5 ") == {"/front": 2.0, "/rear": 1.5}
    assert parse_cameras("") == [] and parse_cameras("*") is None
    assert parse_cameras("front, /rear/") == ["/front", "/rear"]
    assert math.isfinite(parse_weights("a=1e3")["/a"])


def test_a_camera_is_never_budgeted_below_what_it_can_meet():
    shares = CameraShares({"/front": 2.0, "/rear": 1.0}, timeout_s=3.0, parallel=2.0)
    shares.seen("/front", 0.0, floor_ms=20.0)
    shares.seen("/rear", 0.0, floor_ms=35.0)
    cams = ["/front", "/rear"]
    # A busy host: the shared budgets (~53.3 and ~26.7 ms) fall below rear's fastest level.
    got = shares.budgets(cams, 40.0, 5.0, now=0.1, max_budget_ms=100.0, margin=1.1)
    assert got["/front"] == pytest.approx(160 / 3)
    assert got["/rear"] == pytest.approx(38.5)
    # Never above the largest budget, whatever the floor.
    shares.seen("/rear", 0.2, floor_ms=500.0)
    assert shares.budgets(cams, 40.0, 5.0, 0.3, 100.0, 1.1)["/rear"] == pytest.approx(100.0)
    # margin 0 turns the floor off; an unknown (NaN) floor is no floor.
    assert shares.budgets(cams, 40.0, 5.0, 0.3, 100.0, 0.0)["/rear"] == pytest.approx(80 / 3)
    shares.seen("/rear", 0.4, floor_ms=math.nan)
    assert shares.floor("/rear", 0.5) == 0.0
    # A floor holds only while its camera is active.
    assert shares.floor("/front", 3.5) == 0.0
