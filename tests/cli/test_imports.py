"""`tierctl --help`, `status` and `schedule` start fast: they import no heavy library."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ["torch", "transformers", "datasets", "textual", "matplotlib", "pandas", "safetensors", "accelerate"]


def imported_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return eval(out.stdout.strip().splitlines()[-1])  # noqa: S307  (our own printed list)


def test_importing_the_cli_imports_no_heavy_module():
    assert imported_after("import tierctl.cli") == []


def test_status_and_schedule_commands_import_no_heavy_module(tmp_path):
    from tests.campaign.step_files import iteration_done
    from tests.helpers import make_campaign

    layout = make_campaign(tmp_path)
    iteration_done(layout, 1)
    code = ("from typer.testing import CliRunner\nfrom tierctl.cli import app\n"
            f"r = CliRunner().invoke(app, ['status', {str(layout.root)!r}])\nassert r.exit_code == 0, r.output\n"
            f"r = CliRunner().invoke(app, ['status', {str(layout.root)!r}, '--json'])\nassert r.exit_code == 0\n"
            f"r = CliRunner().invoke(app, ['schedule', 'validate', {str(layout.schedule)!r}])\n"
            "assert r.exit_code == 0, r.output\n"
            f"r = CliRunner().invoke(app, ['schedule', 'show', {str(layout.schedule)!r}])\n"
            "assert r.exit_code == 0, r.output")
    assert imported_after(code) == []


def test_help_exits_0_and_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "tierctl", "--help"], capture_output=True, text=True,
                         env={"COLUMNS": "100", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0
    for command in ("init", "run", "status", "schedule"):
        assert command in out.stdout


def test_the_runner_process_imports_no_heavy_module(tmp_path):
    """`tierctl run` only launches steps; torch and transformers load in the step processes."""
    from tests.campaign.step_files import iteration_done
    from tests.helpers import make_campaign

    layout = make_campaign(tmp_path)
    iteration_done(layout, 1)
    code = ("from typer.testing import CliRunner\nfrom tierctl.cli import app\n"
            f"r = CliRunner().invoke(app, ['run', {str(layout.root)!r}, '--iter', '1'])\n"
            "assert r.exit_code == 0, r.output\nimport tierctl.live")
    assert imported_after(code) == []
