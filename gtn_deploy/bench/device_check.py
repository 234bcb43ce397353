#!/usr/bin/env python3
"""Run on a device before ``gtnd bench --host`` / ``calibrate --host`` send their work: the
python there, numpy and onnxruntime, as one JSON line (or one ``error:`` line and exit 2).

Sent by gtn_deploy over ssh; it must not import gtn_deploy or torch, and runs on Python 3.8.
"""

import importlib
import json
import sys


def main():
    versions = {"kind": "gtn_deploy.device_check", "python": sys.version.split()[0]}
    for module, install in (("numpy", "pip install numpy"),
                            ("onnxruntime", "pip install onnxruntime (or onnxruntime-gpu)")):
        try:
            versions[module] = importlib.import_module(module).__version__
        except ImportError as exc:  # the words bundle_io.require uses on the device
            sys.stderr.write("error: %s does not import (%s); %s\n"
                             % (module, str(exc).splitlines()[0], install))
            return 2
    print(json.dumps(versions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
