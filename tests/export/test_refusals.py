"""Bad input to `tierctl export`: one line on stderr, exit 2, nothing written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.cli.campaign_fixtures import write_campaign
from tierctl.cli import app

runner = CliRunner()


def refused(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_unfinished_iteration(campaigns, tmp_path):
    line = refused(["export", f"{campaigns['llama'].root}@3", "--out", str(tmp_path / "x")])
    assert "iteration 3 is not finished" in line and "finetune" in line
    assert not (tmp_path / "x").exists()


def test_iteration_beyond_the_schedule(campaigns, tmp_path):
    line = refused(["export", f"{campaigns['llama'].root}@9", "--out", str(tmp_path / "x")])
    assert "iterations 1..3" in line


def test_missing_campaign(tmp_path):
    line = refused(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "x")])
    assert "no such campaign" in line
    assert not (tmp_path / "x").exists()


def test_out_that_is_not_empty_is_left_alone(campaigns, tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "mine.txt").write_text("keep me")
    line = refused(["export", str(campaigns["llama"].root), "--out", str(tmp_path / "x")])
    assert "--out" in line and "not empty" in line
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["mine.txt"]


def test_an_empty_out_directory_is_used(campaigns, tmp_path):
    (tmp_path / "x").mkdir()
    result = runner.invoke(app, ["export", str(campaigns["llama"].root), "--out", str(tmp_path / "x"), "--json"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "x" / "tierctl-packed.safetensors").is_file()


def test_read_only_out(campaigns, tmp_path):
    if os.geteuid() == 0:  # permission bits do not stop root; a read-only mount does
        out = Path("/sys/tierctl-export-test")
    else:
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro").chmod(0o555)
        out = tmp_path / "ro" / "x"
    line = refused(["export", str(campaigns["llama"].root), "--out", str(out)])
    assert "--out" in line and "cannot write" in line
    assert not out.exists()


def test_packed_for_a_baseline(tmp_path):
    layout = write_campaign(tmp_path, iterations=1)
    toml = layout.config.read_text()
    layout.config.write_text(toml.replace('method = "progressive"', 'method = "wanda-unstructured"'))
    line = refused(["export", str(layout.root), "--format", "packed", "--out", str(tmp_path / "x")])
    assert "wanda-unstructured baseline" in line and "--format dense" in line
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(("flag", "value"), [("--format", "zip"), ("--dtype", "int8")])
def test_unknown_format_or_dtype(campaigns, tmp_path, flag, value):
    line = refused(["export", str(campaigns["llama"].root), flag, value, "--out", str(tmp_path / "x")])
    assert line.startswith(f"tierctl: {flag} {value}")
