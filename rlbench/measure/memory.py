"""Memory of a policy, separated from the memory of the library that runs it.

The paper reported one memory figure per compressed policy and could not say how much of it was
the model: in a fresh process, importing torch costs about 260 MiB of resident memory and
importing onnxruntime about 47 MiB, while a Humanoid actor is 0.6 MB. Any peak-RSS figure of a
process that runs a policy is therefore almost entirely library overhead, and compressing the
weights 4x moves it by less than the run-to-run noise.

This module records, for one artefact (a ``policy.pt`` from :func:`rlbench.zoo.policy.save_policy`
or a ``policy.onnx``) and one runtime:

* ``bytes_on_disk``: the file size;
* ``param_bytes``: the bytes of every stored tensor (:func:`param_bytes_of`): ONNX initializers,
  or the tensors of the saved state dict, normalisation and action-bound buffers included;
* ``peak_rss_model_bytes``: the peak resident set size of a fresh Python subprocess that imports
  the runtime, loads the artefact and runs ``calls`` inferences on a zero observation;
* ``peak_rss_empty_bytes``: the same subprocess (same code, same imports, same session options,
  same number of inference calls) on a *stand-in* artefact of the same input and output width
  and no hidden layers (a single ``obs_dim x act_dim`` layer, a few KiB);
* ``delta_bytes``: model minus empty, the memory that the model itself costs in that runtime.
  Each child's peak counts from its start: a forked child's RSS at the fork (what it inherited
  from the server) is taken off its VmHWM (:func:`_growth`), a fresh interpreter's peak is its own.

Why a stand-in rather than no model at all: creating a torch module or an ONNX Runtime session,
its allocator and its thread pool, and running the first inference, all allocate memory that
does not depend on the model. The stand-in run pays for all of it, so the delta holds only what
grows with the weights (the tensors, the parsed protobuf, pre-packed weights, the activation
buffers of wider layers). The stand-in's own few KiB of weights are recorded in ``settings``.

Each pair of subprocesses is run ``repeats`` times, alternating which of the two runs first;
``samples`` keeps every figure and ``delta_bytes`` is the median of the paired per-repeat
differences (equal to ``peak_rss_model_bytes - peak_rss_empty_bytes`` when ``repeats`` is 1).

Peak RSS is read from ``VmHWM`` in ``/proc/self/status`` at the end of the child, not from
``getrusage(RUSAGE_SELF).ru_maxrss``. On Linux, ``ru_maxrss`` survives ``exec``: a child
started from a process that holds 440 MiB reports ``ru_maxrss`` = 440 MiB even though its own
high-water mark is 13 MiB (measured on this machine, Linux 6.18, Python 3.11). ``VmHWM`` belongs
to the address space, which ``exec`` replaces, so it is the child's own peak. ``ru_maxrss`` and
the final ``VmRSS`` are kept in ``samples`` for reference.

Runtimes:

* ``"torch"``: imports torch and :mod:`rlbench.zoo.policy`, loads the ``.pt`` with
  :func:`~rlbench.zoo.policy.load_policy` and runs it through :class:`~rlbench.runtime.predictors.TorchPredictor`.
* ``"onnxruntime"``: imports onnxruntime only (not torch), and runs the ``.onnx`` through
  :class:`~rlbench.runtime.predictors.OrtPredictor` (one intra- and one inter-op thread, sequential,
  ``enable_cpu_mem_arena`` per ``arena``). Measure both ``arena=True`` and ``arena=False``:
  the arena keeps freed buffers and rounds allocations up, so with it on the delta includes
  arena slack as well as the model.
* ``"numpy"``: loads the ``.pt`` with :func:`~rlbench.zoo.policy.load_policy` (so torch is imported
  in both runs and is part of neither delta) and runs :class:`~rlbench.runtime.predictors.NumpyPredictor`.
  The torch module is dropped once the NumPy copies exist, but the peak is reached while the
  file's bytes, the torch tensors and the NumPy copies are all alive, so the NumPy delta is an
  upper bound on what a torch-free NumPy deployment needs (48 MiB for 16 MiB of weights here).

Children run with ``OMP_NUM_THREADS`` (and the MKL / OpenBLAS equivalents) set to ``threads``,
because every worker thread brings its own stack and scratch buffers.
"""

