"""`tierctl sweep`: a grid of campaigns through submitit, its status, cancel and dry run."""

from __future__ import annotations

import typer

from tierctl.cli.base import app, fail
from tierctl.errors import BadInput, TierctlError

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
