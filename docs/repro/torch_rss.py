"""Torch's RSS cost of a small policy, measured in fresh interpreters and in forked children.

Plain torch, no rlbench: this is the measurement of ``rlbench/measure/memory.py`` written out in a
few lines, so that a figure the suite reports can be checked against torch alone.

A child pins torch to one intra- and one inter-op thread, loads a policy file with
``torch.load(weights_only=True)``, rebuilds the MLP, runs ``--calls`` single-observation
inferences under ``inference_mode`` and reads its peak RSS (``VmHWM``). The same child on a
stand-in (one ``obs_dim x act_dim`` layer, written the same way) pays torch's import, its
allocator and its first inference; the policy's cost is model minus stand-in.

Children are started three ways (``--mode``):

* ``fresh``: a new interpreter per child (``python -c``), the reference;
* ``forked``: forked from a server interpreter that imported torch and nothing else (the suite's
  fork server), the child resetting its peak at the fork (``/proc/self/clear_refs``);
* ``forked-warm``: the same, from a server that has also run one torch inference before forking
  (the state of a process that has used torch, such as a pytest process after a torch test).

    python docs/repro/torch_rss.py baselines/policies/TRPO-Hopper-v5/policy.pt --repeats 5

prints one JSON line per mode (torch version, the per-repeat deltas and their median, in bytes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r'''
def measure(path, calls):
    import torch
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    payload = torch.load(path, map_location="cpu", weights_only=True)
    spec, sd = payload["spec"], payload["state_dict"]
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
    obs = torch.zeros(1, spec["obs_dim"])
    with torch.inference_mode():
        for _ in range(calls):
            x = obs
            if spec["normalize"]:
                x = torch.clamp((x - mean) / std, -spec["clip_obs"], spec["clip_obs"])
            x = head(body(x))
            x = torch.maximum(torch.minimum(x, high), low)
    status = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "Threads"):
                status[key] = int(value.split()[0]) * (1 if key == "Threads" else 1024)
    return status
'''

SERVER = CHILD + r'''
import json, os, sys
import torch
if sys.argv[1] == "warm":
    torch.set_num_threads(1)
    torch.nn.Linear(4, 4)(torch.zeros(1, 4))
print("ready", flush=True)
for line in sys.stdin:
    path, calls = json.loads(line)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM to the current RSS: the peak from the fork on
        os.write(w, json.dumps(measure(path, calls)).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as fh:
        out = fh.read()
    os.waitpid(pid, 0)
    print(out, flush=True)
'''

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def write_stand_in(policy: str, folder: str) -> str:
    """The policy's file format with no hidden layers, written by a throwaway interpreter."""
    out = os.path.join(folder, "stand_in.pt")
    code = ("import sys, torch\n"
            "p = torch.load(sys.argv[1], weights_only=True)\n"
            "s = dict(p['spec'], hidden=[])\n"
            "torch.manual_seed(0)\n"
            "head = torch.nn.Linear(s['obs_dim'], s['act_dim'])\n"
            "sd = {k: v for k, v in p['state_dict'].items() if k.startswith(('obs_', 'act_'))}\n"
            "sd.update({'head.weight': head.weight.detach().clone(), 'head.bias': head.bias.detach().clone()})\n"
            "torch.save({'format': p['format'], 'spec': s, 'state_dict': sd}, sys.argv[2])\n")
    subprocess.run([sys.executable, "-c", code, policy, out], check=True, env=ENV)
    return out


def fresh(path: str, calls: int) -> dict:
    code = CHILD + "import json, sys\nprint(json.dumps(measure(sys.argv[1], int(sys.argv[2]))))\n"
    proc = subprocess.run([sys.executable, "-c", code, path, str(calls)], check=True, env=ENV,
                          capture_output=True, text=True)
    return json.loads(proc.stdout.splitlines()[-1])


class Server:
    def __init__(self, warm: bool):
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, "warm" if warm else "cold"], env=ENV,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        assert self.proc.stdout.readline().strip() == "ready"

    def __call__(self, path: str, calls: int) -> dict:
        self.proc.stdin.write(json.dumps([path, calls]) + "\n")
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("policy", help="an rlbench policy.pt (torch.load(weights_only=True) reads it)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--mode", action="append", choices=("fresh", "forked", "forked-warm"),
                    help="repeatable; default: all three")
    args = ap.parse_args()
    import torch  # only to name the version; the children import their own

    with tempfile.TemporaryDirectory() as tmp:
        runs = {"model": os.path.abspath(args.policy), "empty": write_stand_in(args.policy, tmp)}
        for mode in args.mode or ("fresh", "forked", "forked-warm"):
            server = Server(mode == "forked-warm") if mode != "fresh" else None
            run = server or fresh
            deltas, peaks = [], {"model": [], "empty": []}
            for r in range(args.repeats):
                got = {label: run(runs[label], args.calls)
                       for label in (("empty", "model") if r % 2 == 0 else ("model", "empty"))}
                for label in peaks:
                    peaks[label].append(got[label])
                deltas.append(got["model"]["VmHWM"] - got["empty"]["VmHWM"])
            if server:
                server.close()
            print(json.dumps({"torch": torch.__version__, "mode": mode, "median_delta": statistics.median(deltas),
                              "deltas": deltas,
                              "model_hwm": [p["VmHWM"] for p in peaks["model"]],
                              "empty_hwm": [p["VmHWM"] for p in peaks["empty"]],
                              "model_anon": [p["RssAnon"] for p in peaks["model"]],
                              "empty_anon": [p["RssAnon"] for p in peaks["empty"]],
                              "threads": [p["Threads"] for p in peaks["model"]]}), flush=True)


if __name__ == "__main__":
    main()
