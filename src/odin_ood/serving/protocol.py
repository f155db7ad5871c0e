"""uvicorn's h11 protocol with a deadline for each request head (used by ``odin-ood serve``).

uvicorn closes idle keep-alive connections, but a connection that opens and sends nothing, or
trickles its request head a byte at a time (slowloris), is kept for ever, and enough of them
starve the server. Here each head must arrive whole within ``header_timeout`` seconds of the
connection opening, or of the previous answer on it; otherwise the connection is closed. (A
body that trickles is the app's to bound: it answers 408 after ``--body-timeout``.)
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head: a connection on which no
    request is being answered ``header_timeout`` seconds after it opened (or after its previous
    answer) is closed, however slowly it trickles bytes."""

    def __init__(self, *args, header_timeout: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self._head_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_expired)

    def _head_expired(self) -> None:
        """Close unless a request is being answered (its head arrived in time)."""
        idle = self.cycle is None or self.cycle.response_complete
        if idle and not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._disarm()
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
