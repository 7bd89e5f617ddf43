"""`python -m tierctl.steps {prune|finetune|eval} --campaign DIR --iter N [--device D]`, and
`python -m tierctl.steps check --campaign DIR` (the start-up checks of `init` and `run`), and
`python -m tierctl.steps restore --campaign DIR --iter N` (the pruned model back, for a fine-tune redo).

Each step module exposes `main(argv) -> int`; it is imported only when asked for, so a typo in
the step name costs no torch import.
"""

from __future__ import annotations

import importlib
import sys

from tierctl.core.vocab import STEPS

ENTRY_POINTS = (*STEPS, "check", "restore")  # check, restore: run before steps, not steps of an iteration


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ENTRY_POINTS:
        got = repr(argv[0]) if argv else "nothing"
        print(f"usage: python -m tierctl.steps {{{'|'.join(ENTRY_POINTS)}}} --campaign DIR --iter N [--device D]"
              f" (got {got})", file=sys.stderr)
        return 2
    module = importlib.import_module(f"tierctl.steps.{argv[0]}")
    return int(module.main(argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
