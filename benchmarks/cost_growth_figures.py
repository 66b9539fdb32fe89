"""The figures of benchmarks/cost_growth.py's record: how each cost grows with size (a slope on log-log axes and
its bootstrap interval), the plot, and the record's section of BENCHMARKS.md (benchmarks/report.py).

Why apart from the script: it measures and writes the record; this reads a record back. As one file the two were
too long to read top to bottom. report.py reaches section() through cost_growth.py.
"""
from __future__ import annotations

import json
import math
import random
import statistics
from pathlib import Path

import records  # benchmarks/, beside this script

from secondnature.learn import LearnConfig

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "cost_growth.json"
FLAT = 0.1                   # a slope whose whole interval is below this is flat: at most x1.26 per tenfold
DRAWS = 1_000                # bootstrap draws of a growth interval
CONFIG = LearnConfig()       # the loop's defaults: window, reply, group size, validation sample


# ---------------------------------------------------------------- growth figures

def loglog(points: list[tuple[float, float]], *, by_size: bool = True, seed: int = 0) -> dict:
    """The slope of log(y) on log(x) by least squares, with a 95% bootstrap interval: the points resampled within
    each x (`by_size`: repeated measurements of one size), or all together (one point per size)."""
    def slope(pts: list[tuple[float, float]]) -> float:
        xs, ys = [math.log(x) for x, _ in pts], [math.log(max(y, 1e-12)) for _, y in pts]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else math.nan
    rng = random.Random(seed)
    groups: dict[float, list[tuple[float, float]]] = {}
    for p in points:
        groups.setdefault(p[0] if by_size else 0, []).append(p)
    draws = sorted(slope([q for g in groups.values() for q in rng.choices(g, k=len(g))]) for _ in range(DRAWS))
    draws = [d for d in draws if not math.isnan(d)]
    lo, hi = (draws[int(0.025 * len(draws))], draws[int(0.975 * len(draws)) - 1]) if draws else (math.nan, math.nan)
    return {"slope": slope(points), "ci95": [lo, hi], "sizes": len({x for x, _ in points}), "points": len(points)}


def verdict(g: dict, what: str) -> str:
    """'flat', 'linear' or 'grows as size^b', said from the slope's interval."""
    lo, hi = g["ci95"]
    if hi < FLAT:
        return f"flat in {what}"
    if lo < FLAT:
        return f"no growth shown in {what}, none ruled out either (b up to {hi:+.2f})"
    if lo <= 1 <= hi or abs(g["slope"] - 1) < FLAT:
        return f"linear in {what}"
    return f"grows as {what}^{g['slope']:.2f}"


def mean_ci(xs: list[float], seed: int = 0) -> list[float]:
    """A 95% bootstrap interval for the mean."""
    if len(xs) < 2:
        return [math.nan, math.nan]
    rng = random.Random(seed)
    draws = sorted(statistics.fmean(rng.choices(xs, k=len(xs))) for _ in range(DRAWS))
    return [draws[int(0.025 * DRAWS)], draws[int(0.975 * DRAWS) - 1]]



