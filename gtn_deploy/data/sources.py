"""Readers for the dataset formats we support; each returns uint8 NCHW arrays and int64 labels.

Nothing here downloads: a missing dataset raises a one-line ``DataError`` that says where we
looked and how to get it. Pickled CIFAR batches go through a restricted unpickler that only
rebuilds numpy arrays and builtins, so a hostile pickle cannot run code.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gtn_deploy.errors import DataError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
_FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


@dataclass(frozen=True)
class RawSplit:
    """A whole split in memory: images uint8 (N, C, H, W), labels int64 (N,)."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...] = ()


# -- Fashion-MNIST (IDX, gzip) ------------------------------------------------------------

def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed) into a numpy array of its dtype."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path}: header says {dims} but holds {body.size} bytes")
    return body.reshape(dims)


def load_fashion_mnist(data_dir: Path | None) -> dict[str, RawSplit]:
    root = Path(data_dir) if data_dir else FASHION_MNIST_DIR
    out = {}
    for split, (img_name, lbl_name) in _FMNIST_FILES.items():
        img_path, lbl_path = _find(root, img_name), _find(root, lbl_name)
        if img_path is None or lbl_path is None:
            raise DataError(
                f"Fashion-MNIST not found: looked for {root / img_name} (or without .gz); "
                "install it with 'apt-get install dataset-fashion-mnist' or pass --data-dir")
        images, labels = read_idx(img_path), read_idx(lbl_path)
        if images.ndim != 3 or labels.shape != (images.shape[0],):
            raise DataError(f"{img_path}: expected (N, 28, 28) images matching {lbl_path}")
        out[split] = RawSplit(images[:, None].copy(), labels.astype(np.int64))
    return out


