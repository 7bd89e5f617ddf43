"""`tierctl report`: one offline HTML page with PNG figures comparing finished campaigns.

Reads only what a campaign directory holds (SPEC section 5): campaign.toml, schedule.csv, each
iteration's metrics.json and tiers.safetensors (numpy, no torch), with step states from
campaign.state. Everything is read and checked before the first file is written; figures and then
index.html are each written atomically, so a page never references a half-written figure.

Figures (matplotlib, Agg, imported only here):
- ppl after prune (dashed) and after fine-tune (solid) against iteration, and against sparsity:
  all campaigns in one figure, one colour per campaign (the side-by-side a paper shows);
- per campaign, the composition of every matrix per iteration (stacked dense / 2:4 / top-k bars);
- per campaign, the tier maps of a few matrices across iterations (heat maps).
Tables: per-iteration results, the schedule with its projected sparsity, timings, settings.
"""

from __future__ import annotations

import fnmatch
import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tierctl.campaign.config import CampaignConfig, load_config
from tierctl.campaign.layout import CampaignLayout, atomic_path
from tierctl.campaign.state import DONE, campaign_status, load_campaign_schedule
from tierctl.core.schedule import project
from tierctl.core.tiermap_io import load_tier_maps_numpy
from tierctl.errors import BadInput
from tierctl.render.bars import TIER_COLORS, TIER_NAMES, matrix_sort_key, split_matrix_name

DPI = 110
TIMING_ORDER = ("prune_s", "finetune_s", "eval_s")


@dataclass
class IterationData:
    iteration: int
    steps: dict[str, str]
    composition: dict[str, float] | None
    sparsity: float | None
    ppl_pruned: float | None
    ppl: float | None
    per_layer: dict[str, dict[str, float]] | None
    metrics: dict[str, Any]
    tiers: dict[str, np.ndarray] | None  # None when the iteration has no tier map (e.g. a Wanda baseline)


@dataclass
class CampaignData:
    name: str
    layout: CampaignLayout
    config: CampaignConfig
    schedule: list[dict[str, Any]]  # schedule rows with their projected composition and sparsity
    iterations: list[IterationData] = field(default_factory=list)  # those whose prune is done


@dataclass
class FigureFile:
    """A figure of the report: its file name in the output directory and what it shows."""

    name: str
    title: str
    campaigns: list[str]


def load_campaign(layout: CampaignLayout) -> CampaignData:
    """Everything the report shows of one campaign; BadInput when it has no finished iteration."""
    config = load_config(layout.config)
    schedule = load_campaign_schedule(layout)
    status = campaign_status(layout, schedule, check=False)
    projected = project(schedule, config.tiers.block_size, config.tiers.topk_per_block)
    rows = [{**rec, "projected_sparsity": p["sparsity"]} for rec, p in zip(schedule.to_records(), projected,
                                                                            strict=True)]
    data = CampaignData(layout.name, layout, config, rows)
    for it in status.iterations:
        if it.metrics is None:
            continue
        path = layout.tiers(it.iteration)
        tiers = load_tier_maps_numpy(path)[0] if path.is_file() else None
        data.iterations.append(IterationData(it.iteration, dict(it.steps), it.composition, it.sparsity,
                                             it.ppl_pruned, it.ppl, it.per_layer, it.metrics, tiers))
    if not any(it.steps.get("eval") == DONE for it in data.iterations):
        raise BadInput(f"{layout.root}: no finished iteration to report (run `tierctl run {layout.root} --iter 1`)")
    return data


def _unique_names(campaigns: list[CampaignData]) -> None:
    """Two campaigns called alike (same directory name elsewhere) get their parent directory as prefix."""
    seen: dict[str, int] = {}
    for c in campaigns:
        seen[c.name] = seen.get(c.name, 0) + 1
    for c in campaigns:
        if seen[c.name] > 1:
            c.name = f"{c.layout.root.resolve().parent.name}/{c.name}"


def select_matrices(names: list[str], patterns: list[str] | None) -> list[str]:
    """Matrices for the heat maps: those matching `patterns`, else the first and last kind of the first
    and last decoder layer (attention in and MLP out, at both ends of the network)."""
    names = sorted(names, key=matrix_sort_key)
    if patterns:
        return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    layers = sorted({split_matrix_name(n)[0] for n in names}, key=lambda x: (x is None, x or 0))
    picks: list[str] = []
    for layer in dict.fromkeys([layers[0], layers[-1]]):
        of_layer = [n for n in names if split_matrix_name(n)[0] == layer]
        picks += [n for n in dict.fromkeys([of_layer[0], of_layer[-1]]) if n not in picks]
    return picks


