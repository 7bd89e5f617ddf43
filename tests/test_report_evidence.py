"""The report's evidence: comparison across campaigns, overlap marks, the Pareto front, intervals."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace as NS

from typer.testing import CliRunner

from tests.cli.campaign_fixtures import write_campaign
from tierctl.cli import app
from tierctl.core.metrics import Metrics
from tierctl.report_evidence import Point, campaign_points, comparison_table, overlapping, pareto_front


def point(campaign: str, n: int, sparsity: float, ppl: float, half: float = 1.0, ratio: float | None = None) -> Point:
    return Point(campaign, n, sparsity, ppl, [ppl - half, ppl + half], ratio, None, None)


def test_points_are_the_reference_then_each_evaluated_iteration_with_ratios() -> None:
    its = [NS(iteration=1, steps={"eval": "done"}, metrics=Metrics(ppl=30.0, sparsity=0.05, ppl_interval=[28, 32],
                                                                     zeroshot={"mean_acc": 0.5})),
           NS(iteration=2, steps={"eval": "pending"}, metrics=Metrics(ppl=None, sparsity=0.15))]
    ref = Metrics(ppl=20.0, sparsity=0.0, ppl_interval=[19.0, 21.0])
    pts = campaign_points("a", ref, its)
    assert [(p.iteration, p.ppl, p.ratio, p.interval, p.mean_acc) for p in pts] == [
        (0, 20.0, 1.0, [19.0, 21.0], None), (1, 30.0, 1.5, [28.0, 32.0], 0.5)]


def test_overlap_is_marked_between_campaigns_at_equal_sparsity_only() -> None:
    a, b = point("a", 1, 0.417, 30.0), point("b", 1, 0.420, 31.5)  # [29, 31] and [30.5, 32.5] overlap
    c = point("c", 1, 0.417, 35.0)  # equal sparsity, disjoint interval
    d = point("d", 1, 0.50, 30.0)  # same interval, 8 points sparser
    a2 = point("a", 2, 0.417, 30.5)  # the same campaign never counts
    marks = overlapping([a, b, c, d, a2])
    assert marks == {"a@1": ["b@1"], "b@1": ["a@1", "a@2"], "c@1": [], "d@1": [], "a@2": ["b@1"]}


def test_the_pareto_front_keeps_points_no_sparser_point_beats() -> None:
    pts = [point("ref", 0, 0.0, 20.0), point("p", 1, 0.1, 19.0), point("p", 2, 0.3, 40.0),
           point("w", 1, 0.3, 35.0), point("w2", 1, 0.5, 60.0), point("c", 1, 0.0, 18.0)]
    assert [p.label for p in pareto_front(pts)] == ["c@1", "p@1", "w@1", "w2@1"]


def test_comparison_table_lists_ppl_interval_ratio_and_marks() -> None:
    html = comparison_table([point("a", 0, 0.0, 20.0, ratio=1.0), point("a", 1, 0.05, 30.0, ratio=1.5),
                             point("b", 0, 0.0, 20.0, ratio=1.0)])
    rows = re.findall(r"<tr>(.*?)</tr>", html)[1:]
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in rows]
    assert cells == [
        ["a", "reference", "0.0%", "20.00 [19.00, 21.00]", "1.000x", "–", "≈ b@0"],
        ["b", "reference", "0.0%", "20.00 [19.00, 21.00]", "1.000x", "–", "≈ a@0"],
        ["a", "iteration 1", "5.0%", "30.00 [29.00, 31.00]", "1.500x", "–", ""],
    ]


def test_report_of_two_campaigns_puts_the_comparison_first_with_the_references(tmp_path) -> None:
    layouts = [write_campaign(tmp_path, name=n, iterations=2) for n in ("a", "b")]
    for layout in layouts:
        layout.iter_dir(0).mkdir()
        layout.metrics(0).write_text(json.dumps({"iteration": 0, "reference": True, "sparsity": 0.0, "ppl": 20.0,
                                                 "ppl_interval": [19.0, 21.0]}))
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["report", *[str(x.root) for x in layouts], "--out", str(out)])
    assert r.exit_code == 0, r.output
    text = (out / "index.html").read_text(encoding="utf-8")
    assert text.index("<h2>Comparison</h2>") < text.index("<h2>Perplexity</h2>")
    assert "<td class=l>a</td><td class=l>reference</td><td>0.0%</td><td>20.00 [19.00, 21.00]</td>" \
           "<td>1.000x</td><td>–</td><td>≈ b@0</td>" in text
    assert "1.600x" in text  # iteration 1: ppl 32 = 0.8 x 40 against the reference's 20
