"""The schedule draft behind the table, without Textual: refusals, marks, locks, derive, save."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.helpers import SPEC_SCHEDULE_CSV
from tierctl.core.schedule import load_schedule, parse_schedule
from tierctl.errors import BadInput
from tierctl.tui.schedule_draft import ScheduleDraft, check_cell, row_locks


def draft(tmp_path: Path, locked: dict | None = None) -> ScheduleDraft:
    path = tmp_path / "schedule.csv"
    path.write_text(SPEC_SCHEDULE_CSV)
    return ScheduleDraft(parse_schedule(SPEC_SCHEDULE_CSV), path, locked)


def status(*steps: tuple[str, str, str]) -> SimpleNamespace:
    its = [SimpleNamespace(iteration=i + 1, steps=dict(zip(("prune", "finetune", "eval"), s, strict=True)))
           for i, s in enumerate(steps)]
    return SimpleNamespace(iterations=its)


@pytest.mark.parametrize(("column", "text", "reason"), [
    ("dense", "abc", "dense: 'abc' is not a number"),
    ("dense", "-0.1", "dense: '-0.1' must be a fraction in [0, 1]"),
    ("topk", "nan", "topk: 'nan' must be a fraction in [0, 1]"),
    ("epochs", "1.5", "epochs: '1.5' must be a whole number >= 0"),
    ("epochs", "-1", "epochs: '-1' must be a whole number >= 0"),
])
def test_values_that_can_never_stand_in_a_cell_are_refused(column: str, text: str, reason: str) -> None:
    assert check_cell(column, text) == (None, reason)


def test_accepted_values_are_parsed_to_their_column_type() -> None:
    assert check_cell("mid_2_4", " 0.25 ") == (0.25, None)
    assert check_cell("epochs", "3") == (3, None)


def test_a_row_is_locked_once_a_step_ran_and_its_epochs_stay_open_until_the_finetune_starts() -> None:
    locks = row_locks(status(("done", "done", "done"), ("done", "failed", "pending"), ("running", "pending",
                                                                                        "pending"),
                             ("pending", "pending", "pending")))
    assert sorted(locks) == [1, 2, 3]
    assert locks[1].open_columns == frozenset()
    assert locks[2].open_columns == frozenset({"epochs", "lr", "tokens_per_epoch"})  # what the fine-tune reads
    assert locks[3].open_columns == frozenset()
    assert "iteration 3 is being run (prune running)" in locks[3].reason


def test_an_edit_of_a_locked_cell_is_refused_with_the_lock_reason(tmp_path: Path) -> None:
    locks = row_locks(status(("done", "pending", "pending")))
    d = draft(tmp_path, locks)
    assert d.edit(1, "dense", "0.8") == locks[1].reason
    assert d.edit(1, "epochs", "5") is None
    assert d.rows[0].epochs == 5


def test_derive_fills_the_transition_columns_of_editable_rows_from_the_cumulative_ones(tmp_path: Path) -> None:
    d = draft(tmp_path)
    d.edit(2, "dense", "0.75")
    d.edit(2, "mid_2_4", "0.15")
    assert not d.valid
    assert d.derive_transitions() == 2  # rows 2 and 3 move differently now
    assert (d.rows[1].dense_to_2_4, d.rows[1].mid_2_4_to_topk) == (0.15, 0.1)
    assert (d.rows[2].dense_to_2_4, d.rows[2].mid_2_4_to_topk) == (0.1, 0.05)
    assert d.valid


def test_save_refuses_an_invalid_draft_naming_the_first_problem_and_writes_nothing(tmp_path: Path) -> None:
    d = draft(tmp_path)
    d.edit(3, "topk", "0.5")
    with pytest.raises(BadInput, match=r"^not saved: iteration 3: dense \+ mid_2_4 \+ topk = 1.35"):
        d.save()
    assert (tmp_path / "schedule.csv").read_text() == SPEC_SCHEDULE_CSV


def test_save_writes_a_valid_draft_that_loads_back_identical(tmp_path: Path) -> None:
    d = draft(tmp_path)
    d.add_row()
    d.edit(6, "epochs", "4")
    d.save()
    assert load_schedule(tmp_path / "schedule.csv").rows == d.rows
    assert not d.dirty


def test_removing_the_only_row_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "schedule.csv"
    d = ScheduleDraft(parse_schedule(SPEC_SCHEDULE_CSV.splitlines()[0] + "\n1,0.9,0.1,0,0.1,0,1\n"), path)
    assert d.remove_row(1) == "a schedule needs at least one iteration"


KNOB_CSV = "iteration,dense,mid_2_4,topk,epochs,lr\n1,0.9,0.1,0.0,1,\n2,0.8,0.1,0.1,1,3e-4\n"


def test_a_schedule_with_an_lr_column_is_shown_and_edited_with_it(tmp_path: Path) -> None:
    path = tmp_path / "schedule.csv"
    path.write_text(KNOB_CSV)
    d = ScheduleDraft(load_schedule(path), path)
    assert d.knobs == ("lr",)

    assert d.edit(1, "lr", "1e-3") is None
    assert d.edit(2, "lr", "-") is None  # "-", as the table shows it: the campaign.toml value
    assert d.refusal(1, "lr", "0") == "lr: 0 must be > 0 (a peak learning rate; leave it blank for the " \
                                      "campaign.toml value)"
    assert d.refusal(1, "tokens_per_epoch", "512").startswith("tokens_per_epoch: not a column of this schedule")
    d.save()
    assert [(r.lr, r.tokens_per_epoch) for r in load_schedule(path).rows] == [(1e-3, None), (None, None)]
