"""`tierctl tui`: the campaigns under ./campaigns, their state, last perplexity and sparsity."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from tierctl.campaign.layout import CampaignLayout
from tierctl.core.vocab import DONE, FAILED, INTERRUPTED, PARTIAL, RUNNING, iteration_state
from tierctl.errors import TierctlError
from tierctl.render import comp_bar
from tierctl.render.styles import ACTIVE, ERROR, OK, WARNING

if TYPE_CHECKING:
    from tierctl.tui.app import TierctlApp

STATE_STYLES = {"running": f"bold {ACTIVE}", "failed": f"bold {ERROR}", "complete": OK, "new": "dim",
                "broken": f"bold {ERROR}", "resumable": WARNING,
                "interrupted": WARNING, "halted": f"bold {WARNING}"}


@dataclass(frozen=True)
class CampaignRow:
    """One line of the list, computed off the UI thread."""

    name: str
    path: Path
    model: str
    done: int
    total: int
    state: str
    ppl: float | None
    sparsity: float | None
    composition: dict[str, float] | None
    problem: str = ""


def summarize(layout: CampaignLayout) -> CampaignRow:
    """State of one campaign: running, halted (its guardrail), failed, interrupted, complete, resumable (some
    done), new, or broken."""
    from tierctl.campaign.config import load_config
    from tierctl.campaign.state import campaign_status

    try:
        model = load_config(layout.config).model.name
        status = campaign_status(layout, check=False)
    except TierctlError as e:
        return CampaignRow(layout.name, layout.root, "?", 0, 0, "broken", None, None, None, str(e))
    its = status.iterations
    done = sum(1 for it in its if it.complete)
    words = {iteration_state(it.steps).word for it in its}
    # a killed run leaves a start without an end: interrupted (resumable), not failed
    state = next((w for w in (RUNNING, FAILED, INTERRUPTED) if w in words), None)
    if state is None:
        state = "complete" if its and done == len(its) else "resumable" if words & {DONE, PARTIAL} else "new"
    if state != RUNNING and status.halt is not None:
        state = "halted"
    last = next((it for it in reversed(its) if it.composition is not None), None)
    last_ppl = next((it.ppl for it in reversed(its) if it.ppl is not None), None)
    return CampaignRow(layout.name, layout.root, model, done, len(its), state, last_ppl,
                       last.sparsity if last else None, last.composition if last else None)


def find_campaigns(base: Path) -> list[CampaignLayout]:
    if not base.is_dir():
        return []
    return [CampaignLayout(p) for p in sorted(base.iterdir()) if (p / "campaign.toml").is_file()]


class CampaignsScreen(Screen[None]):
    BINDINGS = [
        Binding("enter", "open", "Open", show=True),
        Binding("g", "refresh", "Refresh", show=False),
    ]

    def __init__(self, base: Path, poll_interval: float = 2.0) -> None:
        super().__init__()
        self.base = Path(base)
        self.poll_interval = poll_interval
        self.rows: list[CampaignRow] = []

    def compose(self) -> ComposeResult:
        yield Static(id="campaigns-title")
        table: DataTable[Any] = DataTable(id="campaigns-table", cursor_type="row", zebra_stripes=True)
        for label, key in (("campaign", "name"), ("model", "model"), ("iterations", "iterations"),
                           ("state", "state"), ("last ppl", "ppl"), ("sparsity", "sparsity"),
                           ("dense/2:4/top-k", "composition")):
            table.add_column(label, key=key)
        yield table
        yield Static(id="campaigns-hint")
        yield Footer()

    def on_mount(self) -> None:
        title = Text(" tierctl ", style="bold reverse").append(f"  campaigns in {self.base}/", style="")
        self.query_one("#campaigns-title", Static).update(title)
        self.query_one("#campaigns-table").focus()
        self.action_refresh()
        self.set_interval(self.poll_interval, self.action_refresh)

    def on_screen_resume(self) -> None:
        self.action_refresh()

    @work(thread=True, group="campaigns", exclusive=True)
    def action_refresh(self) -> None:
        rows = [summarize(layout) for layout in find_campaigns(self.base)]
        self.app.call_from_thread(self._show, rows)

    def _show(self, rows: list[CampaignRow]) -> None:
        self.rows = rows
        table = self.query_one("#campaigns-table", DataTable)
        cursor = table.cursor_row
        table.clear()
        for r in rows:
            state = Text(r.state, style=STATE_STYLES.get(r.state, ""))
            table.add_row(
                Text(r.name, style="bold"), r.model, f"{r.done}/{r.total}", state,
                Text("-" if r.ppl is None else f"{r.ppl:.2f}", justify="right"),
                Text("-" if r.sparsity is None else f"{100 * r.sparsity:.1f}%", justify="right"),
                comp_bar(r.composition, 16), key=str(r.path),
            )
        if rows:
            table.move_cursor(row=min(cursor, len(rows) - 1), animate=False)
        hint = self.query_one("#campaigns-hint", Static)
        broken = [r for r in rows if r.problem]
        if not rows:
            hint.update(Text(f"No campaigns under {self.base}/. Create one with: tierctl init NAME", style=WARNING))
        elif broken:
            hint.update(Text("\n".join(f"{r.name}: {r.problem}" for r in broken), style=ERROR))
        else:
            hint.update(Text("enter opens a campaign · ? help · q quit", style="dim"))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self._open(event.cursor_row)

    def action_open(self) -> None:
        self._open(self.query_one("#campaigns-table", DataTable).cursor_row)

    def _open(self, index: int) -> None:
        if 0 <= index < len(self.rows):
            cast("TierctlApp", self.app).open_campaign(CampaignLayout(self.rows[index].path))
