"""`tierctl report`: one offline HTML page with PNG figures comparing finished campaigns.

Reads only what a campaign directory holds (docs/campaign.md): campaign.toml, schedule.csv, each
iteration's metrics.json and tiers.safetensors (numpy, no torch), the steps' start and end events,
and iter0/metrics.json (the unpruned reference) when the campaign measured one. Everything is read and
checked before the first file is written; the whole report (figures and index.html) is written into a
temporary directory that then replaces `--out`, so a reused `--out` keeps no figure of an earlier
report and a page never references a half-written figure.

Figures: tierctl/report_figures.py. Tables: per-iteration results, the schedule with its projected
sparsity, timings (each step's wall time from its events, then the parts the steps recorded),
settings.
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
from tierctl.campaign.layout import CampaignLayout
from tierctl.campaign.state import campaign_status, load_campaign_schedule
from tierctl.core.atomic import atomic_dir
from tierctl.core.events import read_events
from tierctl.core.metrics import Metrics, read_metrics
from tierctl.core.schedule import project
from tierctl.core.tiermap_io import load_tier_maps_numpy
from tierctl.core.vocab import DONE, STEPS, TIER_KEYS
from tierctl.errors import BadInput
from tierctl.report_evidence import comparison_table, evidence_table, pareto_figure
from tierctl.report_figures import composition_figure, log_y, new_figure, ppl_figure, tiermap_figure

# The parts each step records in metrics.json `timings`, in the order they happen.
TIMING_PARTS = (("load_s", "load"), ("calibrate_s", "calibrate"), ("prune_s", "select blocks"), ("save_s", "save"),
                ("ppl_pruned_s", "ppl_pruned"), ("finetune_s", "training"), ("eval_load_s", "eval load"),
                ("eval_s", "eval ppl"))
STEP_TOTALS = (("prune", "step_s"), ("finetune", None), ("eval", None))  # metrics key of a step's own total


@dataclass
class IterationData:
    iteration: int
    steps: dict[str, str]
    composition: dict[str, float] | None
    sparsity: float | None
    ppl_pruned: float | None
    ppl: float | None
    per_layer: dict[str, dict[str, float]] | None
    metrics: Metrics
    tiers: dict[str, np.ndarray] | None  # None when the iteration has no tier map (e.g. a Wanda baseline)
    eval_info: dict[str, Any] | None = None  # the evaluation protocol (source, windows, seqlen, protocol)
    step_seconds: dict[str, float] = field(default_factory=dict)  # wall time of each step's last ok run


@dataclass
class CampaignData:
    name: str
    layout: CampaignLayout
    config: CampaignConfig
    schedule: list[dict[str, Any]]  # schedule rows with their projected composition and sparsity
    iterations: list[IterationData] = field(default_factory=list)  # those whose prune is done
    reference_ppl: float | None = None  # the unpruned model's ppl (iteration 0), when it was measured
    reference: Metrics | None = None  # iter0/metrics.json once the reference is measured

    def points(self) -> list[Any]:
        """The measured ppl of the reference and of every evaluated iteration (report_evidence.Point)."""
        from tierctl.report_evidence import campaign_points

        return campaign_points(self.name, self.reference, self.iterations)


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
    data = CampaignData(layout.name, layout, config, rows, reference_ppl=reference_ppl(layout))
    if status.reference.steps["eval"] == DONE:
        data.reference = status.reference.metrics
    for it in status.iterations:
        if it.metrics is None or it.iteration < 1:
            continue
        path = layout.tiers(it.iteration)
        tiers = load_tier_maps_numpy(path)[0] if path.is_file() else None
        info = it.metrics.eval
        data.iterations.append(IterationData(it.iteration, dict(it.steps), it.composition, it.sparsity,
                                             it.ppl_pruned, it.ppl, it.per_layer, it.metrics, tiers,
                                             info if isinstance(info, dict) else None,
                                             step_seconds(layout, it.iteration)))
    if not any(it.steps.get("eval") == DONE for it in data.iterations):
        raise BadInput(f"{layout.root}: no finished iteration to report (run `tierctl run {layout.root} --iter 1`)")
    return data


def reference_ppl(layout: CampaignLayout) -> float | None:
    """The ppl of the unpruned model: iter0/metrics.json `ppl`, written when the campaign measured
    its iteration 0 (the reference); None when it did not."""
    try:
        metrics = read_metrics(layout.metrics(0))
    except BadInput:
        return None
    value = metrics.ppl if metrics is not None else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def step_seconds(layout: CampaignLayout, n: int) -> dict[str, float]:
    """Wall time of each step of iteration n: from its last `start` to the `end ok` that followed."""
    out: dict[str, float] = {}
    started: dict[str, float] = {}
    for e in read_events(layout.events(n)):
        if e.event == "start":
            started[e.step] = e.t
        elif e.event == "end" and e.get("status") == "ok" and e.step in started:
            out[e.step] = e.t - started.pop(e.step)
    return out


def _unique_names(campaigns: list[CampaignData]) -> None:
    """Two campaigns called alike (same directory name elsewhere) get their parent directory as prefix."""
    seen: dict[str, int] = {}
    for c in campaigns:
        seen[c.name] = seen.get(c.name, 0) + 1
    for c in campaigns:
        if seen[c.name] > 1:
            c.name = f"{c.layout.root.resolve().parent.name}/{c.name}"


# --- figures (tierctl/report_figures.py) and the files of a report ------------------------------------


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", s).strip("-") or "campaign"


def write_figures(campaigns: list[CampaignData], out: Path, patterns: list[str] | None) -> list[FigureFile]:
    """Render and save every figure into `out` (the report's temporary directory); the list says what
    each shows."""
    names = [c.name for c in campaigns]
    made: list[tuple[str, str, list[str], Any]] = [
        ("ppl-iteration.png", "Perplexity against iteration", names, ppl_figure(campaigns, "iteration")),
        ("ppl-sparsity.png", "Perplexity against sparsity", names, ppl_figure(campaigns, "sparsity")),
        ("ppl-pareto.png", "Perplexity after fine-tune against sparsity, 95% intervals and the Pareto front", names,
         pareto_figure([p for c in campaigns for p in c.points()], new_figure, log_y)),
    ]
    comp = composition_figure(campaigns)
    if comp is not None:
        made.append(("composition.png", "Block composition by decoder layer and matrix kind", names, comp))
    for i, c in enumerate(campaigns, 1):
        maps = tiermap_figure(c, patterns)
        if maps is not None:
            made.append((f"tiermaps-{i}-{_slug(c.name)}.png", f"{c.name}: tier maps across iterations", [c.name],
                         maps))
    files = []
    for fname, title, who, fig in made:
        fig.savefig(out / fname, format="png", metadata={"Title": title, "Software": "tierctl report"})
        (out / fname).chmod(0o644)  # a report is for sharing: readable like any file the user writes
        files.append(FigureFile(fname, title, who))
    return files


def build_report(layouts: list[CampaignLayout], out: str | Path, patterns: list[str] | None = None) -> Path:
    """Write `out/index.html` and its figures as one directory that replaces `out`; return the page.
    Nothing is written on bad input; a directory that holds anything but an earlier report is refused
    rather than replaced."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / "index.html").is_file():
        raise BadInput(f"--out {out}: is a directory with other files in it (not an earlier report); "
                       f"the report replaces its --out as a whole, so give a new or empty directory")
    campaigns = [load_campaign(layout) for layout in layouts]
    _unique_names(campaigns)
    all_names = [n for c in campaigns for it in c.iterations if it.tiers for n in it.tiers]
    for p in patterns or []:
        if not any(fnmatch.fnmatchcase(n, p) for n in all_names):
            raise BadInput(f"--matrix {p}: matches no matrix of the campaigns' tier maps")
    with atomic_dir(out) as tmp:
        figures = write_figures(campaigns, tmp, patterns)
        (tmp / "index.html").write_text(render_page(campaigns, figures), encoding="utf-8")
        (tmp / "index.html").chmod(0o644)
    return out / "index.html"


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
.interrupted { color: #b26a00; }
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
        ft = it.metrics.finetune if isinstance(it.metrics.finetune, dict) else {}
        mv = it.metrics.mask_violations
        rows.append([str(it.iteration)]
                    + [f'<span class="{esc(it.steps.get(s))}">{esc(it.steps.get(s))}</span>'
                       for s in STEPS]
                    + [_pct(comp.get(k)) for k in TIER_KEYS]
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


def timing_rows(c: CampaignData) -> tuple[list[str], list[list[float | None]]]:
    """The timings table: per iteration, the wall time of each step (prune, fine-tune, eval: from
    their events; the prune step's own `step_s` when its events are gone), their total, then the parts
    the steps recorded (which the total never adds again)."""
    parts = [(k, label) for k, label in TIMING_PARTS
             if any(isinstance(it.metrics.timings, dict) and k in it.metrics.timings for it in c.iterations)]
    head = ["prune step", "fine-tune step", "eval step", "total"] + [label for _, label in parts]
    rows = []
    for it in c.iterations:
        t = it.metrics.timings if isinstance(it.metrics.timings, dict) else {}
        steps: list[float | None] = []
        for step, own in STEP_TOTALS:
            v = it.step_seconds.get(step)
            if v is None and own is not None and isinstance(t.get(own), (int, float)):
                v = float(t[own])
            steps.append(v)
        total = sum(v for v in steps if v is not None) if any(v is not None for v in steps) else None
        rows.append(steps + [total] + [t.get(k) if isinstance(t.get(k), (int, float)) else None for k, _ in parts])
    return head, rows


def _timings(c: CampaignData) -> str:
    head, rows = timing_rows(c)
    cells = [[str(it.iteration)] + [_num(v, "{:.1f}") for v in row] for it, row in zip(c.iterations, rows, strict=True)]
    return (_table(["iter"] + [esc(h) + " (s)" for h in head], cells)
            + "<p>Steps: wall time from each step's start to its end event. The parts after the total are "
              "what the steps measured inside themselves (they are part of their step, not added to it).</p>")


def _settings(c: CampaignData) -> str:
    cfg = c.config
    rows = [[esc(k), esc(v)] for k, v in (
        ("directory", c.layout.root.resolve()), ("model", cfg.model.name), ("prune method", cfg.prune.method),
        ("block size", cfg.tiers.block_size), ("top-k per block", cfg.tiers.topk_per_block),
        ("calibration", f"{cfg.data.calib}, {cfg.data.nsamples} x {cfg.data.seqlen} tokens"),
        ("evaluation", f"{cfg.data.eval}, windows of {cfg.data.seqlen} tokens"),
        ("fine-tune", f"lr {cfg.finetune.lr}, batch {cfg.finetune.batch_size} x {cfg.finetune.grad_accum}, "
                      f"seqlen {cfg.finetune.seqlen}, {cfg.finetune.tokens_per_epoch or 'all'} tokens/epoch"))]
    from tierctl.campaign.fork import read_origin

    origin = read_origin(c.layout)
    if origin is not None:
        rows.insert(1, ["forked from", esc(f"{origin.label} (iterations 1..{origin.iteration} shared)")])
    return _table(["setting", "value"], rows, left=2)


def render_page(campaigns: list[CampaignData], figures: list[FigureFile]) -> str:
    """The whole page: shared perplexity figures first, then one section per campaign."""
    import datetime

    names = ", ".join(c.name for c in campaigns)
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>tierctl report: {esc(names)}</title>",
             f"<style>{CSS}</style></head><body><h1>tierctl report</h1>",
             f"<p>Campaigns: {esc(names)}. Written {esc(datetime.datetime.now().strftime('%Y-%m-%d %H:%M'))}.</p>",
             ]
    if len(campaigns) > 1:
        parts += ["<h2>Comparison</h2>", comparison_table([p for c in campaigns for p in c.points()])]
    parts += ["<h2>Perplexity</h2><p>Dashed: after prune; solid: after the fine-tune of the same iteration; "
              "dotted: the unpruned model (iteration 0), when the campaign measured it. The Pareto figure shows "
              "every ppl after fine-tune with its 95% interval, the references included.</p>"]
    parts += [_figure(f) for f in figures if f.name.startswith("ppl-")]
    parts += [_figure(f) for f in figures if f.name == "composition.png"]
    for c in campaigns:
        mine = [f for f in figures if f.name.startswith("tiermaps-") and f.campaigns == [c.name]]
        parts += [f"<h2>{esc(c.name)}</h2>", "<h3>Results</h3>", _results(c),
                  "<h3>Reference, intervals and zero-shot</h3>", evidence_table(c.points()),
                  "<h3>Schedule</h3>", _schedule(c),
                  "<h3>Timings</h3>", _timings(c), "<h3>Settings</h3>", _settings(c)]
        parts += [_figure(f) for f in mine]
        if not any(it.tiers for it in c.iterations):
            parts.append("<p>No tier maps in this campaign (a baseline without tiers).</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