from __future__ import annotations

import errno
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rlbench.core.io import atomic_write_bytes
from rlbench.core.threads import thread_env
from rlbench.core.versions import library_versions
from rlbench.measure.machine import machine_info

SCHEMA = 1
RUNTIMES = ("torch", "onnxruntime", "numpy")
#: Characters of a crashed child's stderr quoted in the error.
STDERR_TAIL = 3000
MiB = 1 << 20

CHILD_FUNC = r"""
def _measure(args):
    import json, resource
    runtime, path, threads = args["runtime"], args["path"], int(args["threads"])
    import numpy as np
    if runtime == "onnxruntime":
        import onnxruntime  # imported in the model run and in the stand-in run alike
        from pathlib import Path
        from rlbench.runtime.predictors import OrtPredictor
        pred = OrtPredictor(Path(path), threads=threads, arena=bool(args["arena"]))
        obs_dim = int(pred.session.get_inputs()[0].shape[-1])
    else:
        import torch
        from rlbench.zoo.policy import load_policy
        from rlbench.core.threads import pin_threads
        from rlbench.runtime.predictors import NumpyPredictor, TorchPredictor
        pin_threads(threads)
        module = load_policy(path)
        obs_dim = int(module.spec.obs_dim)
        if runtime == "torch":
            pred = TorchPredictor(module, threads=threads)
        else:
            pred = NumpyPredictor(module)
        del module
    obs = np.zeros((int(args["batch"]), obs_dim), dtype=np.float32)
    act = None
    for _ in range(int(args["calls"])):
        act = pred.predict(obs)
    status = {}
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                status[key] = int(value.split()[0]) * 1024  # reported in kB
    return {
        "ru_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # Linux: KiB
        "vm_hwm_bytes": status.get("VmHWM"),
        "vm_rss_bytes": status.get("VmRSS"),
        "obs_dim": obs_dim,
        "act_shape": None if act is None else list(np.shape(act)),
        "finite": None if act is None else bool(np.all(np.isfinite(act))),
    }
"""

#: A fresh interpreter per measurement (``fresh=True``).
CHILD_CODE = CHILD_FUNC + r"""
import json, sys
print(json.dumps(_measure(json.loads(sys.argv[1]))))
"""

#: The fork server: imports the runtime once, then forks one child per measurement. The child
#: resets its peak (``/proc/self/clear_refs``: 5), so its VmHWM is its own from the fork on,
#: with the imported libraries resident as in a fresh child after its imports, and reports its RSS
#: at the fork (``vm_rss_at_fork_bytes``): what it inherited, which :func:`measure_memory` takes off.
SERVER_CODE = CHILD_FUNC + r"""
import json, os, sys, traceback
if json.loads(sys.argv[1])["runtime"] == "onnxruntime":
    import onnxruntime
    from rlbench.runtime.predictors import OrtPredictor
else:
    import torch
    from rlbench.zoo.policy import load_policy
    from rlbench.core.threads import pin_threads
    from rlbench.runtime.predictors import NumpyPredictor, TorchPredictor
import numpy
sys.stdout.write("ready\n")
sys.stdout.flush()
for line in sys.stdin:
    args = json.loads(line)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            with open("/proc/self/status", encoding="ascii") as fh:
                at_fork = next(int(ln.split()[1]) * 1024 for ln in fh if ln.startswith("VmRSS:"))
            out = {"ok": True, "report": {**_measure(args), "vm_rss_at_fork_bytes": at_fork}}
        except BaseException:
            out = {"ok": False, "error": traceback.format_exc()[-3000:]}
        os.write(w, (json.dumps(out) + "\n").encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        data = fh.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        data = (json.dumps({"ok": False, "error": f"forked child died (wait status {status})"}) + "\n").encode()
    sys.stdout.write(data.decode())
    sys.stdout.flush()
"""