# --- figures ----------------------------------------------------------------------------------------


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _log_y(ax: Any) -> None:
    """Log y axis labelled in plain numbers; minor ticks labelled too when the data span under a decade."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.set_yscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    lo, hi = ax.get_ylim()
    ax.yaxis.set_minor_formatter(plain if hi / lo < 12 else NullFormatter())


def ppl_figure(campaigns: list[CampaignData], x: str = "iteration") -> Any:
    """ppl after prune (dashed, hollow) and after fine-tune (solid) of every campaign, against `x`."""
    fig = _new_figure(7.5, 4.2)
    ax = fig.add_subplot()
    for i, c in enumerate(campaigns):
        color = f"C{i % 10}"  # matplotlib's default cycle: one colour per campaign in both ppl figures
        for attr, style, label in (("ppl_pruned", "--", "after prune"), ("ppl", "-", "after fine-tune")):
            pts = [(it.iteration if x == "iteration" else 100 * it.sparsity, getattr(it, attr))
                   for it in c.iterations
                   if getattr(it, attr) is not None and (x == "iteration" or it.sparsity is not None)]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, style, marker="o", color=color, label=f"{c.name}: {label}",
                        markerfacecolor="white" if style == "--" else color)
    _log_y(ax)
    ax.set_xlabel("iteration" if x == "iteration" else "sparsity of prunable matrices (%)")
    ax.set_ylabel("perplexity (log scale)")
    ax.set_title(f"Perplexity against {x}")
    if x == "iteration":
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def composition_figure(c: CampaignData) -> Any | None:
    """Per iteration (rows), the dense / 2:4 / top-k fractions of every matrix in model order."""
    from matplotlib.patches import Patch

    its = [it for it in c.iterations if it.per_layer]
    if not its:
        return None
    names = sorted({n for it in its for n in it.per_layer}, key=matrix_sort_key)
    fig = _new_figure(min(16.0, 4 + 0.05 * len(names)), 0.5 + 1.5 * len(its))
    axes = fig.subplots(len(its), 1, sharex=True, squeeze=False)[:, 0]
    xs = np.arange(len(names))
    for ax, it in zip(axes, its, strict=True):
        bottom = np.zeros(len(names))
        for tier, key in enumerate(("dense", "semi", "topk")):
            vals = np.array([float(it.per_layer.get(n, {}).get(key, 0.0)) for n in names])
            ax.bar(xs, vals, bottom=bottom, width=1.0, color=TIER_COLORS[tier], label=TIER_NAMES[tier], linewidth=0)
            bottom += vals
        ax.set_ylim(0, 1)
        ax.set_xlim(-0.5, len(names) - 0.5)
        ax.set_ylabel(f"iter {it.iteration}")
        ax.set_yticks([0, 0.5, 1])
    starts = [i for i, n in enumerate(names) if i == 0 or split_matrix_name(n)[0] != split_matrix_name(names[i - 1])[0]]
    step = max(1, len(starts) // 16)
    axes[-1].set_xticks([starts[i] for i in range(0, len(starts), step)],
                        [str(split_matrix_name(names[starts[i]])[0]) for i in range(0, len(starts), step)])
    axes[-1].set_xlabel("decoder layer (one bar per matrix, in model order)")
    for ax in axes:
        for x in starts[1:]:
            ax.axvline(x - 0.5, color="white", linewidth=0.6)  # decoder-layer boundaries
    fig.suptitle(f"{c.name}: block composition of every matrix", fontsize=10)
    handles = [Patch(color=TIER_COLORS[t], label=TIER_NAMES[t]) for t in range(3)]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=8)
    return fig


def tiermap_figure(c: CampaignData, patterns: list[str] | None) -> Any | None:
    """Heat maps of the selected matrices (rows) at every iteration with a tier map (columns)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    its = [it for it in c.iterations if it.tiers]
    if not its:
        return None
    chosen = select_matrices(list(its[-1].tiers), patterns)
    if not chosen:
        return None
    cmap = ListedColormap(list(TIER_COLORS))
    fig = _new_figure(1.0 + 2.2 * len(its), 0.8 + 1.9 * len(chosen))
    axes = fig.subplots(len(chosen), len(its), squeeze=False)
    for r, name in enumerate(chosen):
        for col, it in enumerate(its):
            ax = axes[r][col]
            m = it.tiers.get(name)
            if m is not None:
                ax.imshow(m, cmap=cmap, vmin=0, vmax=2, interpolation="nearest", aspect="equal")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"iter {it.iteration}", fontsize=9)
            if col == 0:
                ax.set_ylabel(re.sub(r"^model\.(layers\.)?", "", name), fontsize=7)
    fig.legend(handles=[Patch(color=TIER_COLORS[t], label=TIER_NAMES[t]) for t in range(3)],
               loc="outside lower center", ncols=3, fontsize=8)
    fig.suptitle(f"{c.name}: tier maps (rows: output blocks, columns: input blocks)", fontsize=10)
    return fig


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", s).strip("-") or "campaign"


