"""``gtnd supernet import --from ofa-mbv3``, checked against Once-for-All's own code.

OFA's networks (the ``ofa`` package) with random weights are saved as OFA publishes its
supernets; the imported supernet and its extracted students must give OFA's outputs.
"""

import copy
import dataclasses
import json
import random
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cli_helpers import assert_one_line_error
from ofa_helpers import (calibrate_ofa_bn, ofa_arch_dict, ofa_networks, ofa_resnet_arch,
                         random_ofa_mbv3, random_ofa_resnet50, save_as_published)
from gtn_deploy.spaces.mbconv import get_space
from gtn_deploy.cli.main import app
from gtn_deploy.io_utils import sha256_file
from gtn_deploy.supernet import load_supernet
from gtn_deploy.supernet.network import Supernet
from gtn_deploy.supernet.ofa_import import (canonical_key, import_supernet, mbv3_key_table,
                                            mbv3_tensors, resnet50_tensors)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
TOL = 1e-5  # float32


@pytest.fixture(scope="module")
def ofa_w10(tmp_path_factory):
    """OFA's w1.0 supernet, its published-style file and our import of it."""
    folder = tmp_path_factory.mktemp("ofa_w10")
    net = random_ofa_mbv3(1.0, seed=0)
    save_as_published(net, folder / "ofa_mbv3_d234_e346_k357_w1.0")
    import_supernet("ofa-mbv3", folder / "ofa_mbv3_d234_e346_k357_w1.0", folder / "supernet")
    return net, folder


def _compare(net, supernet, archs, batch: int = 2) -> float:
    """Largest |ours - OFA| over ``archs``: OFA's get_active_subnet() against our extracted
    student, and OFA's supernet against ours, in the same active arch.

    Each arch first gets its own BN statistics in OFA's net (random weights keep their scale
    only in the subnet they were measured for), which are then converted into ``supernet``
    by the importer's own conversion, so that every subnet's logits depend on the input.
    """
    worst = 0.0
    gen = torch.Generator().manual_seed(1)
    space = supernet.space
    for arch in archs:
        net.set_active_subnet(**ofa_arch_dict(arch))
        calibrate_ofa_bn(net, torch.randn(4, 3, arch.resolution, arch.resolution, generator=gen))
        supernet.load_state_dict(mbv3_tensors(net.state_dict(), space, "test"))
        x = torch.randn(batch, 3, arch.resolution, arch.resolution, generator=gen)
        supernet.set_active(arch)
        with torch.no_grad():
            theirs = net.get_active_subnet(preserve_weight=True).eval()(x)
            ours = supernet.extract(arch).eval()(x)
            worst = max(worst, (ours - theirs).abs().max().item(),
                        (supernet(x) - net(x)).abs().max().item())
        # the logits depend on the input by far more than the tolerance: a wrong tensor shows
        assert (theirs - theirs.mean(0)).abs().max() > 1000 * TOL, arch.summary()
    return worst


def test_key_table_maps_every_ofa_tensor_onto_ours():
    net = ofa_networks().OFAMobileNetV3(dropout_rate=0, ks_list=[3, 5, 7],
                                        expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4])
    space = get_space("imagenet")
    table = mbv3_key_table(space)
    ofa_keys = [canonical_key(k) for k in net.state_dict()]
    assert len(ofa_keys) == 475 and set(ofa_keys) == set(table)
    ours = set(Supernet(space, kernel_transform=True).state_dict())
    assert set(table.values()) == ours - {"head.feature.bias"}  # OFA's feature mix has none


def test_imported_file_holds_ofa_tensors_and_computes_ofa_outputs(ofa_w10):
    """The file path: every tensor of the imported folder is OFA's, and the largest subnet
    (whose BN statistics the file holds) gives OFA's logits."""
    net, folder = ofa_w10
    supernet, doc = load_supernet(folder / "supernet")
    assert supernet.kernel_transform and doc["kernel_transform"] is True
    ours = supernet.state_dict()
    table = mbv3_key_table(supernet.space)
    for key, tensor in net.state_dict().items():
        mine = ours[table[canonical_key(key)]]
        assert torch.equal(mine, tensor.reshape(mine.shape)), key
    assert not ours["head.feature.bias"].any()
    arch = supernet.space.max_arch()
    net.set_max_net()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        theirs = net(x)
        assert (supernet.extract(arch).eval()(x) - theirs).abs().max() < TOL
        assert (theirs - theirs.mean(0)).abs().max() > 1000 * TOL


