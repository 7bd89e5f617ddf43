"""`tierctl report CAMPAIGN... --out DIR`: an offline HTML page with valid PNG figures, each referenced."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.cli.campaign_fixtures import SHAPES, write_campaign
from tierctl.cli import app

runner = CliRunner()
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """What the report's HTML references and says, as a browser would parse it."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.images: list[str] = []
        self.headings: list[str] = []
        self.captions: list[str] = []
        self._in: str | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")
        if tag in ("h2", "figcaption"):
            self._in = tag

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "h2":
            self.headings.append(data)
        elif self._in == "figcaption":
            self.captions.append(data)


@pytest.fixture(scope="module")
def two_campaign_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    base = tmp_path_factory.mktemp("campaigns")
    prog = write_campaign(base, name="progressive", iterations=3)
    other = write_campaign(base, name="steep", iterations=2, finished=1, ppl=(30.0, 90.0), seed=1)
    out = base / "report"
    result = runner.invoke(app, ["report", str(prog.root), str(other.root), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out / "index.html")
    return out, [prog.root, other.root]


def test_every_figure_is_a_valid_png_that_matplotlib_and_pil_read(two_campaign_report) -> None:
    import matplotlib.image
    from PIL import Image

    out, _ = two_campaign_report
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["composition.png", "ppl-iteration.png", "ppl-pareto.png", "ppl-sparsity.png",
                    "tiermaps-1-progressive.png", "tiermaps-2-steep.png"]
    for name in pngs:
        data = (out / name).read_bytes()
        assert data[:8] == PNG_SIGNATURE
        with Image.open(out / name) as im:
            im.verify()
        pixels = matplotlib.image.imread(out / name)
        assert pixels.shape[0] > 200 and pixels.shape[1] > 300


def test_the_page_references_each_figure_and_nothing_else(two_campaign_report) -> None:
    out, _ = two_campaign_report
    text = (out / "index.html").read_text(encoding="utf-8")
    page = Page(text)
    assert sorted(page.images) == sorted(p.name for p in out.glob("*.png"))
    assert all((out / src).is_file() for src in page.images)  # relative paths: readable offline
    assert "http:" not in text and "https:" not in text and "<script" not in text
    assert page.headings == ["Comparison", "Perplexity", "progressive", "steep"]


def test_both_campaigns_share_the_perplexity_figures(two_campaign_report) -> None:
    out, _ = two_campaign_report
    page = Page((out / "index.html").read_text(encoding="utf-8"))
    assert "Perplexity against iteration (progressive, steep)" in page.captions
    assert "Perplexity against sparsity (progressive, steep)" in page.captions


def test_ppl_figure_plots_every_campaign_before_and_after_fine_tune(tmp_path: Path) -> None:
    from tierctl.report import load_campaign
    from tierctl.report_figures import ppl_figure

    a = load_campaign(write_campaign(tmp_path, name="a", iterations=3))
    b = load_campaign(write_campaign(tmp_path, name="b", iterations=2, finished=1, ppl=(30.0, 90.0)))
    fig = ppl_figure([a, b], "iteration")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "a: after prune", "a: after fine-tune", "b: after prune", "b: after fine-tune"]
    lines = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}
    assert lines["a: after prune"] == ([1, 2, 3], [40.0, 55.0, 80.0])
    assert lines["a: after fine-tune"] == ([1, 2, 3], [32.0, 44.0, 64.0])
    assert lines["b: after prune"] == ([1, 2], [30.0, 90.0])
    assert lines["b: after fine-tune"] == ([1], [24.0])  # iteration 2 of b is not fine-tuned yet
    by_sparsity = ppl_figure([a], "sparsity").axes[0].get_lines()[1]
    metrics = [json.loads((a.layout.metrics(n)).read_text()) for n in (1, 2, 3)]
    assert list(by_sparsity.get_xdata()) == [100 * m["sparsity"] for m in metrics]


def test_heat_maps_show_the_chosen_matrices_across_iterations(tmp_path: Path) -> None:
    from tierctl.report import load_campaign
    from tierctl.report_figures import select_matrices, tiermap_figure

    c = load_campaign(write_campaign(tmp_path, name="a", iterations=3))
    assert select_matrices(list(SHAPES), None) == [
        "model.layers.0.self_attn.q_proj", "model.layers.0.mlp.down_proj",
        "model.layers.1.self_attn.q_proj", "model.layers.1.mlp.down_proj"]
    fig = tiermap_figure(c, ["*k_proj"])
    images = [ax.get_images()[0] for ax in fig.axes if ax.get_images()]
    assert len(images) == 2 * 3  # two k_proj matrices x three iterations
    assert images[-1].get_array().tolist() == c.iterations[2].tiers["model.layers.1.self_attn.k_proj"].tolist()


