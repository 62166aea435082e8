"""Keep credentials out of logs: `redact_url` for one URL, `RedactingFilter` for every log line.

`redis://:s3cret@redis-master:6379/0` becomes `redis://:***@redis-master:6379/0`; the same
for user:password pairs in any scheme (kafka, amqp, http...). `configure_logging` installs
the filter on the root handlers, so a URL logged anywhere in a service is redacted even when
the call site forgot to. Pure functions; the filter is thread-safe.
"""

from __future__ import annotations

import logging
import re

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<secret>[^@/\s]+)@")
_QUERY_SECRET = re.compile(r"(?i)(?P<key>[?&](?:password|passwd|token|secret|api[_-]?key)=)(?P<value>[^&\s]+)")
MASK = "***"


def redact_url(text: str) -> str:
    """`text` with every URL password and credential-like query value replaced by ***."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    return _QUERY_SECRET.sub(lambda m: f"{m['key']}{MASK}", text)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (and exception-free args) with `redact_url`."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to the formatter to report
            return True
        redacted = redact_url(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Add a RedactingFilter to every handler of `logger` (default: the root logger), once."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
