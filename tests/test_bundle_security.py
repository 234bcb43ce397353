"""Hostile bundles: tar members outside the target, links, devices; bad manifests (no torch)."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from gtn_deploy.errors import BundleError
from gtn_deploy.manifest import (BundleManifest, load_manifest, manifest_digest, open_bundle,
                                 safe_extract, validate_manifest, verify_files)


def _manifest(files: dict[str, bytes]) -> dict:
    doc = {
        "schema_version": 1, "kind": "gtn_deploy.bundle", "created_at": "2026-01-01T00:00:00+00:00",
        "name": "b", "arch": {}, "space": "fashion-mnist",
        "input": {"name": "input", "shape": [1, 1, 28, 28], "dynamic_batch": False,
                  "dtype": "float32", "layout": "NCHW", "mean": [0.286], "std": [0.353],
                  "scale": 255.0, "class_labels": [str(i) for i in range(10)]},
        "output": {"name": "logits", "shape": [1, 10]},
        "models": {"fp32": "model.onnx", "int8": None}, "recommended_precision": "fp32",
        "recommended_model": "model.onnx",
        "files": {n: {"sha256": hashlib.sha256(b).hexdigest(), "bytes": len(b)}
                  for n, b in files.items()},
        "metrics": {}, "latency_prediction": None,
        "device": {"id": "x", "profile_sha256": "0" * 64, "runtime": {"name": "onnxruntime", "version": "1"}},
        "versions": {}, "provenance": {},
    }
    doc["manifest_sha256"] = manifest_digest(doc)
    return doc


FILES = {"model.onnx": b"not really onnx", "README.md": b"# hi\n"}


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _good_members(root: str = "b") -> list:
    manifest = json.dumps(_manifest(FILES)).encode()
    members = [(tarfile.TarInfo(root), None)]
    members[0][0].type = tarfile.DIRTYPE
    members += [_file(f"{root}/manifest.json", manifest)]
    members += [_file(f"{root}/{n}", b) for n, b in FILES.items()]
    return members


def test_good_archive_extracts_and_verifies(tmp_path):
    tar = _tar(tmp_path / "b.tar.gz", _good_members())
    assert load_manifest(tar).name == "b"
    folder = safe_extract(tar, tmp_path / "out")
    assert folder == tmp_path / "out" / "b" and verify_files(folder) == []
    with open_bundle(tar) as opened:
        assert (opened / "manifest.json").is_file()


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def _device(name: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor = kind, 1, 3
    return info, None


@pytest.mark.parametrize("bad, why", [
    (_file("b/../../evil.txt", b"x"), "outside"),
    (_file("/tmp/evil-absolute.txt", b"x"), "outside"),
    (_file("../evil.txt", b"x"), "outside"),
    (_link("b/passwd", "/etc/passwd", tarfile.SYMTYPE), "link"),
    (_link("b/hard", "b/model.onnx", tarfile.LNKTYPE), "link"),
    (_link("b/up", "../../..", tarfile.SYMTYPE), "link"),
    (_device("b/null", tarfile.CHRTYPE), "special"),
    (_device("b/disk", tarfile.BLKTYPE), "special"),
    (_device("b/fifo", tarfile.FIFOTYPE), "special"),
])
def test_hostile_members_are_refused_and_nothing_is_left(tmp_path, bad, why):
    tar = _tar(tmp_path / "evil.tar.gz", _good_members() + [bad])
    dest = tmp_path / "out"
    with pytest.raises(BundleError, match=why):
        safe_extract(tar, dest)
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil-absolute.txt").exists()


def test_duplicate_members_and_two_roots_are_refused(tmp_path):
    twice = _tar(tmp_path / "twice.tar.gz", _good_members() + [_file("b/README.md", b"again")])
    with pytest.raises(BundleError, match="twice"):
        safe_extract(twice, tmp_path / "o1")
    roots = _tar(tmp_path / "roots.tar.gz", _good_members() + [_file("c/x.txt", b"x")])
    with pytest.raises(BundleError, match="one top folder"):
        safe_extract(roots, tmp_path / "o2")
    assert list((tmp_path / "o2").iterdir()) == []


def test_not_a_tarball(tmp_path):
    (tmp_path / "x.tar.gz").write_bytes(b"plain text")
    with pytest.raises(BundleError, match="not a readable"):
        load_manifest(tmp_path / "x.tar.gz")


@pytest.mark.parametrize("mutate, message", [
    (lambda m: m.pop("files"), "missing field 'files'"),
    (lambda m: m.update(schema_version=2), "schema_version 2"),
    (lambda m: m.update(kind="other"), "kind"),
    (lambda m: m.update(recommended_precision="bf16"), "recommended_precision"),
    (lambda m: m["files"].update({"../../etc/passwd": {"sha256": "0" * 64, "bytes": 1}}), "not allowed"),
    (lambda m: m["files"].update({"/abs": {"sha256": "0" * 64, "bytes": 1}}), "not allowed"),
    (lambda m: m["files"]["README.md"].update(sha256="xyz"), "sha256"),
    (lambda m: m["models"].update(int8="model.int8.onnx"), "models.int8"),
    (lambda m: m["input"].pop("mean"), "mean"),
    (lambda m: m["device"].update(id=3), "device.id must be a string"),
    (lambda m: m.update(device=[]), "'device' has the wrong type"),
])
def test_schema_errors_name_the_field(mutate, message):
    doc = copy.deepcopy(_manifest(FILES))
    mutate(doc)
    with pytest.raises(BundleError, match=message):
        validate_manifest(doc)
    with pytest.raises(BundleError, match=message):  # the typed manifest parses through it
        BundleManifest.parse(doc)


def test_typed_manifest_reads_its_fields():
    doc = _manifest(FILES)
    m = BundleManifest.parse(copy.deepcopy(doc))
    assert (m.name, m.space, m.device_id) == (doc["name"], doc["space"], doc["device"]["id"])
    assert m.models == doc["models"] and m.files == doc["files"] and m.doc == doc
    assert m.family == doc.get("family", "mbconv") and m.identity()["arch"] == doc["arch"]


def test_edited_manifest_and_symlinked_file_fail_verification(tmp_path):
    folder = tmp_path / "b"
    folder.mkdir()
    for name, data in FILES.items():
        (folder / name).write_bytes(data)
    doc = _manifest(FILES)
    doc["metrics"] = {"fp32_top1": 99.9}  # edited after the digest was taken
    (folder / "manifest.json").write_text(json.dumps(doc))
    assert any("manifest_sha256" in p for p in verify_files(folder))
    (folder / "manifest.json").write_text(json.dumps(_manifest(FILES)))
    (folder / "README.md").unlink()
    (folder / "README.md").symlink_to(folder / "model.onnx")
    assert any(p.startswith("README.md") for p in verify_files(folder))


def _bundle_dir(tmp_path: Path, manifest: dict) -> Path:
    root = tmp_path / "b"
    root.mkdir()
    for name, data in FILES.items():
        (root / name).write_bytes(data)
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_a_manifest_without_its_own_hash_fails_verify(tmp_path):
    doc = _manifest(FILES)
    del doc["manifest_sha256"]
    doc["metrics"] = {"fp32_top1": 99.9}  # an edit nobody could detect without the hash
    problems = verify_files(_bundle_dir(tmp_path, doc))
    assert any("manifest_sha256 is missing" in p for p in problems)


def test_an_unlisted_symlinked_folder_fails_verify(tmp_path):
    root = _bundle_dir(tmp_path, _manifest(FILES))
    (tmp_path / "elsewhere").mkdir()
    (root / "extra").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    assert any(p.startswith("extra: a symbolic link") for p in verify_files(root))


class _Zeros(io.RawIOBase):
    def __init__(self, size: int):
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        n = min(len(buf), self.left)
        buf[:n] = bytes(n)
        self.left -= n
        return n


def test_an_archive_bomb_is_refused_before_anything_is_written(tmp_path):
    size = 128 * 2**20  # compresses ~1000x
    path = tmp_path / "bomb.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("b/zeros.bin")
        info.size = size
        tar.addfile(info, io.BufferedReader(_Zeros(size)))
    dest = tmp_path / "out"
    with pytest.raises(BundleError, match="archive bomb"):
        safe_extract(path, dest)
    assert not any(p.is_file() for p in dest.rglob("*"))
