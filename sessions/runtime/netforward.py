"""Inside a sandbox: listen where the app expects its granted services, relay to the node.

The node mounts one Unix socket per grant (see the platform's ``sessions.network``) and says
in ``PRO_NET_FORWARDS`` where the app expects each (``[{"listen": [address, port],
"socket": path}]``). Each listener relays connections to its socket, in threads of the app's
own process. No Django here.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading

CHUNK = 64 * 1024


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(CHUNK):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


def _relay(client: socket.socket, path: str) -> None:
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        upstream.connect(path)
    except OSError:
        client.close()
        upstream.close()
        return
    threading.Thread(target=_pipe, args=(client, upstream), daemon=True).start()
    _pipe(upstream, client)
    client.close()
    upstream.close()


def _serve(listener: socket.socket, path: str) -> None:
    while True:
        client, _ = listener.accept()
        threading.Thread(target=_relay, args=(client, path), daemon=True).start()


def start_from_environment() -> int:
    """Start the listeners ``PRO_NET_FORWARDS`` names; return how many."""
    forwards = json.loads(os.environ.get("PRO_NET_FORWARDS") or "[]")
    for forward in forwards:
        address, port = forward["listen"]
        listener = socket.create_server((address, int(port)), backlog=32)
        threading.Thread(target=_serve, args=(listener, forward["socket"]), daemon=True).start()
    return len(forwards)