def test_a_campaign_with_no_finished_iteration_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    done = write_campaign(tmp_path, name="done", iterations=1)
    pruned_only = write_campaign(tmp_path, name="half", iterations=1, finished=0)
    out = tmp_path / "out"
    result = runner.invoke(app, ["report", str(done.root), str(pruned_only.root), "--out", str(out)])
    assert result.exit_code == 2
    assert result.stderr == f"tierctl: {pruned_only.root}: no finished iteration to report " \
                            f"(run `tierctl run {pruned_only.root} --iter 1`)\n"
    assert not out.exists()


def test_a_matrix_glob_that_matches_nothing_is_refused_before_writing(tmp_path: Path) -> None:
    layout = write_campaign(tmp_path, name="a", iterations=1)
    out = tmp_path / "out"
    result = runner.invoke(app, ["report", str(layout.root), "--out", str(out), "--matrix", "*lm_head*"])
    assert result.exit_code == 2
    assert result.stderr == "tierctl: --matrix *lm_head*: matches no matrix of the campaigns' tier maps\n"
    assert not out.exists()


def test_out_that_is_a_file_is_refused(tmp_path: Path) -> None:
    layout = write_campaign(tmp_path, name="a", iterations=1)
    (tmp_path / "file").write_text("x")
    result = runner.invoke(app, ["report", str(layout.root), "--out", str(tmp_path / "file")])
    assert result.exit_code == 2
    assert result.stderr == f"tierctl: --out {tmp_path / 'file'}: exists and is not a directory\n"


@pytest.mark.slow
def test_a_baseline_without_tier_maps_gets_curves_but_no_maps_and_no_torch_is_imported(tmp_path: Path) -> None:
    baseline = write_campaign(tmp_path / "x", name="same", iterations=2, with_tiers=False)
    prog = write_campaign(tmp_path / "y", name="same", iterations=2)
    out = tmp_path / "out"
    code = (
        "import sys; from typer.testing import CliRunner; from tierctl.cli import app; "
        f"r = CliRunner().invoke(app, ['report', {str(baseline.root)!r}, {str(prog.root)!r}, '--out', {str(out)!r}]); "
        "print(r.exit_code, 'torch' in sys.modules, 'transformers' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["0", "False", "False"]
    page = Page((out / "index.html").read_text(encoding="utf-8"))
    assert page.headings == ["Comparison", "Perplexity", "x/same", "y/same"]  # same names told apart by parent
    assert sorted(page.images) == ["composition.png", "ppl-iteration.png", "ppl-pareto.png", "ppl-sparsity.png",
                                   "tiermaps-2-y-same.png"]
    assert "No tier maps in this campaign" in (out / "index.html").read_text(encoding="utf-8")
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]


# ---- what the figures and tables say ----


def test_timings_show_each_step_once_and_a_total_that_adds_only_the_steps(tmp_path: Path) -> None:
    from tierctl.core.events import Event
    from tierctl.report import load_campaign, timing_rows

    layout = write_campaign(tmp_path, name="a", iterations=1)  # timings: prune_s 1.5, step_s 4, finetune_s 10
    with open(layout.events(1), "w", encoding="utf-8") as f:
        for step, t0, t1 in (("prune", 100.0, 287.0), ("finetune", 290.0, 520.5), ("eval", 521.0, 530.0)):
            for t, kind, extra in ((t0, "start", {}), (t1, "end", {"status": "ok"})):
                f.write(Event(t, 1, step, kind, extra).to_json() + "\n")
    head, rows = timing_rows(load_campaign(layout))
    assert head[:4] == ["prune step", "fine-tune step", "eval step", "total"]
    assert rows[0][:4] == [187.0, 230.5, 9.0, 187.0 + 230.5 + 9.0]
    assert dict(zip(head[4:], rows[0][4:], strict=True)) == {"select blocks": 1.5, "training": 10.0, "eval ppl": 2.0}


