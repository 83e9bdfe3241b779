"""Masking secrets: the one rule every log line, error message and printed summary goes through.

A known secret (an API key, a secret key, their Basic token, a SAS token or signature, a
storage connection string) is replaced by ``***`` wherever it appears. Values shorter than
``MIN_SECRET`` characters are not masked by value: a one-letter key would turn into ``***``
inside every word ("gzip data i*** corrupt"), and real keys are long. Text from elsewhere
(a server's error page, an SDK's message) also has ``name=value`` credentials masked by name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import IO

__all__ = ["MIN_SECRET", "ScrubbedStream", "scrub", "scrub_params"]

MIN_SECRET = 4
_SECRET_PARAM = re.compile(
    r"(?i)(authorization|password|secret|sig|key|accountkey|sharedaccesssignature)"
    r"=[^&;\s'\"<>]+"
)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every known secret (of at least ``MIN_SECRET`` characters) masked, the
    longest first (a token that contains a key is masked whole)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= MIN_SECRET and secret in text:
            text = text.replace(secret, "***")
    return text


def scrub_params(text: str, secrets: Iterable[str] = ()) -> str:
    """:func:`scrub`, and ``name=value`` credentials (``sig=``, ``AccountKey=``, ...) masked."""
    return _SECRET_PARAM.sub(r"\1=***", scrub(text, secrets))


class ScrubbedStream:
    """A text stream that masks secrets, in case a message it prints quoted one."""

    def __init__(self, out: IO[str], secrets: Sequence[str]) -> None:
        self._out = out
        self._secrets = tuple(secrets)

    def write(self, text: str) -> int:
        return self._out.write(scrub(text, self._secrets))

    def flush(self) -> None:
        self._out.flush()
