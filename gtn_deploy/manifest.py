"""Read, validate and verify model bundles (json, hashlib and tarfile only: no torch, no onnx).

A bundle is a folder with ``manifest.json`` and the files it lists with their sha256, or a
``.tar.gz`` of that folder. Everything that reads a bundle (``gtnd bundle``, ``bench``, the
pipeline's report) goes through here: ``load_manifest`` is the one loader, it validates the
document (kind, schema version, every field's type) and returns a ``BundleManifest``. A
tarball is never trusted: ``safe_extract`` writes regular files and folders only, and only
inside the target folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from gtn_deploy.constants import DEFAULT_FAMILY, PRECISIONS
from gtn_deploy.errors import BundleError
from gtn_deploy.io_utils import sha256_file

BUNDLE_SCHEMA_VERSION = 1
BUNDLE_KIND = "gtn_deploy.bundle"
MANIFEST = "manifest.json"
BUILD_DIR = "build"  # where build_engine.sh writes engines; not part of the hashed content
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MAX_MANIFEST_BYTES = 4 << 20

_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "schema_version": int, "kind": str, "created_at": str, "name": str, "arch": dict,
    "space": str, "input": dict, "output": dict, "models": dict, "recommended_precision": str,
    "recommended_model": str, "files": dict, "metrics": dict,
    "latency_prediction": (dict, type(None)), "device": dict, "versions": dict,
    "provenance": dict,
}
_INPUT_KEYS = ("name", "shape", "dynamic_batch", "dtype", "layout", "mean", "std", "scale",
               "class_labels")
_PREPROCESSING_KEYS = ("input_pixels", "value_range", "color", "channel_order", "resize",
                       "crop", "scale", "mean", "std", "layout", "dtype")
_CHANNEL_ORDER = {"grayscale": "L", "rgb": "RGB"}


@dataclass(frozen=True)
class BundleManifest:
    """A validated manifest: typed fields for what gtn_deploy reads, and ``doc``, the JSON
    document as written (``--json`` prints it; the bundle's own scripts read the file)."""

    name: str
    space: str
    family: str
    arch: dict[str, Any]
    device_id: str | None
    budget: dict[str, Any] | None  # the latency budget it was planned under (newer bundles)
    input: dict[str, Any]
    output: dict[str, Any]
    models: dict[str, str | None]  # precision -> ONNX file, None where not made
    recommended_precision: str
    recommended_model: str
    files: dict[str, dict[str, Any]]
    metrics: dict[str, Any]
    latency_prediction: dict[str, Any] | None
    doc: dict[str, Any]

    @classmethod
    def parse(cls, data: Any, where: str = MANIFEST) -> "BundleManifest":
        doc = validate_manifest(data, where)
        device = doc["device"]
        budget = device.get("budget")
        return cls(doc["name"], doc["space"], doc.get("family", DEFAULT_FAMILY), doc["arch"],
                   device.get("id"), budget if isinstance(budget, dict) else None,
                   doc["input"], doc["output"], doc["models"], doc["recommended_precision"],
                   doc["recommended_model"], doc["files"], doc["metrics"],
                   doc["latency_prediction"], doc)

    def identity(self) -> dict[str, Any]:
        """What a bench result records of the bundle it measured."""
        return {"name": self.name, "space": self.space, "arch": self.arch,
                "device": self.doc.get("device")}


def is_tarball(path: str | Path) -> bool:
    name = str(path)
    return name.endswith(".tar.gz") or name.endswith(".tgz")


def validate_manifest(data: Any, where: str = MANIFEST) -> dict[str, Any]:
    """Return ``data`` if it follows the bundle schema, else raise BundleError naming the field."""
    if not isinstance(data, dict):
        raise BundleError(f"{where}: expected a JSON object")
    for key, typ in _REQUIRED.items():
        if key not in data:
            raise BundleError(f"{where}: missing field '{key}'")
        if not isinstance(data[key], typ) or (typ is int and isinstance(data[key], bool)):
            raise BundleError(f"{where}: field '{key}' has the wrong type "
                              f"({type(data[key]).__name__})")
    if data["schema_version"] > BUNDLE_SCHEMA_VERSION:
        raise BundleError(f"{where}: schema_version {data['schema_version']} is newer than "
                          f"this gtn_deploy reads ({BUNDLE_SCHEMA_VERSION}): upgrade gtn_deploy")
    if data["schema_version"] != BUNDLE_SCHEMA_VERSION:
        raise BundleError(f"{where}: schema_version {data['schema_version']} is not supported "
                          f"(this gtn_deploy reads {BUNDLE_SCHEMA_VERSION}): re-export the "
                          "bundle")
    if data["kind"] != BUNDLE_KIND:
        raise BundleError(f"{where}: kind '{data['kind']}' is not '{BUNDLE_KIND}'")
    missing = [k for k in _INPUT_KEYS if k not in data["input"]]
    if missing:
        raise BundleError(f"{where}: input is missing {missing}")
    _check_preprocessing(data, where)
    if data["recommended_precision"] not in PRECISIONS:
        raise BundleError(f"{where}: recommended_precision '{data['recommended_precision']}' "
                          f"not in {list(PRECISIONS)}")
    for name, entry in data["files"].items():
        _check_member_name(name, where)
        if (not isinstance(entry, dict) or not _SHA256.match(str(entry.get("sha256", "")))
                or not isinstance(entry.get("bytes"), int)):
            raise BundleError(f"{where}: files['{name}'] needs a sha256 (64 hex) and bytes (int)")
    device_id = data["device"].get("id")
    if device_id is not None and not isinstance(device_id, str):
        raise BundleError(f"{where}: device.id must be a string")
    if not any(data["models"].get(k) for k in ("fp32", "int8")):
        raise BundleError(f"{where}: names no model (models.fp32 and models.int8 are both "
                          "empty); a bundle holds at least one")
    for field, file in [("models.fp32", data["models"].get("fp32")),
                        ("models.int8", data["models"].get("int8")),
                        ("recommended_model", data["recommended_model"])]:
        if file is not None and file not in data["files"]:
            raise BundleError(f"{where}: {field} names '{file}', which is not in files")
    return data


def _check_preprocessing(data: dict[str, Any], where: str) -> None:
    """The spec the bundle's scripts follow. Optional: bundles made before it have none."""
    prep = data.get("preprocessing")
    if prep is None:
        return

    def bad(problem: str) -> BundleError:
        return BundleError(f"{where}: preprocessing: {problem}")

    if not isinstance(prep, dict):
        raise bad("expected a JSON object")
    missing = [k for k in _PREPROCESSING_KEYS if k not in prep]
    if missing:
        raise bad(f"missing {missing}")
    order = _CHANNEL_ORDER.get(prep["color"])
    if order is None or prep["channel_order"] != order:
        raise bad("color/channel_order must be grayscale/L or rgb/RGB")
    if prep["color"] == "grayscale" and not _numbers(prep.get("grayscale_weights"), 3):
        raise bad("grayscale_weights needs 3 numbers (R, G, B)")
    for key in ("mean", "std", "value_range"):
        if not _numbers(prep[key], 2 if key == "value_range" else len(order)):
            raise bad(f"{key} needs {2 if key == 'value_range' else len(order)} numbers")
    if min(prep["std"]) <= 0 or not _numbers([prep["scale"]], 1) or prep["scale"] <= 0:
        raise bad("std and scale must be > 0")
    if prep["layout"] != "NCHW" or prep["dtype"] not in ("float32", "float16"):
        raise bad("layout must be NCHW and dtype float32 or float16")
    resize, crop = prep["resize"], prep["crop"]
    if (not isinstance(resize, dict) or resize.get("interpolation") != "bilinear"
            or not _positive_ints([resize.get("shorter_side")])):
        raise bad("resize needs a positive shorter_side and interpolation 'bilinear'")
    if (not isinstance(crop, dict) or crop.get("position") != "center"
            or not _positive_ints([crop.get("height"), crop.get("width")])):
        raise bad("crop needs positive height and width and position 'center'")
    shape = data["input"].get("shape")
    if isinstance(shape, list) and shape[1:] != [len(order), crop["height"], crop["width"]]:
        raise bad(f"{len(order)} channels of {crop['height']}x{crop['width']} do not match "
                  f"input shape {shape}")


def _numbers(value: Any, n: int) -> bool:
    return (isinstance(value, list) and len(value) == n
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))