def test_without_events_the_prune_step_time_is_its_own_step_s(tmp_path: Path) -> None:
    from tierctl.report import load_campaign, timing_rows

    head, rows = timing_rows(load_campaign(write_campaign(tmp_path, name="a", iterations=2)))
    assert [r[:4] for r in rows] == [[4.0, None, None, 4.0], [8.0, None, None, 8.0]]


def test_log_axis_ticks_are_plain_numbers_at_decades_and_between() -> None:
    from tierctl.report_figures import plain_log_ticks

    assert plain_log_ticks(8, 250) == [10, 20, 50, 100, 200]
    assert plain_log_ticks(13, 75) == [20, 30, 40, 50, 60, 70]  # under a decade: every multiple


def test_ppl_figure_draws_the_reference_and_names_the_evaluation(tmp_path: Path) -> None:
    from tierctl.report import load_campaign
    from tierctl.report_figures import ppl_figure

    layout = write_campaign(tmp_path, name="a", iterations=3)
    layout.metrics(0).parent.mkdir(parents=True, exist_ok=True)
    layout.metrics(0).write_text(json.dumps({"iteration": 0, "reference": True, "ppl": 12.5}))
    fig = ppl_figure([load_campaign(layout)], "iteration")
    ax = fig.axes[0]
    ref = [line for line in ax.get_lines() if line.get_label() == "a: unpruned (12.5)"]
    assert len(ref) == 1 and list(ref[0].get_ydata()) == [12.5, 12.5]
    assert "eval: pydoc, 4 windows x 64 tokens, wanda" in ax.get_title()
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert labels and all(re.fullmatch(r"\d+", x) for x in labels)  # plain numbers, no 10^x
    assert {"20", "50"} <= set(labels)


def test_composition_is_grouped_by_depth_and_by_kind_weighted_by_blocks() -> None:
    import numpy as np

    from tierctl.report_figures import composition_by

    per_layer = {"model.layers.0.self_attn.q_proj": {"dense": 1.0, "semi": 0.0, "topk": 0.0},
                 "model.layers.0.mlp.down_proj": {"dense": 0.0, "semi": 0.5, "topk": 0.5},
                 "model.layers.1.self_attn.q_proj": {"dense": 0.5, "semi": 0.5, "topk": 0.0}}
    tiers = {"model.layers.0.self_attn.q_proj": np.zeros((2, 2)), "model.layers.0.mlp.down_proj": np.zeros((2, 6)),
             "model.layers.1.self_attn.q_proj": np.zeros((2, 2))}
    assert composition_by(per_layer, tiers, "depth") == {0: {"dense": 0.25, "semi": 0.375, "topk": 0.375},
                                                         1: {"dense": 0.5, "semi": 0.5, "topk": 0.0}}
    assert list(composition_by(per_layer, tiers, "kind")) == ["q", "down"]
    assert composition_by(per_layer, tiers, "kind")["q"] == {"dense": 0.75, "semi": 0.25, "topk": 0.0}


def test_heat_maps_have_block_ticks_and_the_matrix_shape(tmp_path: Path) -> None:
    from tierctl.report import load_campaign
    from tierctl.report_figures import tiermap_figure

    fig = tiermap_figure(load_campaign(write_campaign(tmp_path, name="a", iterations=1)),
                         ["model.layers.0.mlp.down_proj"])
    ax = fig.axes[0]
    assert list(ax.get_xticks()) == [0, 2, 4, 6] and list(ax.get_yticks()) == [0, 1, 2, 3]  # round steps
    assert ax.get_ylabel() == "0.mlp.down_proj\n4 x 8 blocks of 16x16\n= 64 x 128 weights\noutput block"


def test_a_reused_out_keeps_no_figure_of_the_earlier_report(tmp_path: Path) -> None:
    layout = write_campaign(tmp_path, name="a", iterations=1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "index.html").write_text("an earlier report")
    (out / "composition-1-gone.png").write_bytes(PNG_SIGNATURE)
    assert runner.invoke(app, ["report", str(layout.root), "--out", str(out)]).exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["composition.png", "index.html", "ppl-iteration.png",
                                                     "ppl-pareto.png", "ppl-sparsity.png", "tiermaps-1-a.png"]


def test_an_out_directory_with_other_files_is_refused_and_kept(tmp_path: Path) -> None:
    layout = write_campaign(tmp_path, name="a", iterations=1)
    (tmp_path / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["report", str(layout.root), "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "is a directory with other files in it (not an earlier report)" in result.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"
