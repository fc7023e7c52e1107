"""`email` (beyond upstream): one message over SMTP with `smtplib`.

STARTTLS is used when the server offers it (`starttls` unset), always (`starttls = true`:
a server that does not offer it is a failure, never a plain-text fallback) or never
(`starttls = false`). `username`/`password` log in (only after STARTTLS unless `starttls =
false`). Subject = the message title, else `dotagent: <agent>/<schedule> <event>`."""

from __future__ import annotations

import smtplib
import socket
import ssl
import threading
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from dotagent.notify.base import Message, NotifyError, SendContext
from dotagent.notify.http import Deadline


def subject(message: Message) -> str:
    if message.title:
        return message.title
    return f"dotagent: {message.label} {message.event}"


class _SMTP(smtplib.SMTP):
    """smtplib whose connection belongs to a `Deadline` (which holds it through the TLS
    wrap of STARTTLS): the entry's `timeout_seconds` bounds the whole conversation, not
    each read."""

    def __init__(self, deadline: Deadline, host: str, port: int, timeout: float) -> None:
        self.deadline = deadline  # before connecting: the constructor connects
        super().__init__(host, port, timeout=timeout)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        # smtplib's documented-by-source hook for the connection's socket (not in typeshed)
        return self.deadline.add(super()._get_socket(host, port, timeout))  # type: ignore[misc]



class EmailDriver:
    name = "email"

    def send(self, message: Message, ctx: SendContext) -> None:
        host = ctx.text("host") or ""
        port = ctx.fields.get("port")
        starttls = ctx.fields.get("starttls")
        sender = ctx.text("from") or ""
        to = [str(t) for t in (ctx.fields.get("to") or [])]
        if not to:
            raise NotifyError("email has no recipients (`to`)")
        mail = EmailMessage()
        mail["From"] = sender
        mail["To"] = ", ".join(to)
        mail["Subject"] = " ".join(subject(message).split())
        mail["Date"] = formatdate(ctx.clock(), localtime=True)
        mail["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
        mail.set_content(message.body or f"{message.label}: {message.event}")
        tls = ssl.create_default_context(cafile=ctx.text("ca_file"))
        deadline = Deadline()
        timer = threading.Timer(ctx.timeout, deadline.expire)
        timer.daemon = True
        timer.start()
        try:
            self._converse(ctx, deadline, mail, host, port, starttls, sender, to, tls)
        except NotifyError:
            if deadline.expired:  # what failed was the conversation being cut at its time
                raise NotifyError(f"{host} did not finish within {ctx.timeout:g}s") from None
            raise
        finally:
            timer.cancel()
            deadline.close()

    def _converse(self, ctx: SendContext, deadline: Deadline, mail: EmailMessage, host: str,
                  port: object, starttls: object, sender: str, to: list[str],
                  tls: ssl.SSLContext) -> None:
        try:
            with _SMTP(deadline, host, int(port) if isinstance(port, int) else 587,
                       ctx.timeout) as smtp:
                smtp.ehlo()
                offered = smtp.has_extn("starttls")
                if starttls is True and not offered:
                    raise NotifyError(f"{host} does not offer STARTTLS (starttls = true)")
                if starttls is not False and offered:
                    smtp.starttls(context=tls)
                    smtp.ehlo()
                username = ctx.text("username")
                if username:
                    smtp.login(username, ctx.text("password") or "")
                smtp.send_message(mail, from_addr=sender, to_addrs=to)
        except NotifyError:
            raise
        except smtplib.SMTPAuthenticationError as exc:
            raise NotifyError(f"SMTP login refused ({exc.smtp_code})") from None
        except smtplib.SMTPResponseException as exc:
            raise NotifyError(f"SMTP server answered {exc.smtp_code}") from None
        except smtplib.SMTPRecipientsRefused:
            raise NotifyError("SMTP server refused every recipient") from None
        except ssl.SSLError as exc:
            raise NotifyError(f"TLS with {host} failed: {exc.reason or type(exc).__name__}"
                              ) from None
        except TimeoutError:
            raise NotifyError(f"{host} did not finish within {ctx.timeout:g}s") from None
        except (smtplib.SMTPException, OSError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else \
                type(exc).__name__
            raise NotifyError(f"SMTP with {host}:{port or 587} failed: {reason}") from None
