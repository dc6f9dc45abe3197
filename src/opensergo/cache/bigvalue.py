"""Big values: warn on, or refuse, values above a size (``bigValue`` of a CachePolicy).

Large values are the other way a cache hurts its callers and itself: one GET of a multi-megabyte
value occupies the connection and the server's output buffers, and keeping one in every
process's near-cache multiplies its memory. Writes above ``refuse_above`` are refused before
they are sent; reads above it are returned but never kept in the near-cache. Values above
``warn_above`` are counted and logged (at most once a minute per cache).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from opensergo.cache.errors import BigValueError

__all__ = ["BigValueCheck", "size_of"]

log = logging.getLogger("opensergo.cache")

_LOG_EVERY_S = 60.0


def size_of(value: Any) -> int:
    """Bytes a value occupies on the wire (0 for what is not a string: numbers are small)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return len(value)
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))
    return 0


class BigValueCheck:
    __slots__ = ("_logged_at", "cache", "floor", "refuse_above", "refused", "warn_above", "warned")

    def __init__(self, cache: str, warn_above: int | None, refuse_above: int | None) -> None:
        self.cache = cache
        self.warn_above = warn_above
        self.refuse_above = refuse_above
        # The smallest size that needs any action, so the common case is one comparison.
        self.floor = min(x for x in (warn_above, refuse_above) if x is not None)
        self.warned = 0
        self.refused = 0
        self._logged_at = -_LOG_EVERY_S

    def check_write(self, key: Any, value: Any) -> None:
        """Raise BigValueError above ``refuse_above``; count and log above ``warn_above``."""
        size = size_of(value)
        if size <= self.floor:
            return
        if self.refuse_above is not None and size > self.refuse_above:
            self.refused += 1
            raise BigValueError(self.cache, key, size, self.refuse_above)
        self._warn("write", key, size)

    def check_read(self, key: Any, value: Any) -> bool:
        """Whether the read value may be kept in the near-cache (counts and logs big ones)."""
        size = len(value) if type(value) is bytes else size_of(value)
        if size <= self.floor:
            return True
        if self.refuse_above is not None and size > self.refuse_above:
            self.refused += 1
            self._warn("read", key, size)
            return False
        self._warn("read", key, size)
        return True

    def _warn(self, op: str, key: Any, size: int) -> None:
        if self.warn_above is None or size <= self.warn_above:
            return
        self.warned += 1
        now = time.monotonic()
        if now - self._logged_at >= _LOG_EVERY_S:
            self._logged_at = now
            log.warning(
                "cache %r: big value on %s of %r: %d bytes (warnAbove %d); %d big values so far",
                self.cache, op, key, size, self.warn_above, self.warned,
            )  # fmt: skip
