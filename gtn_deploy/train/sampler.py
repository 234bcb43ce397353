"""The path sampler p_theta(a): a product of categoricals over every elastic decision.

Decisions are the space's own (``space.decision_choices()``, any family): for MBConv the
depth of each stage, the kernel size and expand ratio of each block slot and the resolution;
for ResNets each stage's depth and width and each slot's expand ratio. A slot past its
stage's depth does not affect the architecture, so it is left out of log p(a)
(``arch.decisions()`` names only the decisions that shape the arch). Modes:

- ``uniform``: theta stays uniform.
- ``sandwich``: cycles largest, smallest, uniform random (BigNAS / Once-for-All).
- ``learned``: theta ascends E[KL_a] by REINFORCE with a moving-average baseline, kept
  spread by an entropy bonus and, with a pool, pulled toward it:
  L_arch = -E[KL_a] - beta*H(p_theta) + gamma*KL(p_pool || p_theta); Adam, lr 1e-2.
  The advantage (KL_a - baseline) is divided by a moving estimate of the reward's standard
  deviation: raw KL_a differences are ~0.01, which the pool pull swamped at any useful gamma
  (theta ended exactly at the pool prior); normalised, the update does not depend on the
  reward's scale and gamma = 0.1 lets the reward move theta.
- ``pool``: uniform over the planned students only.
- ``fixed``: always the first pool member (the SFTN baseline).

This is the project's reconstruction of GTN's architecture loss (GTN_METHOD.md), not the
paper's exact formulation.
"""

from __future__ import annotations

import copy
import math
from typing import Sequence

import torch

from gtn_deploy.errors import CheckpointError, UsageError
from gtn_deploy.spaces.base import Space

SAMPLER_MODES = ("uniform", "sandwich", "learned", "pool", "fixed")


