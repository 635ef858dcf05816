"""`sweep dashboard`: optuna-dashboard's WSGI app on the study storage, served until SIGINT or SIGTERM.

The server is made here rather than by `optuna_dashboard.run_server` so that a taken port is a
one-line error before anything is printed, the URL is printed once the socket listens, and both
signals end the server the same clean way (exit status 0).

optuna-dashboard's API can delete, rename and change studies and has no authentication, so the app is
served behind `read_only` unless the user asks for writes; a bind beyond loopback is warned about.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import signal
import socketserver
import sys
from collections.abc import Callable, Iterable
from types import FrameType
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from sweep.commands.args import add_storage_args, subcommand, url
from sweep.errors import SweepError
from sweep.store import storage as storage_mod

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

# Methods that only read: everything else in optuna-dashboard's API changes the storage.
READ_METHODS = frozenset({"GET", "HEAD"})
READ_ONLY_REASON = "the dashboard is read-only; start `sweep dashboard --allow-writes` to change studies"


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    """One thread per request: the page loads its 6 MB bundle while the API answers."""

    daemon_threads = True  # a browser holding a connection open does not keep the process alive


class _QuietHandler(WSGIRequestHandler):
    """No access log: a page load makes dozens of requests that would bury the URL line."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        pass


class _Stop(BaseException):
    """Raised by the signal handler to leave `serve_forever`. Not an Exception: socketserver catches
    those of a request it takes in, prints them and serves on (a SIGTERM then never stopped it)."""


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def serve(
    url: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    allow_writes: bool = False,
    out: Callable[[str], None] = print,
    warn: Callable[[str], None] = _stderr,
) -> None:
    """Serve optuna-dashboard for the storage at `url` on `host:port` until SIGINT or SIGTERM.

    Read-only unless `allow_writes`: a request other than GET or HEAD is refused with 403.

    Raises:
        SweepError: The storage does not exist or cannot be opened, or the port cannot be bound.
    """
    import optuna_dashboard  # here, not at the top: only this command needs it and bottle

    storage = storage_mod.open_storage(url, create=False)
    with storage_mod.storage_errors(url):
        app = optuna_dashboard.wsgi(storage)
    server = _bind(app if allow_writes else read_only(app), host, port)
    if not is_loopback(host):
        warn(exposure_warning(host, allow_writes=allow_writes))
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    address = f"[{host}]" if ":" in host else host
    where = f"http://{address}:{server.server_port}/"
    out(f"optuna-dashboard for {storage_mod.shown(url)} at {where} (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except (_Stop, KeyboardInterrupt):
        pass
    finally:
        server.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    out("dashboard stopped")


def read_only(app: WSGIApplication) -> WSGIApplication:
    """`app` with every request that is not GET or HEAD refused (403) before it reaches the app."""

    def guarded(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET").upper() in READ_METHODS:
            return app(environ, start_response)
        # optuna-dashboard's page shows an error response's `reason` in its snackbar
        body = json.dumps({"reason": READ_ONLY_REASON}).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        start_response("403 Forbidden", headers)
        return [body]

    return guarded


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable only from this machine: `localhost` or a loopback address."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def exposure_warning(host: str, *, allow_writes: bool) -> str:
    """The one line printed when the dashboard listens beyond loopback: it has no authentication."""
    can = "read and change (--allow-writes)" if allow_writes else "read"
    return (
        f"warning: listening on {host}, beyond loopback, with no authentication: anyone who reaches "
        f"the port can {can} every study in the storage"
    )


def _bind(app: WSGIApplication, host: str, port: int) -> WSGIServer:
    try:
        return make_server(host, port, app, server_class=_Server, handler_class=_QuietHandler)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise SweepError(f"port {port} on {host} is already in use; pick another with --port") from None
        raise SweepError(
            f"cannot listen on {host}:{port} ({err.strerror}); check --host and --port"
        ) from None
    except OverflowError:  # a port outside 0-65535
        raise SweepError(f"port {port} is not a valid port; use 1-65535") from None


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


# -- the command line ----------------------------------------------------------------------------------


def add_parser(commands: argparse._SubParsersAction) -> None:
    command = subcommand(commands, "dashboard", help="serve optuna-dashboard on the study storage")
    add_storage_args(command)
    command.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, loopback)")
    command.add_argument("--port", type=int, default=8080, help="port to listen on (default: 8080)")
    command.add_argument(
        "--allow-writes",
        action="store_true",
        help="let the page delete, rename and change studies (default: read-only: it has no authentication)",
    )
    command.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:

    serve(url(args), host=args.host, port=args.port, allow_writes=args.allow_writes)
    return 0
