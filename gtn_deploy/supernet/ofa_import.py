"""Import Once-for-All's published supernets (MIT licence; nothing is downloaded).

OFA publishes ``ofa_mbv3_d234_e346_k357_w1.0`` and ``_w1.2`` as torch files holding
``{"state_dict": ...}`` of its ``OFAMobileNetV3``. Our ``imagenet`` space (``imagenet-w1.2``
for the wider one) has the same layers in the same order, so loading them is a rename
table, one reshape (OFA's feature mix is a 1x1 conv, ours a linear) and one zero bias (ours
has a bias, OFA's none). The supernet is built with the elastic kernel's transform matrices:
without them every 3x3 and 5x5 subnet computes something other than OFA's.

Older OFA files name a block's ``conv`` ``mobile_inverted_conv``, and the dynamic layers
nest their ``bn``/``conv``/``linear`` once more than the static ones (``bn.bn.weight``);
keys are put in one spelling before the table is read, as OFA's own loader accepts both.

``ofa_resnet50`` (``OFAResNets``) goes into the resnet family's ``resnet-imagenet`` space,
built to its layout (its stem and max pool, the ``avgpool_conv`` shortcut): a rename table
alone. OFA's stem width and depth are elastic too; our space keeps the stem at its largest,
so its subnets are OFA's with ``w[0] = w[1] = 1.0`` and ``d[0] = 2``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gtn_deploy.errors import CheckpointError, UsageError
from gtn_deploy.io_utils import atomic_dir, check_output_file, sha256_file
from gtn_deploy.spaces import space_by_name
from gtn_deploy.spaces.mbconv import SearchSpace
from gtn_deploy.supernet.checkpoint import save_supernet
from gtn_deploy.supernet.families import create_supernet

SOURCES = ("ofa-mbv3", "ofa-resnet50")
# variant -> our space; the stem's width tells them apart (16 vs 24 channels)
MBV3_VARIANTS = {"w1.0": "imagenet", "w1.2": "imagenet-w1.2"}
_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_OPTIONAL = "num_batches_tracked"  # files saved before torch 0.4.1 have none


@dataclass(frozen=True)
class ImportResult:
    path: Path
    space: str
    variant: str
    sha256: str
    tensors: int


def canonical_key(key: str) -> str:
    """One spelling of an OFA key: no DataParallel prefix, ``conv`` for
    ``mobile_inverted_conv``, the static layers' nesting (``bn.weight``, not ``bn.bn.weight``)."""
    key = key.removeprefix("module.").replace(".mobile_inverted_conv.", ".conv.")
    for doubled in (".bn.bn.", ".conv.conv.", ".linear.linear."):
        key = key.replace(doubled, doubled[:doubled.index(".", 1) + 1])
    return key


