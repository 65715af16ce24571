"""What an app may reach from its sandbox, as an admin granted it (``App.network_*``).

By default nothing: the sandbox has no network. An admin may grant an app

- **named targets**, ``host:port`` (an application database, a company web service, or a
  service of the node itself): each is relayed byte for byte from a Unix socket in the
  sandbox, and the runtime listens for it inside the sandbox under the same name and port
  (a loopback target on the same address, a host name through the sandbox's ``/etc/hosts``,
  any other address at ``127.0.0.N``: ``PRO_NETWORK_TARGETS`` tells the app where);
- **outbound network**: an HTTP proxy (``HTTP_PROXY``/``HTTPS_PROXY`` in the sandbox, CONNECT
  and plain HTTP) to any host except the node's own addresses, loopback, link-local (cloud
  metadata), and the hosts of the platform's own database, broker, storage and API.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import json
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings

from .relay import forward_to, pipe, relays, socket_path

logger = logging.getLogger(__name__)

PROXY_PORT = 3128  # where the sandbox's HTTP proxy listens, inside
HEADER_LIMIT = 16 * 1024


@dataclass(frozen=True)
class NetworkGrant:
    outbound: bool = False
    targets: tuple[tuple[str, int], ...] = ()

    def __bool__(self) -> bool:
        return self.outbound or bool(self.targets)

    def with_targets(self, extra: tuple[str, ...]) -> NetworkGrant:
        """This grant and the ``host:port`` targets of ``extra`` (an app's connections)."""
        return NetworkGrant(outbound=self.outbound, targets=tuple(dict.fromkeys([*self.targets, *map(_target, extra)])))


def _target(text: str) -> tuple[str, int]:
    host, _, port = str(text).rpartition(":")
    return host.strip("[]"), int(port)


def grant_of(app) -> NetworkGrant:
    targets = tuple(_target(item) for item in app.network_targets or [])
    return NetworkGrant(outbound=app.network_outbound, targets=targets)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _inside_addresses(grant: NetworkGrant) -> dict[tuple[str, int], str]:
    """Where the sandbox reaches each target: loopback as is, other hosts at their own 127.0.0.N."""
    aliases: dict[str, str] = {}
    inside = {}
    for host, port in grant.targets:
        if _is_ip(host) and ipaddress.ip_address(host).is_loopback and ipaddress.ip_address(host).version == 4:
            inside[(host, port)] = host
            continue
        if host not in aliases:
            aliases[host] = f"127.0.1.{len(aliases) + 1}"
        inside[(host, port)] = aliases[host]
    return inside


@dataclass
class SandboxNetwork:
    """The host side of one sandbox's grants: its relay sockets, its hosts file, its environment."""

    sockets: list[Path] = field(default_factory=list)
    read_only: dict[str, Path] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    def close(self) -> None:
        for path in self.sockets:
            relays().close(path)
        for path in self.files:
            path.unlink(missing_ok=True)


def open_network(grant: NetworkGrant, workdir: Path) -> SandboxNetwork:
    """Open the relays of ``grant`` for the sandbox working in ``workdir``."""
    network = SandboxNetwork()
    if not grant:
        return network
    forwards, names = [], {}
    inside = _inside_addresses(grant)
    for index, (host, port) in enumerate(grant.targets):
        path = socket_path(workdir, f"net{index}")
        relays().open(path, forward_to(host, port))
        network.sockets.append(path)
        network.read_only[f"/pro/net/{index}.sock"] = path
        forwards.append({"listen": [inside[(host, port)], port], "socket": f"/pro/net/{index}.sock"})
        if not _is_ip(host):
            names[host] = inside[(host, port)]
    if grant.outbound:
        path = socket_path(workdir, "proxy")
        relays().open(path, proxy_handler(grant))
        network.sockets.append(path)
        network.read_only["/pro/net/proxy.sock"] = path
        forwards.append({"listen": ["127.0.0.1", PROXY_PORT], "socket": "/pro/net/proxy.sock"})
        proxy = f"http://127.0.0.1:{PROXY_PORT}"
        network.env.update(HTTP_PROXY=proxy, HTTPS_PROXY=proxy, http_proxy=proxy, https_proxy=proxy)
        network.env.update(NO_PROXY="localhost,127.0.0.1", no_proxy="localhost,127.0.0.1")
    hosts = workdir.with_name(f"{workdir.name}.hosts")
    lines = ["127.0.0.1 localhost", "::1 localhost", *(f"{address} {name}" for name, address in names.items())]
    hosts.write_text("\n".join(lines) + "\n")
    network.files.append(hosts)
    network.read_only["/etc/hosts"] = hosts
    network.env["PRO_NET_FORWARDS"] = json.dumps(forwards)
    network.env["PRO_NETWORK_TARGETS"] = json.dumps({f"{h}:{p}": f"{inside[(h, p)]}:{p}" for h, p in grant.targets})
    return network


# ---------------------------------------------------------------- the outbound proxy


def _node_addresses() -> set[ipaddress._BaseAddress]:
    """The addresses of this node's own interfaces (IPv4 from fib_trie, IPv6 from if_inet6)."""
    found: set[ipaddress._BaseAddress] = set()
    try:
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
        for previous, line in itertools.pairwise(lines):
            if "/32 host LOCAL" in line and "|--" in previous:
                found.add(ipaddress.ip_address(previous.split("|--")[1].strip()))
    except (OSError, ValueError):
        pass
    try:
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            raw = line.split()[0]
            found.add(ipaddress.ip_address(":".join(raw[i : i + 4] for i in range(0, 32, 4))))
    except (OSError, ValueError, IndexError):
        pass
    return found


def _platform_hosts() -> set[str]:
    """The hosts of the platform's own services, which no app reaches unless an admin names them."""
    urls = [settings.PRO_INTERNAL_API_URL, getattr(settings, "REDIS_URL", "") or ""]
    database = settings.DATABASES["default"]
    hosts = {str(database.get("HOST") or "")}
    hosts |= {urlsplit(url).hostname or "" for url in urls}
    endpoint = getattr(settings, "AWS_S3_ENDPOINT_URL", "") or ""
    hosts.add(urlsplit(endpoint).hostname or "")
    return {host for host in hosts if host}


def refusal(addresses: list[str], host: str) -> str:
    """Why the proxy refuses a destination ("" if it may go there)."""
    if host in _platform_hosts():
        return f"{host} runs the platform's own services"
    own = _node_addresses()
    for raw in addresses:
        address = ipaddress.ip_address(raw.split("%")[0])
        if address.is_loopback or address.is_link_local or address.is_unspecified or address.is_multicast:
            return f"{host} is {address}, an address of the node itself or of its link"
        if address in own:
            return f"{host} is {address}, an address of this node"
    return ""


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    if len(head) > HEADER_LIMIT:
        raise ValueError("request head too large")
    return head


def _destination(head: bytes) -> tuple[str, str, int, bytes]:
    """(method, host, port, the head to send upstream) of a proxy request."""
    request_line, _, rest = head.partition(b"\r\n")
    method, target, version = request_line.decode("latin-1").split(" ", 2)
    if method == "CONNECT":
        host, _, port = target.rpartition(":")
        return method, host.strip("[]"), int(port), b""
    parts = urlsplit(target)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError("only http:// targets or CONNECT")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    upstream_head = f"{method} {path} {version}\r\n".encode("latin-1") + rest
    return method, parts.hostname, parts.port or 80, upstream_head


async def _answer(writer: asyncio.StreamWriter, status: str, message: str = "") -> None:
    body = message.encode()
    writer.write(f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    await writer.drain()
    writer.close()


def proxy_handler(grant: NetworkGrant):
    named = set(grant.targets)

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, host, port, upstream_head = _destination(await _read_head(reader))
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError) as exc:
            await _answer(writer, "400 Bad Request", f"the proxy cannot use this request: {exc}\n")
            return
        addresses = [info[4][0] for info in infos]
        why = "" if (host, port) in named else refusal(addresses, host)
        if why:
            logger.warning("An app's proxy request to %s:%s was refused: %s", host, port, why)
            await _answer(writer, "403 Forbidden", f"not reachable from apps: {why}\n")
            return
        try:  # connect to the address that was checked, not to a second look-up of the name
            upstream = await asyncio.open_connection(addresses[0], port)
        except OSError as exc:
            await _answer(writer, "502 Bad Gateway", f"{host}:{port} cannot be reached: {exc}\n")
            return
        if method == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            upstream[1].write(upstream_head)
        await asyncio.gather(pipe(reader, upstream[1]), pipe(upstream[0], writer))

    return proxy
