"""One thread drives the MQTT sockets of one agent or of thousands.

paho's external-loop hooks tell us when a client opens, closes or wants to write on its
socket; a selector waits on all of them at once. A simulated city of two thousand devices is
then one thread and two thousand sockets, not two thousand threads.
"""

from __future__ import annotations

import contextlib
import selectors
import time
from typing import TYPE_CHECKING, Final

import paho.mqtt.client as mqtt

HOUSEKEEPING_INTERVAL_S: Final = 1.0
"""How often every client gets its keepalive and retry work [s]."""

if TYPE_CHECKING:
    from paho.mqtt.client import SocketLike


class NetworkLoop:
    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._clients: list[mqtt.Client] = []
        self._next_housekeeping = 0.0

    def attach(self, client: mqtt.Client) -> None:
        client.on_socket_open = self._opened
        client.on_socket_close = self._closed
        client.on_socket_register_write = self._want_write
        client.on_socket_unregister_write = self._done_writing
        self._clients.append(client)

    def detach(self, client: mqtt.Client) -> None:
        sock = client.socket()
        if sock is not None:
            self._forget(sock)
        self._clients.remove(client)

    def poll(self, timeout: float) -> None:
        """Serve every ready socket, waiting at most ``timeout`` seconds for one."""
        for key, mask in self._selector.select(timeout):
            client: mqtt.Client = key.data
            if mask & selectors.EVENT_READ:
                client.loop_read()
            if mask & selectors.EVENT_WRITE and client.socket() is not None:
                client.loop_write()
        now = time.monotonic()
        if now >= self._next_housekeeping:
            self._next_housekeeping = now + HOUSEKEEPING_INTERVAL_S
            for client in self._clients:
                client.loop_misc()

    def _opened(self, client: mqtt.Client, _userdata: object, sock: SocketLike) -> None:
        self._forget(sock)
        self._selector.register(sock, selectors.EVENT_READ, client)

    def _closed(self, _client: mqtt.Client, _userdata: object, sock: SocketLike) -> None:
        self._forget(sock)

    def _want_write(self, client: mqtt.Client, _userdata: object, sock: SocketLike) -> None:
        self._modify(client, sock, selectors.EVENT_READ | selectors.EVENT_WRITE)

    def _done_writing(self, client: mqtt.Client, _userdata: object, sock: SocketLike) -> None:
        self._modify(client, sock, selectors.EVENT_READ)

    def _modify(self, client: mqtt.Client, sock: SocketLike, events: int) -> None:
        try:
            self._selector.modify(sock, events, client)
        except (KeyError, ValueError):
            self._selector.register(sock, events, client)

    def _forget(self, sock: SocketLike) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)

    def close(self) -> None:
        self._selector.close()
