"""A planned student taken out of a supernet folder without training (``gtnd extract``).

The student folder is the one ``gtnd distill`` writes, so ``gtnd export`` takes it. A subnet
of a weight-sharing supernet needs its own BatchNorm statistics: the supernet's running
statistics mix every subnet it ran. With ``Recalibration`` they are measured on N training
images at the subnet's resolution, as Once-for-All does before it evaluates a subnet.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gtn_deploy.errors import UsageError, DataError
from gtn_deploy.io_utils import atomic_dir, check_output_file
from gtn_deploy.progress import Steps


@dataclass(frozen=True)
class Recalibration:
    """BN recalibration: ``images`` training images of the ImageFolder tree ``data_dir``."""

    images: int
    data_dir: str | None
    batch_size: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        if self.images < 1 or self.batch_size < 1:
            raise UsageError(f"--recalibrate-bn needs a positive number of images (got "
                             f"{self.images}) and batch size (got {self.batch_size})")


def extract_student(supernet_dir: str | Path, plan_path: str | Path, candidate: int,
                    out: str | Path, recalibration: Recalibration | None = None,
                    overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Write the plan's candidate ``candidate`` (K over all devices, as in plan.json:K), its
    weights copied from the supernet, to the student folder ``out`` (atomically)."""
    # lazy: keeps torch out of a light module
    from gtn_deploy.supernet import load_supernet, save_student
    from gtn_deploy.train.kd_teacher import plan_students  # lazy: keeps torch out of a light module

    out = Path(out)
    check_output_file(out, folder=True)
    if out.exists() and not overwrite:
        raise UsageError(f"{out} already exists; pass --overwrite or another --out")
    space, (picked,) = plan_students(plan_path, None, str(candidate))
    supernet, doc = load_supernet(supernet_dir)
    if doc.get("space") != space.name:
        raise UsageError(f"plan {plan_path} is for space '{space.name}' but the supernet in "
                         f"{supernet_dir} is of space '{doc.get('space')}'")
    student = supernet.extract(picked.arch).eval()
    recal = None
    if recalibration is not None:
        recal = recalibrate_student(student, picked.arch, recalibration, progress)
    meta = {"extracted_from": {"supernet": str(supernet_dir),
                               "supernet_sha256": doc["weights"]["sha256"],
                               "imported_from": doc.get("source"), "plan": str(plan_path),
                               "candidate": picked.index, "device": picked.device},
            "bn_recalibration": recal}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        save_student(tmp, student, picked.arch, supernet.space, meta)
    return {"out_dir": str(out), "arch": picked.arch, "device": picked.device,
            "candidate": picked.index, "bn_recalibration": recal}


def recalibrate_student(student, arch, recal: Recalibration, progress: bool = True
                        ) -> dict[str, Any]:
    """Measure ``student``'s BN statistics on ``recal.images`` training images (a bar)."""
    from gtn_deploy.data.batches import normalize  # lazy: keeps torch out of a light module
    from gtn_deploy.supernet import recalibrate_bn  # lazy: keeps torch out of a light module

    task = student.space.task
    with Steps("extract", ["read images", "recalibrate bn"], enabled=progress) as steps:
        with steps.step("read images") as step:
            images = _training_images(task, recal, arch.resolution)
            step.note = f"{len(images)} at {arch.resolution} px"
        with steps.step("recalibrate bn") as step:
            starts = range(0, len(images), recal.batch_size)
            with steps.bar("BN statistics", len(images)) as advance:
                def batches():
                    for i in starts:
                        batch = images[i:i + recal.batch_size]
                        yield normalize(batch, task)
                        advance(len(batch))

                used = recalibrate_bn(student, batches())
            step.note = f"{used} batches"
    student.eval()
    return {**asdict(recal), "batches": used, "resolution": arch.resolution}


def _training_images(task, recal: Recalibration, resolution: int):
    """uint8 NCHW training images: drawn file by file from an ImageFolder tree (an ImageNet
    training set is never read whole), else from the task's training split in memory."""
    import torch

    from gtn_deploy.data import load_task_data  # lazy: keeps torch out of a light module
    # lazy: keeps torch out of a light module
    from gtn_deploy.data.sources import sample_image_folder

    if task.dataset == "imagefolder":
        return torch.from_numpy(sample_image_folder(
            Path(recal.data_dir) if recal.data_dir else None, recal.images, resolution,
            task.in_channels, recal.seed))
    train = load_task_data(task, recal.data_dir, image_size=resolution).train
    if recal.images > len(train):
        raise DataError(f"asked for {recal.images} images; the {task.name} training split "
                        f"has {len(train)}")
    picked = torch.randperm(len(train), generator=torch.Generator().manual_seed(recal.seed))
    return train.images[picked[:recal.images]]
