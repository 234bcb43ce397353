"""Weight-sharing supernet (Once-for-All MobileNetV3 style), static students, checkpoints."""

from gtn_deploy.supernet.bn import recalibrate_bn
from gtn_deploy.supernet.checkpoint import (load_student, load_supernet, save_student,
                                            save_supernet)
from gtn_deploy.supernet.layers import StudentNet, build_student
from gtn_deploy.supernet.network import Supernet

__all__ = ["Supernet", "StudentNet", "build_student", "recalibrate_bn", "save_student",
           "load_student", "save_supernet", "load_supernet"]
