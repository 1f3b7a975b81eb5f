"""Commands sent at a steady rate through a service, each answer (or its absence) recorded with its times."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx


@dataclass(frozen=True)
class Answer:
    started: float  # time.monotonic()
    finished: float
    status: int | None  # None: no answer within the client's limit
    body: dict[str, object] | None

    @property
    def seconds(self) -> float:
        return self.finished - self.started


@dataclass
class CommandLoad:
    """Sends `request(n)` `rate` times a second until stopped; every request its own task, so a slow answer
    never delays the next one. An answer later than `answer_within` seconds counts as none."""

    request: Callable[[int], Awaitable[httpx.Response]]
    rate: float
    answer_within: float
    answers: list[Answer] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def _one(self, n: int) -> None:
        started = time.monotonic()
        try:
            response = await asyncio.wait_for(self.request(n), self.answer_within)
        except (TimeoutError, httpx.TimeoutException):
            self.answers.append(Answer(started, time.monotonic(), None, None))
            return
        try:
            body = response.json()
        except ValueError:
            body = None
        self.answers.append(Answer(started, time.monotonic(), response.status_code, body))

    async def run(self) -> None:
        tasks = []
        n = 0
        begun = time.monotonic()
        while not self._stop.is_set():
            tasks.append(asyncio.create_task(self._one(n)))
            n += 1
            next_at = begun + n / self.rate
            try:
                await asyncio.wait_for(self._stop.wait(), max(0.0, next_at - time.monotonic()))
            except TimeoutError:
                pass
        await asyncio.gather(*tasks)

    def stop(self) -> None:
        self._stop.set()

    def count(self, status: int | None) -> int:
        return sum(1 for a in self.answers if a.status == status)
