"""User-facing errors.

Every error a user can cause by bad input (a model spec, a data file, a template, a prompt
file) is raised as :class:`RLPromptError` with a one-line message that names the bad thing and
says what would be valid. The CLI prints the message and exits with code 2, never a traceback.
"""

from __future__ import annotations


class RLPromptError(ValueError):
    """Bad user input, reported as one line by the CLI (exit code 2)."""
