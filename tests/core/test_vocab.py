"""core/vocab: one tier table, one list of steps, one rule for an iteration's state."""

from __future__ import annotations

import pytest

from tierctl.core.vocab import STEPS, TIER_KEYS, TIER_LABELS, TIERS, IterationState, iteration_state


def test_the_tier_table_is_ordered_by_code_with_distinct_keys_labels_colours_and_glyphs() -> None:
    assert [t.code for t in TIERS] == [0, 1, 2]
    assert TIER_KEYS == ("dense", "semi", "topk") and TIER_LABELS == ("dense", "2:4", "top-k")
    for attr in ("key", "label", "color", "glyph"):
        assert len({getattr(t, attr) for t in TIERS}) == 3, attr


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        (("pending", "pending", "pending"), IterationState("pending")),
        (("done", "pending", "pending"), IterationState("partial", "prune")),
        (("done", "done", "pending"), IterationState("partial", "finetune")),
        (("done", "done", "done"), IterationState("done", "eval")),
        (("done", "running", "pending"), IterationState("running", "finetune")),
        (("done", "interrupted", "pending"), IterationState("interrupted", "finetune")),
        (("done", "done", "failed"), IterationState("failed", "eval")),
        (("failed", "running", "pending"), IterationState("running", "finetune")),  # a rerun is under way
        (("done", "failed", "interrupted"), IterationState("failed", "finetune")),  # a failure needs a person
    ],
)
def test_an_iteration_is_summed_up_by_its_most_telling_step(states: tuple[str, ...],
                                                            expected: IterationState) -> None:
    assert iteration_state(dict(zip(STEPS, states, strict=True))) == expected


def test_the_reference_is_summed_up_by_its_one_step() -> None:
    assert iteration_state({"eval": "done"}) == IterationState("done", "eval")
    assert iteration_state({"eval": "interrupted"}) == IterationState("interrupted", "eval")
