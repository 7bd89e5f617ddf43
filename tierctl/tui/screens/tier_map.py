"""Tier maps of a campaign: pick an iteration and a matrix to see its block grid coloured by tier, or
pick a second iteration to see which blocks moved between the two."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Label, OptionList, Static
from textual.widgets.option_list import Option

from tierctl.campaign.layout import CampaignLayout
from tierctl.core.tiermap_io import load_tier_maps_numpy
from tierctl.errors import TierctlError
from tierctl.render import matrix_sort_key, split_matrix_name, tier_map_diff_grid, tier_map_grid
from tierctl.render.styles import ERROR, WARNING

NO_COMPARE = "none"


def iterations_with_tiers(layout: CampaignLayout) -> list[int]:
    return [n for n in layout.iterations_on_disk() if layout.tiers(n).is_file()]


def matrix_label(name: str) -> str:
    layer, kind = split_matrix_name(name)
    return f"layer {layer:>2} {kind}" if layer is not None else name


class TierMapScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("left_square_bracket", "step(-1)", "Prev iter"),
        Binding("right_square_bracket", "step(1)", "Next iter"),
        Binding("d", "compare_previous", "Diff prev"),
    ]

    def __init__(self, layout: CampaignLayout, iteration: int | None = None) -> None:
        super().__init__()
        self.campaign = layout
        self.iterations = iterations_with_tiers(layout)
        self.iteration = iteration if iteration in self.iterations else (self.iterations or [None])[-1]
        self.compare: int | None = None
        self.matrix: str | None = None
        self._maps: dict[int, dict[str, Any]] = {}
        self.problem = ""

    def compose(self) -> ComposeResult:
        yield Static(id="tm-title")
        with Horizontal(id="tm-body"):
            with Vertical(id="tm-side"):
                yield Label("iteration", classes="tm-label")
                yield OptionList(*[Option(f"iteration {n}", id=str(n)) for n in self.iterations], id="tm-iterations")
                yield Label("compare with", classes="tm-label")
                yield OptionList(Option("nothing", id=NO_COMPARE),
                                 *[Option(f"iteration {n}", id=str(n)) for n in self.iterations], id="tm-compare")
                yield Label("matrix", classes="tm-label")
                yield OptionList(id="tm-matrices")
            with VerticalScroll(id="tm-view"):
                yield Static(id="tm-grid")
        yield Footer()

    def on_mount(self) -> None:
        title = Text(f" {self.campaign.name} ", style="bold reverse").append("  tier maps", style="bold")
        self.query_one("#tm-title", Static).update(title)
        if self.iteration is None:
            self.query_one("#tm-grid", Static).update(
                Text("No tier maps yet: they appear when an iteration's prune step is done "
                     "(r on the campaign screen runs the next iteration).", style=WARNING))
            return
        self._select(self.iteration)
        self.query_one("#tm-iterations", OptionList).highlighted = self.iterations.index(self.iteration)
        self.query_one("#tm-compare", OptionList).highlighted = 0
        self.query_one("#tm-matrices", OptionList).focus()

    def maps(self, n: int) -> dict[str, Any]:
        if n not in self._maps:
            self._maps[n] = load_tier_maps_numpy(self.campaign.tiers(n))[0]
        return self._maps[n]

    def _select(self, n: int) -> None:
        """Show iteration n; keep the matrix when it exists there, else the first one."""
        try:
            names = sorted(self.maps(n), key=matrix_sort_key)
        except TierctlError as e:
            self.problem = str(e)
            self._draw()
            return
        self.problem = ""
        self.iteration = n
        ol = self.query_one("#tm-matrices", OptionList)
        if [o.id for o in ol.options] != names:
            ol.clear_options()
            ol.add_options([Option(matrix_label(m), id=m) for m in names])
        if self.matrix not in names:
            self.matrix = names[0] if names else None
        if self.matrix is not None:
            ol.highlighted = names.index(self.matrix)
        self._draw()

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        oid = event.option.id
        if oid is None:
            return
        which = event.option_list.id
        if which == "tm-iterations" and int(oid) != self.iteration:
            self._select(int(oid))
        elif which == "tm-compare":
            self.compare = None if oid == NO_COMPARE else int(oid)
            self._draw()
        elif which == "tm-matrices" and oid != self.matrix:
            self.matrix = oid
            self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        grid = self.query_one("#tm-grid", Static)
        if self.problem:
            grid.update(Text(self.problem, style=f"bold {ERROR}"))
            return
        if self.iteration is None or self.matrix is None:
            return
        view = self.query_one("#tm-view").content_size
        width = max(20, view.width - 1)
        try:
            b = self.maps(self.iteration)[self.matrix]
            # What a small map may grow to: the pane less its title, note and legend, and at least twice
            # its size (r lines; the pane scrolls) when the width allows: a 36x36 map fills 95 columns.
            lines = max(view.height - 4, b.shape[0])
            if self.compare is None or self.compare == self.iteration:
                grid.update(tier_map_grid(b, max_width=width, title=f"iteration {self.iteration}  {self.matrix}",
                                          scale_up=lines))  # a small map uses the pane
                return
            if self.matrix not in self.maps(self.compare):
                grid.update(Text(f"iteration {self.compare} has no matrix {self.matrix}", style=ERROR))
                return
            first, second = sorted((self.compare, self.iteration))
            a, b = self.maps(first)[self.matrix], self.maps(second)[self.matrix]
            grid.update(tier_map_diff_grid(a, b, max_width=width, scale_up=lines,
                                           title=f"iteration {first} → {second}  {self.matrix}"))
        except TierctlError as e:
            grid.update(Text(str(e), style=f"bold {ERROR}"))

    def action_step(self, delta: int) -> None:
        if self.iteration is None:
            return
        i = self.iterations.index(self.iteration) + delta
        if 0 <= i < len(self.iterations):
            self.query_one("#tm-iterations", OptionList).highlighted = i

    def action_compare_previous(self) -> None:
        """Diff against the iteration before the shown one (or stop comparing)."""
        if self.iteration is None:
            return
        ol = self.query_one("#tm-compare", OptionList)
        i = self.iterations.index(self.iteration)
        if self.compare is not None or i == 0:
            ol.highlighted = 0
        else:
            ol.highlighted = i  # option 0 is "nothing", so option i is iteration i-1's entry

    def action_back(self) -> None:
        self.app.pop_screen()
