"""Batch-norm recalibration for a subnet of a weight-sharing supernet.

The running statistics a supernet accumulates mix every sampled subnet, so a subnet's own
statistics must be re-estimated before it is evaluated (Once-for-All does this on ~2000
training images). We reset them and take the cumulative average over a few batches
(``momentum=None``), in train mode, without gradients.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from gtn_deploy.errors import DataError


def _as_input(batch) -> torch.Tensor:
    """A batch may be ``x`` or ``(x, y, ...)`` as data loaders yield it."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable, max_batches: int | None = None,
                   device: torch.device | str | None = None) -> int:
    """Re-estimate every BatchNorm's running mean/var of ``model`` on ``batches``.

    ``model`` is an extracted student or a supernet with its active arch set (only the
    active slices of the supernet's statistics are re-estimated; the rest are reset).
    Returns the number of batches used; the model's train/eval mode and BN momenta are
    restored afterwards.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved_momenta = [m.momentum for m in norms]
    was_training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the batches seen
    model.train()
    used = 0
    try:
        for batch in batches:
            if max_batches is not None and used >= max_batches:
                break
            x = _as_input(batch)
            model(x.to(device) if device is not None else x)
            used += 1
    finally:
        for m, momentum in zip(norms, saved_momenta):
            m.momentum = momentum
        model.train(was_training)
    if used == 0:
        raise DataError("BN recalibration got no batches: the calibration data is empty")
    return used
