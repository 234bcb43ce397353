"""Export: ONNX with parity checks, INT8 quantisation, TensorRT build scripts, bundles.

A regular package (not a namespace one) so that import-linter sees its modules: the import
contracts of pyproject.toml would otherwise pass through export/ unchecked.
"""
