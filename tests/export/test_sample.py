"""`tierctl sample`: greedy text from the original model, then each iteration or export, side by side."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tierctl.cli import app
from tierctl.export.source import resolve_iteration
from tierctl.export.writer import export_iteration

runner = CliRunner()


def test_columns_are_the_original_then_each_iteration_then_the_packed_export(campaigns, tmp_path):
    root = campaigns["llama"].root
    export_iteration(resolve_iteration(f"{root}@2"), tmp_path / "x")
    result = runner.invoke(app, ["sample", f"{root}@1", f"{root}@2", "--packed", str(tmp_path / "x"),
                                 "--prompt", "The for statement", "--max-new-tokens", "6", "--json"])
    assert result.exit_code == 0, result.output
    texts = json.loads(result.stdout)
    assert list(texts) == ["original (tiny-llama)", "llama@1", "llama@2", "llama@2 (packed)"]
    assert all(isinstance(t, str) and t for t in texts.values())
    assert texts["llama@2 (packed)"] == texts["llama@2"]  # the same weights, the same greedy tokens


def test_the_table_shows_every_column(campaigns):
    result = runner.invoke(app, ["sample", str(campaigns["opt"].root), "--prompt", "x", "--max-new-tokens", "3"],
                           terminal_width=160)
    assert result.exit_code == 0, result.output
    assert "original (tiny-opt)" in result.stdout and "opt@1" in result.stdout


def test_an_unfinished_iteration_is_refused_before_any_model_loads(campaigns):
    result = runner.invoke(app, ["sample", f"{campaigns['llama'].root}@3", "--prompt", "x"])
    assert result.exit_code == 2
    assert "iteration 3 is not finished" in result.stderr and result.stderr.count("\n") == 1


def test_a_text_of_only_line_breaks_is_shown_as_such_not_as_a_blank_cell():
    from tierctl.render.export import shown_text

    assert shown_text("\n" * 30).plain == "(only whitespace: 30 line breaks)"
    assert shown_text("").plain == "(nothing: the model ended at once)"


def test_runs_of_line_breaks_fold_into_one_marked_line_and_markup_stays_text():
    from tierctl.render.export import shown_text

    assert shown_text("a\n\nb\n\n\n\nc [bold]x[/bold]\n").plain == "a\n\nb\n⏎ x 4\nc [bold]x[/bold]"