@dataclass(frozen=True)
class MemoryRecord:
    """Memory of one artefact under one runtime, with the library overhead subtracted."""

    artefact: str
    runtime: str
    """``torch``, ``onnxruntime`` or ``numpy``."""
    arena: bool | None
    """ONNX Runtime's ``enable_cpu_mem_arena``; ``None`` for the other runtimes."""
    bytes_on_disk: int
    param_bytes: int
    """Bytes of every stored tensor (initializers / state-dict tensors, buffers included)."""
    peak_rss_model_bytes: int
    """Median peak RSS (VmHWM) of the child that loads the artefact and runs it."""
    peak_rss_empty_bytes: int
    """Median peak RSS of the same child on the stand-in artefact."""
    delta_bytes: int
    """Median over repeats of (model - empty), each pair measured back to back; a forked child's
    peak less its RSS at the fork (see :func:`_growth`)."""
    samples: dict = field(default_factory=dict)
    """Every repeat: ``peak_rss_model``, ``peak_rss_empty``, ``delta``, ``rss_at_fork_*`` (a forked
    child's RSS at the fork, 0 for a fresh interpreter), and the reference ``ru_maxrss_*``
    (inherited across exec on Linux, not used) and final ``vm_rss_*``."""
    unit: str = "bytes"
    settings: dict = field(default_factory=dict)
    machine: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    schema: int = SCHEMA

    def to_json(self) -> dict:
        d = asdict(self)
        d["samples"] = {k: list(v) for k, v in self.samples.items()}
        d["kind"] = "memory"
        return d

    @classmethod
    def from_json(cls, d: dict) -> MemoryRecord:
        d = {k: v for k, v in d.items() if k != "kind"}
        d["samples"] = {k: tuple(v) for k, v in d.get("samples", {}).items()}
        return cls(**d)


# --------------------------------------------------------------------------------------------
# Reading artefacts


def _missing(path: Path) -> FileNotFoundError:
    return FileNotFoundError(errno.ENOENT, "artefact for the memory measurement does not exist", str(path))


def _is_onnx(path: Path) -> bool:
    return path.suffix.lower() == ".onnx"


def _load_onnx(path: Path):
    import onnx

    return onnx.load(str(path))


def _load_pt(path: Path) -> dict:
    import torch

    # deferred: it loads torch, which importing this module does not
    from rlbench.zoo.policy import FORMAT

    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or "state_dict" not in payload:
        raise ValueError(f"{path} is not an rlbench policy file (format {FORMAT!r} expected)")
    return payload


def param_bytes_of(path: Path | str) -> int:
    """Bytes of every tensor stored in an artefact.

    ``.onnx``: the sum of the initializers' array sizes (``onnx.numpy_helper``), so an int8
    weight counts one byte per element. Anything else: a :func:`~rlbench.zoo.policy.save_policy`
    file, the sum of ``nbytes`` of the tensors in its state dict. Both include the
    normalisation and action-bound buffers, not only the trainable parameters.
    """
    path = Path(path)
    if not path.is_file():
        raise _missing(path)
    if _is_onnx(path):
        from onnx import numpy_helper

        model = _load_onnx(path)
        return int(sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer))
    payload = _load_pt(path)
    return int(sum(v.numel() * v.element_size() for v in payload["state_dict"].values() if hasattr(v, "numel")))


