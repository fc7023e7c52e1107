"""The HTTP transport of the HTTP drivers: stdlib `urllib.request`, a timeout on every call,
and errors that never carry the URL (webhook URLs and bot paths hold tokens)."""

from __future__ import annotations

import base64
import contextlib
import http.client
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from dotagent.notify.base import HttpResponse, NotifyError

__all__ = ["Deadline", "UrllibTransport", "check_status", "join_url"]

# A response body is read only to say why a request failed; never more than this.
MAX_RESPONSE_BYTES = 64 * 1024


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A notification endpoint that redirects would make urllib re-send a POST as a GET
    # somewhere else; the status is reported instead.
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class Deadline:
    """The sockets of one request (or SMTP conversation), shut down when its whole time is
    up. urllib's and smtplib's `timeout` bound each socket operation, not the request: an
    endpoint that trickles a byte a second would hold a delivery (and a daemon's outbox
    worker) for as long as it likes.

    It keeps a duplicate of each socket: a TLS wrap (https, STARTTLS) detaches the socket
    object it is given, so shutting that object down would do nothing, while a duplicate
    reaches the same connection whatever wraps it. `close()` (when the request is over)
    lets the duplicates go; the connection itself is closed by its owner."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self.expired = False
        self._closed = False

    def add(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            if self._closed:
                return sock
            try:
                dup = sock.dup()
            except OSError:  # no descriptor left: the per-read timeout still applies
                return sock
            self._socks.append(dup)
            if self.expired:
                _shut(dup)
        return sock

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._socks:
                _shut(sock)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for sock in self._socks:
                sock.close()
            self._socks.clear()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _connection(base: type[http.client.HTTPConnection],
                deadline: Deadline) -> type[http.client.HTTPConnection]:
    class Connection(base):  # type: ignore[valid-type, misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            make: Callable[..., socket.socket] = self._create_connection  # type: ignore[has-type]
            # The plain socket, registered before any TLS handshake.
            self._create_connection = lambda *a, **k: deadline.add(make(*a, **k))
    return Connection


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: Deadline) -> None:
        super().__init__()
        self.deadline = deadline

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_connection(http.client.HTTPConnection, self.deadline), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: Deadline) -> None:
        super().__init__()
        self.deadline = deadline

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_connection(http.client.HTTPSConnection, self.deadline), req,
                            context=self._context)  # type: ignore[attr-defined]


class UrllibTransport:
    def request(self, method: str, url: str, *, body: bytes | None,
                headers: Mapping[str, str], timeout: float) -> HttpResponse:
        deadline = Deadline()
        timer = threading.Timer(timeout, deadline.expire)
        timer.daemon = True
        timer.start()
        try:
            return self._request(method, url, body=body, headers=headers, timeout=timeout,
                                 deadline=deadline)
        except NotifyError:
            if deadline.expired:
                raise NotifyError(f"no answer within {timeout:g}s") from None
            raise
        finally:
            timer.cancel()
            deadline.close()

    def _request(self, method: str, url: str, *, body: bytes | None,
                 headers: Mapping[str, str], timeout: float,
                 deadline: Deadline) -> HttpResponse:
        opener = urllib.request.build_opener(_NoRedirect(), _HTTPHandler(deadline),
                                             _HTTPSHandler(deadline))
        headers = dict(headers)
        try:
            url = _take_userinfo(url, headers)
        except ValueError:
            raise NotifyError("request failed: invalid URL") from None
        req = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with opener.open(req, timeout=timeout) as resp:
                data = resp.read(MAX_RESPONSE_BYTES)
                if deadline.expired:
                    raise NotifyError(f"no answer within {timeout:g}s")
                return HttpResponse(resp.status, data)
        except urllib.error.HTTPError as exc:
            try:
                data = exc.read(MAX_RESPONSE_BYTES)
            except (OSError, ValueError):
                data = b""
            finally:
                exc.close()
            return HttpResponse(exc.code, data)
        except urllib.error.URLError as exc:
            raise NotifyError(f"request failed: {_reason(exc.reason)}") from None
        except TimeoutError:
            raise NotifyError(f"no answer within {timeout:g}s") from None
        except http.client.HTTPException as exc:  # a cut or malformed answer
            raise NotifyError(f"request failed: {type(exc).__name__}") from None
        except (OSError, ValueError) as exc:
            raise NotifyError(f"request failed: {_reason(exc)}") from None


def _take_userinfo(url: str, headers: dict[str, str]) -> str:
    """`https://user:token@host/…` → the URL without its userinfo, and HTTP Basic auth in
    `headers` (unless the driver set an Authorization of its own). urllib would otherwise
    take `user:token@host` for the host name and fail with a DNS error."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    if not any(k.lower() == "authorization" for k in headers):
        pair = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode("utf-8")).decode()
    return urllib.parse.urlunsplit(parts._replace(netloc=hostport))


def _reason(reason: object) -> str:
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return "timed out"
    if isinstance(reason, OSError):
        return reason.strerror or type(reason).__name__
    if isinstance(reason, ValueError):
        # http.client refuses a header (a ${VAR} value holding a newline) or URL with
        # control characters; neither the value nor the URL is shown.
        return "invalid header value" if "header" in str(reason).lower() else "invalid URL"
    return type(reason).__name__ if not isinstance(reason, str) else "connection error"


def check_status(driver: str, resp: HttpResponse) -> None:
    if not 200 <= resp.status < 300:
        raise NotifyError(f"{driver} returned {resp.status}")


def join_url(base: str, path: str) -> str:
    if not base.startswith(("http://", "https://")):
        raise NotifyError("base URL is not an http(s) URL")
    return base.rstrip("/") + path
