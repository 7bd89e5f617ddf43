"""`tierctl show`, `diff`, `report`: looking at tier maps and results."""

from __future__ import annotations

from pathlib import Path

import typer

from tierctl.cli.base import app, fail
from tierctl.errors import BadInput, TierctlError


def _tier_source(arg: str) -> tuple[Path, str]:
    """(tier-map file, label) for `CAMPAIGN@N`, a tier-map file, or `CAMPAIGN` (its latest tier map)."""
    from tierctl.campaign.layout import resolve_campaign

    if Path(arg).is_file():
        return Path(arg), arg
    camp, sep, n = arg.rpartition("@")
    if sep and n.isdigit():
        layout = resolve_campaign(camp)
        path = layout.tiers(int(n))
        if not path.is_file():
            raise BadInput(f"{arg}: iteration {n} has no tier map ({path} is missing)")
        return path, f"{layout.name}@{n}"
    if arg.endswith(".safetensors"):
        raise BadInput(f"{arg}: no such tier map file")
    try:
        layout = resolve_campaign(arg)
    except BadInput:
        raise BadInput(f"{arg}: expected CAMPAIGN@N, CAMPAIGN or a tier-map .safetensors file") from None
    done = [n for n in layout.iterations_on_disk() if layout.tiers(n).is_file()]
    if not done:
        raise BadInput(f"{arg}: no iteration has a tier map yet")
    return layout.tiers(done[-1]), f"{layout.name}@{done[-1]}"


def _per_matrix(maps: dict, meta: dict) -> dict[str, dict[str, float | None]]:
    """Composition of each map, with the sparsity its tiers imply (docs/tiers.md) when block size and k are known."""
    from tierctl.core.schedule import tier_sparsities
    from tierctl.core.vocab import TIER_KEYS
    from tierctl.render import map_composition

    b, k = meta.get("block_size"), meta.get("topk_per_block")
    per_tier = tier_sparsities(b, k) if b is not None and k is not None else None
    out: dict[str, dict[str, float | None]] = {}
    for name, m in maps.items():
        comp: dict[str, float | None] = dict(map_composition(m))
        comp["sparsity"] = sum(comp[t] * s for t, s in zip(TIER_KEYS, per_tier, strict=True)) \
            if per_tier else None
        out[name] = comp
    return out


@app.command()
def show(
    source: str = typer.Argument(..., metavar="A", help="CAMPAIGN@N, CAMPAIGN (latest iteration) or a tier-map file."),
    layer: str = typer.Option(None, "--layer", help="Matrix to draw: a name or a glob (default: the first)."),
    width: int = typer.Option(None, "--width", min=8, help="Widest grid in characters (default: the terminal)."),
    reduce: str = typer.Option("max", "--reduce", help="Big maps, per cell: max (most pruned tier) or mode."),
    glyphs: bool = typer.Option(False, "--glyphs", help="Glyphs instead of colours (automatic without colour)."),
) -> None:
    """Draw the block grid of one matrix's tier map, and the composition of every matrix."""
    import fnmatch

    from rich.console import Console

    from tierctl.core.tiermap_io import load_tier_maps_numpy
    from tierctl.render import layer_composition_table, matrix_sort_key, tier_map_grid

    try:
        if reduce not in ("max", "mode"):
            raise BadInput(f"--reduce {reduce}: expected max or mode")
        path, label = _tier_source(source)
        maps, meta = load_tier_maps_numpy(path)
        per_matrix = _per_matrix(maps, meta)
        names = sorted(maps, key=matrix_sort_key)
        if layer is None:
            name = names[0]
        elif layer in maps:
            name = layer
        else:
            hits = [n for n in names if fnmatch.fnmatchcase(n, layer)]
            if not hits:
                raise BadInput(f"--layer {layer}: no matrix of that name in {path} (e.g. {names[0]})")
            name = hits[0]
    except TierctlError as e:
        raise fail(e) from None
    from rich.text import Text

    console = Console(highlight=False)
    mono = glyphs or console.no_color or console.color_system is None
    head = Text.assemble((label, "bold"), f"  {len(maps)} matrices, block size {meta.get('block_size', '?')}")
    console.print(head, soft_wrap=True)
    console.print(tier_map_grid(maps[name], max_width=width or console.width, title=name, reduce=reduce, glyphs=mono))
    console.print()
    console.print(layer_composition_table(per_matrix, title="composition of every matrix",
                                          notes=_allocation_notes(path)))


