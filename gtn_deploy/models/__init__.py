"""Teacher networks: ResNet family by name, with per-stage features."""

from gtn_deploy.models.checkpoint import load_teacher, save_teacher
from gtn_deploy.models.registry import (LARGE_INPUT_TEACHERS, SMALL_INPUT_TEACHERS, TEACHERS,
                                        create_teacher)

__all__ = ["create_teacher", "TEACHERS", "SMALL_INPUT_TEACHERS", "LARGE_INPUT_TEACHERS",
           "save_teacher", "load_teacher"]
