"""Checks of user-given numbers shared by every command (no torch: the light core uses them)."""

from __future__ import annotations

from gtn_deploy.errors import UsageError

# torch.manual_seed takes 0..2**64-1 and negatives down to -2**63; a seed that also fits a
# signed 64-bit integer works with every generator we seed (torch, numpy via % 2**32, random)
MAX_SEED = 2**63 - 1


def check_seed(value: int, flag: str = "--seed") -> int:
    """``value`` if it is a seed every generator accepts; else a one-line UsageError."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise UsageError(f"{flag} must be an integer in 0..{MAX_SEED}, got {value}")
    return value
