#!/usr/bin/env python3
"""Run this bundle's TensorRT engine (made by ./build_engine.sh); print top-5 and latency.

    ./build_engine.sh                            # once, on the device: build/model.<p>.engine
    python3 run_trt.py --input a.npy b.png       # uint8 pixels / float32 normalised / images
    python3 run_trt.py --engine other.engine --runs 200

Works with the TensorRT 8.x and 10.x Python APIs: named tensors with execute_async_v3 where
the engine has them (8.5 and later), else bindings with execute_v2 (8.0-8.4, the Jetson
Nano's 8.2). Host arrays are numpy; device memory comes from cuda-python (as in TensorRT 10's
samples) or, where only that is installed, pycuda (TensorRT 8's samples, common on JetPack 5).
Pre- and post-processing are run_onnx.py's, shared through bundle_io.py. Copied verbatim
into TensorRT bundles by gtn_deploy; Python 3.8 with numpy, tensorrt and one of those two.
"""

import importlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# bundle_io.py sits beside this script; `python -I` / `-P` leave this folder off sys.path.
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # a __pycache__/ in the bundle would fail `gtnd bundle verify`

try:
    import bundle_io  # noqa: E402
    import numpy as np  # noqa: E402
except ImportError as exc:  # numpy missing: one line, as for a missing runtime
    raise SystemExit("error: %s; pip install numpy" % str(exc).splitlines()[0])

CUDA_HINT = ("run_trt.py needs cuda-python or pycuda for GPU memory: pip install cuda-python "
             "(TensorRT 10) or pip install pycuda (JetPack 5)")


class CudaPython:
    """Device memory through cuda-python's runtime API (every call returns (error, ...))."""

    name = "cuda-python"

    def __init__(self, rt):
        self.rt = rt
        self.stream = self._ok(rt.cudaStreamCreate())

    def _ok(self, result):
        if result[0] != self.rt.cudaError_t.cudaSuccess:
            bundle_io.fail("CUDA call failed: %s" % (result[0],))
        return result[1] if len(result) > 1 else None

    def alloc(self, nbytes):  # freed when the process exits
        return int(self._ok(self.rt.cudaMalloc(nbytes)))

    def to_device(self, ptr, arr):
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._ok(self.rt.cudaMemcpy(ptr, arr.ctypes.data, arr.nbytes, kind))

    def to_host(self, arr, ptr):
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._ok(self.rt.cudaMemcpy(arr.ctypes.data, ptr, arr.nbytes, kind))

    def handle(self):
        return int(self.stream)

    def sync(self):
        self._ok(self.rt.cudaStreamSynchronize(self.stream))


class PyCuda:
    """Device memory through pycuda (its calls raise on error)."""

    name = "pycuda"

    def __init__(self):
        importlib.import_module("pycuda.autoinit")  # makes a context on GPU 0
        self.drv = importlib.import_module("pycuda.driver")
        self.stream = self.drv.Stream()
        self.allocations = []  # pycuda frees an allocation when its object goes away

    def alloc(self, nbytes):
        self.allocations.append(self.drv.mem_alloc(nbytes))
        return int(self.allocations[-1])

    def to_device(self, ptr, arr):
        self.drv.memcpy_htod(ptr, arr)

    def to_host(self, arr, ptr):
        self.drv.memcpy_dtoh(arr, ptr)

    def handle(self):
        return self.stream.handle

    def sync(self):
        self.stream.synchronize()


def open_cuda():
    for module in ("cuda.bindings.runtime", "cuda.cudart"):  # cuda-python 12.6+, then older
        try:
            return CudaPython(importlib.import_module(module))
        except ImportError:
            pass
    try:
        return PyCuda()
    except ImportError:
        bundle_io.fail(CUDA_HINT)