def test_twenty_random_subnets_equal_ofa_outputs(ofa_w10):
    # _compare measures each arch's BN statistics in OFA's net: on a copy, so the module's
    # net stays the one the file holds (the suite also runs in reverse order)
    net, folder = copy.deepcopy(ofa_w10[0]), ofa_w10[1]
    supernet, _ = load_supernet(folder / "supernet")
    rng = random.Random(0)
    archs = [supernet.space.max_arch(), supernet.space.min_arch()]
    archs += [supernet.sample(rng) for _ in range(18)]
    assert {a.resolution for a in archs} <= set(range(128, 225))
    assert _compare(net, supernet, archs) < TOL


def test_sidecar_records_source_variant_and_checkpoint_hash(ofa_w10):
    _, folder = ofa_w10
    doc = json.loads((folder / "supernet" / "supernet.json").read_text())
    assert doc["kernel_transform"] is True and doc["space"] == "imagenet"
    source = doc["source"]
    assert source["format"] == "ofa-mbv3" and source["variant"] == "w1.0"
    assert source["sha256"] == sha256_file(folder / "ofa_mbv3_d234_e346_k357_w1.0")
    assert source["file"] == "ofa_mbv3_d234_e346_k357_w1.0"


def test_old_key_spelling_imports_the_same_weights(ofa_w10, tmp_path):
    _, folder = ofa_w10
    state = torch.load(folder / "ofa_mbv3_d234_e346_k357_w1.0", weights_only=True)["state_dict"]
    old = {k.replace(".conv.", ".mobile_inverted_conv.", 1) if k.startswith("blocks.") else k: v
           for k, v in state.items()}
    assert "blocks.1.mobile_inverted_conv.depth_conv.conv.conv.weight" in old
    torch.save({"state_dict": old}, tmp_path / "old")
    import_supernet("ofa-mbv3", tmp_path / "old", tmp_path / "supernet")
    new, old = (json.loads((p / "supernet.json").read_text())["weights"]["sha256"]
                for p in (folder / "supernet", tmp_path / "supernet"))
    assert new == old


@pytest.mark.slow
def test_wide_variant_w12(tmp_path):
    net = random_ofa_mbv3(1.2, seed=3)
    save_as_published(net, tmp_path / "ofa_mbv3_d234_e346_k357_w1.2")
    result = import_supernet("ofa-mbv3", tmp_path / "ofa_mbv3_d234_e346_k357_w1.2",
                             tmp_path / "supernet")
    assert (result.variant, result.space) == ("w1.2", "imagenet-w1.2")
    supernet, _ = load_supernet(tmp_path / "supernet")
    rng = random.Random(1)
    archs = [supernet.space.max_arch()] + [supernet.sample(rng) for _ in range(5)]
    assert all(a.width_mult == 1.2 for a in archs)
    assert _compare(net, supernet, archs) < TOL


# -- refusals: one line, nothing written ----------------------------------------------------
def _refused(tmp_path, checkpoint, *needles):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["supernet", "import", "--from", "ofa-mbv3",
                                      str(checkpoint), "--out", str(out)])
    assert_one_line_error(result, *needles)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temp folder


def test_another_network_is_refused_naming_its_first_key(tmp_path):
    resnet = ofa_networks().OFAResNets(n_classes=10)
    torch.save({"state_dict": resnet.state_dict()}, tmp_path / "ofa_resnet50")
    first = next(iter(resnet.state_dict()))
    _refused(tmp_path, tmp_path / "ofa_resnet50", "not an OFA MobileNetV3", f"'{first}'")


def test_another_kernel_set_is_refused_naming_the_shape(tmp_path):
    net = ofa_networks().OFAMobileNetV3(dropout_rate=0, ks_list=[3, 5],
                                        expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4])
    torch.save({"state_dict": net.state_dict()}, tmp_path / "k35")
    _refused(tmp_path, tmp_path / "k35", "'blocks.1.conv.depth_conv.conv.conv.weight'",
             "(96, 1, 5, 5)", "expected (96, 1, 7, 7)")