def write_figures(campaigns: list[CampaignData], out: Path, patterns: list[str] | None) -> list[FigureFile]:
    """Render and save every figure (each PNG written atomically); the list says what each shows."""
    names = [c.name for c in campaigns]
    made: list[tuple[str, str, list[str], Any]] = [
        ("ppl-iteration.png", "Perplexity against iteration", names, ppl_figure(campaigns, "iteration")),
        ("ppl-sparsity.png", "Perplexity against sparsity", names, ppl_figure(campaigns, "sparsity")),
    ]
    for i, c in enumerate(campaigns, 1):
        comp = composition_figure(c)
        if comp is not None:
            made.append((f"composition-{i}-{_slug(c.name)}.png", f"{c.name}: composition per iteration", [c.name],
                         comp))
        maps = tiermap_figure(c, patterns)
        if maps is not None:
            made.append((f"tiermaps-{i}-{_slug(c.name)}.png", f"{c.name}: tier maps across iterations", [c.name],
                         maps))
    files = []
    for fname, title, who, fig in made:
        with atomic_path(out / fname) as tmp:
            fig.savefig(tmp, format="png", metadata={"Title": title, "Software": "tierctl report"})
            tmp.chmod(0o644)  # a report is for sharing: readable like any file the user writes
        files.append(FigureFile(fname, title, who))
    return files


def build_report(layouts: list[CampaignLayout], out: str | Path, patterns: list[str] | None = None) -> Path:
    """Write `out/index.html` and its figures; return the page. Nothing is written on bad input."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out}: exists and is not a directory")
    campaigns = [load_campaign(layout) for layout in layouts]
    _unique_names(campaigns)
    all_names = [n for c in campaigns for it in c.iterations if it.tiers for n in it.tiers]
    for p in patterns or []:
        if not any(fnmatch.fnmatchcase(n, p) for n in all_names):
            raise BadInput(f"--matrix {p}: matches no matrix of the campaigns' tier maps")
    out.mkdir(parents=True, exist_ok=True)
    figures = write_figures(campaigns, out, patterns)
    page = out / "index.html"
    with atomic_path(page) as tmp:
        tmp.write_text(render_page(campaigns, figures), encoding="utf-8")
        tmp.chmod(0o644)
    return page


# --- the page ---------------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th { background: #f4f4f4; } td.l, th.l { text-align: left; }
figure { margin: 1em 0; } img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
.done { color: #2e7d32; } .failed { color: #c62828; font-weight: bold; } .running { color: #b26a00; }
.pending { color: #999; } .bad { color: #c62828; font-weight: bold; }
"""


def esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _num(v: Any, fmt: str = "{:.2f}") -> str:
    return "–" if v is None or isinstance(v, bool) or not isinstance(v, (int, float)) else fmt.format(v)


def _pct(v: Any) -> str:
    return "–" if v is None else _num(100 * v, "{:.1f}%")


def _table(head: list[str], rows: list[list[str]], left: int = 0) -> str:
    """An HTML table of already-escaped cells; the first `left` columns are left-aligned."""
    th = "".join(f'<th{" class=l" if i < left else ""}>{h}</th>' for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f'<td{" class=l" if i < left else ""}>{c}</td>' for i, c in enumerate(r))
                   + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _figure(f: FigureFile) -> str:
    who = ", ".join(f.campaigns)
    return (f'<figure><img src="{esc(f.name)}" alt="{esc(f.title)}">'
            f"<figcaption>{esc(f.title)} ({esc(who)})</figcaption></figure>")