def mbv3_key_table(space: SearchSpace) -> dict[str, str]:
    """OFA MobileNetV3 key (canonical spelling) -> our supernet's key, in OFA's order.

    OFA numbers blocks straight through: ``blocks.0`` is our first block, then every stage
    has ``max_depth`` slots (``blocks.1`` .. ``blocks.20`` for 5 stages of 4).
    """
    table: dict[str, str] = {}

    def unit(ofa: str, ours: str) -> None:  # conv + BN
        table[f"{ofa}.conv.weight"] = f"{ours}.conv.weight"
        table.update({f"{ofa}.bn.{leaf}": f"{ours}.bn.{leaf}" for leaf in _BN})

    unit("first_conv", "stem")
    unit("blocks.0.conv.depth_conv", "first.depthwise")
    unit("blocks.0.conv.point_linear", "first.project")
    kernels = sorted(space.kernel_choices, reverse=True)
    n = 1
    for s, spec in enumerate(space.stages):
        for j in range(space.max_depth):
            ofa, ours = f"blocks.{n}.conv", f"stages.{s}.blocks.{j}"
            unit(f"{ofa}.inverted_bottleneck", f"{ours}.expand")
            unit(f"{ofa}.depth_conv", f"{ours}.depthwise")
            for big, small in zip(kernels, kernels[1:]):
                table[f"{ofa}.depth_conv.conv.{big}to{small}_matrix"] = \
                    f"{ours}.depthwise.conv.transform_{big}to{small}"
            if spec.se:
                table.update({f"{ofa}.depth_conv.se.fc.{part}.{leaf}": f"{ours}.se.{part}.{leaf}"
                              for part in ("reduce", "expand") for leaf in ("weight", "bias")})
            unit(f"{ofa}.point_linear", f"{ours}.project")
            n += 1
    unit("final_expand_layer", "head.conv")
    table["feature_mix_layer.conv.weight"] = "head.feature.weight"
    table["classifier.linear.weight"] = "head.classifier.weight"
    table["classifier.linear.bias"] = "head.classifier.bias"
    return table


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The state dict of a torch file as OFA saves it (``{"state_dict": ...}`` or the bare
    dict), loaded without unpickling code (``weights_only``)."""
    if not path.is_file():
        raise UsageError(f"checkpoint {path} does not exist or is not a file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a file that is not its own
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({_why(exc)})") from None
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{path}: expected a state dict (or {{'state_dict': ...}}), "
                              f"got {type(obj).__name__}")
    return state


def _why(exc: Exception) -> str:
    text = str(exc).strip()
    if "Weights only load failed" in text:  # torch's advice would be to unpickle it
        return "it holds Python objects besides tensors, which gtnd does not unpickle"
    return f"{type(exc).__name__}: {text.splitlines()[0][:120]}" if text else type(exc).__name__


def mbv3_variant(state: dict[str, Any]) -> str:
    """w1.0 or w1.2, from the stem's width (w1.0 when it is neither: the check then names
    what does not fit)."""
    stem = state.get("first_conv.conv.weight", state.get("module.first_conv.conv.weight"))
    wide = isinstance(stem, torch.Tensor) and stem.dim() == 4 and stem.shape[0] == 24
    return "w1.2" if wide else "w1.0"


def _map_tensors(state: dict[str, Any], table: dict[str, str],
                 expected: dict[str, tuple[int, ...]], what: str) -> dict[str, torch.Tensor]:
    """OFA tensors under our names, shapes checked; the first key or shape that does not
    fit, or the first tensor missing, is one CheckpointError line."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        ours = table.get(canonical_key(str(key)))
        if ours is None:
            raise CheckpointError(f"{what}: key '{key}' is not a layer of it")
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{what}: '{key}' is a {type(value).__name__}, not a tensor")
        if tuple(value.shape) != expected[ours]:
            raise CheckpointError(f"{what}: '{key}' has shape {tuple(value.shape)}, "
                                  f"expected {expected[ours]}")
        out[ours] = value
    for ofa, ours in table.items():
        if ours not in out:
            if not ours.endswith(_OPTIONAL):
                raise CheckpointError(f"{what}: the checkpoint has no '{ofa}'")
            out[ours] = torch.zeros((), dtype=torch.long)
    return out


def mbv3_tensors(state: dict[str, Any], space: SearchSpace, what: str
                 ) -> dict[str, torch.Tensor]:
    """OFA MobileNetV3 tensors under our names (see ``_map_tensors``)."""
    expected = dict(_shapes(space))
    expected["head.feature.weight"] += (1, 1)  # OFA's feature mix is a 1x1 conv
    out = _map_tensors(state, mbv3_key_table(space), expected, what)
    out["head.feature.weight"] = out["head.feature.weight"].reshape(
        expected["head.feature.weight"][:2])
    # OFA's feature mix has no bias: a zero one computes the same
    out["head.feature.bias"] = torch.zeros(expected["head.feature.bias"])
    return _float(out)


