"""The report's verdicts: budget (measured p90 first, else predicted) and KD vs CE."""

from gtn_deploy.pipeline.report_tables import budget_verdict, kd_verdict


def test_budget_verdict_prefers_the_measurement_and_states_headroom():
    row = {"budget_ms": 1.0, "predicted_ms": 0.5, "measured_p90_ms": None}
    assert budget_verdict(row) == "fits (predicted, 50% headroom)"
    assert budget_verdict({**row, "measured_p90_ms": 1.25}) == "OVER (measured p90, 25% over)"
    assert budget_verdict({**row, "predicted_ms": None}) == "unknown"
    # the bench's rounds on both sides of the budget: the load decided, and the verdict says so
    torn = {**row, "measured_p90_ms": 0.95, "measured_p90_range_ms": [0.9, 1.4]}
    assert budget_verdict(torn) == "unsettled (measured p90, rounds 0.9-1.4 ms)"
    calm = {**torn, "measured_p90_range_ms": [0.9, 0.97]}
    assert budget_verdict(calm) == "fits (measured p90, 5% headroom)"
    loaded = {**calm, "measured_p90_ms": 3.0, "measured_p90_range_ms": [2.5, 3.5],
              "measured_noisy": True}
    assert budget_verdict(loaded) == "OVER (measured p90, 200% over; noisy run)"
    assert budget_verdict({**row, "measured_noisy": True}) == "fits (predicted, 50% headroom)"


def test_kd_verdict_says_plainly_where_kd_lost():
    rows = [{"device": "a", "kd_gain": 1.5}, {"device": "b", "kd_gain": -0.25}]
    assert kd_verdict({"devices": rows}) == ("KD LOST to plain CE on b (-0.25 points): there "
                                             "the teacher did not help. It beat CE on a (+1.50).")
    both = [{**rows[1], "device": "c"}, rows[1]]
    assert kd_verdict({"devices": both}) == ("KD LOST to plain CE on c (-0.25 points), b (-0.25 "
                                             "points): on those devices the teacher did not help.")
    assert kd_verdict({"devices": rows[:1]}) == \
        "KD beat the CE baseline on every device (gain +1.50 points of test top-1)."
    two = [rows[0], {"device": "d", "kd_gain": 0.5}]
    assert "(gain +0.50 to +1.50 points" in kd_verdict({"devices": two})
    assert "--baseline none" in kd_verdict({"devices": [{"device": "a", "kd_gain": None}]})
