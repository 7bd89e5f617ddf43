"""`tierctl report CAMPAIGN... --out DIR`: an offline HTML page with valid PNG figures, each referenced."""

from __future__ import annotations

import json
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
    assert pngs == ["composition-1-progressive.png", "composition-2-steep.png", "ppl-iteration.png",
                    "ppl-sparsity.png", "tiermaps-1-progressive.png", "tiermaps-2-steep.png"]
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
    assert page.headings == ["Perplexity", "progressive", "steep"]


def test_both_campaigns_share_the_perplexity_figures(two_campaign_report) -> None:
    out, _ = two_campaign_report
    page = Page((out / "index.html").read_text(encoding="utf-8"))
    assert "Perplexity against iteration (progressive, steep)" in page.captions
    assert "Perplexity against sparsity (progressive, steep)" in page.captions


def test_ppl_figure_plots_every_campaign_before_and_after_fine_tune(tmp_path: Path) -> None:
    from tierctl.report import load_campaign, ppl_figure

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
    from tierctl.report import load_campaign, select_matrices, tiermap_figure

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
    assert page.headings == ["Perplexity", "x/same", "y/same"]  # same names told apart by their parent
    assert sorted(page.images) == ["composition-1-x-same.png", "composition-2-y-same.png", "ppl-iteration.png",
                                   "ppl-sparsity.png", "tiermaps-2-y-same.png"]
    assert "No tier maps in this campaign" in (out / "index.html").read_text(encoding="utf-8")
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]
