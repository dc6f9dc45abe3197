"""Key generators: ``SNOWFLAKE`` (bit-compatible with ShardingSphere) and ``UUID``.

SNOWFLAKE ids are ``(ms - EPOCH) << 22 | worker_id << 12 | sequence`` with EPOCH = 2016-11-01
00:00:00 UTC (ShardingSphere takes that wall time in the JVM's zone; a Java service in another
zone offsets its ids by the zone offset, which never collides with ours as long as worker ids
differ). Props: ``worker-id`` (0-1023, default 0; ShardingSphere 5.2+ assigns it per compute
node: give each process its own), ``max-vibration-offset`` (0-4095, default 1:
each new millisecond starts its sequence at an offset cycling 0..max, so ``id % 2`` does not
always pick shard 0 at low rates), ``max-tolerate-time-difference-milliseconds`` (default 10: a
clock that moved back less than this is waited out, more is an error).

UUID: 32 lowercase hex characters without dashes, from 128 random bits (ShardingSphere's format).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from opensergo.database.errors import ConfigurationError, DatabaseGovernanceError

__all__ = ["EPOCH_MS", "KeyGenerator", "SnowflakeKeyGenerator", "UUIDKeyGenerator", "build_key_generator"]

EPOCH_MS = 1477958400000  # 2016-11-01T00:00:00Z
SEQUENCE_BITS = 12
WORKER_BITS = 10
SEQUENCE_MASK = (1 << SEQUENCE_BITS) - 1
WORKER_SHIFT = SEQUENCE_BITS
TIME_SHIFT = SEQUENCE_BITS + WORKER_BITS


class KeyGenerator(Protocol):
    type: str

    def generate(self) -> Any: ...


def _int_prop(props: Mapping[str, Any], key: str, default: int, low: int, high: int, owner: str) -> int:
    raw = props.get(key, default)
    try:
        value = int(str(raw))
    except ValueError:
        raise ConfigurationError(f"{owner}: prop {key} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigurationError(f"{owner}: prop {key} must be between {low} and {high}, got {value}")
    return value


class SnowflakeKeyGenerator:
    """Thread-safe snowflake ids; ``clock`` returns milliseconds (injectable for tests)."""

    type = "SNOWFLAKE"

    def __init__(
        self,
        props: Mapping[str, Any] | None = None,
        *,
        clock: Callable[[], int] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        props = props or {}
        self.worker_id = _int_prop(props, "worker-id", 0, 0, (1 << WORKER_BITS) - 1, "SNOWFLAKE")
        self.max_vibration = _int_prop(props, "max-vibration-offset", 1, 0, SEQUENCE_MASK, "SNOWFLAKE")
        self.max_tolerate_ms = _int_prop(
            props, "max-tolerate-time-difference-milliseconds", 10, 0, 1 << 31, "SNOWFLAKE"
        )
        self._clock = clock or (lambda: time.time_ns() // 1_000_000)
        self._sleep = sleep
        self._lock = threading.Lock()
        self._last_ms = 0
        self._sequence = 0
        self._offset = 0  # the vibration offset of the current millisecond

    def generate(self) -> int:
        with self._lock:
            now = self._clock()
            if now < self._last_ms:
                behind = self._last_ms - now
                if behind >= self.max_tolerate_ms:
                    raise DatabaseGovernanceError(
                        f"SNOWFLAKE: the clock moved back {behind} ms (tolerated: {self.max_tolerate_ms} ms)"
                    )
                self._sleep(behind / 1000.0)
                now = self._clock()
            if now == self._last_ms:
                self._sequence = (self._sequence + 1) & SEQUENCE_MASK
                if self._sequence == 0:
                    while now <= self._last_ms:  # 4096 ids this millisecond: wait for the next
                        now = self._clock()
            else:
                self._sequence = self._vibrate()
            self._last_ms = now
            return ((now - EPOCH_MS) << TIME_SHIFT) | (self.worker_id << WORKER_SHIFT) | self._sequence

    def _vibrate(self) -> int:
        value = self._offset
        self._offset = 0 if self._offset >= self.max_vibration else self._offset + 1
        return value

    @staticmethod
    def decode(key: int) -> tuple[int, int, int]:
        """``(milliseconds since EPOCH, worker id, sequence)`` of an id."""
        return key >> TIME_SHIFT, (key >> WORKER_SHIFT) & ((1 << WORKER_BITS) - 1), key & SEQUENCE_MASK


class UUIDKeyGenerator:
    type = "UUID"

    def __init__(self, props: Mapping[str, Any] | None = None) -> None:
        del props

    def generate(self) -> str:
        return os.urandom(16).hex()


def build_key_generator(name: str, type_name: str, props: Mapping[str, Any]) -> KeyGenerator:
    kind = type_name.upper()
    if kind == "SNOWFLAKE":
        return SnowflakeKeyGenerator(props)
    if kind == "UUID":
        return UUIDKeyGenerator(props)
    raise ConfigurationError(f"key generator {name!r}: type {type_name!r} is not supported (SNOWFLAKE, UUID)")
