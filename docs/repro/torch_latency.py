"""Torch's per-call cost of a small policy against a NumPy forward pass of the same weights.

Plain torch and NumPy, no rlbench: the grid's torch yardstick (``torch-fp32/numpy-ref``,
``rlbench/grid/cell.py``) written out in a few lines, so that a move of that figure under a new
torch can be checked against torch alone. NumPy is the same under every torch version compared,
so the ratio moves only with torch's cost.

Each policy file is loaded with ``torch.load(weights_only=True)`` and rebuilt as an MLP (torch
pinned to one intra- and one inter-op thread, as the grid times it); the NumPy pass uses the same
weights. Both answer one observation at a time, in alternating rounds of at least 3 ms each
(the order swapped every round), timed on thread CPU time. A policy's figure is the median of the
per-round ratios with a bootstrap 95% CI; the run's figure is the median over the policies.

    python docs/repro/torch_latency.py baselines/policies/*/policy.pt --rounds 200

prints one JSON line per policy and one for the run (torch version, ratio, CI).

To compare torch versions, give each one's interpreter (a venv per version): the script runs
itself under each in turn, ``--passes`` times, rotating the order every pass so that no version
always runs first, and prints per version the median over policies and passes, and per version
against the first (python 0) its paired change (the median over policies of the ratio's median over passes,
new over old, with a bootstrap 95% CI over policies):

    python docs/repro/torch_latency.py POLICIES --vs python venvs/torch-2.15.0/bin/python --passes 6

``--calls N`` only calls each policy's torch function N times and prints nothing, for an
instruction counter (``valgrind --tool=callgrind``): two counts N1 and N2 apart give the
instructions of one call, (count2 - count1) / (N2 - N1).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch


def load(path: Path):
    payload = torch.load(path, map_location="cpu", weights_only=True)
    spec, sd = payload["spec"], payload["state_dict"]
    if spec.get("discrete", False):
        raise SystemExit(f"{path}: a discrete policy; this script times the continuous ones")
    act = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[spec["activation"]]
    layers, width = [], spec["obs_dim"]
    for w in spec["hidden"]:
        layers += [torch.nn.Linear(width, w), act()]
        width = w
    body = torch.nn.Sequential(*layers)
    head = torch.nn.Linear(width, spec["act_dim"])
    body.load_state_dict({k[5:]: v for k, v in sd.items() if k.startswith("body.")})
    head.load_state_dict({k[5:]: v for k, v in sd.items() if k.startswith("head.")})
    mean, std, low, high = sd["obs_mean"], sd["obs_std"], sd["act_low"], sd["act_high"]
    half, mid = (high - low) / 2, (high + low) / 2

    def torch_call(obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(obs)
            if spec["normalize"]:
                x = torch.clamp((x - mean) / std, -spec["clip_obs"], spec["clip_obs"])
            x = head(body(x))
            if spec["squash"]:
                x = torch.tanh(x) * half + mid
            return torch.maximum(torch.minimum(x, high), low).numpy()

    np_layers = [(l.weight.detach().numpy().T.copy(), l.bias.detach().numpy().copy())
                 for l in [*body[::2], head]]
    n_mean, n_std, n_low, n_high = (t.numpy() for t in (mean, std, low, high))
    n_half, n_mid = half.numpy(), mid.numpy()
    n_act = (lambda x: np.maximum(x, 0, out=x)) if spec["activation"] == "relu" else np.tanh

    def numpy_call(obs: np.ndarray) -> np.ndarray:
        x = obs
        if spec["normalize"]:
            x = np.clip((x - n_mean) / n_std, -spec["clip_obs"], spec["clip_obs"])
        for wt, b in np_layers[:-1]:
            x = n_act(x @ wt + b)
        wt, b = np_layers[-1]
        x = x @ wt + b
        if spec["squash"]:
            x = np.tanh(x) * n_half + n_mid
        return np.maximum(np.minimum(x, n_high), n_low)

    obs = np.zeros((1, spec["obs_dim"]), dtype=np.float32)
    return (lambda: torch_call(obs)), (lambda: numpy_call(obs))


def calls_per_round(fn, min_time: float) -> int:
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        if time.perf_counter() - t0 >= min_time:
            return n
        n *= 2


def ratio(torch_fn, numpy_fn, rounds: int, min_time: float = 0.003) -> tuple[float, float, float]:
    for fn in (torch_fn, numpy_fn):  # warm-up
        t_end = time.perf_counter() + 0.05
        while time.perf_counter() < t_end:
            fn()
    n_t, n_n = calls_per_round(torch_fn, min_time), calls_per_round(numpy_fn, min_time)
    per_round = []
    gc.disable()
    try:
        for r in range(rounds):
            cost = {}
            order = [("t", torch_fn, n_t), ("n", numpy_fn, n_n)]
            for key, fn, n in (order if r % 2 == 0 else order[::-1]):
                c0 = time.thread_time()
                for _ in range(n):
                    fn()
                cost[key] = (time.thread_time() - c0) / n
            per_round.append(cost["t"] / cost["n"])
    finally:
        gc.enable()
    x = np.asarray(per_round)
    rng = np.random.default_rng(0)
    boots = np.median(rng.choice(x, size=(2000, len(x))), axis=1)
    return float(np.median(x)), float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))


def compare(pythons: list[str], policies: list[Path], rounds: int, passes: int) -> None:
    """Each interpreter in turn, ``passes`` times; the same interpreter twice is the A/A control."""
    slots = list(range(len(pythons)))
    runs: list[list[dict[str, float]]] = [[] for _ in slots]
    versions: list[str] = [""] * len(slots)
    for k in range(passes):
        for i in slots[k % len(slots):] + slots[:k % len(slots)]:
            out = subprocess.run([pythons[i], __file__, *map(str, policies), "--rounds", str(rounds)],
                                 check=True, capture_output=True, text=True).stdout
            lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
            versions[i] = lines[-1]["torch"]
            runs[i].append({d["policy"]: d["ratio"] for d in lines if "policy" in d})
            print(json.dumps({"pass": k, "python": i, "torch": versions[i],
                              "median_ratio": lines[-1]["median_ratio"]}), flush=True)
    names = list(runs[0][0])
    per_policy = [np.asarray([statistics.median(p[n] for p in runs[i]) for n in names]) for i in slots]
    rng = np.random.default_rng(0)
    for i in slots:
        summary = {"python": i, "torch": versions[i], "median_ratio": round(float(np.median(per_policy[i])), 4)}
        if i:
            change = per_policy[i] / per_policy[0]
            boots = np.median(rng.choice(change, size=(2000, len(change))), axis=1)
            summary["vs python 0"] = {
                "median_change": round(float(np.median(change)), 4),
                "ci95": [round(float(np.quantile(boots, 0.025)), 4), round(float(np.quantile(boots, 0.975)), 4)],
                "policies_slower": int((change > 1).sum()), "policies": len(change)}
        print(json.dumps(summary), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("policies", nargs="+", type=Path, help="policy.pt files of continuous-action policies")
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--vs", nargs="+", metavar="PYTHON", help="interpreters (one per torch version) to compare")
    ap.add_argument("--passes", type=int, default=6)
    ap.add_argument("--calls", type=int, help="only call each policy's torch function this many times")
    args = ap.parse_args()
    if args.vs:
        compare(args.vs, args.policies, args.rounds, args.passes)
        return
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    if args.calls is not None:
        for path in args.policies:
            torch_fn, _ = load(path)
            for _ in range(args.calls):
                torch_fn()
        return
    medians = []
    for path in args.policies:
        med, lo, hi = ratio(*load(path), rounds=args.rounds)
        medians.append(med)
        print(json.dumps({"torch": torch.__version__, "policy": path.parent.name, "ratio": round(med, 4),
                          "ci95": [round(lo, 4), round(hi, 4)]}), flush=True)
    print(json.dumps({"torch": torch.__version__, "policies": len(medians),
                      "median_ratio": round(statistics.median(medians), 4)}), flush=True)


if __name__ == "__main__":
    main()
