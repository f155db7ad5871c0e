"""uvicorn's h11 protocol with a deadline for each request head (used by ``odin-ood serve``).

uvicorn closes idle keep-alive connections, but a connection that opens and sends nothing, or
trickles its request head a byte at a time (slowloris), is kept for ever, and enough of them
starve the server. Here each head must arrive whole within ``header_timeout`` seconds of the
connection opening, or of the previous answer on it; otherwise the connection is closed. (A
body that trickles is the app's to bound: it answers 408 after ``--body-timeout``.)

A request head is also bounded in size, however it arrives: h11 alone refuses only a head that is
still *incomplete* past its ``max_incomplete_event_size``, so a larger head sent in one write got
through. Here every parsed head is measured (request line and header lines as h11 parsed them,
:func:`head_size`) and one over the limit answers 400, like an incomplete one. After a 400 the
connection is closed *lingering*: our side stops writing and what the client still sends is read
and dropped for up to :data:`LINGER_SECONDS`, so the client reads the 400 instead of a TCP reset
(closing a socket with unread data resets it, and the reset discards the client's unread answer).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import DEFAULT_MAX_INCOMPLETE_EVENT_SIZE, H11Protocol

LINGER_SECONDS = 2.0


def head_size(request: h11.Request) -> int:
    """Bytes of ``request``'s head as h11 parsed it: ``METHOD TARGET HTTP/x.y CRLF``, one
    ``name: value CRLF`` per header and the final CRLF (optional whitespace not counted)."""
    line = len(request.method) + len(request.target) + len(request.http_version) + 9
    return line + sum(len(name) + len(value) + 4 for name, value in request.headers.raw_items()) + 2


class HeadLimitedConnection(h11.Connection):
    """An h11 server connection that refuses (``RemoteProtocolError``) a complete request head
    over ``max_incomplete_event_size`` bytes too; ``refusal`` says why."""

    def __init__(self, max_head_bytes: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_head_bytes)
        self.max_head_bytes = max_head_bytes
        self.refusal: str | None = None

    def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:  # 431: h11's "Receive buffer too long" (an incomplete head)
            self.refusal = self._too_large("") if exc.error_status_hint == 431 else f"invalid HTTP request: {exc}"
            raise
        if isinstance(event, h11.Request) and head_size(event) > self.max_head_bytes:
            self.refusal = self._too_large(f"of {head_size(event)} bytes ")
            raise h11.RemoteProtocolError(self.refusal)
        return event

    def _too_large(self, size: str) -> str:
        return f"request head {size}exceeds the limit of {self.max_head_bytes} bytes (--h11-max-incomplete-event-size)"


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head: a connection on which no
    request is being answered ``header_timeout`` seconds after it opened (or after its previous
    answer) is closed, however slowly it trickles bytes; and a size limit on each head, however
    it arrives (400, then a lingering close)."""

    def __init__(self, *args: Any, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self._head_timer: asyncio.TimerHandle | None = None
        self._draining = False
        limit = self.config.h11_max_incomplete_event_size
        self.limited = HeadLimitedConnection(limit if limit is not None else DEFAULT_MAX_INCOMPLETE_EVENT_SIZE)
        self.conn = self.limited

    def data_received(self, data: bytes) -> None:
        if not self._draining:  # after a 400, what still arrives is dropped
            super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's 400 (with the reason for a head over the limit), then a lingering close."""
        reason = (self.limited.refusal or msg).encode("ascii", "replace")
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(reason)),
            (b"connection", b"close"),
        ]
        for event in (
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
            h11.Data(data=reason),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event))
        self._draining = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _arm(self) -> None:
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_expired)

    def _head_expired(self) -> None:
        """Close unless a request is being answered (its head arrived in time)."""
        idle = self.cycle is None or self.cycle.response_complete
        if idle and not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn's H11Protocol, which narrows asyncio's BaseTransport
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
