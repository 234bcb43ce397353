import json
import random

import pytest

from gtn_deploy.spaces.mbconv import SPACES, ArchConfig, get_space
from gtn_deploy.errors import ArchError, UsageError


@pytest.mark.parametrize("task", sorted(SPACES))
def test_json_round_trip_and_membership(task):
    space = get_space(task)
    rng = random.Random(1)
    for _ in range(50):
        arch = space.sample(rng)
        assert space.validate(arch) is arch
        again = ArchConfig.from_json(arch.to_json())
        assert again == arch and hash(again) == hash(arch)


def test_sample_is_pure_and_seeded():
    space = get_space("imagenet")
    a = [space.sample(random.Random(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]


def test_ofa_import_keeps_active_blocks_only():
    ofa = {"ks": [3, 5, 7, 7] * 5, "e": [3, 4, 6, 6] * 5, "d": [2, 3, 4, 2, 2], "r": [160]}
    arch = ArchConfig.from_dict(ofa)
    assert arch.depths == (2, 3, 4, 2, 2)
    assert arch.kernel_sizes[:2] == (3, 5) and arch.kernel_sizes[2:5] == (3, 5, 7)
    assert arch.resolution == 160
    get_space("imagenet").validate(arch)
    assert ArchConfig.from_ofa(arch.to_ofa(4)) == arch


def test_mutation_and_crossover_stay_in_space():
    space = get_space("cifar100")
    rng = random.Random(3)
    a, b = space.sample(rng), space.sample(rng)
    for _ in range(100):
        space.validate(space.mutate(a, rng, 0.5))
        space.validate(space.crossover(a, b, rng))


@pytest.mark.parametrize("bad, msg", [
    ({"depths": [1, 1, 1], "kernel_sizes": [3] * 3, "expand_ratios": [3] * 3, "resolution": 28}, "3 stage depths"),
    ({"depths": [1, 1, 1, 4], "kernel_sizes": [3] * 7, "expand_ratios": [3] * 7, "resolution": 28}, "depth 4"),
    ({"depths": [1, 1, 1, 1], "kernel_sizes": [3, 3, 3, 9], "expand_ratios": [3] * 4, "resolution": 28}, "kernel size 9"),
    ({"depths": [1, 1, 1, 1], "kernel_sizes": [3] * 4, "expand_ratios": [3] * 4, "resolution": 32}, "resolution 32"),
])
def test_validate_names_the_problem(bad, msg):
    with pytest.raises(ArchError, match=msg):
        get_space("fashion-mnist").validate(ArchConfig.from_dict(bad))


def test_bad_json_and_unknown_keys():
    with pytest.raises(ArchError, match="not valid JSON"):
        ArchConfig.from_json("{nope")
    with pytest.raises(ArchError, match="unknown keys"):
        ArchConfig.from_dict({"depths": [1], "kernel_sizes": [3], "expand_ratios": [3],
                              "resolution": 28, "colour": "red"})


def test_unknown_task():
    with pytest.raises(UsageError, match="valid tasks: .*fashion-mnist"):
        get_space("mnist")


def test_space_sizes_are_as_in_once_for_all():
    # OFA MobileNetV3: ((3*3)^2 + (3*3)^3 + (3*3)^4)^5 ~ 2e19 per resolution.
    imagenet = get_space("imagenet")
    assert imagenet.size() == (81 + 729 + 6561) ** 5 * 25
    assert json.dumps(imagenet.to_dict())
