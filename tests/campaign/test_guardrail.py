"""The guardrail [run] max_ppl_ratio: a perplexity jump halts the campaign (exit 3) until someone decides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.campaign.step_files import iteration_done
from tests.helpers import make_campaign
from tierctl.campaign.config import dumps_config, load_config
from tierctl.campaign.fork import fork_campaign
from tierctl.campaign.guardrail import EXIT_HALTED
from tierctl.campaign.layout import CampaignLayout
from tierctl.campaign.state import campaign_status
from tierctl.cli import app
from tierctl.core.events import read_events

THREE_ROWS = ("iteration,dense,mid_2_4,topk,epochs\n"
              "1,0.90,0.10,0.00,1\n2,0.80,0.10,0.10,1\n3,0.70,0.20,0.10,1\n")


def set_ratio(layout: CampaignLayout, ratio: float) -> None:
    cfg = load_config(layout.config)
    cfg.run.max_ppl_ratio = ratio
    layout.config.write_text(dumps_config(cfg))


def done_with_ppls(tmp_path: Path, ppls: tuple[float, ...], ratio: float) -> CampaignLayout:
    layout = make_campaign(tmp_path, schedule=THREE_ROWS, run={"max_ppl_ratio": ratio})
    for n, _ in enumerate(ppls, 1):
        iteration_done(layout, n)
        m = json.loads(layout.metrics(n).read_text())
        m["ppl"] = ppls[n - 1]
        layout.metrics(n).write_text(json.dumps(m))
    return layout


def test_the_first_iteration_over_the_ratio_halts_the_campaign(tmp_path: Path) -> None:
    halt = campaign_status(done_with_ppls(tmp_path, (30.0, 44.0, 100.0), ratio=1.5)).halt

    assert (halt.iteration, halt.ppl, halt.reference, halt.reference_iteration) == (3, 100.0, 44.0, 2)
    assert halt.reason == "iteration 3 ppl 100 > 1.5 x iteration 2's 44 ([run] max_ppl_ratio)"


def test_iteration_1_is_compared_with_the_unpruned_reference_when_there_is_one(tmp_path: Path) -> None:
    layout = done_with_ppls(tmp_path, (30.0,), ratio=1.5)
    assert campaign_status(layout).halt is None  # no reference: nothing to compare iteration 1 with
    layout.iter_dir(0).mkdir()
    layout.metrics(0).write_text(json.dumps({"iteration": 0, "reference": True, "ppl": 12.0}))

    halt = campaign_status(layout).halt

    assert (halt.iteration, halt.reference, halt.reference_iteration) == (1, 12.0, 0)


def test_the_guardrail_is_off_by_default(tmp_path: Path) -> None:
    assert campaign_status(done_with_ppls(tmp_path, (30.0, 3000.0), ratio=0.0)).halt is None


@pytest.mark.slow
def test_an_absurd_ratio_halts_at_the_right_iteration_with_exit_3_and_resumes_nothing(
        source: CampaignLayout, tmp_path: Path) -> None:
    # Iteration 1 ran for real (the shared fixture); a fork of it goes on with max_ppl_ratio 0.5: iteration 2's
    # ppl must halve, which never happens. `--iter 2` measures no reference, so iteration 1 has none to be
    # compared with. The start-up check is not the subject here (--no-check: a few seconds less).
    layout = fork_campaign(source, 1, "guarded", tmp_path).layout
    layout.schedule.write_text(THREE_ROWS)
    set_ratio(layout, 0.5)

    first = CliRunner().invoke(app, ["run", str(layout.root), "--iter", "2", "--json", "--no-check"])

    assert first.exit_code == EXIT_HALTED
    assert "tierctl: halted: iteration 2 ppl" in first.stderr and "x iteration 1's" in first.stderr
    assert not layout.iter_dir(3).exists()
    status = json.loads(CliRunner().invoke(app, ["status", str(layout.root), "--json"]).stdout)
    assert status["halted"]["iteration"] == 2 and status["halted"]["ratio"] == 0.5
    events = read_events(layout.events(2))

    again = CliRunner().invoke(app, ["run", str(layout.root), "--all"])

    assert again.exit_code == EXIT_HALTED and again.stderr.startswith("tierctl: halted: iteration 2")
    assert read_events(layout.events(2)) == events and not layout.iter_dir(3).exists()

    # Editing the rows not yet run is a new decision: it releases the halt.
    layout.schedule.write_text(THREE_ROWS.replace("3,0.70,0.20,0.10,1", "3,0.80,0.10,0.10,0"))
    assert campaign_status(layout).halt is None


@pytest.mark.slow
def test_a_reference_measured_by_run_all_halts_an_iteration_that_already_ran(source: CampaignLayout,
                                                                            tmp_path: Path) -> None:
    # The fork's iteration 1 ran without a reference; `run --all` measures it first, and iteration 1's ppl
    # is over 0.5 x the reference's: the run stops there, before iteration 2 starts.
    layout = fork_campaign(source, 1, "late", tmp_path).layout
    layout.schedule.write_text(THREE_ROWS)
    set_ratio(layout, 0.5)

    result = CliRunner().invoke(app, ["run", str(layout.root), "--all", "--json", "--no-check"])

    assert result.exit_code == EXIT_HALTED
    assert "tierctl: halted: iteration 1 ppl" in result.stderr and "the unpruned reference's" in result.stderr
    assert layout.metrics(0).exists() and not layout.iter_dir(2).exists()


def test_a_halted_campaign_says_so_in_the_run_panels_and_the_dashboards_list(tmp_path: Path) -> None:
    import io

    from rich.console import Console

    from tierctl.live import LiveView
    from tierctl.tui.screens.campaigns import summarize

    layout = done_with_ppls(tmp_path, (30.0, 44.0), ratio=1.2)
    console = Console(file=io.StringIO(), width=120, height=40)
    console.print(LiveView(layout, console).render())

    assert "halted: iteration 2 ppl 44 > 1.2 x iteration 1's 30" in console.file.getvalue()
    assert summarize(layout).state == "halted"
