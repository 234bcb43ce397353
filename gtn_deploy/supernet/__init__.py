"""Weight-sharing supernets and static students of each family, and their checkpoints."""

from gtn_deploy.supernet.bn import recalibrate_bn
from gtn_deploy.supernet.checkpoint import (load_student, load_supernet, save_student,
                                            save_supernet)
from gtn_deploy.supernet.families import build_student, create_supernet
from gtn_deploy.supernet.layers import StudentNet
from gtn_deploy.supernet.network import Supernet

__all__ = ["Supernet", "StudentNet", "build_student", "create_supernet", "recalibrate_bn", "save_student",
           "load_student", "save_supernet", "load_supernet"]
