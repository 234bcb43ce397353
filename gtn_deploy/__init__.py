"""gtn_deploy: one generic teacher, many devices."""

__version__ = "0.1.0"
