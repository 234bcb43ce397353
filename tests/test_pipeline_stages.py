import json
import multiprocessing
import os
import signal
import time

import pytest

from gtn_deploy.errors import UsageError
from gtn_deploy.pipeline.config import load_config
from gtn_deploy.pipeline.lock import RunLock, RunLocked
from gtn_deploy.pipeline.stages import StageStore, input_hash


def test_input_hash_is_stable_and_sensitive():
    assert input_hash({"a": 1, "b": [1, 2]}) == input_hash({"b": [1, 2], "a": 1})
    assert input_hash({"a": 1}) != input_hash({"a": 2})


def test_stage_runs_once_then_is_cached(tmp_path):
    store, calls = StageStore(tmp_path), []

    def build(folder):
        calls.append(folder)
        (folder / "out.txt").write_text("hello")
        return {"n": 1}

    first = store.run("s", {"x": 1}, build)
    again = store.run("s", {"x": 1}, build)
    other = store.run("s", {"x": 2}, build)
    assert first.ran and not again.ran and other.ran and len(calls) == 2
    assert (first.path / "out.txt").read_text() == "hello"
    assert first.marker()["figures"] == {"n": 1} and first.path != other.path


def test_failed_stage_leaves_nothing_and_reruns(tmp_path):
    store = StageStore(tmp_path)

    def broken(folder):
        (folder / "half.txt").write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        store.run("s", {"x": 1}, broken)
    assert not store.is_done("s", {"x": 1})
    assert [p.name for p in store.root.iterdir()] == []
    assert store.run("s", {"x": 1}, lambda f: None).ran


def _killed_stage(root):
    def slow(folder):
        (folder / "part").write_text("x")
        time.sleep(60)

    StageStore(root).run("s", {"x": 1}, slow)


def test_killed_stage_is_swept_and_repaired(tmp_path):
    proc = multiprocessing.get_context("fork").Process(target=_killed_stage, args=(tmp_path,))
    proc.start()
    deadline = time.time() + 20
    while time.time() < deadline and not any((tmp_path / "stages").glob(".*tmp/part")):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    store = StageStore(tmp_path)
    assert not store.is_done("s", {"x": 1})
    assert store.sweep()  # the temporary folder of the killed run
    assert store.run("s", {"x": 1}, lambda f: None).ran


def test_resumable_stage_keeps_its_work_folder(tmp_path):
    store = StageStore(tmp_path)

    def interrupted(folder):
        (folder / "checkpoint").write_text("epoch 1")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.run("t", {"x": 1}, interrupted, resumable=True)
    store.sweep()
    seen = []
    result = store.run("t", {"x": 1}, lambda f: seen.append((f / "checkpoint").read_text()),
                       resumable=True)
    assert seen == ["epoch 1"] and (result.path / "checkpoint").exists()


def test_second_pipeline_on_the_same_folder_refuses(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunLocked, match=r"another pipeline is writing to .*pid \d+"):
            with RunLock(tmp_path):
                pass
    with RunLock(tmp_path):  # released: the next run may start
        pass


def test_config_precedence_and_validation(tmp_path):
    run_file = tmp_path / "run.yaml"
    run_file.write_text("devices: [rpi5, {device: local, latency_ms: 2}]\nquick: true\n"
                        "teacher_epochs: 5\n")
    cfg = load_config(run_file, {"teacher_epochs": 2, "task": None})
    assert [d.device for d in cfg.devices] == ["rpi5", "local"]
    assert cfg.devices[1].latency_ms == 2 and cfg.teacher_epochs == 2  # the flag wins
    assert cfg.distill_epochs is not None  # filled from the quick defaults
    run_file.write_text("devices: [rpi5]\nteacher_epoch: 3\n")
    with pytest.raises(UsageError, match="run.yaml: teacher_epoch: Extra inputs"):
        load_config(run_file, {})
    with pytest.raises(UsageError, match="give the devices"):
        load_config(None, {})
    assert json.dumps(cfg.model_dump())


def test_the_family_joins_the_keys_only_when_not_the_first():
    """Runs from before families keep their cached stages; a resnet run keys apart."""
    from gtn_deploy.pipeline.run import DeviceBranch, _kd_config, _teacher_inputs, plan_inputs
    from gtn_deploy.profiles import load_profile

    first = load_config(None, {"devices": "raspberry-pi-5", "quick": True})
    resnet = load_config(None, {"devices": "raspberry-pi-5", "quick": True, "space": "resnet"})
    b = DeviceBranch(first.devices[0], load_profile("raspberry-pi-5"))
    assert "space" not in plan_inputs(first, b) and plan_inputs(resnet, b)["space"] == "resnet"
    assert "space" not in _teacher_inputs(first, []) and \
        _teacher_inputs(resnet, [])["space"] == "resnet"
    assert _kd_config(resnet, True).space == "resnet"
    assert resnet.search_space().name == "resnet-fashion-mnist"
    with pytest.raises(UsageError, match="space: .*unknown family 'vgg'; valid: mbconv, resnet"):
        load_config(None, {"devices": "raspberry-pi-5", "space": "vgg"})
