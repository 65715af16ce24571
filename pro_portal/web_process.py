"""One web server process of a node: ``python -m pro_portal.web_process --host H --port P``.

``run_platform`` starts one per core (``PRO_WEB_WORKERS``). Each binds its own listening socket
to the same address with ``SO_REUSEPORT``, so that the kernel spreads new connections evenly over
the processes. With one socket shared by all (uvicorn's ``--workers``), whichever process is
waiting in ``accept`` takes the next connection, and a client's keep-alive connections could all
land on one process while another idled: half the node's web throughput, measured with ``wrk``.
A process that dies closes its socket, and the kernel sends no more connections its way.
"""

from __future__ import annotations

import argparse
import gc
import socket

import uvicorn

BACKLOG = 2048


def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    sock.set_inheritable(False)
    return sock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ssl-certfile")
    parser.add_argument("--ssl-keyfile")
    args = parser.parse_args()
    config = uvicorn.Config(
        "pro_portal.asgi:application",
        ws="websockets-sansio",
        # The platform reads X-Forwarded-For itself, from PRO_TRUSTED_PROXIES only.
        proxy_headers=False,
        # Django's ASGI application has no start-up or shut-down events to run.
        lifespan="off",
        access_log=False,
        backlog=BACKLOG,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
    )
    sock = listening_socket(args.host, args.port)
    # Django and the platform imported now, then frozen: the collector no longer walks their
    # hundreds of thousands of objects at each full collection, which stalled a request now and
    # then (p99 of a job's GET under wrk: 190-210 ms before, 60-70 ms after).
    config.load()
    gc.freeze()
    print(f"Web server process listening on {args.host}:{args.port}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