def _onnx_dims(path: Path) -> tuple[int, int, bool]:
    """(obs_dim, act_dim, discrete): a discrete policy's output is one int64 action index per
    observation, [batch] (act_dim 1)."""
    model = _load_onnx(path)

    def last_dim(value_info, what: str) -> int:
        dims = value_info.type.tensor_type.shape.dim
        if not dims or not dims[-1].HasField("dim_value") or dims[-1].dim_value <= 0:
            raise ValueError(f"{path}: the {what} {value_info.name!r} has no fixed last dimension")
        return int(dims[-1].dim_value)

    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1 or not model.graph.output:
        raise ValueError(f"{path}: expected one observation input and an action output")
    out = model.graph.output[0].type.tensor_type
    if out.elem_type == 7 and len(out.shape.dim) == 1:  # onnx.TensorProto.INT64
        return last_dim(inputs[0], "input"), 1, True
    return last_dim(inputs[0], "input"), last_dim(model.graph.output[0], "output"), False


# --------------------------------------------------------------------------------------------
# The stand-in: same input/output widths, no hidden layers


def _write_onnx_stand_in(path: Path, obs_dim: int, act_dim: int, discrete: bool = False) -> int:
    """A single ``obs_dim x act_dim`` layer (discrete: two Q-values and their ArgMax, int64 [batch])."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    width = 2 if discrete else act_dim
    w = numpy_helper.from_array(np.zeros((obs_dim, width), dtype=np.float32), "w")
    b = numpy_helper.from_array(np.zeros(width, dtype=np.float32), "b")
    nodes = [helper.make_node("MatMul", ["obs", "w"], ["mm"])]
    if discrete:
        nodes += [helper.make_node("Add", ["mm", "b"], ["q"]),
                  helper.make_node("ArgMax", ["q"], ["action"], axis=1, keepdims=0)]
        out = helper.make_tensor_value_info("action", TensorProto.INT64, ["batch"])
    else:
        nodes.append(helper.make_node("Add", ["mm", "b"], ["action"]))
        out = helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", act_dim])
    graph = helper.make_graph(
        nodes, "rlbench_stand_in", [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", obs_dim])],
        [out], initializer=[w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="rlbench")
    model.ir_version = 8
    onnx.checker.check_model(model)
    atomic_write_bytes(path, model.SerializeToString(deterministic=True))
    return 4 * (obs_dim * width + width)


def _write_pt_stand_in(path: Path, spec_json: dict) -> int:
    # deferred: it loads torch, which importing this module does not
    from rlbench.zoo.policy import DeployablePolicy, PolicySpec, save_policy

    spec = PolicySpec.from_json({**spec_json, "hidden": []})
    save_policy(DeployablePolicy(spec), path)
    return param_bytes_of(path)


# --------------------------------------------------------------------------------------------
# Running the child


def _child_env(threads: int) -> dict[str, str]:
    return {**os.environ, **thread_env(threads)}


def _tail(text: str | bytes | None) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = text.strip()
    return text if len(text) <= STDERR_TAIL else "..." + text[-STDERR_TAIL:]


class _ForkServer:
    """One interpreter that has imported a runtime, forking a child per measurement.

    A fresh ``python -c`` child pays the interpreter and the imports every time: about 3 s with
    torch, which over the grid's cells would be most of the suite's overhead above its floor. The
    server pays them once per process and runtime family.
    """

    def __init__(self, family: str, threads: int):
        import atexit

        self.label = f"{family} fork server"
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER_CODE, json.dumps({"runtime": family})],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                     env=_child_env(threads), text=True, bufsize=1)
        atexit.register(self.close)
        self._readline(300.0, "starting")

    def _readline(self, timeout: float, what: str) -> str:
        import select

        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.close()
            self._stderr.seek(0)
            why = "timed out" if not ready else f"exited with {self.proc.returncode}"
            raise RuntimeError(f"memory {self.label} {why} while {what}; stderr tail:\n{_tail(self._stderr.read())}")
        return line

    def run(self, args: dict, timeout: float) -> dict:
        self.proc.stdin.write(json.dumps(args) + "\n")
        self.proc.stdin.flush()
        return json.loads(self._readline(timeout, f"measuring {args['path']}"))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


_SERVERS: dict[tuple[str, int], _ForkServer] = {}


def _server(runtime: str, threads: int) -> _ForkServer:
    key = ("onnxruntime" if runtime == "onnxruntime" else "torch", threads)
    if key not in _SERVERS or not _SERVERS[key].alive():
        _SERVERS[key] = _ForkServer(*key)
    return _SERVERS[key]


def _run_child(args: dict, *, label: str, timeout: float, fresh: bool = True) -> dict:
    if not fresh:
        out = _server(args["runtime"], int(args["threads"])).run(args, timeout)
        if not out["ok"]:
            raise RuntimeError(f"memory child ({label}, {args['runtime']}, {args['path']}) failed in the fork "
                               f"server:\n{_tail(out['error'])}")
        return _checked(out["report"], args, label)
    cmd = [sys.executable, "-c", CHILD_CODE, json.dumps(args)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_child_env(args["threads"]),
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"memory child ({label}, {args['runtime']}, {args['path']}) timed out after "
                           f"{timeout:.0f} s; stderr tail:\n{_tail(exc.stderr)}") from None
    if proc.returncode != 0:
        raise RuntimeError(f"memory child ({label}, {args['runtime']}, {args['path']}) exited with "
                           f"{proc.returncode}; stderr tail:\n{_tail(proc.stderr)}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    try:
        report = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise RuntimeError(f"memory child ({label}, {args['runtime']}, {args['path']}) printed no report; "
                           f"stdout tail:\n{_tail(proc.stdout)}\nstderr tail:\n{_tail(proc.stderr)}") from None
    return _checked(report, args, label)


def _checked(report: dict, args: dict, label: str) -> dict:
    if not report.get("vm_hwm_bytes"):
        raise RuntimeError(f"memory child ({label}) could not read VmHWM from /proc/self/status "
                           "(this measurement needs Linux)")
    if report.get("finite") is False:
        raise RuntimeError(f"memory child ({label}, {args['path']}) produced a non-finite action")
    return report


def _growth(report: dict) -> int:
    """A child's peak above what it started with: its VmHWM, less the RSS it inherited at the fork
    (0 for a fresh interpreter, whose VmHWM starts at exec).

    Both children of a pair fork from one server, but not at one instant: whatever the server holds
    resident at each fork is already in the child's VmHWM once ``clear_refs`` resets it. Taking
    each child's own RSS at its fork off its peak makes the delta what the two children did, not
    what the server held between the two forks (``test_memory``'s growing-server test plants 8 MiB
    there; model minus empty peaks would carry all of it)."""
    return int(report["vm_hwm_bytes"]) - int(report.get("vm_rss_at_fork_bytes", 0))


def _median_int(values: list[int]) -> int:
    return int(round(statistics.median(values)))


def measure_memory(artefact: Path | str, runtime: str, arena: bool | None = None, repeats: int = 3,
                   calls: int = 100, *, batch: int = 1, threads: int = 1,
                   timeout: float = 300.0, fresh: bool | None = None) -> MemoryRecord:
    """Peak RSS of running ``artefact`` in ``runtime``, minus that of the same run on a stand-in.

    ``runtime="onnxruntime"`` takes an ``.onnx`` file (``arena`` defaults to ``True``, ORT's own
    default); ``"torch"`` and ``"numpy"`` take a :func:`~rlbench.zoo.policy.save_policy` file and
    no ``arena``. Each of the ``repeats`` rounds runs the stand-in child and the model child
    back to back (alternating which goes first). See the module docstring for the method.

    ``fresh``: a new interpreter per child; otherwise (the default, unless the environment sets
    ``RLBENCH_MEMORY_FRESH=1``) children are forked from a server that imported the runtime once.
    """
    path = Path(artefact)
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}; got {runtime!r}")
    if not path.is_file():
        raise _missing(path)
    if repeats < 1 or calls < 0 or batch < 1 or threads < 1:
        raise ValueError(f"need repeats >= 1, calls >= 0, batch >= 1, threads >= 1 "
                         f"(got {repeats}, {calls}, {batch}, {threads})")
    if runtime == "onnxruntime":
        if not _is_onnx(path):
            raise ValueError(f"runtime 'onnxruntime' needs an .onnx artefact, got {path}")
        arena = True if arena is None else bool(arena)
    else:
        if _is_onnx(path):
            raise ValueError(f"runtime {runtime!r} needs a policy.pt artefact, got {path}")
        if arena is not None:
            raise ValueError(f"arena applies to onnxruntime only; got arena={arena!r} for {runtime!r}")

    if fresh is None:
        fresh = os.environ.get("RLBENCH_MEMORY_FRESH") == "1"
    bytes_on_disk = path.stat().st_size
    param_bytes = param_bytes_of(path)
    samples: dict[str, list[int]] = {k: [] for k in (
        "peak_rss_model", "peak_rss_empty", "delta", "ru_maxrss_model", "ru_maxrss_empty",
        "vm_rss_model", "vm_rss_empty", "rss_at_fork_model", "rss_at_fork_empty")}
    with tempfile.TemporaryDirectory(prefix="rlbench-mem-") as tmp:
        if runtime == "onnxruntime":
            obs_dim, act_dim, discrete = _onnx_dims(path)
            stand_in = Path(tmp) / "stand_in.onnx"
            stand_in_bytes = _write_onnx_stand_in(stand_in, obs_dim, act_dim, discrete)
        else:
            spec = _load_pt(path)["spec"]
            obs_dim, act_dim = int(spec["obs_dim"]), int(spec["act_dim"])
            stand_in = Path(tmp) / "stand_in.pt"
            stand_in_bytes = _write_pt_stand_in(stand_in, spec)
        common = {"runtime": runtime, "arena": arena, "calls": calls, "batch": batch, "threads": threads,
                  "obs_dim": obs_dim}
        runs = {"model": {**common, "path": str(path.resolve())}, "empty": {**common, "path": str(stand_in)}}
        for r in range(repeats):
            order = ("empty", "model") if r % 2 == 0 else ("model", "empty")
            got = {label: _run_child(runs[label], label=label, timeout=timeout, fresh=fresh) for label in order}
            if got["model"]["obs_dim"] != obs_dim:
                raise RuntimeError(f"{path}: the loaded model takes {got['model']['obs_dim']} inputs, "
                                   f"its file says {obs_dim}")
            for label in ("model", "empty"):
                samples[f"peak_rss_{label}"].append(int(got[label]["vm_hwm_bytes"]))
                samples[f"ru_maxrss_{label}"].append(int(got[label]["ru_maxrss_bytes"]))
                samples[f"vm_rss_{label}"].append(int(got[label]["vm_rss_bytes"]))
                samples[f"rss_at_fork_{label}"].append(int(got[label].get("vm_rss_at_fork_bytes", 0)))
            samples["delta"].append(_growth(got["model"]) - _growth(got["empty"]))

    return MemoryRecord(
        artefact=str(path), runtime=runtime, arena=arena, bytes_on_disk=int(bytes_on_disk),
        param_bytes=param_bytes,
        peak_rss_model_bytes=_median_int(samples["peak_rss_model"]),
        peak_rss_empty_bytes=_median_int(samples["peak_rss_empty"]),
        delta_bytes=_median_int(samples["delta"]),
        samples={k: tuple(v) for k, v in samples.items()},
        settings={"threads": threads, "batch": batch, "calls": calls, "repeats": repeats,
                  "peak_source": "VmHWM", "obs_dim": obs_dim, "act_dim": act_dim,
                  "children": "fresh interpreter" if fresh else "forked from a server that imported the runtime",
                  "stand_in": {"hidden": [], "param_bytes": stand_in_bytes},
                  "child_env": thread_env(threads)},
        machine=machine_info(), versions=library_versions())
