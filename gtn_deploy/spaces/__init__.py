"""Network families beyond the MobileNetV3 space of ``gtn_deploy.arch`` (no torch), one a module."""
