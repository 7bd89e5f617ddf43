"""The `tierctl` command line. Thin: parse flags, call the layers below, print Rich output.

No torch, transformers, datasets or textual at import time: `tierctl --help` must answer fast.
Errors a user can cause (tierctl.errors) become one line on stderr and exit code 2 (bad input)
or 1 (a step failed); usage errors and OSErrors too (tierctl/cli_shell.py, the root command's class).
"""

from __future__ import annotations

import sys

import typer

from tierctl.cli_shell import TierctlGroup, version_callback
from tierctl.errors import TierctlError

app = typer.Typer(
    name="tierctl",
    help="Progressive three-tier (dense / 2:4 / top-k) pruning campaigns for causal LMs.",
    cls=TierctlGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Progressive three-tier (dense / 2:4 / top-k) pruning campaigns for causal LMs."""
schedule_app = typer.Typer(help="Validate and show schedule CSV files.", no_args_is_help=True)
app.add_typer(schedule_app, name="schedule")


def fail(err: TierctlError) -> typer.Exit:
    """Print one line on stderr and return the Exit to raise."""
    msg = str(err).splitlines()[0] if str(err) else type(err).__name__
    print(f"tierctl: {msg}", file=sys.stderr)
    return typer.Exit(err.exit_code)


# Commands are registered below, one section each. Keep each command thin.

# === schedule ===

from typing import TYPE_CHECKING  # noqa: E402

if TYPE_CHECKING:
    from tierctl.campaign.holder import Holder
    from tierctl.core.schedule import Schedule


def _schedule_and_tiers(file: str, block_size: int | None, k: int | None) -> tuple[Schedule, str, int, int]:
    """(schedule, its path, block size, k) for a schedule file or a campaign directory.

    A campaign directory lends its schedule.csv and the block size and k of its campaign.toml, so the
    projected sparsity is the campaign's; flags override; otherwise the defaults 16 and 10.
    """
    from pathlib import Path as _Path

    from tierctl.core.schedule import load_schedule

    path = _Path(file)
    if path.is_dir() and (path / "schedule.csv").is_file():
        if (path / "campaign.toml").is_file():
            from tierctl.campaign.config import load_config

            tiers = load_config(path / "campaign.toml").tiers
            block_size = tiers.block_size if block_size is None else block_size
            k = tiers.topk_per_block if k is None else k
        path = path / "schedule.csv"
    block_size, k = 16 if block_size is None else block_size, 10 if k is None else k
    schedule = load_schedule(path)
    return schedule, str(path), block_size, k


_BLOCK_OPT = typer.Option(None, "--block-size", "-b", min=4, max=4096,
                          help="Block size (default: the campaign's, else 16).")
_K_OPT = typer.Option(None, "--topk", "-k", min=0, help="Non-zeros kept per top-k block (default: the campaign's, "
                      "else 10).")


@schedule_app.command("validate")
def schedule_validate(
    file: str = typer.Argument(..., metavar="FILE", help="schedule.csv, or a campaign directory."),
    block_size: int = _BLOCK_OPT,
    k: int = _K_OPT,
) -> None:
    """Check a schedule (docs/tiers.md, The schedule): exit 0 and a summary, or exit 2 and one line naming the cell."""
    from tierctl.core.schedule import project

    try:
        schedule, path, b, kk = _schedule_and_tiers(file, block_size, k)
        final = project(schedule, b, kk)[-1]["sparsity"]
    except TierctlError as e:
        raise fail(e) from None
    print(f"{path}: ok, {len(schedule)} iterations, final sparsity {100 * final:.1f}%")


@schedule_app.command("show")
def schedule_show(
    file: str = typer.Argument(..., metavar="FILE", help="schedule.csv, or a campaign directory."),
    block_size: int = _BLOCK_OPT,
    k: int = _K_OPT,
) -> None:
    """Draw the schedule with its projection: block composition and expected sparsity per iteration."""
    from rich.console import Console

    from tierctl.render.schedule import schedule_table

    try:
        schedule, path, b, kk = _schedule_and_tiers(file, block_size, k)
        table = schedule_table(schedule, b, kk, title=path)
    except TierctlError as e:
        raise fail(e) from None
    Console(highlight=False).print(table)


# === init / run / status ===

from pathlib import Path as _Path  # noqa: E402

from tierctl.campaign import config as _cfg  # noqa: E402  (light: dataclasses and tomli-w, for the defaults)


@app.command()
def init(
    name: str = typer.Argument(..., help="Campaign name: a plain directory name."),
    dir: _Path = typer.Option(_Path("campaigns"), "--dir", help="Where campaigns live."),
    model: str = typer.Option(_cfg.ModelConfig.name, "--model", help="Preset, HF id, model directory or .gguf file."),
    calib: str = typer.Option(_cfg.DataConfig.calib, "--calib", help="Calibration / fine-tune text: pydoc, "
                              "text:PATH, wikitext2, c4, ptb."),
    eval: str = typer.Option(_cfg.DataConfig.eval, "--eval", help="Evaluation text (same choices as --calib)."),
    schedule: _Path = typer.Option(None, "--schedule", help="Schedule CSV (default: the seed schedule)."),
    nsamples: int = typer.Option(_cfg.DataConfig.nsamples, "--nsamples", help="Calibration windows."),
    seqlen: int = typer.Option(_cfg.DataConfig.seqlen, "--seqlen", help="Tokens per window (calibration, "
                               "evaluation and fine-tune)."),
    block_size: int = typer.Option(_cfg.TiersConfig.block_size, "--block-size", help="Block side b (b x b blocks)."),
    topk: int = typer.Option(_cfg.TiersConfig.topk_per_block, "--topk", help="Non-zeros kept per top-k block."),
    device: str = typer.Option(_cfg.ModelConfig.device, "--device", help="auto, cpu or cuda."),
    dtype: str = typer.Option(_cfg.ModelConfig.dtype, "--dtype", help="float32, bfloat16 or float16."),
    seed: int = typer.Option(_cfg.DataConfig.seed, "--seed", help="Seed of calibration windows and fine-tune order."),
    method: str = typer.Option(_cfg.PruneConfig.method, "--method", help="progressive, a one-shot baseline "
                               "(wanda-unstructured, wanda-nm) or none (the fine-tune-only control)."),
    controls: bool = typer.Option(False, "--controls", help="Also create NAME-control (method none), NAME-wanda "
                                  "(unstructured at the schedule's final sparsity) and NAME-wanda-2-4, with the "
                                  "same model, data, evaluation and total fine-tune budget."),
    tasks: str = typer.Option(None, "--tasks", help="Zero-shot tasks through lm-eval, comma-separated "
                              "([eval] tasks; needs tierctl[eval])."),
    task_path: list[_Path] = typer.Option(None, "--task-path", help="A directory of lm-eval task YAMLs "
                                          "([eval] task_paths; repeatable)."),
    no_check: bool = typer.Option(False, "--no-check", help="Skip the start-up check (model, device, text "
                                  "windows), e.g. for a campaign made for another machine; run checks it anyway."),
) -> None:
    """Create a campaign: campaign.toml and schedule.csv in DIR/NAME (nothing is written when refused)."""
    from tierctl.campaign.init import InitOptions, create_campaign

    task_list = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
    opts = InitOptions(model=model, calib=calib, eval=eval, schedule=schedule, nsamples=nsamples, seqlen=seqlen,
                       block_size=block_size, topk=topk, device=device, dtype=dtype, seed=seed, method=method,
                       tasks=task_list, task_paths=list(task_path) if task_path else None)
    try:
        warn = (lambda w: print(f"tierctl: warning: {w}", file=sys.stderr))  # noqa: E731
        if controls:
            from tierctl.campaign.controls import create_comparison_set

            layouts = create_comparison_set(name, dir, opts, check=not no_check, on_warning=warn)
        else:
            layouts = [create_campaign(name, dir, opts, check=not no_check, on_warning=warn)]
    except TierctlError as e:
        raise fail(e) from None
    for layout in layouts:
        print(f"created {layout.root} (campaign.toml, schedule.csv); run it with: tierctl run {layout.root} --all")
    if controls:
        print(f"compare them with: tierctl report {' '.join(str(x.root) for x in layouts)} --out report")


@app.command()
def run(
    campaign: str = typer.Argument(..., help="Campaign directory, or a name under ./campaigns."),
    iteration: int = typer.Option(None, "--iter", help="Run the steps of iteration N that are not done."),
    all_: bool = typer.Option(False, "--all", help="Run every iteration that is not complete, in order."),
    step: str = typer.Option(None, "--step", help="Only this step: prune, finetune or eval (with --iter)."),
    force: bool = typer.Option(False, "--force", help="Redo even if done, removing what depends on it "
                               "(--step prune or none: iter<N> and later; eval: only its ppl)."),
    json_: bool = typer.Option(False, "--json", help="Print the events, one JSON object per line "
                               "(automatic when stdout is not a terminal)."),
    launcher: str = typer.Option(None, "--launcher", help="Fine-tune launcher: local, torchrun or slurm "
                                 "(default: \\[run] launcher)."),
    nproc: int = typer.Option(None, "--nproc", min=1, max=4096,
                              help="Processes under torchrun (default: \\[run] nproc)."),
    grace: float = typer.Option(10.0, "--grace", min=0.0, max=3600.0,
                                help="Seconds a stopped step gets before SIGKILL."),
    wait: bool = typer.Option(False, "--wait", help="When another run (or its orphaned step) holds the campaign, "
                              "wait for it, then run what is left."),
    no_check: bool = typer.Option(False, "--no-check", help="Skip the start-up check (model, device, text "
                                  "windows): saves a few seconds when the campaign is known to be sound."),
) -> None:
    """Run prune, fine-tune and eval steps of a campaign (resumes: completed steps are skipped)."""
    from rich.console import Console

    from tierctl.campaign.config import LAUNCHERS
    from tierctl.campaign.layout import resolve_campaign
    from tierctl.campaign.plan import RunRequest
    from tierctl.campaign.runner import run_campaign
    from tierctl.errors import BadInput as _BadInput

    console = Console()
    try:
        if launcher is not None and launcher not in LAUNCHERS:
            raise _BadInput(f"--launcher {launcher}: must be one of {', '.join(LAUNCHERS)}")
        layout = resolve_campaign(campaign)
        request = RunRequest(iteration=iteration, all=all_, step=step, force=force)
        if json_ or not console.is_terminal:
            outcome = run_campaign(layout, request, launcher, nproc, on_event=_print_event, grace=grace, wait=wait,
                                   on_wait=_WaitLines(), check=not no_check)
        else:
            from tierctl.live import LiveView

            with LiveView(layout, console) as view:
                outcome = run_campaign(layout, request, launcher, nproc, on_event=view.on_event,
                                       on_step=view.on_step, grace=grace, wait=wait, on_wait=view.on_wait,
                                       check=not no_check)
    except TierctlError as e:
        raise fail(e) from None
    except KeyboardInterrupt:  # Ctrl-C while waiting for the holder: nothing of ours ran
        print("tierctl: interrupted while waiting; nothing was run", file=sys.stderr)
        raise typer.Exit(130) from None
    if outcome.exit_code:
        print(f"tierctl: {outcome.message}", file=sys.stderr)
        raise typer.Exit(outcome.exit_code)
    if not outcome.results:  # on stderr, so --json output stays events only
        print("nothing to do: the steps asked for are done (--force redoes them)", file=sys.stderr)


class _WaitLines:
    """`run --wait` without a terminal: one stderr line each time the holder moves on to another step."""

    def __init__(self) -> None:
        self.last: tuple[object, ...] | None = None

    def __call__(self, holder: Holder) -> None:
        step = holder.step
        key = (holder.pid, step.iteration, step.step) if step is not None else (holder.pid,)
        if key != self.last:
            self.last = key
            print(f"waiting for {holder.describe()}", file=sys.stderr, flush=True)


_stdout_gone = False


def _print_event(event: object, line: str) -> None:
    """--json: the step's event line as it wrote it. A reader that went away does not stop the run."""
    global _stdout_gone
    if _stdout_gone:
        return
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        _stdout_gone = True


@app.command()
def status(
    campaign: str = typer.Argument(..., help="Campaign directory, or a name under ./campaigns."),
    json_: bool = typer.Option(False, "--json", help="Print the status as JSON (docs/cli.md)."),
) -> None:
    """Iterations and steps (pending, running, done, failed, interrupted), composition, sparsity, ppl."""
    import json
    import time

    from tierctl.campaign.layout import resolve_campaign
    from tierctl.campaign.resume import checkpoint_point, progress_line, resume_point
    from tierctl.campaign.state import campaign_status

    try:
        layout = resolve_campaign(campaign)
        st = campaign_status(layout)
    except TierctlError as e:
        raise fail(e) from None
    for warning in (w for it in [st.reference, *st.iterations] for w in it.warnings):
        print(f"tierctl: warning: {warning}", file=sys.stderr)
    from tierctl.campaign.fork import read_origin

    origin = read_origin(layout)
    if json_:
        doc = st.to_json()
        if origin is not None:
            doc["forked_from"] = {"source": origin.source, "iteration": origin.iteration}
        print(json.dumps(doc, indent=2))
        return
    from rich.console import Console

    from tierctl.render import iterations_table

    console = Console()
    console.print(iterations_table(st, title=f"campaign {st.name}"))
    if origin is not None:
        console.print(f"forked from {origin.label} (iterations 1..{origin.iteration} shared)", highlight=False,
                      soft_wrap=True)
    for it in [st.reference, *st.iterations]:
        for step, err in it.errors.items():
            if it.steps[step] == "interrupted":  # resumable: say so, not "failed"
                console.print(f"[yellow]iteration {it.iteration} {step} {err}[/]: running it again goes on "
                              f"(log: {layout.step_log(it.iteration, step)})", highlight=False, soft_wrap=True)
                continue
            console.print(f"[red]iteration {it.iteration} {step} failed:[/] {err} "
                          f"(log: {layout.step_log(it.iteration, step)})", highlight=False, soft_wrap=True)
    if st.holder is not None:
        progress = progress_line(layout, *st.running, now=time.time()) if st.running else None
        if progress:
            console.print(f"  {progress}", highlight=False, soft_wrap=True)
        console.print(st.holder.status_line(st.running), highlight=False, soft_wrap=True)
    elif st.halt is not None:
        from tierctl.campaign.guardrail import halted_message

        console.print(halted_message(layout, st.halt), style="bold yellow", markup=False, highlight=False,
                      soft_wrap=True)
    elif st.next is not None:
        n, step = st.next
        it = st.reference if n == 0 else st.iterations[n - 1]
        started = it.steps[step] != "pending" or checkpoint_point(layout, n) is not None
        where = f" — {resume_point(layout, n, step)}" if started else ""
        console.print(f"next: iteration {n} {step}{where} — tierctl run {layout.root} --all", highlight=False,
                      soft_wrap=True)
    else:
        console.print("complete", style="green")

@app.command()
def cancel(
    campaign: str = typer.Argument(..., help="Campaign directory, or a name under ./campaigns."),
    wait: bool = typer.Option(False, "--wait", help="Return once the campaign is free (SIGKILL after --grace)."),
    grace: float = typer.Option(10.0, "--grace", min=0.0, max=3600.0, help="With --wait: seconds before SIGKILL."),
) -> None:
    """Stop whatever runs the campaign: its runner, or a step left running by a runner that died."""
    from tierctl.campaign.cancel import cancel as cancel_campaign
    from tierctl.campaign.layout import resolve_campaign

    try:
        done = cancel_campaign(resolve_campaign(campaign), wait=wait, grace=grace)
    except TierctlError as e:
        raise fail(e) from None
    except KeyboardInterrupt:
        print("tierctl: interrupted while waiting; SIGTERM was sent", file=sys.stderr)
        raise typer.Exit(130) from None
    print(done.message)

# === diff / show / report ===

from pathlib import Path  # noqa: E402  (light: the helpers of this section name files)

from tierctl.errors import BadInput  # noqa: E402


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

# === export / sample ===


@app.command()
def export(
    target: str = typer.Argument(..., metavar="CAMPAIGN[@N]", help="A finished iteration (default: the latest)."),
    out: Path = typer.Option(..., "--out", help="New (or empty) directory for the model."),
    format: str = typer.Option(None, "--format", help="packed (default for progressive campaigns) or dense "
                               "(a plain Hugging Face model; the only choice for baselines)."),
    dtype: str = typer.Option(None, "--dtype", help="float32, bfloat16 or float16 (default: \\[model] dtype)."),
    as_json: bool = typer.Option(False, "--json", help="Print the size table as JSON."),
) -> None:
    """Write iteration N as a model directory: packed by tier (smaller, tierctl.export.load_packed) or dense."""
    from tierctl.export.source import check_export, resolve_iteration

    try:
        src = resolve_iteration(target)
        check_export(src, out, format, dtype)  # refuse before torch is even imported
        from tierctl.export.writer import export_iteration

        result = export_iteration(src, out, format, dtype)
    except TierctlError as e:
        raise fail(e) from None
    if as_json:
        import json

        print(json.dumps({"out": str(result.out), "format": result.format, "dtype": result.dtype,
                          "sizes": result.sizes.to_json() if result.sizes else None}))
        return
    from rich.console import Console

    console = Console(highlight=False)
    console.print(f"{src.label} -> {result.out} ({result.format}, {result.dtype})", soft_wrap=True)
    if result.sizes is not None:
        from tierctl.render.export import size_table

        console.print(size_table(result.sizes.rows(), result.sizes.dtype, result.sizes.weights))


@app.command()
def sample(
    targets: list[str] = typer.Argument(..., metavar="CAMPAIGN[@N]...", help="Finished iterations, or export "
                                        "directories."),
    prompt: str = typer.Option(..., "--prompt", help="The prompt (the chat template is applied when the "
                               "tokenizer has one)."),
    max_new_tokens: int = typer.Option(40, "--max-new-tokens", min=1, help="Tokens generated (greedy)."),
    packed: list[Path] = typer.Option(None, "--packed", help="Also a packed export directory (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print {column: text} as JSON."),
) -> None:
    """Greedy generation side by side: the original model first, then each iteration or export."""
    from tierctl.export.sample_plan import plan_columns

    try:
        columns = plan_columns(targets, packed or [])
        from tierctl.export.sample import generate_columns

        texts = generate_columns(columns, prompt, max_new_tokens)
    except TierctlError as e:
        raise fail(e) from None
    if as_json:
        import json

        print(json.dumps(texts))
        return
    from rich.console import Console

    from tierctl.render.export import sample_table

    Console(highlight=False).print(sample_table(texts, max_new_tokens))

# === fork ===


@app.command()
def fork(
    source: str = typer.Argument(..., metavar="SOURCE@K", help="The campaign to fork and its last iteration to share."),
    new: str = typer.Argument(..., metavar="NEW", help="Name of the new campaign (a plain directory name)."),
    schedule: Path = typer.Option(None, "--schedule", help="The fork's schedule CSV (rows 1..K must be the "
                                  "source's; default: the source's schedule)."),
    dir: Path = typer.Option(None, "--dir", help="Where NEW is created (default: next to SOURCE)."),
) -> None:
    """A new campaign sharing iterations 1..K of SOURCE (hard links; the source is never written)."""
    from tierctl.campaign.fork import fork_campaign, parse_fork_source
    from tierctl.campaign.layout import resolve_campaign

    try:
        camp, k = parse_fork_source(source)
        result = fork_campaign(resolve_campaign(camp), k, new, dir, schedule)
    except TierctlError as e:
        raise fail(e) from None
    shared = f"{result.links} files linked" + (f", {result.copies} copied" if result.copies else "")
    print(f"created {result.layout.root}: iterations 1..{k} shared with {result.origin.source} ({shared}); "
          f"go on with: tierctl run {result.layout.root} --all")

# === sweep ===

_SWEEP_ACTIONS = ("status", "cancel")


@app.command(context_settings={"help_option_names": ["--help"]})
def sweep(
    args: list[str] = typer.Argument(..., metavar="[status|cancel] SWEEP.toml",
                                     help="SWEEP.toml runs the sweep; 'status SWEEP.toml' shows it; "
                                          "'cancel SWEEP.toml' cancels its jobs."),
    executor: str = typer.Option(None, "--executor", help="local or slurm (default: \\[sweep] executor)."),
    json_: bool = typer.Option(False, "--json", help="status: print JSON."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Create nothing, submit nothing: list the points "
                                 "(and print the sbatch script of a Slurm sweep)."),
) -> None:
    """A grid of campaigns from a base campaign and axes, run through submitit (local or Slurm).

    Re-running is safe: finished campaigns are skipped, unfinished ones resubmitted and resumed.
    Exit codes: 0, 1 when a campaign failed, 2 bad input.
    """
    from tierctl.campaign.sweep_spec import EXECUTORS, load_sweep

    try:
        action = args[0] if len(args) == 2 and args[0] in _SWEEP_ACTIONS else None
        if len(args) != (2 if action else 1):
            raise BadInput(f"sweep {' '.join(args)}: expected SWEEP.toml, status SWEEP.toml or cancel SWEEP.toml")
        if executor is not None and executor not in EXECUTORS:
            raise BadInput(f"--executor {executor}: must be one of {', '.join(EXECUTORS)}")
        spec = load_sweep(args[-1])
        if action == "status":
            _sweep_status(spec, json_)
            return
        if action == "cancel":
            from tierctl.campaign.sweep import cancel_sweep

            cancel_sweep(spec)
            return
        if dry_run:
            _sweep_dry_run(spec, executor or spec.executor)
            return
        from tierctl.campaign.sweep import submit_sweep

        code = submit_sweep(spec, executor)
    except TierctlError as e:
        raise fail(e) from None
    if (executor or spec.executor) == "local":
        _sweep_status(spec, False)
    if code:
        raise typer.Exit(code)


def _sweep_status(spec: object, as_json: bool) -> None:
    import json

    from tierctl.campaign.sweep_status import sweep_status

    doc = sweep_status(spec)  # type: ignore[arg-type]
    if as_json:
        print(json.dumps(doc, indent=2))
        return
    from rich.console import Console

    from tierctl.render.sweep import best_table, sweep_table

    console = Console()
    console.print(sweep_table(doc, title=f"sweep {doc['dir']}"))
    if doc["best"]:
        console.print(best_table(doc["best"]))


def _sweep_dry_run(spec: object, executor: str) -> None:
    from tierctl.campaign.sweep_spec import points

    for p in points(spec):  # type: ignore[arg-type]
        print(f"{spec.layout(p.name).root}  {p.values}")  # type: ignore[attr-defined]
    if executor == "slurm":
        from tierctl.campaign.slurm import sbatch_script

        print(sbatch_script(spec.submitit_dir, spec.slurm, 1, f"tierctl-{spec.dir.name}"))  # type: ignore[attr-defined]

# === tui ===


@app.command("tui")
def tui_command(
    campaign: str = typer.Argument(None, metavar="[CAMPAIGN]",
                                   help="Open this campaign (a directory, or a name under --dir); default: the list."),
    campaigns_dir: str = typer.Option("campaigns", "--dir", help="Where the campaign list looks for campaigns."),
) -> None:
    """The dashboard: edit the schedule, run and cancel iterations, watch them live, look at tier maps."""
    try:
        from tierctl.tui.app import make_app  # textual is imported here only

        dashboard = make_app(campaign, campaigns_dir)
    except TierctlError as e:
        raise fail(e) from None
    dashboard.run()


def main() -> None:
    app()
