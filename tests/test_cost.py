import random

import pytest

from gtn_deploy.spaces.mbconv import ArchConfig, get_space
from gtn_deploy.cost.analytic import block_keys, network_cost
from gtn_deploy.cost.latency import predict_latency, predict_memory_mb
from gtn_deploy.errors import UsageError
from gtn_deploy.profiles import list_profiles, load_profile

TASKS = ["fashion-mnist", "cifar100", "imagenet"]


def test_ofa_max_net_matches_published_size():
    # ofa_mbv3_d234_e346_k357_w1.0 max subnet: 7.7M parameters (Once-for-All model zoo).
    cost = network_cost(get_space("imagenet"), get_space("imagenet").max_arch())
    assert 7.6e6 < cost.params < 7.8e6


def _grow(space, arch, field, rng):
    """A copy of ``arch`` with one decision made larger, or None if it is already max."""
    stages = arch.stage_blocks()
    s = rng.randrange(len(stages))
    blocks = stages[s]
    i = rng.randrange(len(blocks))
    k, e = blocks[i]
    if field == "kernel":
        bigger = [c for c in space.kernel_choices if c > k]
        blocks[i] = (bigger[0], e) if bigger else None
    elif field == "expand":
        bigger = [c for c in space.expand_choices if c > e]
        blocks[i] = (k, bigger[0]) if bigger else None
    elif field == "depth":
        if len(blocks) == space.max_depth:
            return None
        blocks.append((k, e))
    elif field == "resolution":
        bigger = [r for r in space.resolutions if r > arch.resolution]
        return ArchConfig.from_stage_blocks(stages, bigger[0]) if bigger else None
    if None in blocks:
        return None
    return ArchConfig.from_stage_blocks(stages, arch.resolution)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("field", ["depth", "kernel", "expand", "resolution"])
def test_cost_and_latency_are_monotone(task, field):
    space, rng = get_space(task), random.Random(0)
    profile = load_profile("jetson-orin-nano")
    for _ in range(40):
        arch = space.sample(rng)
        bigger = _grow(space, arch, field, rng)
        if bigger is None:
            continue
        small, big = network_cost(space, arch), network_cost(space, bigger)
        assert big.flops >= small.flops and big.params >= small.params
        assert (predict_latency(space, bigger, profile).latency_ms
                >= predict_latency(space, arch, profile).latency_ms)
        assert predict_memory_mb(space, bigger) >= predict_memory_mb(space, arch)


def test_latency_depends_on_precision_and_batch():
    space, profile = get_space("imagenet"), load_profile("nvidia-t4")
    arch = space.max_arch()
    fp32 = predict_latency(space, arch, profile, "fp32").latency_ms
    fp16 = predict_latency(space, arch, profile, "fp16").latency_ms
    assert fp16 < fp32
    b1 = predict_latency(space, arch, profile, "fp16", 1).latency_ms
    b8 = predict_latency(space, arch, profile, "fp16", 8).latency_ms
    assert b1 < b8 < 8 * b1  # per-inference overhead is shared across the batch
    with pytest.raises(UsageError, match="valid: fp32, fp16, int8"):
        predict_latency(space, arch, profile, "fp8")


def test_breakdown_sums_to_total_and_band_contains_it():
    space, profile = get_space("cifar100"), load_profile("raspberry-pi-5")
    est = predict_latency(space, space.max_arch(), profile, breakdown=True)
    total = sum(ms for _, ms in est.per_layer) + profile.latency_model.invoke_overhead_us / 1e3
    assert est.latency_ms == pytest.approx(total, rel=1e-9)
    assert est.low_ms < est.latency_ms < est.high_ms and est.tier == 0


def test_block_keys_distinguish_shapes():
    space = get_space("imagenet")
    keys = dict(block_keys(space, space.max_arch()))
    assert keys["s0.b0"].startswith("mbconv-in:112x112x16-out:56x56x24-mid:96-k:7-s:2-skip:0")
    assert keys["s0.b1"] != keys["s0.b0"] and "skip:1" in keys["s0.b1"]


def test_every_profile_predicts():
    space = get_space("imagenet")
    for profile in list_profiles():
        est = predict_latency(space, space.min_arch(), profile, profile.preferred_precision)
        assert est.latency_ms > 0


def test_latency_model_factory_and_a_plugged_in_model():
    """One factory picks the tier; the planner uses whatever LatencyModel it is given."""
    from gtn_deploy.cost.latency import Tier0, latency_model
    from gtn_deploy.search.planner import CapacityProxy, PlanRequest, make_evaluator

    space = get_space("fashion-mnist")
    profile = load_profile("jetson-orin-nano")
    model = latency_model(profile, space, "fp16")
    assert isinstance(model, Tier0)  # shipped profiles carry no calibration
    arch = space.max_arch()
    assert model.latency_ms(arch) == predict_latency(space, arch, profile, "fp16").latency_ms

    class Constant:  # a user's model: 2 ms, whatever the arch
        def latency_ms(self, arch, cost=None):
            return 2.0

        def estimate(self, arch, breakdown=False):
            raise AssertionError("the search asks only for latency_ms")

    req = PlanRequest.for_device(profile, space)
    evaluate = make_evaluator(req, CapacityProxy(), Constant())
    assert {evaluate(a).latency_ms for a in (space.min_arch(), arch)} == {2.0}
