"""Fake quantisation in PyTorch: int8 weights and uint8 layer inputs, rounded as the deployed graph rounds.

:class:`QuantLinear` wraps a Linear layer (with an optional pruning mask); :class:`QuantPolicy` is
a :class:`~rlbench.zoo.policy.DeployablePolicy`'s forward with such layers. Fine-tuning
(:mod:`rlbench.compress.finetune`) trains them; :mod:`rlbench.compress.qdq` writes them as an ONNX
graph that ONNX Runtime runs with int8 weights.

**Written here (no ``torch.ao``).** ``torch.ao.quantization`` still works on torch 2.13 but warns
it is deprecated, its default QAT qconfig's fused fake-quant op does not export to ONNX, and only
the deprecated TorchScript exporter turns a plain ``FakeQuantize`` into QDQ. The quantiser is
three lines of arithmetic, so it lives in :class:`QuantLinear`, and the graph is written with
``onnx.helper`` like :mod:`rlbench.zoo.onnx_graph`: nothing a torch upgrade can break, and the same
bytes for the same weights.

* Weights: symmetric per-tensor int8, ``scale = max|W| / 127``, ``q = clamp(round(W / scale),
  -127, 127)``; the straight-through estimator ``W + (q * scale - W).detach()`` passes the
  gradient to the fp32 master weights unchanged.
* Activations: the input of every Linear layer (the normalised observation, then each hidden
  activation) is fake-quantised to uint8 with an affine range ``[lo, hi]`` (widened to contain
  0, so 0 is exact): ``q = clamp(round(x / s) + zp, 0, 255)``. The range starts at the min/max
  of the first batch it sees (``distill``: of all states collected when quantisation starts),
  follows an exponential moving average of batch min/max (``EMA_CONSTANT``, as torch's
  ``MovingAverageMinMaxObserver``) while the training plan lets it observe, and is frozen for
  the rest (:class:`rlbench.compress.finetune.Plan`), so the weights adapt to the ranges that
  are deployed. Gradients pass straight through inside the range and are zero outside it
  (torch's ``FakeQuantize`` does the same).
* The PyTorch forward computes the value ONNX Runtime's fused ``QGemm`` computes, ``float32(sum
  of int products + int32 bias) * float32(input scale * weight scale)``, exactly (in float64,
  then rounded once), and takes its gradient from the straight-through dequantized path. In
  ReLU policies ORT also drops each hidden ReLU and fuses the next layer's QuantizeLinear into
  QGemm (requantizing with the single scale ``input scale * weight scale / next scale``);
  :class:`QuantPolicy` rounds those layer inputs the same way. ORT's actions then equal the
  PyTorch forward to float rounding (~2e-7, tested). With tanh, ORT's own tanh differs in the
  last bits and rarely moves a value across a rounding step of the next layer (tests state the
  tolerance).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from rlbench.core.errors import CompressionError
from rlbench.zoo.policy import DeployablePolicy

#: Weight of the newest batch in the moving average of activation ranges (torch's default).
#: Changing it (or a bound below) changes the artefact bytes: bump the qat and gmp method versions.
EMA_CONSTANT = 0.01
W_QMAX = 127
A_QMAX = 255
#: int32 bias bound, kept exactly representable in float32 (2**31 - 1 is not).
B_QMAX = 2**31 - 128


class QuantLinear(nn.Module):
    """A Linear layer with an optional pruning mask, int8 weight and uint8 input fake quantisation.

    It wraps the given ``nn.Linear`` (the same Parameter objects, so an optimiser built on the
    original layer keeps training it). ``quant`` switches fake quantisation on; ``observe``
    lets training forwards move the input range; ``keep_nonzero`` stores an unpruned weight
    that would round to 0 as +-1 step, so the int8 tensor has exactly the mask's zeros.
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.linear = linear
        self.register_buffer("mask", torch.ones_like(linear.weight, requires_grad=False))
        self.register_buffer("in_lo", torch.zeros(()))
        self.register_buffer("in_hi", torch.zeros(()))
        self.register_buffer("in_ready", torch.zeros((), dtype=torch.bool))
        self.quant = False
        self.observe = False
        self.keep_nonzero = False

    @property
    def in_features(self) -> int:
        return self.linear.in_features

    @property
    def out_features(self) -> int:
        return self.linear.out_features

    def masked_weight(self) -> torch.Tensor:
        return self.linear.weight * self.mask

    def weight_qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(integer-valued float tensor q [out, in], float32 scale) of the current masked weight."""
        w = self.masked_weight().detach()
        amax = w.abs().max()
        scale = amax / W_QMAX if float(amax) > 0 else torch.ones((), dtype=w.dtype)
        q = torch.clamp(torch.round(w / scale), -W_QMAX, W_QMAX)
        if self.keep_nonzero:
            q = torch.where((q == 0) & (self.mask != 0), torch.where(w < 0, -1.0, 1.0), q)
        return q, scale

    def weight(self) -> torch.Tensor:
        """The weight the layer computes with (masked; rounded to int8 steps when quantising)."""
        w = self.masked_weight()
        if not self.quant:
            return w
        q, scale = self.weight_qparams()
        return w + (q * scale - w).detach()

    def input_qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(float32 scale, integer-valued float zero point) of the input range, 0 included."""
        lo = torch.clamp(self.in_lo, max=0.0)
        hi = torch.clamp(self.in_hi, min=0.0)
        scale = (hi - lo) / A_QMAX
        if float(scale) <= 0:
            scale = torch.ones(())
        zp = torch.clamp(torch.round(-lo / scale), 0, A_QMAX)
        return scale, zp

    @torch.no_grad()
    def _observe(self, x: torch.Tensor) -> None:
        lo, hi = x.min(), x.max()
        if not bool(self.in_ready):
            self.in_lo.copy_(lo)
            self.in_hi.copy_(hi)
            self.in_ready.fill_(True)
        else:
            self.in_lo.add_(EMA_CONSTANT * (lo - self.in_lo))
            self.in_hi.add_(EMA_CONSTANT * (hi - self.in_hi))

    def bias_qparams(self, input_scale: torch.Tensor, weight_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(integer-valued float tensor, float32 scale) of the int32 bias; scale = input scale * weight scale."""
        scale = input_scale * weight_scale
        q = torch.clamp(torch.round(self.linear.bias.detach() / scale), -B_QMAX, B_QMAX)
        return q, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_sums(x)[0]

    def forward_with_sums(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(output, float32(int32 sums + int32 bias), their scale); the last two are None unquantised."""
        if self.quant and self.observe and self.training:
            self._observe(x.detach())
        if not (self.quant and bool(self.in_ready)):  # no range yet (rl: acting before the first gradient step)
            return F.linear(x, self.weight(), self.linear.bias), None, None
        # fresh tensors, not the buffers: SAC moves the ranges between a forward and its backward
        a_scale, zp = self.input_qparams()
        xq = torch.clamp(torch.round(x.detach() / a_scale) + zp, 0, A_QMAX)
        xc = torch.clamp(x, (0 - zp) * a_scale, (A_QMAX - zp) * a_scale)
        x_ste = xc + ((xq - zp) * a_scale - xc).detach()
        wq, w_scale = self.weight_qparams()
        w = self.masked_weight()
        w_ste = w + (wq * w_scale - w).detach()
        bq, b_scale = self.bias_qparams(a_scale, w_scale)
        b = self.linear.bias
        b_ste = b + (bq * b_scale - b).detach()
        y = F.linear(x_ste, w_ste, b_ste)
        with torch.no_grad():  # what onnxruntime's QGemm computes: exact int32 sums, one float32 rescale
            acc = ((xq - zp).double() @ wq.double().T + bq.double()).float()
            exact = acc * b_scale
        return y + (exact - y).detach(), acc, b_scale

    def copy_state_from(self, other: QuantLinear) -> None:
        with torch.no_grad():
            self.linear.weight.copy_(other.linear.weight)
            self.linear.bias.copy_(other.linear.bias)
            for name in ("mask", "in_lo", "in_hi", "in_ready"):
                getattr(self, name).copy_(getattr(other, name))
        self.quant, self.observe, self.keep_nonzero = other.quant, other.observe, other.keep_nonzero


class QuantPolicy(nn.Module):
    """:class:`~rlbench.zoo.policy.DeployablePolicy`'s forward with :class:`QuantLinear` layers.

    Built from a deep copy, so the policy it is given is never touched. With quantisation off
    and full masks it computes exactly what the policy does (the teacher is one of these).
    """

    def __init__(self, policy):
        super().__init__()
        policy = copy.deepcopy(policy).eval()
        self.spec = policy.current_spec()
        for name in ("obs_mean", "obs_std", "act_low", "act_high"):
            self.register_buffer(name, getattr(policy, name).detach().clone())
        #: ONNX layer names (``body_0``, ``body_2``, ..., ``head``), as rlbench.zoo.onnx_graph writes them
        self.names = [n.replace(".", "_") for n, m in policy.named_modules() if isinstance(m, nn.Linear)]
        self.layers = nn.ModuleList(QuantLinear(lin) for lin in policy.linears())
        if len(self.names) != len(self.layers):  # pragma: no cover - DeployablePolicy's layout
            raise CompressionError("policy layers and their names disagree (internal error)")

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x) if self.spec.activation == "relu" else torch.tanh(x)

    def unit_action(self, obs: torch.Tensor) -> torch.Tensor:
        """The action before the final clip, in units of half the action range around its middle."""
        x = obs
        if self.spec.normalize:
            x = torch.clamp((x - self.obs_mean) / self.obs_std, -self.spec.clip_obs, self.spec.clip_obs)
        for layer, nxt in zip(self.layers[:-1], self.layers[1:]):
            y, acc, scale = layer.forward_with_sums(x)
            x = self._act(y)
            if acc is not None and self.spec.activation == "relu" and nxt.quant and bool(nxt.in_ready):
                # onnxruntime drops the Relu before a uint8 QuantizeLinear with zero point 0 and fuses
                # the quantization into QGemm: q = round(float32(sums) * float32(scale / next scale)).
                # Rounding that product differs from rounding (sums * scale) / next scale at rare
                # ties; compute the next layer's input its way (its quantizer then reproduces q).
                n_scale, n_zp = nxt.input_qparams()
                if float(n_zp) == 0:
                    q = torch.clamp(torch.round(acc * (scale / n_scale)), 0, A_QMAX)
                    x = x + (q * n_scale - x).detach()
        x = self.layers[-1](x)
        if self.spec.squash:
            return torch.tanh(x)
        half = (self.act_high - self.act_low) / 2
        return (x - (self.act_high + self.act_low) / 2) / half

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        u = self.unit_action(obs)
        half, mid = (self.act_high - self.act_low) / 2, (self.act_high + self.act_low) / 2
        x = u * half + mid
        return torch.maximum(torch.minimum(x, self.act_high), self.act_low)

    @torch.no_grad()
    def calibrate(self, obs: torch.Tensor) -> None:
        """Set every quantised layer's input range to the min/max over ``obs`` (layer by layer)."""
        was_training = self.training
        observing = [l.observe for l in self.layers]
        for l in self.layers:
            if l.quant:
                l.in_ready.fill_(False)  # the first batch a layer observes sets its range
                l.observe = True
        self.train()
        self.unit_action(obs)
        for l, observe in zip(self.layers, observing):
            l.observe = observe
        self.train(was_training)

    def to_deployable(self):
        """A :class:`~rlbench.zoo.policy.DeployablePolicy` holding the weights this one computes with
        (masked, and rounded to int8 steps if quantising; activation rounding is not included)."""
        dep = DeployablePolicy(self.spec)
        with torch.no_grad():
            for dst, src in zip(dep.linears(), self.layers, strict=True):
                dst.weight.copy_(src.weight().detach())
                dst.bias.copy_(src.linear.bias.detach())
            for name in ("obs_mean", "obs_std", "act_low", "act_high"):
                getattr(dep, name).copy_(getattr(self, name))
        return dep.eval()


__all__ = ["A_QMAX", "B_QMAX", "EMA_CONSTANT", "QuantLinear", "QuantPolicy", "W_QMAX"]