def _results(c: CampaignData) -> str:
    rows = []
    for it in c.iterations:
        comp = it.composition or {}
        ft = it.metrics.get("finetune") if isinstance(it.metrics.get("finetune"), dict) else {}
        mv = it.metrics.get("mask_violations")
        rows.append([str(it.iteration)]
                    + [f'<span class="{esc(it.steps.get(s))}">{esc(it.steps.get(s))}</span>'
                       for s in ("prune", "finetune", "eval")]
                    + [_pct(comp.get(k)) for k in ("dense", "semi", "topk")]
                    + [_pct(it.sparsity), _num(it.ppl_pruned), _num(it.ppl),
                       f'<span class="bad">{esc(mv)}</span>' if isinstance(mv, int) and mv else esc(_num(mv, "{}")),
                       _num(ft.get("final_loss"), "{:.4f}")])
    head = ["iter", "prune", "fine-tune", "eval", "dense", "2:4", "top-k", "sparsity", "ppl after prune",
            "ppl after fine-tune", "mask violations", "final loss"]
    return _table(head, rows)


def _schedule(c: CampaignData) -> str:
    ran = {it.iteration for it in c.iterations}
    cols = ["iteration", "dense", "mid_2_4", "topk", "dense_to_2_4", "mid_2_4_to_topk", "epochs"]
    rows = [[esc(r[k]) for k in cols] + [_pct(r["projected_sparsity"]), "yes" if r["iteration"] in ran else ""]
            for r in c.schedule]
    return _table(cols + ["projected sparsity", "pruned"], rows)


def _timings(c: CampaignData) -> str:
    keys: list[str] = []
    for it in c.iterations:
        t = it.metrics.get("timings")
        keys += [k for k in (t if isinstance(t, dict) else {}) if k not in keys]
    keys.sort(key=lambda k: (TIMING_ORDER.index(k) if k in TIMING_ORDER else len(TIMING_ORDER), k))
    rows = []
    for it in c.iterations:
        t = it.metrics.get("timings") if isinstance(it.metrics.get("timings"), dict) else {}
        vals = [t.get(k) for k in keys]
        total = sum(v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool))
        rows.append([str(it.iteration)] + [_num(v, "{:.1f}") for v in vals] + [_num(total, "{:.1f}")])
    return _table(["iter"] + [esc(k.removesuffix("_s")) + " (s)" for k in keys] + ["total (s)"], rows)


def _settings(c: CampaignData) -> str:
    cfg = c.config
    rows = [[esc(k), esc(v)] for k, v in (
        ("directory", c.layout.root.resolve()), ("model", cfg.model.name), ("prune method", cfg.prune.method),
        ("block size", cfg.tiers.block_size), ("top-k per block", cfg.tiers.topk_per_block),
        ("calibration", f"{cfg.data.calib}, {cfg.data.nsamples} x {cfg.data.seqlen} tokens"),
        ("evaluation", f"{cfg.data.eval}, windows of {cfg.data.seqlen} tokens"),
        ("fine-tune", f"lr {cfg.finetune.lr}, batch {cfg.finetune.batch_size} x {cfg.finetune.grad_accum}, "
                      f"seqlen {cfg.finetune.seqlen}, {cfg.finetune.tokens_per_epoch or 'all'} tokens/epoch"))]
    return _table(["setting", "value"], rows, left=2)


def render_page(campaigns: list[CampaignData], figures: list[FigureFile]) -> str:
    """The whole page: shared perplexity figures first, then one section per campaign."""
    import datetime

    names = ", ".join(c.name for c in campaigns)
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>tierctl report: {esc(names)}</title>",
             f"<style>{CSS}</style></head><body><h1>tierctl report</h1>",
             f"<p>Campaigns: {esc(names)}. Written {esc(datetime.datetime.now().strftime('%Y-%m-%d %H:%M'))}.</p>",
             "<h2>Perplexity</h2><p>Dashed: after prune; solid: after the fine-tune of the same iteration.</p>"]
    parts += [_figure(f) for f in figures if f.name.startswith("ppl-")]
    for c in campaigns:
        mine = [f for f in figures if f.campaigns == [c.name] and not f.name.startswith("ppl-")]
        parts += [f"<h2>{esc(c.name)}</h2>", "<h3>Results</h3>", _results(c), "<h3>Schedule</h3>", _schedule(c),
                  "<h3>Timings</h3>", _timings(c), "<h3>Settings</h3>", _settings(c)]
        parts += [_figure(f) for f in mine]
        if not any(it.tiers for it in c.iterations):
            parts.append("<p>No tier maps in this campaign (a baseline without tiers).</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
