"""`tierctl schedule validate|show`: exit 0 with a summary, or exit 2 with one line on stderr."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from tests.helpers import make_campaign
from tierctl.cli import app
from tierctl.core.schedule import SEED_SCHEDULE_CSV

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, ["schedule", *args], env={"COLUMNS": "100", "NO_COLOR": "1"})


def test_validate_a_good_file_prints_the_summary(tmp_path):
    f = tmp_path / "schedule.csv"
    f.write_text(SEED_SCHEDULE_CSV)
    r = invoke("validate", str(f))
    assert r.exit_code == 0
    assert r.stdout == f"{f}: ok, 5 iterations, final sparsity 41.7%\n"
    assert r.stderr == ""


def test_validate_uses_block_size_and_k_flags(tmp_path):
    f = tmp_path / "schedule.csv"
    f.write_text(SEED_SCHEDULE_CSV)
    r = invoke("validate", str(f), "--block-size", "8", "-k", "16")
    # 0.45 * 1/2 + 0.20 * (1 - 16/64)
    assert r.stdout == f"{f}: ok, 5 iterations, final sparsity 37.5%\n"


def test_a_campaign_directory_lends_its_schedule_and_tiers(tmp_path):
    layout = make_campaign(tmp_path, tiers={"block_size": 8, "topk_per_block": 16})
    r = invoke("validate", str(layout.root))
    assert r.exit_code == 0
    assert r.stdout == f"{layout.schedule}: ok, 5 iterations, final sparsity 37.5%\n"


BAD = [
    ("", "s.csv: empty file"),
    ("iteration,dense,mid_2_4,topk,epochs\n", "s.csv: no iterations (only a header line)"),
    ("iteration,dense,mid_2_4,topk,epochs\n1,0.9,0.1,0,2\n2,0.8,0.1,0.1,two\n",
     "s.csv: iteration 2, column epochs: 'two' is not an integer"),
    ("iteration,dense,mid_2_4,topk,epochs\n1,0.8,0.2,0,2\n2,0.9,0.1,0,2\n",
     "s.csv: iteration 2, column dense: dense rises from 0.8 to 0.9: a promotion"),
]


@pytest.mark.parametrize("command", ["validate", "show"])
@pytest.mark.parametrize(("text", "message"), BAD)
def test_a_bad_file_exits_2_with_one_line_on_stderr(tmp_path, command, text, message):
    f = tmp_path / "s.csv"
    f.write_text(text)
    r = invoke(command, str(f))
    assert r.exit_code == 2
    assert r.stdout == ""
    assert r.stderr.count("\n") == 1
    assert r.stderr.startswith(f"tierctl: {tmp_path}/{message}")
    assert "Traceback" not in r.output


def test_binary_junk_exits_2_without_a_traceback(tmp_path):
    f = tmp_path / "s.csv"
    f.write_bytes(bytes(range(256)) * 4)
    r = invoke("validate", str(f))
    assert r.exit_code == 2
    assert r.stderr == f"tierctl: {f}: line 1: not a text file (NUL byte at offset 0); expected a CSV schedule\n"


def test_a_missing_file_exits_2(tmp_path):
    r = invoke("validate", str(tmp_path / "nope.csv"))
    assert (r.exit_code, r.stderr) == (2, f"tierctl: {tmp_path}/nope.csv: no such schedule file\n")


def test_an_impossible_k_exits_2(tmp_path):
    f = tmp_path / "schedule.csv"
    f.write_text(SEED_SCHEDULE_CSV)
    r = invoke("validate", str(f), "-b", "4", "-k", "17")
    assert (r.exit_code, r.stderr) == (2, "tierctl: topk_per_block 17: expected 0..16 for block_size 4\n")


def test_show_draws_each_iteration_with_its_projection(tmp_path):
    f = tmp_path / "schedule.csv"
    f.write_text(SEED_SCHEDULE_CSV)
    r = invoke("show", str(f))
    assert r.exit_code == 0, r.output
    rows = [line.split() for line in r.stdout.splitlines() if re.match(r"^\s+\d+\s", line)]
    assert [(row[0], row[1], row[2], row[3], row[6], row[-1]) for row in rows] == [
        ("1", "0.90", "0.10", "0.00", "2", "5.0%"),
        ("2", "0.80", "0.10", "0.10", "2", "14.6%"),
        ("3", "0.65", "0.20", "0.15", "2", "24.4%"),
        ("4", "0.50", "0.30", "0.20", "2", "34.2%"),
        ("5", "0.35", "0.45", "0.20", "3", "41.7%"),
    ]
    assert "expected sparsity for 16x16 blocks, top-10 per block" in r.stdout


def test_show_marks_derived_columns(tmp_path):
    f = tmp_path / "schedule.csv"
    f.write_text("iteration,dense,mid_2_4,topk,epochs\n1,0.9,0.1,0,1\n2,0.7,0.2,0.1,0\n")
    r = invoke("show", str(f))
    assert r.exit_code == 0
    row2 = next(line.split() for line in r.stdout.splitlines() if line.strip().startswith("2 "))
    assert row2[:7] == ["2", "0.70", "0.20", "0.10", "0.20", "0.10", "0"]
    header = next(line for line in r.stdout.splitlines() if line.startswith("iter"))
    assert header.split()[4:6] == ["dense→2:4*", "2:4→top-k*"]
    assert "; * derived" in r.stdout
