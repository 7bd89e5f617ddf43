"""Exceptions a user can cause. The CLI maps each to one line on stderr and an exit code."""

from __future__ import annotations


class TierctlError(Exception):
    """Base class: the message is for humans and fits on one line."""

    exit_code = 1


class BadInput(TierctlError):
    """A file, flag or argument is wrong. Exit 2, nothing written.

    The message names the file (and row, column or flag) and what is wrong.
    """

    exit_code = 2


class StepFailed(TierctlError):
    """A prune, fine-tune or eval step ended with status failed. Exit 1."""

    exit_code = 1
