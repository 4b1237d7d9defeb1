"""One family for what we refuse: :class:`UserError`.

An input (a field, a flag, a file, a URI, a credential, a cluster setting) that we
refuse raises a subclass of :class:`UserError` whose message is one line naming the
input and the fix; the ``gmpo`` command prints it and exits 2, with no traceback.
Anything else (a bug, a crash in torch, a failed verl run) is not the user's input:
it keeps its traceback and exits 1.

Each subclass also derives from the standard exception it always was
(``ConfigError`` is a ``ValueError``, ``StorageError`` an ``OSError``), so code that
catches those keeps working.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user gave that we refuse; the message says what to fix."""


class UsageError(UserError, ValueError):
    """Command-line flags we refuse (a combination, an unknown name); no dependency needed."""
