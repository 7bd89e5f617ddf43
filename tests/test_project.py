"""The project itself: ruff is clean, and CI runs exactly the README's test command."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is a dev dependency: pip install -e '.[dev]'"
    proc = subprocess.run([ruff, "check", "tierctl", "tests", "bench"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def readme_command(marker: str) -> str:
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index(f"<!-- {marker} -->")
    assert lines[start + 1].startswith("```")
    return lines[start + 2]


def test_ci_runs_the_readme_test_command() -> None:
    proc = subprocess.run(
        ["awk", '/<!-- test-command -->/{f=1; next} f && /^```/ {if (g) exit; g=1; next} g {print}', "README.md"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    assert proc.stdout.strip() == readme_command("test-command")
    assert "test-command" in (ROOT / ".ci" / "run").read_text()


def test_the_main_command_runs_the_demo_campaign() -> None:
    cmd = readme_command("main-command")
    assert cmd.endswith("tierctl run smollm2-demo --all")
    assert (ROOT / "campaigns" / "smollm2-demo" / "campaign.toml").is_file()