def resnet50_key_table(space) -> dict[str, str]:
    """OFA ResNet50 key (canonical spelling) -> our resnet supernet's key, in OFA's order:
    ``input_stem.{0,1,2}`` is our stem's conv0..2 (1 inside its residual block), ``blocks``
    count every stage's ``max_depth`` slots, ``conv1..3``/``downsample`` are our
    reduce/conv/project/shortcut."""
    def unit(ofa: str, ours: str) -> dict[str, str]:
        return {f"{ofa}.conv.weight": f"{ours}.conv.weight",
                **{f"{ofa}.bn.{leaf}": f"{ours}.bn.{leaf}" for leaf in _BN}}

    table = {**unit("input_stem.0", "stem.conv0"), **unit("input_stem.1.conv", "stem.conv1"),
             **unit("input_stem.2", "stem.conv2")}
    n = 0
    for s in range(space.num_stages):
        for j in range(space.max_depth(s)):
            ours = f"stages.{s}.blocks.{j}"
            for ofa_part, part in (("conv1", "reduce"), ("conv2", "conv"), ("conv3", "project"),
                                   ("downsample", "shortcut")):
                if part != "shortcut" or j == 0:
                    table.update(unit(f"blocks.{n}.{ofa_part}", f"{ours}.{part}"))
            n += 1
    table["classifier.linear.weight"] = "head.classifier.weight"
    table["classifier.linear.bias"] = "head.classifier.bias"
    return table


def resnet50_tensors(state: dict[str, Any], space, what: str) -> dict[str, torch.Tensor]:
    """OFA ResNet50 tensors under our names (see ``_map_tensors``)."""
    return _float(_map_tensors(state, resnet50_key_table(space), _shapes(space), what))


def _float(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: (v.float() if v.is_floating_point() else v).contiguous()
            for k, v in tensors.items()}


@functools.lru_cache(maxsize=4)
def _shapes(space) -> dict[str, tuple[int, ...]]:
    """Our supernet's tensor shapes."""
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        net = create_supernet(space, kernel_transform=True)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def _classes(state: dict[str, Any]) -> int | None:
    weight = state.get("classifier.linear.weight", state.get("classifier.linear.linear.weight"))
    return int(weight.shape[0]) if isinstance(weight, torch.Tensor) and weight.dim() == 2 else None


def import_supernet(source: str, checkpoint: str | Path, out: str | Path,
                    variant: str | None = None, overwrite: bool = False) -> ImportResult:
    """Read a published supernet file and write our supernet folder to ``out`` (atomically:
    on any failure nothing is written)."""
    if source not in SOURCES:
        raise UsageError(f"unknown --from '{source}'; valid: {', '.join(SOURCES)}")
    if variant is not None and (source != "ofa-mbv3" or variant not in MBV3_VARIANTS):
        raise UsageError(f"--variant is one of {', '.join(MBV3_VARIANTS)}, for --from ofa-mbv3")
    checkpoint, out = Path(checkpoint), Path(out)
    check_output_file(out, folder=True)
    if out.exists() and not overwrite:
        raise UsageError(f"{out} already exists; pass --overwrite or another --out")
    state = read_checkpoint(checkpoint)
    if source == "ofa-mbv3":
        variant = variant or mbv3_variant(state)
        space, convert = space_by_name(MBV3_VARIANTS[variant]), mbv3_tensors
        network = f"an OFA MobileNetV3 d234-e346-k357-{variant}"
        changes = {"reshaped": ["feature_mix_layer.conv.weight"],
                   "zero_filled": ["head.feature.bias"]}
    else:
        variant, space, convert = "resnet50", space_by_name("resnet-imagenet"), resnet50_tensors
        network, changes = "an OFA ResNet50 (d 0/1/2, e 0.2/0.25/0.35, w 0.65/0.8/1.0)", {}
    classes = _classes(state)
    if classes and classes != space.task.num_classes:  # a fine-tuned head
        space = space.with_classes(classes)
    tensors = convert(state, space, f"{checkpoint} is not {network} checkpoint")
    digest = sha256_file(checkpoint)
    _write(out, space, tensors, overwrite, {
        "format": source, "variant": variant, "file": checkpoint.name, "sha256": digest,
        "renamed_tensors": len(state), **changes})
    return ImportResult(out, space.name, variant, digest, len(tensors))


def _write(out: Path, space, tensors: dict[str, torch.Tensor], overwrite: bool,
           source: dict[str, Any]) -> None:
    net = create_supernet(space, kernel_transform=True)  # MBConv's elastic kernel: OFA's
    net.load_state_dict(tensors, strict=True)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        save_supernet(tmp, net.eval(), source=source)
