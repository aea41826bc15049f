"""E-mail over SMTP with the standard library, one connection per notice."""

from __future__ import annotations

import email.utils
import re
from email.message import EmailMessage

from watchkeeper.model.text import NOTIFICATION, clean
from watchkeeper.notify.base import DeliveryError, Notification

__all__ = ["EmailChannel"]


def _header(text: str) -> str:
    # A newline in a header would start a new header: notices carry untrusted text.
    return clean(text, NOTIFICATION, 200)


class EmailChannel:
    """Sends each notice as a plain-text message; ``security`` is none, starttls or ssl."""

    def __init__(
        self,
        name: str,
        *,
        host: str,
        port: int = 25,
        sender: str,
        recipients: list[str],
        security: str = "none",
        username: str | None = None,
        password: str | None = None,
        subject_prefix: str = "[watchkeeper]",
        timeout: float = 10.0,
    ) -> None:
        self.name = name
        self._host = host
        self._port = port
        self._sender = sender
        self._recipients = list(recipients)
        self._security = security
        self._username = username
        self._password = password
        self._prefix = subject_prefix
        self._timeout = timeout

    def message(self, notice: Notification) -> EmailMessage:
        """The message that would be sent for ``notice``."""
        msg = EmailMessage()
        msg["Subject"] = _header(f"{self._prefix} {notice.title}")
        msg["From"] = self._sender
        msg["To"] = ", ".join(self._recipients)
        msg["Date"] = email.utils.formatdate(notice.created_at, localtime=True)
        # An explicit domain: the default one asks DNS for our own name, which can hang.
        domain = re.sub(r"[^A-Za-z0-9.-]", "", notice.host) or "localhost"
        msg["Message-ID"] = email.utils.make_msgid("watchkeeper", domain=domain)
        msg["X-Watchkeeper-Key"] = _header(notice.key)
        msg.set_content(f"{notice.body}\n\n-- \nwatchkeeper on {notice.host}\n")
        return msg

    def send(self, notice: Notification) -> None:
        import smtplib
        import ssl

        msg = self.message(notice)
        try:
            if self._security == "ssl":
                context = ssl.create_default_context()
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    self._host, self._port, timeout=self._timeout, context=context
                )
            else:
                smtp = smtplib.SMTP(self._host, self._port, timeout=self._timeout)
            with smtp:
                if self._security == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                if self._username:
                    smtp.login(self._username, self._password or "")
                smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"SMTP refused every recipient: {exc}", retryable=False) from None
        except smtplib.SMTPResponseException as exc:
            text = (
                exc.smtp_error.decode(errors="replace")
                if isinstance(exc.smtp_error, bytes)
                else str(exc.smtp_error)
            )
            raise DeliveryError(
                f"SMTP {self._host}:{self._port} answered {exc.smtp_code} {text}",
                retryable=exc.smtp_code < 500,
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP {self._host}:{self._port}: {exc}") from None
