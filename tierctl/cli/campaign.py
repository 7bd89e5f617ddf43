"""`tierctl init`, `run`, `status`, `cancel`: making a campaign, running its steps, and where it stands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from tierctl.campaign import config as _cfg  # (light: dataclasses and tomli-w, for the defaults)
from tierctl.cli.base import app, fail
from tierctl.errors import TierctlError

if TYPE_CHECKING:
    from tierctl.campaign.holder import Holder


@app.command()
def init(
    name: str = typer.Argument(..., help="Campaign name: a plain directory name."),
    dir: Path = typer.Option(Path("campaigns"), "--dir", help="Where campaigns live."),
    model: str = typer.Option(_cfg.ModelConfig.name, "--model", help="Preset, HF id, model directory or .gguf file."),
    calib: str = typer.Option(_cfg.DataConfig.calib, "--calib", help="Calibration / fine-tune text: pydoc, "
                              "text:PATH, wikitext2, c4, ptb."),
    eval: str = typer.Option(_cfg.DataConfig.eval, "--eval", help="Evaluation text (same choices as --calib)."),
    schedule: Path = typer.Option(None, "--schedule", help="Schedule CSV (default: the seed schedule)."),
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
    task_path: list[Path] = typer.Option(None, "--task-path", help="A directory of lm-eval task YAMLs "
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