def test_missing_tensor_and_unreadable_file_are_refused(tmp_path, ofa_w10):
    net, _ = ofa_w10
    state = dict(net.state_dict())
    del state["classifier.linear.bias"]
    torch.save({"state_dict": state}, tmp_path / "partial")
    _refused(tmp_path, tmp_path / "partial", "has no 'classifier.linear.bias'")
    (tmp_path / "junk").write_bytes(b"not a torch file")
    _refused(tmp_path, tmp_path / "junk", "not a readable torch checkpoint")


def test_cli_imports_and_says_where(tmp_path, ofa_w10):
    _, folder = ofa_w10
    result = CliRunner().invoke(app, ["supernet", "import", "--from", "ofa-mbv3",
                                      str(folder / "ofa_mbv3_d234_e346_k357_w1.0"),
                                      "--out", str(tmp_path / "sn")])
    assert result.exit_code == 0, result.output
    assert "w1.0" in result.output and (tmp_path / "sn" / "supernet.json").is_file()
    again = CliRunner().invoke(app, ["supernet", "import", str(folder / "ofa_mbv3_d234_e346_k357_w1.0"),
                                     "--out", str(tmp_path / "sn")])
    assert_one_line_error(again, "already exists")


# -- ofa_resnet50 ----------------------------------------------------------------------------
@pytest.mark.slow
def test_resnet50_import_equals_ofa_outputs(tmp_path):
    """``--from ofa-resnet50``: the file imports into resnet-imagenet, and random subnets
    (odd feature sizes among them, where the ceil-mode shortcut pool matters) give OFA's
    outputs, from the supernet and from extracted students, and in onnxruntime."""
    net = random_ofa_resnet50(seed=2)
    save_as_published(net, tmp_path / "ofa_resnet50")
    result = import_supernet("ofa-resnet50", tmp_path / "ofa_resnet50", tmp_path / "supernet")
    assert (result.space, result.variant) == ("resnet-imagenet", "resnet50")
    supernet, doc = load_supernet(tmp_path / "supernet")
    assert doc["source"]["sha256"] == sha256_file(tmp_path / "ofa_resnet50")
    space, rng = supernet.space, random.Random(4)
    archs = [space.max_arch(), space.min_arch(), space.sample(rng), space.sample(rng)]
    archs = [dataclasses.replace(a, resolution=r) for a, r in zip(archs, (224, 132, 164, 196))]
    gen = torch.Generator().manual_seed(3)
    for i, arch in enumerate(archs):
        net.set_active_subnet(**ofa_resnet_arch(arch, space))
        if i:  # the file holds the largest subnet's statistics; the others get their own
            calibrate_ofa_bn(net, torch.randn(2, 3, arch.resolution, arch.resolution,
                                              generator=gen))
            supernet.load_state_dict(resnet50_tensors(net.state_dict(), space, "test"))
        supernet.set_active(arch)
        x = torch.randn(2, 3, arch.resolution, arch.resolution, generator=gen)
        with torch.no_grad():
            theirs = net.get_active_subnet(preserve_weight=True).eval()(x)
            student = supernet.extract(arch).eval()
            assert (student(x) - theirs).abs().max() < TOL, arch.summary()
            assert (supernet(x) - net(x)).abs().max() < TOL, arch.summary()
            assert (theirs - theirs.mean(0)).abs().max() > 1000 * TOL
    assert _onnx_max_diff(student, x) < 1e-4


def _onnx_max_diff(model, x) -> float:
    import onnxruntime as ort

    from gtn_deploy.export.onnx import InputSpec, export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        export_onnx(model, InputSpec(3, x.shape[2], x.shape[3], batch_size=x.shape[0]), path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        return float(np.abs(got - model(x).numpy()).max())


def test_resnet50_refuses_a_mobilenet_checkpoint(tmp_path, ofa_w10):
    _, folder = ofa_w10
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["supernet", "import", "--from", "ofa-resnet50",
                                      str(folder / "ofa_mbv3_d234_e346_k357_w1.0"),
                                      "--out", str(out)])
    assert_one_line_error(result, "not an OFA ResNet50", "'first_conv.conv.weight'")
    assert not out.exists()


def test_cli_choices_mirror_the_importer():
    from gtn_deploy.cli import choices
    from gtn_deploy.supernet.ofa_import import MBV3_VARIANTS, SOURCES

    assert choices.OFA_SOURCES == SOURCES and choices.OFA_VARIANTS == tuple(MBV3_VARIANTS)