def _positive_ints(values: list[Any]) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)


def _check_member_name(name: str, where: str) -> None:
    p = PurePosixPath(name)
    if (not name or p.is_absolute() or ".." in p.parts or "\\" in name or name == MANIFEST
            or p.parts[0] == BUILD_DIR):
        raise BundleError(f"{where}: file name '{name}' is not allowed in a bundle")


def _parse(raw: bytes, where: str) -> BundleManifest:
    if len(raw) > _MAX_MANIFEST_BYTES:
        raise BundleError(f"{where}: larger than {_MAX_MANIFEST_BYTES} bytes")
    try:
        return BundleManifest.parse(json.loads(raw.decode("utf-8")), where)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{where}: not valid JSON ({exc})") from None
    except RecursionError:  # json recurses per level: 100,000 nested brackets overflow it
        raise BundleError(f"{where}: nested too deeply to be a manifest") from None


def load_manifest(path: str | Path) -> BundleManifest:
    """The validated manifest of a bundle folder or ``.tar.gz`` (read without extracting)."""
    path = Path(path)
    if is_tarball(path):
        with _open_tar(path) as tar:
            member = _find_manifest(tar, path)
            fh = tar.extractfile(member)
            return _parse(fh.read(_MAX_MANIFEST_BYTES + 1), f"{path}:{member.name}")
    file = path / MANIFEST
    if not file.is_file():
        raise BundleError(f"{path}: not a bundle (no {MANIFEST}); pass a bundle folder or .tar.gz")
    return _parse(file.read_bytes()[:_MAX_MANIFEST_BYTES + 1], str(file))