def _allocation_notes(tier_path: Path) -> tuple[str, dict[int, str]] | None:
    """`show`'s OWL column: the allocation in the metrics.json beside the tier map (an iteration's
    directory); None for a uniform campaign or a tier map on its own."""
    from tierctl.core.metrics import read_metrics
    from tierctl.render import allocation_notes

    try:
        metrics = read_metrics(tier_path.parent / "metrics.json")
    except BadInput:
        return None
    return allocation_notes(metrics.allocation) if metrics is not None else None


def _common_prefix(names: list[str]) -> str:
    """`model.layers.` for names all under it: cut at a dot, so what is left still reads `3.mlp.down_proj`."""
    import os

    if len(names) < 2:
        return ""
    common = os.path.commonprefix(names)
    return common[: common.rfind(".") + 1]


@app.command()
def diff(
    a: str = typer.Argument(..., metavar="A", help="CAMPAIGN@N, CAMPAIGN (latest iteration) or a tier-map file."),
    b: str = typer.Argument(..., metavar="B", help="The same kinds of thing, compared against A."),
    layer: str = typer.Option(None, "--layer", help="Only matrices whose name matches this glob."),
    as_json: bool = typer.Option(False, "--json", help="Print the transitions as JSON (docs/cli.md)."),
) -> None:
    """Which blocks changed tier from A to B: per matrix, by matrix kind and by depth."""
    import json

    from rich.console import Console

    from tierctl.core.diff import diff_tier_maps
    from tierctl.core.tiermap_io import load_tier_maps_numpy
    from tierctl.render import tier_map_diff_grid, transitions_table

    try:
        (path_a, label_a), (path_b, label_b) = _tier_source(a), _tier_source(b)
        maps_a, meta_a = load_tier_maps_numpy(path_a)
        maps_b, meta_b = load_tier_maps_numpy(path_b)
        result = diff_tier_maps(maps_a, maps_b, layer, meta_a, meta_b, label_a, label_b)
    except TierctlError as e:
        raise fail(e) from None
    if as_json:
        print(json.dumps({"layers": {n: {"transitions": m.counts.tolist()} for n, m in result.matrices.items()},
                          "total": {"transitions": result.total.counts.tolist()}}))
        return
    console = Console(highlight=False)
    console.print(f"A = {label_a}   B = {label_b}   ({len(result.matrices)} matrices)", soft_wrap=True, markup=False)
    prefix = _common_prefix(list(result.matrices))
    console.print(transitions_table({n[len(prefix):]: m.counts for n, m in result.matrices.items()},
                                    title=f"per matrix ({prefix}*)" if prefix else "per matrix"))
    console.print(transitions_table({k: t.counts for k, t in result.by_kind().items()}, label="kind",
                                    title="by matrix kind"))
    console.print(transitions_table({("-" if d is None else str(d)): t.counts for d, t in result.by_depth().items()},
                                    label="layer", title="by depth (decoder layer)"))
    total = result.total
    console.print(f"blocks moved: {total.moved} of {total.blocks} ({100 * total.moved / max(1, total.blocks):.1f}%), "
                  f"agreement {100 * total.agreement:.1f}%")
    if total.promotions:
        n_bad = len(result.promoted)
        console.print(f"[bold red]{total.promotions} blocks promoted (denser in B than in A) in {n_bad} "
                      f"{'matrix' if n_bad == 1 else 'matrices'}: impossible from an earlier to a later iteration "
                      "of one campaign. Are A and B swapped, or from different campaigns?[/]")
    if len(result.matrices) == 1:
        name = next(iter(result.matrices))
        mono = console.no_color or console.color_system is None
        console.print(tier_map_diff_grid(maps_a[name], maps_b[name], max_width=console.width, title=name,
                                         glyphs=mono))


@app.command()
def report(
    campaigns: list[str] = typer.Argument(..., metavar="CAMPAIGN...", help="Campaign directories or names."),
    out: Path = typer.Option(..., "--out", help="Directory for index.html and its PNG figures."),
    matrix: list[str] = typer.Option(None, "--matrix", help="Glob of matrices for the tier-map heat maps "
                                     "(repeatable; default: first and last kind of the first and last layer)."),
) -> None:
    """Write an offline HTML report (PNG figures) comparing finished campaigns."""
    from tierctl.campaign.layout import resolve_campaign
    from tierctl.report import build_report

    try:
        layouts = []
        for c in campaigns:
            if c.endswith(".toml") and Path(c).is_file():  # a sweep: its points, like a list of campaigns
                from tierctl.campaign.sweep_spec import load_sweep, points

                spec = load_sweep(c)
                layouts += [spec.layout(p.name) for p in points(spec) if spec.layout(p.name).config.is_file()]
            else:
                layouts.append(resolve_campaign(c))
        page = build_report(layouts, out, matrix or None)
    except TierctlError as e:
        raise fail(e) from None
    print(page)
