"""Deploy an imported OFA supernet without training: ``gtnd plan --supernet``, ``gtnd extract``
(with BN recalibration) and ``gtnd deploy`` end to end on a tiny ImageFolder tree."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cli_helpers import assert_one_line_error
from ofa_helpers import random_ofa_mbv3, save_as_published
from gtn_deploy.cli.main import app
from gtn_deploy.supernet import load_student, load_supernet
from gtn_deploy.supernet.ofa_import import import_supernet

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """An imported OFA w1.0 supernet (random weights) and a tiny ImageFolder tree: 2
    classes, 8 training images each, 256 validation images (the parity gate's minimum)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("ofa_deploy")
    save_as_published(random_ofa_mbv3(1.0, seed=5), root / "ofa_mbv3_d234_e346_k357_w1.0")
    import_supernet("ofa-mbv3", root / "ofa_mbv3_d234_e346_k357_w1.0", root / "supernet")
    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("val", 128)):
        for name in ("cat", "dog"):
            folder = root / "tree" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _plan(root, tmp_path, *extra):
    result = _run("plan", "--device", "local", "--supernet", root / "supernet", "--out",
                  tmp_path / "plan.json", *extra)
    assert result.exit_code == 0, result.output
    return tmp_path / "plan.json"


def test_extract_copies_the_planned_subnet_and_recalibrates_bn(imported, tmp_path):
    root = imported
    plan = _plan(root, tmp_path, "--latency-ms", "4")
    arch_doc = json.loads(plan.read_text())["devices"][0]["candidates"][1]["arch"]
    plain = _run("extract", "--supernet", root / "supernet", "--plan", plan, "--candidate", 1,
                 "--out", tmp_path / "plain")
    assert plain.exit_code == 0, plain.output
    recal = _run("extract", "--supernet", root / "supernet", "--plan", plan, "--candidate", 1,
                 "--out", tmp_path / "recal", "--recalibrate-bn", 12, "--data-dir",
                 root / "tree", "--batch-size", 4)
    assert recal.exit_code == 0, recal.output
    assert "BN recalibrated on 12 images" in recal.output
    supernet, _ = load_supernet(root / "supernet")
    student, doc = load_student(tmp_path / "plain")
    assert doc["arch"] == arch_doc and doc["space"] == "imagenet"
    assert doc["meta"]["extracted_from"]["candidate"] == 1
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():  # no recalibration: the supernet's subnet as it is
        assert torch.equal(student(x), supernet.extract(student.arch).eval()(x))
    recalibrated, rdoc = load_student(tmp_path / "recal")
    assert rdoc["meta"]["bn_recalibration"]["images"] == 12
    stem = (student.stem.bn.running_mean, recalibrated.stem.bn.running_mean)
    assert not torch.allclose(*stem)  # measured on the tree's images, not the stored ones
    assert torch.equal(student.stem.conv.weight, recalibrated.stem.conv.weight)


def test_extract_refuses_a_plan_of_another_space_and_writes_nothing(imported, tmp_path):
    root = imported
    result = _run("plan", "--device", "local", "--task", "cifar10", "--out", tmp_path / "p.json")
    assert result.exit_code == 0, result.output
    refused = _run("extract", "--supernet", root / "supernet", "--plan", tmp_path / "p.json",
                   "--out", tmp_path / "student")
    assert_one_line_error(refused, "space 'cifar10'", "space 'imagenet'")
    assert not (tmp_path / "student").exists()
    no_recal = _run("extract", "--supernet", root / "supernet", "--plan", tmp_path / "p.json",
                    "--out", tmp_path / "student", "--data-dir", root / "tree")
    assert_one_line_error(no_recal, "--recalibrate-bn")


def test_deploy_refuses_a_missing_tree_before_any_work(imported, tmp_path):
    result = _run("deploy", "--supernet", imported / "supernet", "-d", "local", "--out",
                  tmp_path / "run", "--recalibrate-bn", 0)
    assert_one_line_error(result, "--data-dir")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_deploy_runs_end_to_end_and_its_bundle_verifies(imported, tmp_path):
    """plan -> extract -> recalibrate -> export (parity gate) -> bench for ``local``; a tight
    budget picks a 128-pixel student so that the 256-image parity gate stays quick."""
    root, run = imported, tmp_path / "run"
    result = _run("deploy", "--supernet", root / "supernet", "-d", "local", "--out", run,
                  "--data-dir", root / "tree", "--recalibrate-bn", 8, "--no-int8",
                  "--latency-ms", 4, "--bench-iters", 40)
    assert result.exit_code == 0, result.output
    report = json.loads((run / "report.json").read_text())
    (row,) = report["devices"]
    assert row["device"] == "local" and row["bench"]["p50_ms"] > 0
    assert 128 <= row["resolution"] <= 224 and row["parity_max_abs_diff"] < 1e-4
    assert "| local |" in (run / "report.md").read_text()
    _, doc = load_student(run / "local" / "student")
    assert doc["meta"]["bn_recalibration"]["images"] == 8
    manifest = json.loads((run / "local" / "bundle" / "manifest.json").read_text())
    assert manifest["metrics"]["parity"]["onnxruntime_fp32"]["passed"] is True
    verify = _run("bundle", "verify", run / "local" / "bundle")
    assert verify.exit_code == 0, verify.output


