"""`tierctl export` and `sample`: a finished iteration as a model directory, and greedy text side by side."""

from __future__ import annotations

from pathlib import Path

import typer

from tierctl.cli.base import app, fail
from tierctl.errors import TierctlError


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
