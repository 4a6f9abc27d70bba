"""One ``Predictor`` protocol for every variant: torch eager, ONNX Runtime, and plain NumPy.

A torch policy, an ORT session and a pruned copy all answer ``predict(obs) -> action`` on a
float32 batch, so measuring code never branches on the method.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from rlbench.core.threads import DEFAULT_THREADS, ort_threads, pin_threads

@runtime_checkable
class Predictor(Protocol):
    name: str
    runtime: str

    def predict(self, obs: np.ndarray) -> np.ndarray:
        """obs [B, obs_dim] float32 -> actions [B, act_dim] float32 (a discrete policy: [B] int64 indices)."""


class TorchPredictor:
    runtime = "torch"

    def __init__(self, module, name: str = "torch", threads: int = DEFAULT_THREADS):
        import torch

        pin_threads(threads)
        self._torch = torch
        self.module = module.eval()
        self.name = name
        self.threads = threads

    def predict(self, obs: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self.module(self._torch.from_numpy(np.ascontiguousarray(obs, dtype=np.float32))).numpy()


class OrtPredictor:
    runtime = "onnxruntime"

    def __init__(self, model: Path | bytes, name: str = "onnxruntime", threads: int = DEFAULT_THREADS,
                 arena: bool = True):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        ort_threads(opts, threads)
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.enable_cpu_mem_arena = arena
        opts.log_severity_level = 3
        src = str(model) if isinstance(model, Path) else model
        self.session = ort.InferenceSession(src, sess_options=opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [self.session.get_outputs()[0].name]
        self.name = name
        self.threads = threads
        self.arena = arena

    def predict(self, obs: np.ndarray) -> np.ndarray:
        return self.session.run(self.output_names, {self.input_name: np.ascontiguousarray(obs, dtype=np.float32)})[0]


class ReferencePredictor:
    """ONNX's reference evaluator: the spec's exact integer semantics on every CPU, slowly.

    Tests judge an int8 graph with it, because ONNX Runtime's int8 kernels are not exact on
    every CPU (:mod:`rlbench.measure.int8kernel`); it is never timed.
    """

    runtime = "onnx-reference"

    def __init__(self, model: Path | bytes, name: str = "onnx-reference"):
        import onnx
        import onnx.version_converter
        from onnx.reference import ReferenceEvaluator

        proto = onnx.load(str(model)) if isinstance(model, Path) else onnx.load_from_string(model)
        opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
        if opset < 19:  # the evaluator implements (De)QuantizeLinear from opset 19 on; same semantics here
            proto = onnx.version_converter.convert_version(proto, 19)
        self.evaluator = ReferenceEvaluator(proto)
        self.input_name = proto.graph.input[0].name
        self.name = name

    def predict(self, obs: np.ndarray) -> np.ndarray:
        return self.evaluator.run(None, {self.input_name: np.ascontiguousarray(obs, dtype=np.float32)})[0]


class NumpyPredictor:
    """A plain NumPy forward pass of the same weights: the floor that no runtime under test touches."""

    runtime = "numpy"

    def __init__(self, module, name: str = "numpy"):
        # deferred: it loads torch, which importing this module does not
        from rlbench.zoo.policy import policy_weights_numpy

        spec = module.current_spec()
        w = policy_weights_numpy(module)
        self.name = name
        self.normalize, self.clip = spec.normalize, np.float32(spec.clip_obs)
        self.mean, self.std = w["obs_mean"], w["obs_std"]
        self.layers = [(np.ascontiguousarray(l.weight.detach().numpy().T, dtype=np.float32),
                        l.bias.detach().numpy().astype(np.float32)) for l in module.linears()]
        self.act = (lambda x: np.maximum(x, 0, out=x)) if spec.activation == "relu" else np.tanh
        self.squash = spec.squash
        self.discrete = spec.discrete
        self.low, self.high = w["act_low"], w["act_high"]
        self.half, self.mid = (self.high - self.low) / 2, (self.high + self.low) / 2

    def predict(self, obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, dtype=np.float32)
        if self.normalize:
            x = np.clip((x - self.mean) / self.std, -self.clip, self.clip)
        for wt, b in self.layers[:-1]:
            x = self.act(x @ wt + b)
        wt, b = self.layers[-1]
        x = x @ wt + b
        if self.discrete:
            return np.argmax(x, axis=1).astype(np.int64)
        if self.squash:
            x = np.tanh(x) * self.half + self.mid
        return np.maximum(np.minimum(x, self.high), self.low)


class ZeroPredictor:
    """Every action zero, whatever the observation: what doing nothing scores (:mod:`rlbench.gate.idle`)."""

    name = "zero-action"
    runtime = None
    threads = None

    def __init__(self, action_dim: int):
        self.action_dim = int(action_dim)

    def predict(self, obs: np.ndarray) -> np.ndarray:
        return np.zeros((len(obs), self.action_dim), dtype=np.float32)


class ConstantActionPredictor:
    """The same discrete action index in every state: doing nothing where an action means no actuation
    (LunarLander's 0 fires no engine)."""

    runtime = None
    threads = None

    def __init__(self, action: int):
        self.action = int(action)
        self.name = f"constant-action-{self.action}"

    def predict(self, obs: np.ndarray) -> np.ndarray:
        return np.full(len(obs), self.action, dtype=np.int64)


class RandomActionPredictor:
    """A uniformly random discrete action per state, drawn from a hash of the observation's bytes.

    Doing nothing on a task where every action actuates (CartPole pushes the cart either way). The
    draw depends on the state alone, not on the batch or the call order, so an episode's return is
    the same whichever seeds it is evaluated with: a per-seed figure the return gate can compare.
    """

    name = "uniform-random-action"
    runtime = None
    threads = None

    def __init__(self, n_actions: int):
        self.n_actions = int(n_actions)

    def predict(self, obs: np.ndarray) -> np.ndarray:
        import zlib

        rows = np.ascontiguousarray(obs, dtype=np.float32)
        return np.array([zlib.crc32(r.tobytes()) % self.n_actions for r in rows], dtype=np.int64)


def idle_predictor(env_id: str):
    """What doing nothing is on ``env_id``: zero action (continuous), or the registry's
    :data:`~rlbench.zoo.registry.IDLE_ACTION` (discrete: an action index, or ``"random"``)."""
    # deferred: it loads gymnasium, which importing this module does not
    from rlbench.zoo.envs import make_env
    from rlbench.zoo.registry import IDLE_ACTION, is_discrete

    env = make_env(env_id)
    try:
        space = env.action_space
        if not is_discrete(env_id):
            return ZeroPredictor(int(np.prod(space.shape)))
        rule = IDLE_ACTION[env_id]
        return RandomActionPredictor(int(space.n)) if rule == "random" else ConstantActionPredictor(int(rule))
    finally:
        env.close()