@contextlib.contextmanager
def _open_tar(path: Path) -> Iterator[tarfile.TarFile]:
    if not path.is_file():
        raise BundleError(f"{path}: no such bundle archive")
    try:
        with tarfile.open(path, "r:gz") as tar:
            _check_archive_size(tar, path)
            _check_nothing_after_the_end(tar, path)
            yield tar
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise BundleError(f"{path}: not a readable .tar.gz ({exc})") from None


def _find_manifest(tar: tarfile.TarFile, path: Path) -> tarfile.TarInfo:
    for member in tar.getmembers():
        parts = PurePosixPath(member.name).parts
        if member.isfile() and parts and parts[-1] == MANIFEST and len(parts) <= 2:
            return member
    raise BundleError(f"{path}: archive holds no {MANIFEST} at its top level")


def manifest_digest(data: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON without its own ``manifest_sha256`` field.

    Stored in the manifest, it makes an edited manifest (a changed metric, a swapped hash)
    fail verification like any other changed file.
    """
    body = {k: v for k, v in data.items() if k != "manifest_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def verify_files(bundle_dir: str | Path) -> list[str]:
    """Every problem found: a missing, resized or changed file (named), or an unlisted one."""
    root = Path(bundle_dir)
    try:
        manifest = load_manifest(root)
    except BundleError as exc:
        return [str(exc)]
    problems = []
    stored = manifest.doc.get("manifest_sha256")
    if stored is None:  # without it an edited manifest could not be told from a true one
        problems.append(f"{MANIFEST}: manifest_sha256 is missing, so the manifest's own "
                        "integrity cannot be checked")
    elif stored != manifest_digest(manifest.doc):
        problems.append(f"{MANIFEST}: content differs from its manifest_sha256 (file changed)")
    for name, entry in sorted(manifest.files.items()):
        file = root / name
        if file.is_symlink() or not file.is_file():
            problems.append(f"{name}: missing or not a regular file")
        elif file.stat().st_size != entry["bytes"]:
            problems.append(f"{name}: size {file.stat().st_size} bytes, manifest says {entry['bytes']}")
        elif sha256_file(file) != entry["sha256"]:
            problems.append(f"{name}: sha256 differs from the manifest (file changed)")
    for file in sorted(root.rglob("*")):
        rel = file.relative_to(root).as_posix()
        if rel == MANIFEST or rel.split("/")[0] == BUILD_DIR:
            continue
        if file.is_symlink() and rel not in manifest.files:
            problems.append(f"{rel}: a symbolic link, not listed in the manifest")
        elif not file.is_dir() and rel not in manifest.files:
            problems.append(f"{rel}: not listed in the manifest")
    return problems


# Bundles are a few MB of models and text; an archive far past these is refused before
# anything is written (a small .tar.gz can hold gigabytes of zeros)
MAX_ARCHIVE_BYTES = 2 * 2**30
MAX_ARCHIVE_MEMBERS = 1000
MAX_COMPRESSION_RATIO = 100


MAX_TRAILING_ZEROS = 1 << 20  # tarfile pads to 10 KiB records; GNU tar to 10 KiB too


def _check_archive_size(tar: tarfile.TarFile, tar_path: Path) -> None:
    total = count = 0
    for member in tar:  # headers read one at a time: a million empty ones stop at the limit
        count += 1
        if count > MAX_ARCHIVE_MEMBERS:
            raise BundleError(f"{tar_path}: more than a bundle's {MAX_ARCHIVE_MEMBERS} "
                              "members; refused")
        total += member.size if member.isfile() else 0
    packed = max(1, tar_path.stat().st_size)
    if total > MAX_ARCHIVE_BYTES:
        raise BundleError(f"{tar_path}: unpacks to {total / 2**20:.0f} MiB, more than "
                          f"{MAX_ARCHIVE_BYTES / 2**20:.0f} MiB; refused")
    if total / packed > MAX_COMPRESSION_RATIO and total > 64 * 2**20:
        raise BundleError(f"{tar_path}: unpacks {total / packed:.0f}x its size (a bundle's "
                          f"models barely compress); refused as a likely archive bomb")


def _check_nothing_after_the_end(tar: tarfile.TarFile, tar_path: Path) -> None:
    """Refuse data after the archive's end: a second gzip member or tar appended to a bundle
    is invisible here but extracted by ``tar -i`` (a hidden member), so only zero padding
    may follow the last member, in one gzip stream."""
    stream = tar.fileobj
    stream.seek(tar.offset)  # the end of the last member, where the zero blocks start
    seen = 0
    while block := stream.read(1 << 16):
        seen += len(block)
        if block.count(0) != len(block) or seen > MAX_TRAILING_ZEROS:
            raise BundleError(f"{tar_path}: data after the end of the archive (another "
                              "archive appended?); refused")
    _check_single_gzip_member(tar_path)


def _check_single_gzip_member(tar_path: Path) -> None:
    """One gzip member and nothing after it (a second member of zeros is still a second)."""
    inflate = zlib.decompressobj(wbits=31)
    with open(tar_path, "rb") as fh:
        while not inflate.eof:
            chunk = inflate.unconsumed_tail or fh.read(1 << 16)
            if not chunk:
                break
            inflate.decompress(chunk, 1 << 20)  # output bounded, then dropped
        trailing = inflate.unused_data + fh.read(1)
    if trailing:
        raise BundleError(f"{tar_path}: data after the end of the gzip stream (another "
                          "archive appended?); refused")


def safe_extract(tar_path: str | Path, dest: str | Path) -> Path:
    """Extract a bundle archive into ``dest``; return the bundle folder.

    Refuses (BundleError, nothing left behind) absolute names, ``..``, links, devices, FIFOs
    and anything else that is not a regular file or folder. Modes are not taken from the
    archive beyond the executable bit.
    """
    tar_path, dest = Path(tar_path), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract.", dir=dest))
    try:
        with _open_tar(tar_path) as tar:  # sizes, counts and trailing data checked
            roots = _extract_members(tar, tar_path, staging)
        if len(roots) != 1 or not (staging / next(iter(roots))).is_dir():
            raise BundleError(f"{tar_path}: a bundle archive holds exactly one top folder "
                              f"(found {sorted(roots)})")
        root = next(iter(roots))
        final = dest / root
        if final.exists():
            raise BundleError(f"{final} already exists; extract somewhere else")
        (staging / root).replace(final)
        return final
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _extract_members(tar: tarfile.TarFile, tar_path: Path, staging: Path) -> set[str]:
    roots: set[str] = set()
    base = staging.resolve()
    for member in tar.getmembers():
        p = PurePosixPath(member.name)
        if p.is_absolute() or ".." in p.parts or not p.parts or "\\" in member.name:
            raise BundleError(f"{tar_path}: member '{member.name}' points outside the target folder")
        if not (member.isfile() or member.isdir()):
            kind = "link" if member.issym() or member.islnk() else "special file"
            raise BundleError(f"{tar_path}: member '{member.name}' is a {kind}; refused")
        target = staging.joinpath(*p.parts)
        if base not in target.resolve().parents and target.resolve() != base:
            raise BundleError(f"{tar_path}: member '{member.name}' points outside the target folder")
        roots.add(p.parts[0])
        if member.isdir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with tar.extractfile(member) as src, open(target, "xb") as out:
                shutil.copyfileobj(src, out)
        except (FileExistsError, IsADirectoryError):
            raise BundleError(f"{tar_path}: member '{member.name}' appears twice; refused") from None
        target.chmod(0o755 if member.mode & 0o100 else 0o644)
    return roots


@contextlib.contextmanager
def open_bundle(path: str | Path) -> Iterator[Path]:
    """Yield a bundle folder: ``path`` itself, or a temporary safe extraction of a .tar.gz."""
    path = Path(path)
    if not is_tarball(path):
        if not path.is_dir():
            raise BundleError(f"{path}: no such bundle folder or .tar.gz")
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="gtnd-bundle-") as tmp:
        yield safe_extract(path, tmp)
