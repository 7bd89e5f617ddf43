"""The words of tierctl, each written once: tiers, steps, and the states a step or an iteration is in.

The CLI, the dashboard, the report and the steps all import these, so a tier is called, coloured and
drawn the same everywhere (terminal, dashboard, PNG figures), and a state is one word everywhere
(`tierctl status`, its `--json`, the dashboard). Pure Python: no torch, no Rich, no Textual.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Tier:
    """One tier of a block: its code in a tier map, its key in JSON, how it reads and is drawn."""

    code: int  # the uint8 value in a tier map
    key: str  # the key in metrics.json `composition`, `layer` events, schedule projections
    label: str  # what a person reads: in tables, legends, figures
    color: str  # "#rrggbb", the same in the terminal, the dashboard and the PNG figures
    glyph: str  # the cell of a stacked bar, so a bar reads without colour too


# Okabe-Ito's colour-blind-safe palette: blue, orange, vermillion stay apart under protanopia,
# deuteranopia and tritanopia; the glyphs carry the tier where there is no colour at all.
TIERS = (
    Tier(0, "dense", "dense", "#0072b2", "█"),
    Tier(1, "semi", "2:4", "#e69f00", "▒"),
    Tier(2, "topk", "top-k", "#d55e00", "░"),
)
DENSE, SEMI, TOPK = (t.code for t in TIERS)
TIER_KEYS = tuple(t.key for t in TIERS)  # ("dense", "semi", "topk")
TIER_LABELS = tuple(t.label for t in TIERS)  # ("dense", "2:4", "top-k")
TIER_COLORS = tuple(t.color for t in TIERS)
TIER_GLYPHS = tuple(t.glyph for t in TIERS)

# The steps of one iteration, in the order they run (`python -m tierctl.steps STEP`).
STEPS = ("prune", "finetune", "eval")

# The state of a step, and of an iteration (its steps summed up by `iteration_state`).
PENDING, RUNNING, DONE, FAILED, INTERRUPTED = "pending", "running", "done", "failed", "interrupted"
STATES = (PENDING, RUNNING, DONE, FAILED, INTERRUPTED)
PARTIAL = "partial"  # an iteration with some steps done and the rest pending (not a step state)


@dataclass(frozen=True)
class IterationState:
    """An iteration's steps summed up in one word, and the step the word is about.

    word: running (a step runs), failed (a step failed), interrupted (a step was stopped by Ctrl-C,
    SIGTERM, a cancel or a kill: resumable), done (every step), partial (some steps done, the rest
    pending), pending (nothing ran). step: the running / failed / interrupted step, the last done
    step of a partial iteration, the last step of a done one, None for a pending one.
    """

    word: str
    step: str | None = None


def iteration_state(steps: Mapping[str, str]) -> IterationState:
    """The one rule that sums up an iteration's step states (`status`, the dashboard, the report).

    A running step outranks a failed one (a rerun is under way), a failed one an interrupted one
    (a failure needs a person; an interruption only a rerun).
    """
    names = [s for s in STEPS if s in steps] or list(STEPS)  # the reference (iteration 0) has only eval
    states = [steps.get(s, PENDING) for s in names]
    for word in (RUNNING, FAILED, INTERRUPTED):
        if word in states:
            return IterationState(word, names[states.index(word)])
    done = [s for s, state in zip(names, states, strict=True) if state == DONE]
    if len(done) == len(names):
        return IterationState(DONE, names[-1])
    return IterationState(PARTIAL, done[-1]) if done else IterationState(PENDING)
