"""The shell around every command (tierctl/cli_shell.py): --help, -h, --version, exit codes."""

from __future__ import annotations

from typer.testing import CliRunner

from tierctl import __version__
from tierctl.cli import app

ENV = {"COLUMNS": "120", "NO_COLOR": "1"}


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env=ENV)


def test_help_shows_flags_without_a_value_and_options_with_their_type():
    out = invoke("run", "--help").stdout
    assert "<bool>" not in out and "<str>" not in out and "<int>" not in out
    all_line = next(line for line in out.splitlines() if "--all " in line)
    assert all_line.split("--all", 1)[1].lstrip().startswith("Run every iteration")  # no value after the flag
    assert any("--iter" in line and "INTEGER" in line for line in out.splitlines())
    assert "CAMPAIGN" in out


def test_dash_h_is_help_everywhere():
    assert invoke("-h").stdout == invoke("--help").stdout
    assert invoke("run", "-h").stdout == invoke("run", "--help").stdout
    assert invoke("schedule", "validate", "-h").exit_code == 0


def test_version():
    r = invoke("--version")
    assert (r.exit_code, r.stdout) == (0, f"tierctl {__version__}\n")


def test_an_os_error_in_a_command_is_one_line_naming_the_path(tmp_path):
    (tmp_path / "dir.csv").mkdir()
    r = invoke("schedule", "validate", str(tmp_path / "dir.csv"))
    assert r.exit_code == 2
    assert len(r.stderr.splitlines()) == 1 and str(tmp_path / "dir.csv") in r.stderr
    assert "Traceback" not in r.output