def _find(root: Path, name: str) -> Path | None:
    for candidate in (root / name, root / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


# -- CIFAR-10/100 (python pickle batches) ---------------------------------------------------

_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("builtins", "list"), ("builtins", "dict"), ("builtins", "tuple"), ("builtins", "bytes"),
    ("_codecs", "encode"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Rebuilds only numpy arrays and plain containers; anything else is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")


def safe_unpickle(path: Path) -> object:
    """Unpickle a CIFAR batch file with only numpy/builtins allowed."""
    try:
        with open(path, "rb") as fh:
            return _RestrictedUnpickler(io.BytesIO(fh.read()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"refusing or unable to read pickle {path}: {exc}") from None


def _key(batch: dict, name: str, path: Path):
    for k in (name, name.encode()):
        if k in batch:
            return batch[k]
    raise DataError(f"{path}: no '{name}' entry (not a CIFAR python batch)")


def _cifar_batch(path: Path, label_key: str) -> RawSplit:
    batch = safe_unpickle(path)
    if not isinstance(batch, dict):
        raise DataError(f"{path}: expected a dict, got {type(batch).__name__}")
    data = np.asarray(_key(batch, "data", path), dtype=np.uint8)
    labels = np.asarray(_key(batch, label_key, path), dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != labels.shape[0]:
        raise DataError(f"{path}: expected (N, 3072) data and N labels, got {data.shape}")
    return RawSplit(data.reshape(-1, 3, 32, 32), labels)


def load_cifar(data_dir: Path | None, num_classes: int) -> dict[str, RawSplit]:
    """CIFAR-10 (``cifar-10-batches-py``) or CIFAR-100 (``cifar-100-python``) folders."""
    folder = "cifar-10-batches-py" if num_classes == 10 else "cifar-100-python"
    if data_dir is None:
        raise DataError(f"CIFAR-{num_classes} needs --data-dir pointing at the '{folder}' folder "
                        "(from https://www.cs.toronto.edu/~kriz/cifar.html)")
    root = Path(data_dir)
    if (root / folder).is_dir():
        root = root / folder
    if num_classes == 10:
        train_files = [root / f"data_batch_{i}" for i in range(1, 6)]
        test_files, key = [root / "test_batch"], "labels"
    else:
        train_files, test_files, key = [root / "train"], [root / "test"], "fine_labels"
    missing = [p for p in train_files + test_files if not p.is_file()]
    if missing:
        raise DataError(f"CIFAR-{num_classes} not found: missing {missing[0]}; download the "
                        f"python version and unpack '{folder}' under --data-dir")
    return {"train": _concat([_cifar_batch(p, key) for p in train_files]),
            "test": _concat([_cifar_batch(p, key) for p in test_files])}


def _concat(parts: list[RawSplit]) -> RawSplit:
    return RawSplit(np.concatenate([p.images for p in parts]),
                    np.concatenate([p.labels for p in parts]))


# -- ImageFolder trees ------------------------------------------------------------------------

_IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff"}


def load_image_folder(data_dir: Path | None, size: int, channels: int) -> dict[str, RawSplit]:
    """``root/train/<class>/*.jpg`` and ``root/val/<class>/...`` (or ``test``), resized.

    Images are resized (shorter side) and centre-cropped to ``size`` once, at load time.
    Each class folder holds its images directly; at least two classes, none empty, and
    val/ (the test split) has exactly train/'s classes. The validation split used while
    training is carved from train/ (``load_task_data``'s ``val_fraction``, per class).
    """
    if data_dir is None:
        raise DataError("an ImageFolder task needs --data-dir pointing at a folder with "
                        "train/<class>/ and val/<class>/ subfolders")
    root = Path(data_dir)
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise DataError(f"ImageFolder not found: {train_dir} does not exist "
                        "(expected train/<class>/*.jpg and val/<class>/*.jpg)")
    classes = _class_folders(train_dir)
    if len(classes) < 2:
        raise DataError(f"{train_dir} has {len(classes)} class folder(s) "
                        f"({', '.join(classes) or 'none'}); a classifier needs at least 2")
    out = {"train": _read_tree(train_dir, classes, size, channels)}
    for name in ("val", "test"):
        if (root / name).is_dir():
            other = _class_folders(root / name)
            if other != classes:
                raise DataError(_mismatch(root / name, other, classes))
            out["test"] = _read_tree(root / name, classes, size, channels)
            break
    return out


def _class_folders(folder: Path) -> tuple[str, ...]:
    """The class folders, sorted; a linked one is refused (a link to '.' or to another
    class would make an empty or a duplicated class)."""
    names = []
    for p in sorted(folder.iterdir()):
        if p.is_symlink() and p.is_dir():
            raise DataError(f"class folder {p} is a symbolic link; copy the images in (a "
                            "link can make an empty or a duplicated class)")
        if p.is_dir():
            names.append(p.name)
    return tuple(names)


def _mismatch(folder: Path, got: tuple[str, ...], want: tuple[str, ...]) -> str:
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    parts = ([f"lacks {len(missing)} of train's classes ({', '.join(missing[:5])})"]
             if missing else []) + \
        ([f"has {len(extra)} classes train/ lacks ({', '.join(extra[:5])})"] if extra else [])
    return f"{folder}: {'; '.join(parts)}; val/ and train/ must hold the same class folders"


def _class_files(cdir: Path) -> list[Path]:
    """The images directly in a class folder, or a DataError saying where they are."""
    files = sorted(p for p in cdir.iterdir() if p.suffix.lower() in _IMAGE_EXT and p.is_file())
    if not files:
        nested = sum(1 for p in cdir.rglob("*") if p.suffix.lower() in _IMAGE_EXT)
        where = f" ({nested} images sit in its subfolders; move them up)" if nested else ""
        raise DataError(f"class folder {cdir} has no images{where}")
    return files


def _read_tree(folder: Path, classes: tuple[str, ...], size: int, channels: int) -> RawSplit:
    try:
        from PIL import Image
    except ImportError:
        raise DataError("ImageFolder datasets need Pillow: pip install pillow") from None
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in _class_files(folder / name):
            images.append(_read_image(Image, path, size, channels))
            labels.append(label)
    arr = np.stack(images)
    arr = arr[:, None] if arr.ndim == 3 else arr.transpose(0, 3, 1, 2)
    return RawSplit(np.ascontiguousarray(arr), np.asarray(labels, np.int64), classes)


def sample_image_folder(data_dir: Path | None, n: int, size: int, channels: int,
                        seed: int = 0) -> np.ndarray:
    """``n`` training images of an ImageFolder tree drawn at random (seeded), uint8 NCHW.

    Only the drawn files are read: BN recalibration needs a few thousand images, and
    ``load_image_folder`` would read a whole ImageNet training set into memory."""
    if data_dir is None or not (Path(data_dir) / "train").is_dir():
        raise DataError(f"ImageFolder not found: {Path(data_dir or '.') / 'train'} does not "
                        "exist (expected train/<class>/*.jpg)")
    train = Path(data_dir) / "train"
    files = sorted(p for c in train.iterdir() if c.is_dir() for p in c.iterdir()
                   if p.suffix.lower() in _IMAGE_EXT)
    if len(files) < n:
        raise DataError(f"asked for {n} images; {train} has {len(files)}")
    picked = np.random.default_rng(seed).choice(len(files), n, replace=False)
    return _read_files([files[i] for i in sorted(picked)], size, channels)


def _read_files(paths: list[Path], size: int, channels: int) -> np.ndarray:
    from PIL import Image

    arr = np.stack([_read_image(Image, path, size, channels) for path in paths])
    return np.ascontiguousarray(arr[:, None] if arr.ndim == 3 else arr.transpose(0, 3, 1, 2))


def _read_image(Image, path: Path, size: int, channels: int) -> np.ndarray:
    """One image, resized; a decompression bomb (a small file of billions of pixels) is
    refused before it is decoded, like any unreadable file, in one line naming it."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                return _resize_crop(img.convert("L" if channels == 1 else "RGB"), size)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise DataError(f"image {path} is too large to decode ({exc})"[:300]) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None


def _resize_crop(img, size: int) -> np.ndarray:
    from PIL import Image

    w, h = img.size
    scale = size / min(w, h)
    img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))),
                     Image.BILINEAR)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)


# -- scikit-learn digits ------------------------------------------------------------------------

def load_digits(size: int = 28) -> dict[str, RawSplit]:
    """The 1797 8x8 digits (values 0..16), scaled to uint8 and upsampled to ``size``."""
    import torch
    import torch.nn.functional as F

    pixels, target = _digits_arrays()
    small = torch.from_numpy(pixels.reshape(-1, 1, 8, 8).astype(np.float32) * (255.0 / 16.0))
    big = F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    images = big.round().clamp(0, 255).to(torch.uint8).numpy()
    return {"all": RawSplit(images, target.astype(np.int64))}


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Read scikit-learn's bundled digits.csv.gz directly (importing sklearn takes seconds)."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise DataError("the 'digits' task needs scikit-learn: pip install scikit-learn")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    if path.is_file():
        table = np.loadtxt(path, delimiter=",")
        return table[:, :64], table[:, 64].astype(np.int64)
    from sklearn.datasets import load_digits as sk_digits  # layout changed: use the API

    bunch = sk_digits()
    return bunch.data, bunch.target