class Engine:
    """One input, one output; device buffers sized once for the largest batch."""

    def __init__(self, trt, path, cuda):
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        with open(path, "rb") as fh:
            self.engine = runtime.deserialize_cuda_engine(fh.read())
        if self.engine is None:
            bundle_io.fail("TensorRT %s cannot load %s (built by another TensorRT version "
                           "or GPU?); rebuild it here with ./build_engine.sh"
                           % (trt.__version__, path))
        self.context = self.engine.create_execution_context()
        self.trt, self.cuda = trt, cuda
        # Named tensors came in 8.5 and are all 10.x has; 8.0-8.4 only have bindings.
        self.named = hasattr(self.engine, "num_io_tensors")
        self.api = "named tensors" if self.named else "bindings"
        tensors = self._named_io() if self.named else self._binding_io()
        inputs = [t for t in tensors if t["input"]]
        if len(inputs) != 1 or len(tensors) != 2:
            bundle_io.fail("%s: expected one input and one output tensor, found %d and %d"
                           % (path, len(inputs), len(tensors) - len(inputs)))
        self.inp = inputs[0]
        self.out = [t for t in tensors if not t["input"]][0]
        self.dynamic = self.inp["shape"][0] == -1
        self.max_batch = self.inp["max_batch"] if self.dynamic else self.inp["shape"][0]
        for t in tensors:
            t["ptr"] = cuda.alloc(self.max_batch * int(np.prod(t["shape"][1:]))
                                  * t["dtype"].itemsize)

    def _named_io(self):
        e, trt = self.engine, self.trt
        out = []
        for name in [e.get_tensor_name(i) for i in range(e.num_io_tensors)]:
            shape = tuple(e.get_tensor_shape(name))
            is_input = e.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            top = e.get_tensor_profile_shape(name, 0)[2][0] if is_input and shape[0] == -1 else 0
            out.append({"name": name, "input": is_input, "shape": shape, "max_batch": top,
                        "dtype": np.dtype(trt.nptype(e.get_tensor_dtype(name)))})
        return out

    def _binding_io(self):
        e, trt = self.engine, self.trt
        out = []
        for i in range(e.num_bindings):
            shape = tuple(e.get_binding_shape(i))
            is_input = e.binding_is_input(i)
            top = e.get_profile_shape(0, i)[2][0] if is_input and shape[0] == -1 else 0
            out.append({"name": e.get_binding_name(i), "index": i, "input": is_input,
                        "shape": shape, "max_batch": top,
                        "dtype": np.dtype(trt.nptype(e.get_binding_dtype(i)))})
        return out

    def run(self, x):
        """Logits of one batch of at most ``max_batch`` rows."""
        x = np.ascontiguousarray(x, self.inp["dtype"])
        ctx, inp, out = self.context, self.inp, self.out
        if self.named:
            if self.dynamic:
                ctx.set_input_shape(inp["name"], x.shape)
            result = np.empty(tuple(ctx.get_tensor_shape(out["name"])), out["dtype"])
            self.cuda.to_device(inp["ptr"], x)
            ctx.set_tensor_address(inp["name"], inp["ptr"])
            ctx.set_tensor_address(out["name"], out["ptr"])
            ctx.execute_async_v3(self.cuda.handle())
            self.cuda.sync()
        else:
            if self.dynamic:
                ctx.set_binding_shape(inp["index"], x.shape)
            result = np.empty(tuple(ctx.get_binding_shape(out["index"])), out["dtype"])
            self.cuda.to_device(inp["ptr"], x)
            bindings = [0, 0]
            bindings[inp["index"]], bindings[out["index"]] = inp["ptr"], out["ptr"]
            ctx.execute_v2(bindings)  # synchronous
        self.cuda.to_host(result, out["ptr"])
        return result


def default_engine(manifest):
    """Where build_engine.sh writes the engine: build/model.<precision>.engine."""
    plan = (manifest.get("export") or {}).get("engine_plan") or {}
    precision = plan.get("precision") or manifest["recommended_precision"]
    return os.path.join(HERE, "build", "model.%s.engine" % precision)


def main(argv=None):
    ap = bundle_io.parser(__doc__)
    ap.add_argument("--engine", help="serialized engine (default: what ./build_engine.sh "
                    "writes, build/model.<precision>.engine)")
    args = ap.parse_args(argv)
    manifest, prep, labels = bundle_io.read_bundle(HERE)
    batch = manifest["input"]["shape"][0]
    x = bundle_io.load_inputs(args.input, prep, batch if isinstance(batch, int) else 1)
    trt = bundle_io.require("tensorrt", "install TensorRT's Python bindings (JetPack ships "
                            "them; elsewhere pip install tensorrt)")
    path = args.engine or default_engine(manifest)
    if not os.path.isfile(path):
        bundle_io.fail("no engine at %s; build it on this device first: ./build_engine.sh"
                       % path)
    engine = Engine(trt, path, open_cuda())
    # A dynamic engine takes chunks up to its profile's largest batch; a fixed one, padded.
    logits = bundle_io.run_batches(engine.run, x, engine.max_batch, pad=not engine.dynamic)
    one = bundle_io.timing_batch(x, 1 if engine.dynamic else engine.max_batch)
    if args.json:
        timing = bundle_io.time_ms(engine.run, one, args.runs, args.warmup)
        bundle_io.print_json(os.path.relpath(path, HERE), timing, "tensorrt", trt.__version__,
                             {"api": engine.api, "cuda": engine.cuda.name})
        return 0
    bundle_io.print_predictions(logits, labels, args.top)
    t = bundle_io.time_ms(engine.run, one, args.runs, args.warmup)
    print("%s: %d image(s) classified; timing batch %d, p50 %.3f ms, p90 %.3f ms over %d runs "
          "incl. copies (TensorRT %s, %s, %s)"
          % (os.path.relpath(path, HERE), len(x), len(one), t["p50_ms"], t["p90_ms"], t["runs"],
             trt.__version__, engine.api, engine.cuda.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
