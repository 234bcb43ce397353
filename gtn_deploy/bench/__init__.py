"""On-device benchmarking: timing harness, environment fingerprint, runtime backends.

Light by design: ``gtnd bench`` on a device needs the bundle, numpy and onnxruntime (or
TensorRT) only. torch is imported lazily by the torch backend and by the calibration
measurements (``bench.subnets``), never by the bundle path.
"""
