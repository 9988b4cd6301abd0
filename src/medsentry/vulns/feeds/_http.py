"""HTTP for online sync: stdlib only, rate-limited, retrying the responses feeds use to say "slow down"."""

from __future__ import annotations

import shutil
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar

USER_AGENT = "medsentry-feeds/0.1 (+https://github.com/medsentry)"
CHUNK = 1 << 20
T = TypeVar("T")
RETRY_STATUS = frozenset({403, 429, 500, 502, 503, 504})  # NVD answers 403/503 when over its rate limit


class SyncError(Exception):
    """A feed could not be fetched; the store keeps what it had (and, for NVD, where to resume)."""


@dataclass
class RateLimiter:
    """At most `requests` calls per `period` seconds (a sliding window, as NVD counts them)."""

    requests: int
    period: float = 30.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    _sent: deque[float] = field(default_factory=deque)

    def wait(self) -> None:
        now = self.clock()
        while self._sent and now - self._sent[0] >= self.period:
            self._sent.popleft()
        if len(self._sent) >= self.requests:
            self.sleep(self.period - (now - self._sent[0]))
            self._sent.popleft()
        self._sent.append(self.clock())


@dataclass
class Http:
    """GETs with a shared limiter; `retries` extra attempts with doubling back-off for retryable statuses."""

    limiter: RateLimiter | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    retries: int = 3
    backoff: float = 6.0
    timeout: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    requests: int = 0

    def get(self, url: str) -> bytes:
        return self._fetch(url, lambda response: bytes(response.read()))

    def download(self, url: str, target: Path) -> int:
        """Stream `url` into `target` (rewritten on each retry) without holding it in memory; its size."""

        def save(response: IO[bytes]) -> int:
            with target.open("wb") as out:
                shutil.copyfileobj(response, out, CHUNK)
            return target.stat().st_size

        return self._fetch(url, save)

    def _fetch(self, url: str, consume: Callable[[IO[bytes]], T]) -> T:
        delay = self.backoff
        for attempt in range(self.retries + 1):
            if self.limiter is not None:
                self.limiter.wait()
            request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **self.headers})
            self.requests += 1
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return consume(response)
            except urllib.error.HTTPError as exc:
                if exc.code not in RETRY_STATUS or attempt == self.retries:
                    raise SyncError(f"GET {url}: HTTP {exc.code} {exc.reason}") from exc
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                if attempt == self.retries:
                    raise SyncError(f"GET {url}: {exc}") from exc
            self.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")
