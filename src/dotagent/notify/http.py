"""The HTTP transport of the HTTP drivers: stdlib `urllib.request`, a timeout on every call,
and errors that never carry the URL (webhook URLs and bot paths hold tokens)."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Mapping

from dotagent.notify.base import HttpResponse, NotifyError

__all__ = ["UrllibTransport", "check_status", "join_url"]

# A response body is read only to say why a request failed; never more than this.
MAX_RESPONSE_BYTES = 64 * 1024


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A notification endpoint that redirects would make urllib re-send a POST as a GET
    # somewhere else; the status is reported instead.
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class UrllibTransport:
    def __init__(self) -> None:
        self._opener = urllib.request.build_opener(_NoRedirect())

    def request(self, method: str, url: str, *, body: bytes | None,
                headers: Mapping[str, str], timeout: float) -> HttpResponse:
        req = urllib.request.Request(url, data=body, method=method, headers=dict(headers))
        try:
            with self._opener.open(req, timeout=timeout) as resp:
                return HttpResponse(resp.status, resp.read(MAX_RESPONSE_BYTES))
        except urllib.error.HTTPError as exc:
            try:
                data = exc.read(MAX_RESPONSE_BYTES)
            except OSError:
                data = b""
            finally:
                exc.close()
            return HttpResponse(exc.code, data)
        except urllib.error.URLError as exc:
            raise NotifyError(f"request failed: {_reason(exc.reason)}") from None
        except TimeoutError:
            raise NotifyError(f"no answer within {timeout:g}s") from None
        except (OSError, ValueError) as exc:
            raise NotifyError(f"request failed: {_reason(exc)}") from None


def _reason(reason: object) -> str:
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return "timed out"
    if isinstance(reason, OSError):
        return reason.strerror or type(reason).__name__
    if isinstance(reason, ValueError):
        return "invalid URL"
    return type(reason).__name__ if not isinstance(reason, str) else "connection error"


def check_status(driver: str, resp: HttpResponse) -> None:
    if not 200 <= resp.status < 300:
        raise NotifyError(f"{driver} returned {resp.status}")


def join_url(base: str, path: str) -> str:
    if not base.startswith(("http://", "https://")):
        raise NotifyError("base URL is not an http(s) URL")
    return base.rstrip("/") + path
