"""Device profiles: shipped files validate, lookups work, broken files say file/field/reason,
and the tier-0 latency model lands near the published anchors of DEVICES.md."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import get_args

import pytest
from typer.testing import CliRunner

from gtn_deploy.spaces.mbconv import ArchConfig, get_space
from gtn_deploy.constants import OP_CLASSES, PRECISIONS
from gtn_deploy.cost.analytic import Layer
from gtn_deploy.cost.latency import predict_latency
from gtn_deploy.cost.roofline import roofline
from gtn_deploy.errors import ProfileError, UsageError
from gtn_deploy.profile_schema import Efficiencies, Precision, iter_sourced
from gtn_deploy.profiles import list_profiles, load_profile, profiles_dir, resolve_alias

FIXTURES = Path(__file__).parent / "fixtures" / "profiles"
SHIPPED = ("jetson-nano", "jetson-xavier-nx", "jetson-orin-nano", "jetson-agx-orin",
           "raspberry-pi-4", "raspberry-pi-5", "x86-laptop", "nvidia-t4")


# -- shipped profiles ---------------------------------------------------------------------------

def test_schema_names_match_the_constants():
    # pydantic needs the names spelled out (a Literal, one field per op class); these keep
    # them equal to the one list the cost model, bundles and the CLI use.
    assert get_args(Precision) == PRECISIONS
    assert tuple(Efficiencies.model_fields) == OP_CLASSES


def test_every_shipped_profile_validates():
    profiles = list_profiles()
    assert [p.id for p in profiles] == sorted(SHIPPED)
    for p in profiles:
        assert p.source_path == profiles_dir() / f"{p.id}.yaml"
        assert len(p.content_hash) == 64
        assert p.preferred_precision in p.precisions
        for prec in p.precisions:
            for mode in p.power_modes:
                assert p.peak_flops(prec, mode) > 0
        assert p.memory_bandwidth() > 1e9
        assert all(0 < p.latency_model.efficiency(c) <= 1 for c in OP_CLASSES)
        assert p.budgets.percentile == "p90" and p.budgets.batch_size == 1
        assert p.calibration is None


@pytest.mark.parametrize("pid", SHIPPED)
def test_every_number_has_a_known_source(pid):
    p = load_profile(pid)
    sourced = list(iter_sourced(p.spec))
    assert len(sourced) > 15
    for path, source in sourced:
        keys = [k.strip() for k in source.split(",")]
        assert source.startswith(("derived:", "policy:", "measured:")) or \
            all(k in p.spec.sources for k in keys), path


def test_figures_from_devices_md():
    nano, orin, agx = load_profile("nano"), load_profile("orin-nano"), load_profile("agx-orin")
    assert nano.peak_flops("fp16") == pytest.approx(471.6e9)
    assert nano.runtime.version == "8.2.1" and "int8" not in nano.precisions
    assert load_profile("xavier").runtime.version == "8.5.2"
    assert orin.runtime.version == "10.3" and orin.runtime.name == "tensorrt"
    assert orin.peak_flops("int8", sparse=True) == pytest.approx(40e12)
    assert orin.peak_flops("int8") == pytest.approx(20e12)
    assert orin.memory_bandwidth() == pytest.approx(68e9)
    assert orin.memory_bandwidth("MAXN_SUPER") == pytest.approx(102e9)
    assert agx.peak_flops("int8", "15W", sparse=True) == pytest.approx(14e12)
    assert agx.peak_flops("int8", "MAXN", sparse=True) == pytest.approx(171e12)
    assert load_profile("t4").peak_flops("int8") == pytest.approx(130e12)
    assert load_profile("rpi4").memory_bandwidth() == pytest.approx(12.8e9)


def test_peak_errors_name_the_choices():
    nano = load_profile("jetson-nano")
    with pytest.raises(UsageError, match=r"no dense int8 peak; supported precisions: fp32, fp16"):
        nano.peak_flops("int8")
    with pytest.raises(UsageError, match="no sparse fp16 peak"):
        nano.peak_flops("fp16", sparse=True)
    with pytest.raises(UsageError, match="no power mode 'turbo'; valid: MAXN, 5W"):
        nano.peak_flops("fp16", "turbo")


# -- lookup ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("alias,pid", [
    ("jetson", "jetson-orin-nano"), ("ORIN", "jetson-orin-nano"), ("orin-nano", "jetson-orin-nano"),
    ("nano", "jetson-nano"), ("xavier", "jetson-xavier-nx"), ("agx-orin", "jetson-agx-orin"),
    ("rpi4", "raspberry-pi-4"), ("Pi5", "raspberry-pi-5"), ("rpi5", "raspberry-pi-5"),
    ("laptop", "x86-laptop"), ("t4", "nvidia-t4"), ("Jetson-Nano", "jetson-nano"),
])
def test_aliases_resolve(alias, pid):
    assert resolve_alias(alias) == pid
    assert load_profile(alias).id == pid


def test_unknown_device_lists_closest():
    with pytest.raises(ProfileError) as err:
        load_profile("jetsn")
    msg = str(err.value)
    assert msg.startswith("unknown device 'jetsn'; closest: jetson")
    assert "jetson-nano" in msg and msg.endswith("see 'gtnd profiles list'")
    assert "\n" not in msg and err.value.exit_code == 2


def test_user_path_loads_and_hashes(tmp_path):
    p = load_profile(str(FIXTURES / "my-board.yaml"))
    assert p.id == "my-board" and p.peak_flops("fp16") == 2e12
    copy = tmp_path / "board.yml"
    shutil.copy(FIXTURES / "my-board.yaml", copy)
    assert load_profile(str(copy)).content_hash == p.content_hash
    copy.write_text(copy.read_text().replace("value: 20,", "value: 25,"))
    changed = load_profile(str(copy))
    assert changed.content_hash != p.content_hash and changed.budgets.latency_ms == 25


def test_missing_user_file():
    with pytest.raises(ProfileError, match="profile file not found: .*nope.yaml"):
        load_profile("nope.yaml")


def test_profiles_dir_from_env(tmp_path, monkeypatch):
    shutil.copy(FIXTURES / "my-board.yaml", tmp_path / "my-board.yaml")
    monkeypatch.setenv("GTND_PROFILES_DIR", str(tmp_path))
    assert [p.id for p in list_profiles()] == ["my-board"]
    assert load_profile("MyBoard").id == "my-board"
    with pytest.raises(ProfileError, match="unknown device 'jetson'"):
        load_profile("jetson")


# -- broken files --------------------------------------------------------------------------------

@pytest.mark.parametrize("name,field,reason", [
    ("broken_unknown_key", "compute.power_modes.15W.turbo", "unknown field 'turbo'; allowed: description"),
    ("broken_wrong_type", "compute.power_modes.15W.dense_tops.fp16.value", "valid number (got 'fast')"),
    ("broken_missing_field", "budgets.latency_ms", "missing required field"),
    ("broken_unknown_source", "memory.bandwidth_gbs.source", "unknown source key 'S9'; known keys: S1"),
    ("broken_default_mode", "compute.default_power_mode", "'MAXN' is not a power mode; valid: 15W"),
    ("broken_range", "latency_model.efficiency.conv", "value must be in (0, 1], got 3.0"),
    ("broken_yaml", ":20:16", "YAML syntax error"),
])
def test_broken_files_name_file_field_reason(name, field, reason):
    path = FIXTURES / f"{name}.yaml"
    with pytest.raises(ProfileError) as err:
        load_profile(str(path))
    msg = str(err.value)
    assert msg.startswith(str(path)), msg
    assert field in msg and reason in msg, msg
    assert "\n" not in msg


def test_top_level_not_a_mapping(tmp_path):
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ProfileError, match="expected a mapping"):
        load_profile(str(bad))


# -- tier-0 predictions against the published anchors (DEVICES.md, batch 1, FP32) ------------

# MobileNetV3-Large expressed in the imagenet space (stage depths 2-3-4-2-3; its kernels and
# the nearest allowed expand ratios): 221 M MACs, 5.5 M params, against 217 M / 5.4 M.
MBV3_LARGE = ArchConfig((2, 3, 4, 2, 3), (3, 3, 5, 5, 5, 3, 3, 3, 3, 3, 3, 5, 5, 5),
                        (4, 3, 3, 3, 3, 6, 3, 3, 3, 6, 6, 6, 6, 6), 224)
MBV3_ANCHOR_MS = {"raspberry-pi-4": 97.3, "raspberry-pi-5": 29.0, "jetson-orin-nano": 3.89,
                  "x86-laptop": 4.72}
RESNET18_ANCHOR_MS = {"raspberry-pi-4": 275.0, "raspberry-pi-5": 50.3, "jetson-orin-nano": 3.58,
                      "x86-laptop": 12.3}


@pytest.mark.parametrize("pid", sorted(MBV3_ANCHOR_MS))
def test_mobilenetv3_large_near_anchor(pid):
    space = get_space("imagenet")
    est = predict_latency(space, space.validate(MBV3_LARGE), load_profile(pid), "fp32")
    ratio = est.latency_ms / MBV3_ANCHOR_MS[pid]
    assert 0.5 <= ratio <= 2.0, f"{pid}: {est.latency_ms:.2f} ms vs {MBV3_ANCHOR_MS[pid]}"
    assert 1 / 1.5 <= ratio <= 1.5  # what the derivations in the YAML files claim


def _resnet18() -> list[Layer]:
    """ResNet-18 at 224x224 as tier-0 layers (conv+BN+ReLU fused; adds and pools apart)."""
    def conv(name, cls, cin, cout, k, h, s):
        ho = (h + s - 1) // s
        w = cout * cin * k * k
        return Layer(name, cls, name, 2 * w * ho * ho, w + 2 * cout, cin * h * h,
                     cout * ho * ho), ho

    stem, h = conv("stem", "conv", 3, 64, 7, 224, 2)
    layers = [stem, Layer("maxpool", "pool", "maxpool", 0, 0, 64 * h * h, 64 * (h // 2) ** 2)]
    h, cin = h // 2, 64
    for i, (c, s) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)]):
        for b in range(2):
            st = s if b == 0 else 1
            c1, ho = conv(f"l{i}.{b}.c1", "conv", cin, c, 3, h, st)
            layers += [c1, conv(f"l{i}.{b}.c2", "conv", c, c, 3, ho, 1)[0]]
            if st != 1 or cin != c:
                layers.append(conv(f"l{i}.{b}.down", "pointwise", cin, c, 1, h, st)[0])
            layers.append(Layer(f"l{i}.{b}.add", "elementwise", f"l{i}.{b}", 0, 0,
                                2 * c * ho * ho, c * ho * ho))
            cin, h = c, ho
    return layers + [Layer("pool", "pool", "head", 0, 0, 512 * h * h, 512),
                     Layer("fc", "linear", "head", 2 * 512 * 1000, 513 * 1000, 512, 1000)]


@pytest.mark.parametrize("pid", sorted(RESNET18_ANCHOR_MS))
def test_resnet18_near_anchor(pid):
    layers = _resnet18()
    assert sum(x.flops for x in layers) == pytest.approx(3.63e9, rel=0.01)  # 1.82 GMAC
    model = roofline(load_profile(pid), "fp32", 1)
    ms = (sum(model.layer_seconds(x) for x in layers) + model.invoke_s) * 1e3
    assert 1 / 1.5 <= ms / RESNET18_ANCHOR_MS[pid] <= 1.5, f"{pid}: {ms:.2f} ms"


def test_predictions_ordered_by_device_speed():
    """Sanity across profiles: the same student is slowest on the Pi 4, fastest on the T4."""
    space = get_space("imagenet")
    ms = {pid: predict_latency(space, MBV3_LARGE, load_profile(pid),
                               load_profile(pid).preferred_precision).latency_ms
          for pid in SHIPPED}
    assert ms["raspberry-pi-4"] > ms["raspberry-pi-5"] > ms["x86-laptop"]
    assert ms["jetson-nano"] > ms["jetson-xavier-nx"] > ms["jetson-orin-nano"]
    assert ms["jetson-orin-nano"] > ms["jetson-agx-orin"] and ms["nvidia-t4"] < 1.0


# -- CLI -------------------------------------------------------------------------------------------

def _cli():
    from gtn_deploy.cli.main import app
    return app


def test_cli_list():
    result = CliRunner().invoke(_cli(), ["profiles", "list"])
    assert result.exit_code == 0, result.output
    for pid in SHIPPED:
        assert pid in result.output
    assert "tensorrt 8.2.1" in result.output and "10 ms p90" in result.output
    rows = json.loads(CliRunner().invoke(_cli(), ["profiles", "list", "--json"]).output)
    assert {r["id"] for r in rows} == set(SHIPPED)


def test_cli_show_text_and_json():
    result = CliRunner().invoke(_cli(), ["profiles", "show", "rpi5"])
    assert result.exit_code == 0, result.output
    assert "compute.power_modes.stock.dense_tops.fp32 = 0.1536  [derived:" in result.output
    assert "runtime.version = 1.17+  [policy:" in result.output
    assert "S15: https://www.raspberrypi.com/products/raspberry-pi-5/" in result.output
    data = json.loads(CliRunner().invoke(_cli(), ["profiles", "show", "t4", "--json"]).output)
    assert data["id"] == "nvidia-t4" and data["compute"]["power_modes"]["70W"]
    assert data["content_hash"] == load_profile("t4").content_hash


def test_cli_bad_input_is_one_line_exit_2():
    result = CliRunner().invoke(_cli(), ["profiles", "show", "jetsn"])
    assert result.exit_code == 2
    assert "error: unknown device 'jetsn'; closest: jetson" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(_cli(), ["profiles", "show",
                                         str(FIXTURES / "broken_wrong_type.yaml")])
    assert result.exit_code == 2
    assert "dense_tops.fp16.value" in result.output and "Traceback" not in result.output
