"""The zoo table of docs/zoo.md: the shipped policies' returns beside the published ones and beside
what doing nothing scores."""

from __future__ import annotations

from rlbench.gate.idle import below_idle
from rlbench.zoo.reference import PAPER, RL_ZOO
from rlbench.zoo.registry import env_short, is_discrete


def zoo_markdown(rows: list[dict], idle: dict | None = None) -> str:
    """The zoo table of docs/zoo.md: ours (with budget and CI) beside the paper and rl-zoo, and beside
    what doing nothing scores (``idle``: :func:`rlbench.gate.idle.read`; "below" when our whole CI lies
    under the zero-action return's). A pair the paper has no figure for (DQN) shows "—" there and is
    counted apart: no figure is made up for it. "at a bound": the fraction of action components within
    0.1% of the action range of a bound on the evaluation rollouts (``rlbench zoo saturation``)."""
    idle = idle or {}
    no_paper = 0
    out = ["| algo | env | our return (95% CI) | our budget | paper (Table 1) | rl-zoo (budget) | ours vs paper "
           "| doing nothing | at a bound |",
           "|---|---|---|---|---|---|---|---|---|"]
    at_or_above = shipped = below = 0
    for r in rows:
        short = env_short(r["env"])
        paper = PAPER.get((r["algo"], short))
        zoo = RL_ZOO.get((r["algo"], short))
        zoo_txt = f"{zoo[0]:.0f} ({zoo[1] // 1000}k)" if zoo else "—"
        still = idle.get(r["env"])
        still_txt = str(round(still["mean"])) if still else "not recorded"
        paper_txt = "—" if paper is None else f"{paper:.0f}"
        if r["status"] == "missing":
            out.append(f"| {r['algo']} | {r['env']} | not shipped yet | — | {paper_txt} | {zoo_txt} | — | {still_txt} "
                       f"| — |")
            continue
        shipped += 1
        ours = f"{r['return_mean']:.0f} [{r['ci_low']:.0f}, {r['ci_high']:.0f}]"
        trained = r.get("trained_timesteps", r["timesteps"])
        budget = f"{trained // 1000}k" + ("" if r["status"] == "ok" else f" of {r['target_timesteps'] // 1000}k")
        if r.get("stopped_early"):
            budget += " (stopped early)"
        if r["timesteps"] != trained:
            budget += f" (ships its best, at {r['timesteps'] // 1000}k)"
        if paper is None:
            no_paper += 1
            verdict = "no paper figure"
        elif r["ci_low"] >= paper:
            verdict = "above"
        elif r["ci_high"] < paper:
            verdict = "**lower**"
        else:
            verdict = "tie (CI includes it)"
        at_or_above += paper is not None and r["ci_high"] >= paper
        if still and below_idle(r["ci_high"], still):
            below += 1
            still_txt += " (**ours below**)"
        out.append(f"| {r['algo']} | {r['env']} | {ours} | {budget} | {paper_txt} | {zoo_txt} | {verdict} | {still_txt} "
                   f"| {_saturation_text(r)} |")
    out.append("")
    total = len(rows)
    out.append(f"At or above the paper's baseline (CI reaching it): {at_or_above} of {shipped - no_paper} shipped pairs "
               f"the paper has a figure for; {total - shipped} of {total} not shipped yet. Below doing nothing (our "
               f"whole CI under the doing-nothing return's): {below} of {shipped}.")
    return "\n".join(out)


#: Above this fraction of action components at a bound, a policy is called saturated: most of what
#: it does is bang-bang control, which compression of its weights barely moves.
SATURATED = 0.5


def _saturation_text(row: dict) -> str:
    """The row's saturation as a percentage ("—" for discrete actions, "not measured" before
    ``rlbench zoo saturation --write``), bold above :data:`SATURATED`."""
    if is_discrete(row["env"]):
        return "—"
    frac = row.get("action_saturation")
    if frac is None:
        return "not measured"
    text = f"{100 * frac:.0f}%"
    return f"**{text}**" if frac > SATURATED else text


def saturated(rows: list[dict]) -> list[str]:
    """The pairs above :data:`SATURATED`, in row order."""
    return [f"{r['algo']}-{r['env']}" for r in rows
            if r.get("action_saturation") is not None and r["action_saturation"] > SATURATED]


def zoo_matrix_markdown(rows: list[dict], idle: dict | None = None) -> str:
    """The README's zoo table: one row per environment, one column per algorithm, each cell our return
    beside the paper's Table 1 figure; bold where our CI lies wholly below the paper's figure, and
    marked "below doing nothing" where it lies wholly under the zero-action return's."""
    idle = idle or {}
    algos = list(dict.fromkeys(r["algo"] for r in rows))
    envs = list(dict.fromkeys(r["env"] for r in rows))
    by_pair = {(r["algo"], r["env"]): r for r in rows}
    out = ["| env | " + " | ".join(algos) + " |", "|---|" + "---|" * len(algos)]
    reach = shipped = below = 0
    for env in envs:
        cells = []
        for algo in algos:
            r = by_pair.get((algo, env))
            if r is None:
                cells.append("")
                continue
            paper = PAPER.get((algo, env_short(env)))
            if r["status"] in ("missing", "invalid"):
                cells.append(r["status"])
                continue
            shipped += 1
            text = f"{r['return_mean']:.0f}"
            if paper is not None:
                lower = r["ci_high"] < paper
                reach += not lower
                text = (f"**{text}**" if lower else text) + f" ({paper:.0f})"
            still = idle.get(env)
            if still and below_idle(r["ci_high"], still):
                below += 1
                text += " †"
            cells.append(text)
        out.append(f"| {env} | " + " | ".join(cells) + " |")
    with_paper = sum(PAPER.get((r["algo"], env_short(r["env"]))) is not None
                     for r in rows if r["status"] not in ("missing", "invalid"))
    out.append("")
    out.append(f"Our mean return on 50 evaluation seeds (the paper's Table 1 figure in brackets; bold where our "
               f"whole 95% CI lies below it; † where it lies below doing nothing: zero actions, on CartPole random ones). "
               f"At or above the paper: {reach} of {with_paper} pairs it reports. "
               f"Below doing nothing: {below} of {shipped} shipped pairs.")
    over = saturated(rows)
    if over:
        out.append("")
        out.append(f"More than {100 * SATURATED:.0f}% of their action components at a bound on these episodes: "
                   f"{', '.join(over)}.")
    return "\n".join(out)