def test_extract_recalibrates_a_supernet_of_another_task(tmp_path):
    """Not only imported supernets: a fashion-mnist one, BN measured on its training split."""
    from pathlib import Path

    from gtn_deploy.spaces.mbconv import get_space
    from gtn_deploy.supernet import create_supernet, save_supernet

    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("apt-get install dataset-fashion-mnist")
    torch.manual_seed(0)
    save_supernet(tmp_path / "sn", create_supernet(get_space("fashion-mnist")).eval())
    plan = _run("plan", "-d", "local", "--supernet", tmp_path / "sn", "--scale-budget",
                "--out", tmp_path / "plan.json")
    assert plan.exit_code == 0, plan.output
    result = _run("extract", "--supernet", tmp_path / "sn", "--plan", tmp_path / "plan.json",
                  "--out", tmp_path / "student", "--recalibrate-bn", 32)
    assert result.exit_code == 0, result.output
    _, doc = load_student(tmp_path / "student")
    assert doc["space"] == "fashion-mnist" and doc["meta"]["bn_recalibration"]["images"] == 32


def _teacher_tree(root):
    """2 classes of 8 training and 2 test images: a GTN step at 224 px stays seconds."""
    from PIL import Image

    rng = np.random.default_rng(1)
    for split, count in (("train", 8), ("val", 2)):
        for name in ("cat", "dog"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(
                    folder / f"{i}.png")
    return root


def _teacher(out, tree, *extra):
    return _run("teacher", "train", "--out", out, "--task", "imagenet", "--teacher",
                "resnet18", "--data-dir", tree, "--batch-size", 8, "--limit-val", 2,
                "--no-progress", *extra)


def test_teacher_branches_start_from_the_imported_supernet(imported, tmp_path):
    """``--supernet-init``: the GTN run's supernet is the imported one (weights, kernel
    transform) before its first step; the run trains, records where it started and saves a
    supernet that the deploy path reads."""
    from gtn_deploy.train.config import TrainConfig
    from gtn_deploy.train.trainer import TeacherTrainer

    root, tree = imported, _teacher_tree(tmp_path / "tree")
    published, doc = load_supernet(root / "supernet")
    cfg = TrainConfig(task="imagenet", teacher="resnet18", data_dir=str(tree), batch_size=8,
                      supernet_init=str(root / "supernet"), progress=False)
    assert cfg.to_dict()["supernet_init"] == str(root / "supernet")
    assert "supernet_init" not in TrainConfig().to_dict()  # earlier runs keep their keys
    trainer = TeacherTrainer(cfg, tmp_path / "built")
    try:
        assert trainer.supernet.kernel_transform
        start = trainer.supernet.state_dict()
        for name, tensor in published.state_dict().items():
            assert torch.equal(start[name].cpu(), tensor), name
    finally:
        trainer.close()

    # 3 steps: the first has no LR (warm-up) and no branch term (its ramp starts at 0)
    result = _teacher(tmp_path / "run", tree, "--supernet-init", root / "supernet",
                      "--epochs", 3)
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["config"]["supernet_init"] == str(root / "supernet")
    assert config["init_supernet"]["sha256"] == doc["weights"]["sha256"]
    assert config["init_supernet"]["source"]["format"] == "ofa-mbv3"
    trained, tdoc = load_supernet(tmp_path / "run" / "supernet")
    assert tdoc["kernel_transform"] is True and tdoc["space"] == "imagenet"
    stem = (trained.stem.conv.weight, published.stem.conv.weight)
    assert not torch.equal(*stem) and torch.allclose(*stem, atol=0.05)  # trained from it


def test_teacher_refuses_a_supernet_of_another_space_in_one_line(imported, tmp_path):
    result = _run("teacher", "train", "--out", tmp_path / "run", "--task", "cifar10",
                  "--supernet-init", imported / "supernet")
    assert_one_line_error(result, "space 'imagenet'", "space 'cifar10'", "--task cifar10")
    assert not (tmp_path / "run").exists()
    resnet = _run("teacher", "train", "--out", tmp_path / "run", "--task", "imagenet",
                  "--space", "resnet", "--supernet-init", imported / "supernet")
    assert_one_line_error(resnet, "space 'imagenet'", "--space resnet")
    vanilla = _run("teacher", "train", "--out", tmp_path / "run", "--method", "vanilla",
                   "--task", "imagenet", "--supernet-init", imported / "supernet")
    assert_one_line_error(vanilla, "--supernet-init", "vanilla")
    missing = _run("teacher", "train", "--out", tmp_path / "run", "--task", "imagenet",
                   "--supernet-init", tmp_path / "nowhere")
    assert_one_line_error(missing, "not found")
    assert not (tmp_path / "run").exists()