class ArchSampler:
    """Draws architectures for GTN training and, in ``learned`` mode, trains theta."""

    def __init__(self, space: Space, mode: str = "uniform", pool: Sequence = (), seed: int = 0,
                 lr: float = 1e-2, beta: float = 0.05, gamma: float = 0.1,
                 baseline_momentum: float = 0.9):
        if mode not in SAMPLER_MODES:
            raise UsageError(f"unknown sampler '{mode}'; valid samplers: "
                             f"{', '.join(SAMPLER_MODES)}")
        if mode in ("pool", "fixed") and not pool:
            raise UsageError(f"sampler '{mode}' needs students: pass --pool plan.json")
        self.space, self.mode = space, mode
        self.pool = tuple(space.validate(a) for a in pool)
        self.beta, self.gamma, self.momentum = beta, gamma if pool else 0.0, baseline_momentum
        self.decisions = _decisions(space)
        sizes = [len(c) for _, c in self.decisions]
        self.offsets = [0]
        for size in sizes:
            self.offsets.append(self.offsets[-1] + size)
        self.theta = torch.zeros(self.offsets[-1], dtype=torch.float64, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.theta], lr=lr)
        self.generator = torch.Generator().manual_seed(int(seed) + 7919)
        # Moving mean and variance of the reward, one pair per reward group: the reward is
        # the KL of the branch drawn this step, and the branches' KLs differ far more than
        # the architectures' do, so one shared baseline would credit an architecture with
        # the luck of the branch drawn beside it (tests/test_gtn_mechanism.py)
        self.baselines: dict[int, float] = {}
        self.reward_vars: dict[int, float] = {}
        self.paths_drawn = 0
        self.updates = 0
        self._slot = {name: i for i, (name, _) in enumerate(self.decisions)}
        self._pool_prior = _pool_prior(self) if self.pool else None

    # -- sampling ----------------------------------------------------------------------------
    def sample(self, m: int) -> list:
        """``m`` architectures for one training step (changes only the sampler's RNG)."""
        out = []
        for _ in range(m):
            out.append(self._one(self.paths_drawn))
            self.paths_drawn += 1
        return out

    def _one(self, index: int):
        if self.mode == "fixed":
            return self.pool[0]
        if self.mode == "pool":
            pick = torch.randint(len(self.pool), (1,), generator=self.generator)
            return self.pool[int(pick)]
        if self.mode == "sandwich" and index % 3 < 2:
            return self.space.max_arch() if index % 3 == 0 else self.space.min_arch()
        return self._draw()

    def _draw(self):
        with torch.no_grad():
            picks = []
            for i in range(len(self.decisions)):
                probs = torch.softmax(self._logits(i), 0)
                picks.append(int(torch.multinomial(probs, 1, generator=self.generator)))
        values = {name: choices[c] for (name, choices), c in zip(self.decisions, picks)}
        return self.space.arch_from_decisions(values)

    # -- theta -------------------------------------------------------------------------------
    def _logits(self, i: int) -> torch.Tensor:
        return self.theta[self.offsets[i]:self.offsets[i + 1]]

    def log_prob(self, arch) -> torch.Tensor:
        """log p_theta(arch) over the decisions that shape it (differentiable in theta)."""
        total = self.theta.new_zeros(())
        for i, choice in self._choices(arch):
            total = total + torch.log_softmax(self._logits(i), 0)[choice]
        return total

    def _choices(self, arch) -> list[tuple[int, int]]:
        """(decision index, choice index) of each decision that shapes ``arch``."""
        out = []
        for name, value in arch.decisions():
            i = self._slot[name]
            out.append((i, self.decisions[i][1].index(value)))
        return out

    def entropy(self) -> torch.Tensor:
        total = self.theta.new_zeros(())
        for i in range(len(self.decisions)):
            logp = torch.log_softmax(self._logits(i), 0)
            total = total - (logp.exp() * logp).sum()
        return total

    def pool_kl(self) -> torch.Tensor:
        """KL(p_pool || p_theta), summed over decisions that the pool constrains."""
        total = self.theta.new_zeros(())
        for i, prior in (self._pool_prior or {}).items():
            logp = torch.log_softmax(self._logits(i), 0)
            total = total + (prior * (prior.log() - logp)).sum()
        return total

    def update(self, archs: Sequence, rewards: Sequence[float], group: int = 0
               ) -> dict[str, float]:
        """One REINFORCE step on L_arch with the paths' rewards (KL_a); a no-op unless learned.

        ``group``: what else shaped the rewards (the branch drawn this step): each group has
        its own baseline and scale, so only the architectures' differences drive theta.
        """
        mean_reward = float(sum(rewards) / len(rewards))
        baseline = self.baselines.get(group, mean_reward)
        advantages = self.advantages(rewards, baseline, group)
        stats = {"reward": mean_reward, "baseline": baseline}
        if self.mode == "learned":
            self.optimizer.zero_grad(set_to_none=True)
            reinforce = torch.stack([-adv * self.log_prob(a)
                                     for a, adv in zip(archs, advantages)]).mean()
            entropy = self.entropy()
            loss = reinforce - self.beta * entropy
            if self.gamma and self._pool_prior:
                loss = loss + self.gamma * self.pool_kl()
            loss.backward()
            self.optimizer.step()
            self.updates += 1
            stats["entropy"] = float(entropy.detach())
        self.baselines[group] = self.momentum * baseline + (1 - self.momentum) * mean_reward
        return stats

    @property
    def baseline(self) -> float | None:
        """The mean of the groups' baselines (for summaries)."""
        return sum(self.baselines.values()) / len(self.baselines) if self.baselines else None

    def advantages(self, rewards: Sequence[float], baseline: float, group: int = 0
                   ) -> list[float]:
        """(r - baseline) / std, std a moving estimate that includes this step's rewards."""
        sq = sum((r - baseline) ** 2 for r in rewards) / len(rewards)
        previous = self.reward_vars.get(group)
        var = sq if previous is None else self.momentum * previous + (1 - self.momentum) * sq
        self.reward_vars[group] = var
        scale = math.sqrt(var) if var > 1e-24 else 1.0
        return [(r - baseline) / scale for r in rewards]

    # -- state -------------------------------------------------------------------------------
    def probabilities(self) -> dict[str, dict[str, float]]:
        with torch.no_grad():
            return {name: {str(c): round(float(p), 6) for c, p in
                           zip(choices, torch.softmax(self._logits(i), 0))}
                    for i, (name, choices) in enumerate(self.decisions)}

    def state_dict(self) -> dict:
        return {"theta": self.theta.detach().clone(),
                "decisions": [name for name, _ in self.decisions],
                "optimizer": copy.deepcopy(self.optimizer.state_dict()),
                "generator": self.generator.get_state(), "mode": self.mode,
                "baselines": dict(self.baselines), "reward_vars": dict(self.reward_vars),
                "paths_drawn": self.paths_drawn, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        if state["mode"] != self.mode or state["theta"].shape != self.theta.shape:
            raise ValueError(f"sampler state is for mode '{state['mode']}' and "
                             f"{tuple(state['theta'].shape)} logits")
        # theta is laid out decision by decision: the same count in another order would
        # load silently wrong (states before the names were saved ordered MBConv differently)
        if state.get("decisions") != [name for name, _ in self.decisions]:
            raise CheckpointError("the checkpoint's sampler orders its decisions differently "
                                  "from this space's (written by an older gtn_deploy?); "
                                  "start the run in a new --out")
        with torch.no_grad():
            self.theta.copy_(state["theta"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.paths_drawn = int(state["paths_drawn"])
        if "baselines" in state:
            self.baselines, self.reward_vars = dict(state["baselines"]), \
                dict(state["reward_vars"])
        else:  # a checkpoint from before the groups: its one baseline was group 0's
            self.baselines = {} if state["baseline"] is None else {0: state["baseline"]}
            self.reward_vars = {} if state.get("reward_var") is None else \
                {0: state["reward_var"]}
        self.updates = int(state["updates"])

    def to_json(self) -> dict:
        """A readable summary for the output folder (the exact state is in the checkpoint)."""
        return {"schema_version": 1, "kind": "gtn_deploy.sampler", "mode": self.mode,
                "beta": self.beta, "gamma": self.gamma, "baseline": self.baseline,
                "paths_drawn": self.paths_drawn, "updates": self.updates,
                "entropy": float(self.entropy().detach()), "probabilities": self.probabilities(),
                "pool": [a.to_dict() for a in self.pool]}


def _decisions(space: Space) -> list[tuple[str, tuple]]:
    return [(name, tuple(choices)) for name, choices in space.decision_choices()]


def _pool_prior(sampler: ArchSampler, eps: float = 1e-3) -> dict[int, torch.Tensor]:
    """Per decision, the smoothed frequencies of its choices among the pool's students."""
    counts: dict[int, torch.Tensor] = {}
    for arch in sampler.pool:
        for i, c in sampler._choices(arch):
            counts.setdefault(i, torch.zeros(len(sampler.decisions[i][1]), dtype=torch.float64))
            counts[i][c] += 1
    out = {}
    for i, cnt in counts.items():
        freq = cnt / cnt.sum()
        out[i] = (freq + eps) / (1 + eps * len(cnt))
    return out


def entropy_of_uniform(space: Space) -> float:
    """H of the uniform sampler (the entropy's upper bound), for reports."""
    return sum(math.log(len(c)) for _, c in _decisions(space))
