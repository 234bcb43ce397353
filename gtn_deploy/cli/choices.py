"""Options with a fixed set of values: help lists them and shell completion offers them.

The values stay plain strings checked by the library (not typer enums), so a bad one is
still one ``error:`` line naming the valid values, as every other user error is. Most
tuples mirror the library's own (a test keeps them equal); they are repeated here because
the library's live beside torch, which ``gtnd --help`` must not import. Tasks, network
families and precisions need no copy: ``arch``, the ``spaces`` registry and ``constants``
are torch-free, so a registered family is a ``--space`` choice at once.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import typer

from gtn_deploy.arch import TASKS as _TASKS
from gtn_deploy.spaces import FAMILIES as _FAMILIES

TASKS = tuple(_TASKS)
FAMILIES = tuple(_FAMILIES)
BACKENDS = ("onnxruntime", "tensorrt", "openvino", "torch")  # bench.runners.BACKENDS
RUNTIME_OVERRIDES = ("onnxruntime-cpu", "openvino")  # bench.calibration_runtime.OVERRIDES
METHODS = ("gtn", "vanilla", "sftn")  # train.gtn.METHODS
SAMPLERS = ("uniform", "sandwich", "learned", "pool")  # train.sampler.SAMPLER_MODES
BRANCHES = ("one", "all")  # train.config.BRANCH_MODES
INITS = ("scratch", "supernet")  # train.distill.INITS
KD_LOSSES = ("kd", "dkd")  # train.losses
BASELINES = ("ce", "vanilla", "none")  # pipeline.config; a comma list of the first two
TORCH_DEVICES = ("auto", "cpu", "cuda")  # train.distributed.TORCH_DEVICES
OFA_SOURCES = ("ofa-mbv3", "ofa-resnet50")  # supernet.ofa_import.SOURCES
OFA_VARIANTS = ("w1.0", "w1.2")  # supernet.ofa_import.MBV3_VARIANTS


def _completer(values: Sequence[str]) -> Callable[[str], list[str]]:
    def complete(incomplete: str) -> list[str]:
        return [v for v in values if v.startswith(incomplete)]

    return complete


def choice(values: Sequence[str], help: str, *names: str, label: str = "CHOICE",
           **kwargs: Any) -> Any:
    """``typer.Option`` whose help shows ``[a|b|c]`` and whose completion offers a, b, c.

    A list too long for the metavar column goes into the help text instead."""
    metavar = "[" + "|".join(values) + "]"
    if len(metavar) > 16:
        metavar, help = label, f"{help} One of: {', '.join(values)}."
    return typer.Option(*names, help=help, metavar=metavar, autocompletion=_completer(values),
                        **kwargs)


# --task defaults, by one rule. plan searches against device budgets, which profiles set for
# 224-pixel ImageNet models; the commands that train or measure default to the task that
# trains in minutes on a CPU (its data is a Debian package). The library's defaults match
# (pipeline.config, bench.calibration; a test checks).
PLAN_TASK = "imagenet"
WORK_TASK = "fashion-mnist"


def task_option(what: str, for_plan: bool = False) -> Any:
    """``--task``, its help saying the default and why it is that one."""
    if for_plan:
        why = (f"Default {PLAN_TASK}: profiles set their latency budgets for 224-pixel "
               f"ImageNet models (for another task see --scale-budget). The commands that "
               f"train or measure default to {WORK_TASK}.")
    else:
        why = (f"Default {WORK_TASK}, as for every command that trains or measures (small "
               f"networks: minutes on a CPU). Only plan defaults to {PLAN_TASK}, the task "
               f"device budgets are set for: give plan the same --task.")
    return choice(TASKS, f"{what} {why}", label="TASK")


TORCH_DEVICE_HELP = ("Where training runs (auto: CUDA if torch sees a GPU). The old name "
                     "--device still works, hidden: elsewhere --device is the target device.")


def torch_device_options() -> tuple[Any, Any]:
    """``--torch-device`` and its hidden backward-compatible alias ``--device``."""
    return (choice(TORCH_DEVICES, TORCH_DEVICE_HELP, "--torch-device"),
            typer.Option("--device", hidden=True, help="Old name of --torch-device."))


def resolve_torch_device(torch_device: str, device: str | None) -> str:
    return torch_device if device is None else device


def space_option(what: str) -> Any:
    """``--space``: the network family whose supernet the task's space is built from."""
    return choice(FAMILIES, f"{what} Network family: mbconv (Once-for-All MobileNetV3, the "
                  "default) or resnet (Once-for-All ResNets: no depthwise convolutions, for "
                  "TensorRT GPUs).", label="FAMILY")
