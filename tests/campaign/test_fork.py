"""`tierctl fork SOURCE@K NEW`: shared iterations are the source's bytes, the source is never written."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.campaign.real_steps import run_steps
from tierctl.campaign.fork import ORIGIN_FILE, fork_campaign, read_origin
from tierctl.campaign.layout import CampaignLayout
from tierctl.campaign.state import campaign_status
from tierctl.cli import app
from tierctl.errors import BadInput

FORK_SCHEDULE = ("iteration,dense,mid_2_4,topk,epochs,lr\n"
                 "1,0.90,0.10,0.00,1,\n"
                 "2,0.70,0.20,0.10,1,2e-3\n")


def digest(root: Path) -> dict[str, str]:
    """sha256 of every file under root (the lock file aside), by relative path."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.mark.slow
def test_shared_iterations_are_the_sources_bytes_and_the_source_is_unchanged_after_the_fork_runs_on(
        source: CampaignLayout, tmp_path: Path) -> None:
    schedule = tmp_path / "fork.csv"
    schedule.write_text(FORK_SCHEDULE)
    before = digest(source.root)

    result = fork_campaign(source, 1, "fork", tmp_path, schedule)
    fork = result.layout

    shared = {k: v for k, v in digest(fork.root).items() if k.startswith(("iter1/", "logs/"))}
    assert shared == {k: v for k, v in before.items() if k.startswith(("iter1/", "logs/"))}
    weights = fork.model(1) / "model.safetensors"
    assert os.stat(weights).st_ino == os.stat(source.model(1) / "model.safetensors").st_ino  # a hard link
    assert os.stat(fork.events(1)).st_ino != os.stat(source.events(1)).st_ino  # appended to: a copy
    assert not any(p.is_symlink() for p in fork.root.rglob("*"))

    run_steps(fork, 2)  # the fork goes on from iteration 1's shared model
    run_steps(fork, 1, ("eval",))  # and rewrites a shared iteration's metrics and appends to its events

    assert digest(source.root) == before
    st = campaign_status(fork)
    assert [it.complete for it in st.iterations] == [True, True]
    assert json.loads(fork.metrics(2).read_text())["finetune"]["lr"] == 2e-3


def test_the_origin_is_recorded_and_shown_by_status(source: CampaignLayout, tmp_path: Path) -> None:
    fork_campaign(source, 1, "again", tmp_path)

    origin = read_origin(CampaignLayout(tmp_path / "again"))
    assert (origin.source, origin.iteration) == (str(source.root.resolve()), 1)
    out = CliRunner().invoke(app, ["status", str(tmp_path / "again"), "--json"])
    assert json.loads(out.stdout)["forked_from"] == {"source": str(source.root.resolve()), "iteration": 1}
    text = CliRunner().invoke(app, ["status", str(tmp_path / "again")], env={"COLUMNS": "200"}).stdout
    assert f"forked from {source.root.resolve()}@1" in text


def test_a_fork_whose_shared_row_differs_is_refused_naming_the_row(source: CampaignLayout, tmp_path: Path) -> None:
    schedule = tmp_path / "bad.csv"
    schedule.write_text("iteration,dense,mid_2_4,topk,epochs\n1,0.90,0.10,0.00,2\n2,0.8,0.1,0.1,1\n")

    out = CliRunner().invoke(app, ["fork", f"{source.root}@1", "bad", "--schedule", str(schedule),
                                   "--dir", str(tmp_path)])

    assert out.exit_code == 2
    assert out.stderr.strip() == (f"tierctl: --schedule {schedule}: iteration 1 column epochs is 2 but {source.root} "
                                  "ran it with 1; a fork shares iterations 1..1, so their rows must be the source's")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


def test_only_complete_iterations_can_be_shared(source: CampaignLayout, tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=r"@2: iteration 2 is not complete \(its prune step is pending\)"):
        fork_campaign(source, 2, "too-far", tmp_path)
    with pytest.raises(BadInput, match=r"expected SOURCE@K"):
        from tierctl.campaign.fork import parse_fork_source

        parse_fork_source(str(source.root))
    assert not (tmp_path / "too-far").exists() and not (source.root / ORIGIN_FILE).exists()
