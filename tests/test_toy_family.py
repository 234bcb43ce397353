"""A third network family is a space module, a torch module and one registration.

This test is all three for a tiny toy family (a plain CNN with an elastic width per stage),
then takes it where the two shipped families go: a plan for a device (and plan.json read
back), one GTN teacher-training step through its supernet, a supernet checkpoint saved and
loaded, a student extracted, and the student exported to ONNX with the same outputs in
onnxruntime. Nothing outside this file knows the toy family's name.
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gtn_deploy import spaces
from gtn_deploy.arch import TASKS, TaskSpec
from gtn_deploy.errors import ArchError
from gtn_deploy.spaces.base import (BlockCost, BlockShape, Layer, check_arch_keys, conv_out,
                                    short_list)
from gtn_deploy.supernet.layers import StagedNet

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # exporter internals

# -- spaces/toy.py: the space, its arch and its cost (no torch) ---------------------------------


@dataclass(frozen=True)
class ToyArch:
    widths: tuple[int, ...]
    resolution: int

    def decisions(self) -> tuple[tuple[str, Any], ...]:
        return tuple((f"w{i}", w) for i, w in enumerate(self.widths)) + \
            (("r", self.resolution),)

    def summary(self) -> str:
        return f"r{self.resolution} w{'-'.join(map(str, self.widths))}"

    def to_dict(self) -> dict[str, Any]:
        return {"family": "toy", "widths": list(self.widths), "resolution": self.resolution}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


@dataclass(frozen=True)
class ToyStage:
    stride: int


@dataclass(frozen=True)
class ToySpace:
    name: str
    task: TaskSpec
    width_choices: tuple[int, ...] = (4, 8)
    resolutions: tuple[int, ...] = (28,)
    stem_channels: int = 4
    stem_stride: int = 1
    stages: tuple[ToyStage, ...] = (ToyStage(2), ToyStage(2))
    family: ClassVar[str] = "toy"

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def sample(self, rng: random.Random) -> ToyArch:
        return ToyArch(tuple(rng.choice(self.width_choices) for _ in self.stages),
                       rng.choice(self.resolutions))

    def mutate(self, arch: ToyArch, rng: random.Random, prob: float) -> ToyArch:
        return ToyArch(tuple(rng.choice(self.width_choices) if rng.random() < prob else w
                             for w in arch.widths), arch.resolution)

    def crossover(self, a: ToyArch, b: ToyArch, rng: random.Random) -> ToyArch:
        return ToyArch(tuple(rng.choice(p) for p in zip(a.widths, b.widths)), a.resolution)

    def max_arch(self) -> ToyArch:
        return ToyArch((max(self.width_choices),) * self.num_stages, max(self.resolutions))

    def min_arch(self) -> ToyArch:
        return ToyArch((min(self.width_choices),) * self.num_stages, min(self.resolutions))

    def size(self) -> int:
        return len(self.width_choices) ** self.num_stages * len(self.resolutions)

    def decision_choices(self) -> tuple[tuple[str, tuple], ...]:
        return tuple((f"w{i}", self.width_choices) for i in range(self.num_stages)) + \
            (("r", self.resolutions),)

    def arch_from_decisions(self, values: dict[str, Any]) -> ToyArch:
        return ToyArch(tuple(values[f"w{i}"] for i in range(self.num_stages)), values["r"])

    def validate(self, arch: Any) -> ToyArch:
        if not isinstance(arch, ToyArch) or len(arch.widths) != self.num_stages or \
                any(w not in self.width_choices for w in arch.widths) or \
                arch.resolution not in self.resolutions:
            raise ArchError(f"not an arch of {self.name}: {arch} "
                            f"(resolutions {short_list(self.resolutions)})")
        return arch

    def arch_from_dict(self, data: dict[str, Any], where: str = "arch") -> ToyArch:
        check_arch_keys(data, {"widths", "resolution"}, {"family"}, where)
        return self.validate(ToyArch(tuple(data["widths"]), data["resolution"]))

    def with_classes(self, num_classes: int) -> "ToySpace":
        return dataclasses.replace(self, task=dataclasses.replace(self.task,
                                                                  num_classes=num_classes))

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, **dataclasses.asdict(self)}

    def _blocks(self, arch: ToyArch) -> list[BlockShape]:
        h, cin = arch.resolution, self.stem_channels
        blocks = [BlockShape("stem", "stem", -1, 0, self.task.in_channels, cin, cin, 3, 1,
                             h, h, 0, "relu")]
        for i, (spec, w) in enumerate(zip(self.stages, arch.widths)):
            blocks.append(BlockShape(f"s{i}.b0", "conv", i, 0, cin, w, w, 3, spec.stride,
                                     h, conv_out(h, spec.stride), 0, "relu"))
            cin, h = w, conv_out(h, spec.stride)
        return blocks + [BlockShape("head", "head", -1, 0, cin, cin, cin, 1, 1, h, 1, 0,
                                    "relu", 0, self.task.num_classes)]

    def network_costs(self, arch: ToyArch) -> tuple[BlockCost, ...]:
        out = []
        for b in self._blocks(arch):
            if b.kind == "head":
                layers = (Layer("head.classifier", "linear", "head", 2 * b.cin * b.classes,
                                b.cin * b.classes + b.classes, b.cin, b.classes),)
            else:
                name = "stem" if b.kind == "stem" else f"stages.{b.stage}"
                weights = b.cout * b.cin * 9
                layers = (Layer(name, "conv", b.name, 2 * weights * b.hout ** 2,
                                weights + 2 * b.cout, b.cin * b.hin ** 2, b.cout * b.hout ** 2),)
            peak = max(x.in_elems + x.out_elems for x in layers)
            out.append(BlockCost(b, layers, sum(x.params for x in layers),
                                 sum(x.flops for x in layers), peak))
        return tuple(out)

    def block_keys(self, arch: ToyArch) -> list[tuple[str, str]]:
        return [(b.name, f"toy-{b.kind}-{b.hin}x{b.cin}-{b.hout}x{b.cout}")
                for b in self._blocks(arch)]


# -- supernet/toy.py: its student and supernet (torch) ------------------------------------------


def _conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU())


class _Head(nn.Module):
    def __init__(self, cin: int, classes: int):
        super().__init__()
        self.classifier = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x.mean((2, 3)))


class ToyStudent(StagedNet, nn.Module):
    def __init__(self, space: ToySpace, arch: ToyArch):
        nn.Module.__init__(self)
        self.space, self.arch = space, space.validate(arch)
        self.stem = _conv_bn(space.task.in_channels, space.stem_channels, 1)
        ins = (space.stem_channels,) + arch.widths[:-1]
        self.stages = nn.ModuleList(_conv_bn(i, w, s.stride)
                                    for i, w, s in zip(ins, arch.widths, space.stages))
        self.head = _Head(arch.widths[-1], space.task.num_classes)

    def stem_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)


class _SlicedStage(nn.Module):
    """The first ``cin`` input and ``cout`` output channels of one max-width conv + BN."""

    def __init__(self, max_in: int, max_out: int, stride: int):
        super().__init__()
        self.full = _conv_bn(max_in, max_out, stride)
        self.stride, self.cout = stride, max_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, bn = self.full[0], self.full[1]
        w = conv.weight[:self.cout, :x.shape[1]]
        y = F.conv2d(x, w, None, self.stride, 1)
        y = F.batch_norm(y, bn.running_mean[:self.cout], bn.running_var[:self.cout],
                         bn.weight[:self.cout], bn.bias[:self.cout], self.training,
                         bn.momentum, bn.eps)
        return F.relu(y)


class _SlicedHead(_Head):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.mean((2, 3))
        return F.linear(x, self.classifier.weight[:, :x.shape[1]], self.classifier.bias)


class ToySupernet(StagedNet, nn.Module):
    def __init__(self, space: ToySpace):
        nn.Module.__init__(self)
        self.space, top = space, max(space.width_choices)
        self.stem = _conv_bn(space.task.in_channels, space.stem_channels, 1)
        self.stages = nn.ModuleList(_SlicedStage(space.stem_channels if i == 0 else top, top,
                                                 s.stride) for i, s in enumerate(space.stages))
        self.head = _SlicedHead(top, space.task.num_classes)
        self.set_active(space.max_arch())

    def stem_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)

    def sample(self, rng: random.Random) -> ToyArch:
        return self.space.sample(rng)

    def set_active(self, arch: ToyArch) -> None:
        self.active_arch = self.space.validate(arch)
        for stage, w in zip(self.stages, arch.widths):
            stage.cout = w

    def stage_in_channels(self, stage: int) -> int:
        return self.space.stem_channels if stage == 0 else self.active_arch.widths[stage - 1]

    def max_stage_in_channels(self, stage: int) -> int:
        return self.space.stem_channels if stage == 0 else max(self.space.width_choices)

    def extract(self, arch: ToyArch | None = None) -> ToyStudent:
        arch = arch or self.active_arch
        student = ToyStudent(self.space, arch)
        state = {}
        for key, tensor in student.state_dict().items():
            parts = key.split(".")  # stages.<i>.<j>.* -> stages.<i>.full.<j>.*
            own = ".".join(parts[:2] + ["full"] + parts[2:]) if parts[0] == "stages" else key
            src = self.state_dict()[own]
            state[key] = src[tuple(slice(0, n) for n in tensor.shape)] if tensor.dim() else src
        student.load_state_dict(state)
        return student


def build_student(space: ToySpace, arch: ToyArch) -> ToyStudent:
    return ToyStudent(space, arch)


def build_supernet(space: ToySpace, kernel_transform: bool = False) -> ToySupernet:
    return ToySupernet(space)


# -- the one registration -----------------------------------------------------------------------

TOY_SPACES = {"fashion-mnist": ToySpace("toy-fashion-mnist", TASKS["fashion-mnist"])}


def _toy_space(task: str) -> ToySpace:
    return TOY_SPACES[task]


@pytest.fixture
def toy():
    before = dict(spaces.FAMILIES)
    spaces.register(spaces.Family("toy", _toy_space, TOY_SPACES, supernet=__name__))
    yield TOY_SPACES["fashion-mnist"]
    spaces.FAMILIES.clear()
    spaces.FAMILIES.update(before)


# -- the trip -----------------------------------------------------------------------------------


def test_toy_family_plans_and_plan_json_reads_back(toy):
    from gtn_deploy.plan_file import parse_plan
    from gtn_deploy.profiles import load_profile
    from gtn_deploy.search.evolution import SearchConfig
    from gtn_deploy.search.planner import (PlanRequest, next_bigger_space, plan_device,
                                           plan_document)

    space = spaces.create_space("toy", "fashion-mnist")
    req = PlanRequest.for_device(load_profile("raspberry-pi-4"), space, latency_ms=1e3,
                                 top_k=2, scale_budget=True)
    result, entry = plan_device(req, config=SearchConfig(population=8, generations=2))
    assert result.top and space.validate(result.top[0].arch)
    assert next_bigger_space(space) is None  # the toy family has one space
    plan = parse_plan(json.loads(json.dumps(plan_document(space, [entry]))))
    assert (plan.family, plan.space) == ("toy", space.name)
    assert plan.students()[0] == result.top[0].arch


def test_toy_family_trains_one_gtn_step(toy):
    from gtn_deploy.models import create_teacher
    from gtn_deploy.supernet import create_supernet
    from gtn_deploy.train.gtn import TeacherObjective

    torch.manual_seed(0)
    supernet = create_supernet(toy)
    teacher = create_teacher("resnet20", toy.task)
    objective = TeacherObjective("gtn", teacher, supernet, image_size=28)
    opt = torch.optim.SGD(objective.parameters(), lr=0.1)
    x, y = torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,))
    before = [p.detach().clone() for p in supernet.parameters()]
    loss, stats = objective(x, y, [toy.sample(random.Random(1)), toy.max_arch()])
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and stats.numel() > 3
    assert any(not torch.equal(a, b) for a, b in zip(before, supernet.parameters()))


def test_toy_family_extracts_and_exports(toy, tmp_path):
    import onnxruntime as ort

    from gtn_deploy.cost.analytic import network_cost
    from gtn_deploy.export.onnx import InputSpec, export_onnx
    from gtn_deploy.supernet import (build_student, create_supernet, load_student,
                                     load_supernet, save_student, save_supernet)

    torch.manual_seed(0)
    arch = ToyArch((8, 4), 28)
    saved = create_supernet(toy).eval()
    save_supernet(tmp_path / "supernet", saved)
    supernet, doc = load_supernet(tmp_path / "supernet")
    assert doc["space"] == toy.name
    supernet.set_active(arch)
    student = supernet.extract(arch).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(student(x), supernet(x), atol=1e-5)
    assert network_cost(toy, arch).params == sum(p.numel() for p in student.parameters())
    assert isinstance(build_student(toy, arch), ToyStudent)

    save_student(tmp_path / "student", student, arch, toy)
    loaded, _ = load_student(tmp_path / "student")
    export_onnx(loaded, InputSpec(1, 28, 28, batch_size=2), tmp_path / "toy.onnx")
    session = ort.InferenceSession(str(tmp_path / "toy.onnx"),
                                   providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got, student(x).numpy(), atol=1e-4)
