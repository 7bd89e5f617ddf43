"""`?`: the keys, and the few ideas a first-time user needs (tiers, read-only rows, detached runs)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# tierctl dashboard

Every prunable matrix is cut into 16x16 blocks; each block is **DENSE**, **2:4** (semi-structured)
or **TOP-K** (k of 256 weights kept). Each iteration of the schedule demotes blocks, fine-tunes with
the masks held, and measures perplexity.

## Campaign screen

| key | does |
|---|---|
| arrows, mouse | move in the schedule table |
| enter / e | edit the cell under the cursor |
| n | add an iteration at the end |
| x / delete | remove the iteration under the cursor |
| f | fill in the transition columns from dense / 2:4 / top-k |
| ctrl+s | save schedule.csv (refused while a cell is marked red) |
| ctrl+r | reload schedule.csv, dropping unsaved edits |
| r | run the next incomplete iteration |
| i | run a chosen iteration |
| a | run every incomplete iteration |
| c | cancel the run (stops the running step; run again to resume) |
| t | tier maps of this campaign |
| 1 2 3 | schedule / live / results (on narrow terminals) |
| escape | back to the campaign list |

Rows of iterations that already ran are **read-only**: the files of those iterations were made
with those rows, and changing them would make the campaign lie. Add an iteration instead.

Runs started here keep running when the dashboard quits: they are separate processes
(`tierctl run CAMPAIGN --iter N`). Open the dashboard again to follow them.

## Tier maps screen

| key | does |
|---|---|
| up/down in a list | pick the iteration, the matrix, the iteration to compare with |
| [ / ] | previous / next iteration |
| d | compare with the previous iteration (again: stop comparing) |
| escape | back |

## Everywhere

| key | does |
|---|---|
| ? | this help |
| q | quit (asks first when a run is active) |
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box", classes="modal-box"):
            yield Markdown(HELP)

    def action_close(self) -> None:
        self.dismiss(None)