def growth(record: dict) -> dict:
    """The growth figure of every measurement made so far."""
    out: dict = {}
    sel = record.get("select_render", [])
    for layout in ("spread", "one-scope"):
        for mode in ("warm", "cold"):
            pts = [(r["lessons"], x) for r in sel if r["layout"] == layout for x in r[f"{mode}_samples"]]
            if len({x for x, _ in pts}) >= 2:
                out[f"select_{layout}_{mode}"] = loglog(pts)
    for backend, rows in record.get("logging", {}).items():
        if isinstance(rows, list) and len(rows) >= 2:
            out[f"logging_{backend}"] = loglog([(r["rollouts"], r["per_10k_s"]) for r in rows], by_size=False)
    gate = record.get("gate", [])
    pts = [(r["candidates_per_step"], g + c) for r in gate for g, c in r["per_candidate"]]
    if len({x for x, _ in pts}) >= 2:
        out["gate_per_candidate"] = loglog(pts)
    prompt = record.get("prompt", [])
    if len(prompt) >= 2:
        xs, ys = [r["groups"] for r in prompt], [r["tokens"] for r in prompt]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        a = my - b * mx
        worst = max(abs(y - (a + b * x)) / y for x, y in zip(xs, ys))
        over = [r["groups"] for r in prompt if r["tokens"] > r["limit"]]
        out["prompt"] = {"per_group": b, "fixed": a, "worst_residual": worst,
                         "fits_groups": int((prompt[0]["limit"] - a) // b), "first_over": min(over) if over else None,
                         "kept_max": max(r["kept_groups"] for r in prompt)}
    return out



def plot(record: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    ax = axes[0][0]
    for layout in ("spread", "one-scope"):
        rows = [r for r in record.get("select_render", []) if r["layout"] == layout]
        for mode, style in (("warm", "-o"), ("cold", "--s")):
            if rows:
                ax.plot([r["lessons"] for r in rows], [r[f"{mode}_ms"] for r in rows], style, label=f"{layout}, {mode}")
        if layout == "spread" and rows and "route_ms" in rows[0]:
            ax.plot([r["lessons"] for r in rows], [r["route_ms"] for r in rows], ":^", label="spread, routing alone")
    ax.set(xscale="log", yscale="log", xlabel="lessons in the store", ylabel="ms a query (median)",
           title="1. select + render one query's lessons")
    legend(ax)
    ax = axes[0][1]
    for backend, rows in record.get("logging", {}).items():
        if isinstance(rows, list) and rows:
            ax.plot([r["rollouts"] for r in rows], [r["per_10k_s"] for r in rows], ".-", label=backend)
    ys = [r["per_10k_s"] for rows in record.get("logging", {}).values() if isinstance(rows, list) for r in rows]
    ax.set(xscale="log", yscale="log", xlabel="rollouts in the store", ylabel="seconds per 10,000 rollouts",
           title="2. logging rollouts", **({"ylim": (min(ys) / 4, max(ys) * 4)} if ys else {}))
    legend(ax)
    ax = axes[1][0]
    gate = record.get("gate", [])
    if gate:
        ax.errorbar([r["candidates_per_step"] for r in gate], [r["rollouts_per_candidate"] for r in gate],
                    yerr=[[r["rollouts_per_candidate"] - r["rollouts_per_candidate_ci95"][0] for r in gate],
                          [r["rollouts_per_candidate_ci95"][1] - r["rollouts_per_candidate"] for r in gate]],
                    fmt="-o", label="rollouts a gated candidate")
        ax.axhline(gate[0]["val_size"], color="grey", lw=0.8, ls=":", label="validation sample")
        ax.axhline(gate[0]["val_size"] + gate[0]["confirm_size"], color="grey", lw=0.8, ls="--",
                   label="validation and confirmation samples")
    ax.set(xscale="log", yscale="log", xlabel="candidates gated a step", ylabel="policy rollouts",
           title="3. the gate's cost per candidate", ylim=(3, 100), xticks=[r["candidates_per_step"] for r in gate])
    legend(ax)
    ax = axes[1][1]
    prompt = record.get("prompt", [])
    if prompt:
        ax.plot([r["groups"] for r in prompt], [r["tokens"] for r in prompt], "-o", label="all groups")
        ax.plot([r["groups"] for r in prompt], [r["kept_tokens"] for r in prompt], "--s", label="kept by the loop")
        ax.axhline(prompt[0]["limit"], color="grey", lw=0.8, ls=":", label="window minus the reply")
    ax.set(xscale="log", yscale="log", xlabel="groups of 4 attempts", ylabel="prompt tokens",
           title="4. the reflector's prompt")
    legend(ax)
    for ax in axes.flat:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


# ---------------------------------------------------------------- BENCHMARKS.md

def num(x: float) -> str:
    """Milliseconds: decimals below 100, none above (nor a thousands comma, read as an interval's comma)."""
    return f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 100 else f"{x:.0f}"


def fig(g: dict | None) -> str:
    return "-" if not g else f"{g['slope']:+.2f} [{g['ci95'][0]:+.2f}, {g['ci95'][1]:+.2f}]"


def section() -> list[str]:
    """The record for BENCHMARKS.md (benchmarks/report.py), if there is one."""
    if not OUT.exists():
        return []
    r = json.loads(OUT.read_text())
    g = r.get("growth", {})
    named = {**r, "machine": f"{r['machine']}, {r['cores']} cores"}  # this record keeps its cores apart
    lines = ["### Cost as the work grows", "",
             f"{records.preamble(named, 'cost_growth.json')}, {r['seconds'] / 60:.0f} minutes to its last row. No "
             "model runs: scripted models, and the packaged models' tokenizers read with vocab_only. Growth: the slope "
             "b of log(cost) against log(size) (cost ~ size^b; 0 is flat, 1 linear) over the sizes, with its 95% "
             "interval from resampling each size's "
             f"measurements; flat when the whole interval is below {FLAT} (at most x{10 ** FLAT:.2f} per tenfold).",
             *([r["note"]] if r.get("note") else []),
             *([f"1-minute load after each part's latest run: "
                f"{', '.join(f'{k} {v}' for k, v in r['load_1min_after'].items())} (2 cores; above 2, other work "
                f"shared the machine, which inflates the times more than the slopes)."]
               if r.get("load_1min_after") else []),
             *[f"Then: {', '.join(x['parts'])} at {x['commit']}, {x['date']} (`{x['command']}`, "
               f"{x.get('seconds', 0) / 60:.0f} minutes)." for x in r.get("reruns", [])],
             "", "![cost against size, log-log](results/cost_growth.png)", ""]
    sel = r.get("select_render", [])
    if sel:
        lines += ["**1. Select + render** one query's lessons under a {}-token budget: routing, the head revision, "
                  "selection, render (`store_scale.py`'s stores: `spread`, 20 lessons a task set; `one-scope`, every "
                  "lesson in one head). Median ms with its 95% interval; `cold`: the scope's selection not memoised."
                  .format(r["budget_tokens"]), "",
                  "| lessons | layout | n | warm ms | cold ms | route ms |", "|---|---|---|---|---|---|"]
        for x in sel:
            lines.append(f"| {x['lessons']:,} | {x['layout']} | {x['queries']} | {num(x['warm_ms'])} [{num(x['warm_ci95'][0])}, "
                         f"{num(x['warm_ci95'][1])}] | {num(x['cold_ms'])} [{num(x['cold_ci95'][0])}, "
                         f"{num(x['cold_ci95'][1])}] | {num(x['route_ms']) if 'route_ms' in x else '-'} |")
        lines.append("")
        for key, what in (("spread_warm", "spread, warm"), ("spread_cold", "spread, cold"),
                          ("one-scope_warm", "one-scope, warm"), ("one-scope_cold", "one-scope, cold")):
            if f"select_{key}" in g:
                lines.append(f"- {what}: b = {fig(g[f'select_{key}'])}: "
                             f"{verdict(g[f'select_{key}'], 'the lessons in the store' if 'spread' in key else 'the head')}")
        big = max((x for x in sel if x["layout"] == "spread" and "route_ms" in x), key=lambda x: x["lessons"],
                  default=None)
        if big:
            lines.append(f"- where a warm query's time goes at {big['lessons']:,} lessons ({big['scopes']:,} task sets): "
                         f"routing, timed alone, takes {num(big['route_ms'])} ms (the whole query {num(big['warm_ms'])}"
                         f" ms), {num(big['vocab_ms'])} ms of it finding the query's rarest words (`rare_words`)")
        met = g.get("select_spread_warm", {}).get("ci95", [1, 1])[1] < FLAT
        lines += ["", "Goal: flat in the store's size for a routed query (it reads one task set's head). A one-scope "
                  "store's cold query selects from its whole head, so it is linear in that head; the memo "
                  "(one selection per head revision) should make the warm query flat again. One-scope stops at "
                  f"{r['sizes']['one_scope_max']:,} lessons: a cold query there already selects from all of them.",
                  "", ("Met: routing ranks the learned-on prompts that hold the query's rarest indexed word, and "
                       "the next rarest only while their prompts stay within 1,000 (`rare_words`), reading each "
                       "word's count from the store's own vocabulary table (an fts5vocab count reads the word's whole "
                       "list of prompts). Before that change (the record at 4e0eddc) it ranked every prompt sharing "
                       "any of six words, and a warm query grew with b = +0.75, 1.2 s at a million lessons. The bump "
                       "at 10,000 lessons is a second word under that bound.") if met else
                  "Not met: see where a warm query's time goes, above.", ""]
    log = r.get("logging", {})
    if log.get("sqlite"):
        pg = {x["rollouts"]: x for x in log.get("postgres", [])}
        marks = [x for x in log["sqlite"] if x["rollouts"] in (10_000, 100_000, 1_000_000) or x is log["sqlite"][-1]]
        lines += [f"**2. Logging rollouts**: `store.add_rollouts`, {marks[0]['batch']} rollouts a call (a step's "
                  f"attempts), GSM8K-length rollouts ({log.get('row_payload_bytes', 0):,.0f} bytes of messages and "
                  "reply each), as the store grows:", "",
                  "| rollouts | SQLite s/10k | bytes each | PostgreSQL s/10k | bytes each |",
                  "|---|---|---|---|---|"]
        for x in {m["rollouts"]: m for m in marks}.values():
            q = pg.get(x["rollouts"])
            lines.append(f"| {x['rollouts']:,} | {x['per_10k_s']:.2f} | {x['bytes'] / x['rollouts']:,.0f} | "
                         + (f"{q['per_10k_s']:.2f} | {q['bytes'] / q['rollouts']:,.0f} |" if q else "- | - |"))
        lines.append("")
        for backend in ("sqlite", "postgres"):
            if f"logging_{backend}" in g:
                lines.append(f"- {backend}: b = {fig(g[f'logging_{backend}'])} over "
                             f"{g[f'logging_{backend}']['sizes']} windows: {verdict(g[f'logging_{backend}'], 'the rollouts stored')}")
        if "sqlite_final_bytes" in log:
            n = log["sqlite"][-1]["rollouts"]
            lines.append(f"- SQLite file at {n:,} rollouts, its log checkpointed: {log['sqlite_final_bytes'] / 1e9:.2f} "
                         f"GB, {log['sqlite_final_bytes'] / n:,.0f} bytes a rollout")
        if log.get("postgres_settings") and log.get("postgres"):
            lines.append(f"- PostgreSQL: {log['postgres_settings']}; bytes: the rollouts table with its indexes")
        elif log.get("postgres_skipped"):
            lines.append(f"- PostgreSQL not measured: {log['postgres_skipped']}")
        lines += ["", "Goal: a constant cost a rollout (flat).", ""]
    gate = r.get("gate", [])
    if gate:
        x0 = gate[0]
        lines += [f"**3. The gate's cost per candidate**: `learn()` with a scripted policy and reflector, "
                  f"a budget of {r['sizes']['gate_budget']:,} rollouts a run, the defaults otherwise (validation sample "
                  f"{x0['val_size']}, confirmation {x0['confirm_size']}); one reflector sample a step proposes n "
                  "lessons (n a step), each flipping 15% of items to right and 15% to wrong. Rollouts a gated candidate (gate "
                  "and confirmation, mean [95% CI]); current's: the current revisions' validation rollouts in all; "
                  "paid twice: a (prompt, item) validated more than once.", "",
                  "| n | steps | gated | kept | rollouts/candidate | current's | paid twice |",
                  "|---|---|---|---|---|---|---|"]
        for x in gate:
            ci = x["rollouts_per_candidate_ci95"]
            lines.append(f"| {x['candidates_per_step']} | {x['steps']} | {x['gated']} | {x['accepted']} | "
                         f"{x['rollouts_per_candidate']:.1f} [{ci[0]:.1f}, {ci[1]:.1f}] | "
                         f"{x['current_val_rollouts']} | {x['repeated_val_rollouts']} |")
        lines.append("")
        if "gate_per_candidate" in g:
            lines.append(f"- rollouts a candidate against candidates a step: b = {fig(g['gate_per_candidate'])}: "
                         f"{verdict(g['gate_per_candidate'], 'the candidates a step')}")
        calls = "; ".join(f"n={x['candidates_per_step']}: {x['reflector_calls'] / max(1, x['gated']):.2f}" for x in gate)
        lines += ["- the current revision's validation, reused across candidates: " + "; ".join(
            f"n={x['candidates_per_step']}: {x['current_val_rollouts']} rollouts over {x['head_revisions']} "
            f"revision(s) (were it paid per candidate: {sum(a + b for a, b in x['per_candidate']):,})"
            for x in gate) + (": yes, each item once per revision" if all(
                x["current_val_rollouts"] <= (x["val_size"] + x["confirm_size"]) * (x["head_revisions"] + 1)
                for x in gate) else ": NO, some items were paid more than once per revision"),
                  "- what a candidate cost: " + "; ".join(
                      f"n={x['candidates_per_step']}: {sum(c == 0 and a <= CONFIG.screen for a, c in x['per_candidate'])}"
                      f" stopped by the screen (at most {CONFIG.screen} items), "
                      f"{sum(c == 0 and a > CONFIG.screen for a, c in x['per_candidate'])} gated further, "
                      f"{sum(c > 0 for _, c in x['per_candidate'])} confirmed too" for x in gate),
                  f"- reflector calls a gated candidate: {calls} (one call a step, shared by its candidates)",
                  "- policy samples computed = rollouts recorded in every run (no completion-cache hits needed): "
                  + ("yes" if all(x["policy_samples"] == x["rollouts_recorded"] for x in gate) else "no"),
                  "", f"Goal: flat, at most a validation sample and a confirmation a candidate "
                  f"({x0['val_size']} + {x0['confirm_size']}), the current revision's validation paid once per "
                  "revision, never per candidate.", ""]
    prompt = r.get("prompt", [])
    if prompt and "prompt" in g:
        p = g["prompt"]
        lines += [f"**4. The reflector's prompt** (the edit request) over n groups of {prompt[0]['k']} attempts at "
                  "GSM8K tasks (mixed groups: the best and the worst attempt shown, each clipped at 700 characters), "
                  f"in the reflector's tokens; `kept`: what the loop's observe() keeps in its {prompt[0]['window']:,}"
                  f"-token window less the {CONFIG.reflect_max_tokens}-token reply, when a step shows n tasks.", "",
                  "| groups | prompt tokens | kept groups | kept tokens |", "|---|---|---|---|"]
        for x in prompt:
            lines.append(f"| {x['groups']} | {x['tokens']:,} | {x['kept_groups']} | {x['kept_tokens']:,} |")
        lines += ["", f"- linear: {p['per_group']:.0f} tokens a group over a fixed {p['fixed']:.0f} (worst residual "
                      f"{p['worst_residual']:.0%}: the tasks' lengths differ); capped: past {p['fits_groups']} groups the prompt would outgrow "
                      f"{prompt[0]['limit']:,} tokens"
                  + (f" (first over at {p['first_over']} measured)" if p["first_over"] else "")
                  + f", and observe() drops groups from the end (fit_groups) to keep at most {p['kept_max']}; a step "
                  f"shows {CONFIG.tasks_per_step} tasks by default (tasks_per_step), well inside the window.", ""]
    return lines
