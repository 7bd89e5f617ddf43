"""The shell around every `tierctl` command: exit codes, one-line refusals, and plain --help.

Typer's defaults print a 5-line boxed usage error, a traceback for an OSError, and `<bool>` / `<str>`
after every flag in --help. `TierctlGroup` is the root command's class, so the same handling runs for
the installed script, `python -m tierctl` and Typer's CliRunner (tests exercise the real path):

- a usage error (`--iter abc`, `--nproc 0`, an unknown flag): `tierctl: <what>` on stderr, exit 2;
- an OSError the command did not turn into a TierctlError (a read-only campaign, no space left, a
  permission): `tierctl: <path>: <reason>`, exit 2 (the paths a command writes are the ones the user
  gave it; a step's own failures arrive as its exit code and end event, never as an OSError here);
- Ctrl-C outside a step: exit 130, no traceback.

Exit codes (the README's table): 0 done, 1 a step failed, 2 bad input (nothing written), 128+signal
for a stopped run. No torch here.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer import _click  # the click Typer ships with (its exceptions and Context)
from typer.core import TyperArgument, TyperGroup, TyperOption

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_SIGINT = 0, 1, 2, 130

# What a value of each Python type is called in --help (the names click has always shown).
_TYPE_NAMES = {"int": "INTEGER", "float": "FLOAT", "str": "TEXT", "bool": "BOOLEAN", "Path": "PATH"}


def one_line(text: str) -> str:
    """The first non-empty line of `text`, stripped (a refusal is always one line)."""
    return next((x.strip() for x in str(text).splitlines() if x.strip()), "")


def os_error_line(e: OSError) -> str:
    """`path: reason` for an OSError (the reason alone when it names no file)."""
    reason = e.strerror or one_line(str(e)) or type(e).__name__
    return f"{e.filename}: {reason}" if e.filename is not None else reason


def _plain_type(param: Any) -> str | None:
    """`INTEGER`, `TEXT`, ... for a valued option; None (nothing shown) for a flag."""
    if isinstance(param, TyperOption) and (param.is_flag or param.count):
        return None
    desc = getattr(param, "type_descriptor", None)
    annotation = getattr(desc, "annotation", None)
    name = getattr(annotation, "__name__", None) or "TEXT"
    return _TYPE_NAMES.get(name, name.upper())


def plain_help(command: Any) -> None:
    """Give every parameter of `command` and its subcommands the classic look in --help.

    Flags show no value (`--all`, not `--all <bool>`: they take none); valued options show the
    type's name (`--iter INTEGER`); arguments their name (`CAMPAIGN`). Idempotent.
    """
    for param in getattr(command, "params", []):
        if isinstance(param, TyperArgument):
            if param.metavar is None:
                param.metavar = param.name.upper()
            param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]  # name says it all
        elif isinstance(param, TyperOption) and param.metavar is None:
            label = _plain_type(param)
            param.metavar = label if label is not None else ""
    if not getattr(command, "_tierctl_plain_help", False) and hasattr(command, "get_help_option"):
        command._tierctl_plain_help = True
        made = command.get_help_option  # made lazily, once per command, with the context's names

        def get_help_option(ctx: Any) -> Any:
            option = made(ctx)
            if option is not None and option.metavar is None:
                option.metavar = ""
            return option

        command.get_help_option = get_help_option
    for sub in getattr(command, "commands", {}).values():
        plain_help(sub)


class TierctlGroup(TyperGroup):
    """The root `tierctl` group: every refusal one line, exit codes as documented."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        plain_help(self)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else EXIT_OK
        except _click.exceptions.NoArgsIsHelpError:  # the help was shown: nothing to add
            code = EXIT_BAD_INPUT
        except _click.exceptions.ClickException as e:  # UsageError, BadParameter, NoSuchOption...
            ctx = getattr(e, "ctx", None)
            where = f"{ctx.info_name}: " if ctx is not None and ctx.command is not self else ""
            print(f"tierctl: {where}{one_line(e.format_message())}", file=sys.stderr)
            code = e.exit_code
        except (typer.Abort, KeyboardInterrupt):
            print("tierctl: interrupted", file=sys.stderr)
            code = EXIT_SIGINT
        except OSError as e:
            print(f"tierctl: {os_error_line(e)}", file=sys.stderr)
            code = EXIT_BAD_INPUT
        if standalone_mode:
            sys.exit(code)
        return code


def version_callback(value: bool) -> None:
    """`tierctl --version`: print the version and stop (eager, before any command runs)."""
    if value:
        from tierctl import __version__

        print(f"tierctl {__version__}")
        raise typer.Exit(EXIT_OK)
