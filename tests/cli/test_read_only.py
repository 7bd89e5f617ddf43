"""Faults a user's machine can have: a read-only campaign, an unwritable report folder, damaged files.

Read-only is real: the CLI runs in a private mount namespace (`unshare -rm`) where the campaign is
bind-mounted read-only, so writes fail with EROFS as on a read-only disk (this machine runs tests as
root, for which permission bits are no obstacle). Nothing outside the namespace sees the mount.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.campaign.step_files import iteration_done, reference_done
from tests.cli.test_bad_inputs import tree_hash
from tests.helpers import make_campaign
from tierctl.cli import app

ROOT = Path(__file__).resolve().parents[2]
ONE_ROW = "iteration,dense,mid_2_4,topk,dense_to_2_4,mid_2_4_to_topk,epochs\n1,0.90,0.10,0.00,0.10,0.00,1\n"


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount --bind -o ro / / 2>/dev/null || "
                            "mount --bind -o ro /tmp /tmp"], capture_output=True, check=False)
    return probe.returncode == 0


needs_ro = pytest.mark.skipif(not _can_unshare(), reason="no user + mount namespaces here (unshare -rm), so no "
                                                          "read-only bind mount can be made without affecting others")


def cli_read_only(read_only: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m tierctl ARGS` with `read_only` bind-mounted read-only for that process only."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "COLUMNS": "100"}
    cmd = " ".join(shlex.quote(x) for x in [sys.executable, "-m", "tierctl", *args])
    script = f"mount --bind -o ro {shlex.quote(str(read_only))} {shlex.quote(str(read_only))} && exec {cmd}"
    return subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=300, check=False)


@needs_ro
def test_a_complete_campaign_on_a_read_only_disk_answers_run_with_nothing_to_do(tmp_path):
    layout = make_campaign(tmp_path, schedule=ONE_ROW)
    reference_done(layout)
    iteration_done(layout, 1)
    before = tree_hash(tmp_path)
    r = cli_read_only(layout.root, "run", str(layout.root), "--all", cwd=tmp_path)
    assert (r.returncode, r.stderr) == (0, "nothing to do: the steps asked for are done (--force redoes them)\n")
    r = cli_read_only(layout.root, "status", str(layout.root), "--json", cwd=tmp_path)
    assert r.returncode == 0 and r.stderr == ""
    assert tree_hash(tmp_path) == before


@needs_ro
def test_a_run_of_a_read_only_campaign_is_one_line_exit_2_naming_it(tmp_path):
    layout = make_campaign(tmp_path)
    before = tree_hash(tmp_path)
    r = cli_read_only(layout.root, "run", str(layout.root), "--all", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr == (f"tierctl: {layout.root}: cannot write there (read-only file system); a run writes its "
                        "outputs in the campaign\n")
    assert tree_hash(tmp_path) == before


@needs_ro
def test_a_read_only_logs_folder_is_named(tmp_path):
    layout = make_campaign(tmp_path)
    layout.logs.mkdir()
    r = cli_read_only(layout.logs, "run", str(layout.root), "--iter", "1", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith(f"tierctl: {layout.logs}: cannot write there (read-only file system)")
    assert sorted(p.name for p in layout.root.iterdir()) == ["campaign.toml", "logs", "schedule.csv"]


@needs_ro
def test_report_into_a_read_only_folder_is_one_line_exit_2_naming_the_path(tmp_path):
    from tests.cli.campaign_fixtures import write_campaign

    layout = write_campaign(tmp_path, iterations=1)
    out = tmp_path / "ro"
    out.mkdir()
    r = cli_read_only(out, "report", str(layout.root), "--out", str(out / "rep"), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tierctl: ") and str(out) in lines[0], r.stderr
    assert "Read-only file system" in lines[0] and "Traceback" not in r.stderr
    assert list(out.iterdir()) == []


# --- damaged files ------------------------------------------------------------------------------------


def test_status_names_a_damaged_metrics_json_and_the_command_that_repairs_it(tmp_path):
    layout = make_campaign(tmp_path)
    iteration_done(layout, 1)
    layout.metrics(1).write_text('{"iteration": 1, "compo')  # a write cut short
    r = CliRunner().invoke(app, ["status", str(layout.root)], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert r.exit_code == 0, r.output
    assert (f"iteration 1 prune failed: {layout.metrics(1)}: not valid JSON (Unterminated string starting at: "
            f"line 1 column 18 (char 17)): damaged; redo the iteration with: tierctl run {layout.root} --iter 1 "
            "--force") in r.stdout


def test_status_warns_about_a_torn_event_line_and_keeps_the_events_after_it(tmp_path):
    from tierctl.core.events import EventSink, read_events

    layout = make_campaign(tmp_path)
    layout.iter_dir(1).mkdir()
    layout.events(1).write_text('{"t": 1, "iter": 1, "step": "prune", "event": "start"}\n{"t": 2, "it')  # kill -9
    EventSink(1, "prune", layout.events(1), stream=None).end("failed", error="boom")
    assert [e.event for e in read_events(layout.events(1))] == ["start", "end"]
    r = CliRunner().invoke(app, ["status", str(layout.root)], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert r.exit_code == 0
    assert r.stderr == (f"tierctl: warning: {layout.events(1)}: line 2 not a complete event (a write was cut off); "
                        "skipped\n")
    assert "iteration 1 prune failed: boom" in r.stdout


@pytest.mark.slow
def test_run_force_redoes_an_iteration_whose_metrics_json_is_damaged(tmp_path):
    layout = make_campaign(tmp_path, schedule=ONE_ROW)
    iteration_done(layout, 1)
    layout.metrics(1).write_bytes(layout.metrics(1).read_bytes()[:7])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "tierctl", "run", str(layout.root), "--iter", "1", "--step", "prune",
                        "--force", "--json", "--no-check"], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=600, check=False)
    assert r.returncode == 0, r.stderr
    from tierctl.campaign.state import campaign_status

    assert campaign_status(layout).iterations[0].steps["prune"] == "done"
    assert not any(p.name.startswith(".tmp-") for p in layout.root.rglob("*"))
