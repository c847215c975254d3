"""Keeping database passwords out of what flujo shows: error messages and psycopg's logs.

libpq echoes a connection string it cannot parse (``... in URI: "postgresql://app:pw@[::1"``)
and psycopg_pool logs every failed connection attempt, so a password given in a DSN could
reach an exception message, a log file or a terminal. Every message flujo builds from a DSN
or from psycopg's errors goes through ``redact``, and ``hide_in_logs`` installs a
filter on psycopg's loggers that does the same to their records.
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import unquote

__all__ = ["MASK", "dsn_secrets", "hide_in_logs", "redact", "redact_dsn"]

#: What a password is replaced with.
MASK = "***"

# ``scheme://user:password@``, up to the last ``@`` before the host's end: a password with an
# unencoded ``@`` is masked whole.
_URI_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*):[^/?#\s]*@")
# ``password=...`` as a keyword (``password = 'a b'``) or as a URI query parameter.
_KEYWORD_PASSWORD = re.compile(
    r"(?P<head>\bpassword\s*=\s*)(?:'(?:[^'\\]|\\.)*'?|[^\s&'\"]*)", re.IGNORECASE)
_UNESCAPE = re.compile(r"\\(.)")

# Loggers psycopg and psycopg_pool write connection errors to (a filter applies to records
# created by its own logger only, not to those of its children).
_LOGGERS = ("psycopg", "psycopg.pool", "psycopg_pool.sched", "psycopg_pool.sched_async")


def dsn_secrets(dsn: str) -> frozenset[str]:
    """The passwords in ``dsn`` (a URI or keyword connection string), as written and decoded.

    Works on malformed strings too: those are the ones libpq echoes.
    """
    found: set[str] = set()
    for match in re.finditer(r"://([^/?#\s]*)@", dsn):
        _, colon, password = match.group(1).partition(":")
        if colon:
            found.update((password, unquote(password)))
    for match in re.finditer(r"\bpassword\s*=\s*('(?:[^'\\]|\\.)*'?|[^\s&]*)", dsn,
                             re.IGNORECASE):
        value = match.group(1)
        found.update((value, unquote(value)))
        if value.startswith("'"):
            found.add(_UNESCAPE.sub(r"\1", value[1:].removesuffix("'")))
    return frozenset(secret for secret in found if secret)


def redact(text: str, secrets: frozenset[str] = frozenset()) -> str:
    """``text`` with every password in a DSN it quotes, and each of ``secrets``, masked."""
    text = _URI_PASSWORD.sub(rf"\g<head>:{MASK}@", text)
    text = _KEYWORD_PASSWORD.sub(rf"\g<head>{MASK}", text)
    for secret in sorted(secrets, key=len, reverse=True):  # longest first: one may hold another
        text = text.replace(secret, MASK)
    return text


def redact_dsn(dsn: str) -> str:
    """``dsn`` with its password masked, for messages."""
    return redact(dsn, dsn_secrets(dsn))


class _RedactingFilter(logging.Filter):
    """Masks the passwords of every DSN flujo was given in psycopg's log records."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: frozenset[str] = frozenset()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info:  # rendered now, masked, instead of by the handler's formatter
            rendered = logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, redact(rendered, self.secrets)
        return True


_FILTER = _RedactingFilter()
_FILTER_LOCK = threading.Lock()


def hide_in_logs(secrets: frozenset[str]) -> None:
    """Mask ``secrets`` (and any DSN password) in the records of psycopg's loggers."""
    with _FILTER_LOCK:
        # Replaced, never mutated: the filter may be iterating it in another thread.
        _FILTER.secrets = _FILTER.secrets | secrets
        for name in _LOGGERS:
            logger = logging.getLogger(name)
            if _FILTER not in logger.filters:
                logger.addFilter(_FILTER)
