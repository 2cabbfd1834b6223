"""A small mail client run on the target host (python3 stdlib only): it submits, reads back
and probes, and prints one JSON object. The verify tests ship it with testinfra."""

import imaplib
import json
import poplib
import smtplib
import socket
import ssl
import sys
import time

CA, SERVERNAME = sys.argv[1], sys.argv[2]
ACTION = sys.argv[3]
ARGS = sys.argv[4:]
HOST = "127.0.0.1"


def tls_context():
    ctx = ssl.create_default_context(cafile=CA)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def out(**data):
    print(json.dumps(data))
    sys.exit(0)


def wrap(sock):
    return tls_context().wrap_socket(sock, server_hostname=SERVERNAME)


def cert_check(port, mode):
    """Handshake on port (implicit TLS or STARTTLS), verifying chain and host name."""
    try:
        if mode == "implicit":
            with socket.create_connection((HOST, port), timeout=10) as raw, wrap(raw) as tls:
                return out(ok=True, version=tls.version())
        if mode == "smtp":
            client = smtplib.SMTP(HOST, port, timeout=10)
            client.ehlo("verify.mailctl.test")
            client.starttls(context=_hostname_ctx())
            version = client.sock.version()
            client.quit()
            return out(ok=True, version=version)
        if mode == "imap":
            client = imaplib.IMAP4(HOST, port, timeout=10)
            client.starttls(ssl_context=_hostname_ctx())
            version = client.sock.version()
            client.logout()
            return out(ok=True, version=version)
        if mode == "pop3":
            client = poplib.POP3(HOST, port, timeout=10)
            client.stls(context=_hostname_ctx())
            version = client.sock.version()
            client.quit()
            return out(ok=True, version=version)
    except (OSError, ssl.SSLError, smtplib.SMTPException, imaplib.IMAP4.error,
            poplib.error_proto) as exc:
        return out(ok=False, error=f"{type(exc).__name__}: {exc}")
    return out(ok=False, error=f"unknown mode {mode}")


def _hostname_ctx():
    # imaplib/poplib use the connect host (127.0.0.1) for SNI/verification: wrap a context
    # whose wrap_socket always checks against the mail host name instead.
    ctx = tls_context()
    original = ctx.wrap_socket

    def wrap_socket(sock, *args, **kwargs):
        kwargs["server_hostname"] = SERVERNAME
        return original(sock, *args, **kwargs)

    ctx.wrap_socket = wrap_socket
    return ctx


def submit(user, password, sender, rcpt, subject):
    try:
        client = smtplib.SMTP(HOST, 587, timeout=20)
        client.ehlo("verify.mailctl.test")
        client.starttls(context=_hostname_ctx())
        client.ehlo("verify.mailctl.test")
        client.login(user, password)
        msg = (f"From: {sender}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
               f"Message-ID: <{subject}@verify.mailctl.test>\r\n\r\nmailctl verify\r\n")
        refused = client.sendmail(sender, [rcpt], msg)
        client.quit()
        return out(ok=not refused, refused=str(refused))
    except (OSError, smtplib.SMTPException) as exc:
        return out(ok=False, error=f"{type(exc).__name__}: {exc}")


def plain_smtp(sender, rcpt, subject):
    """Port 25, no AUTH: returns the server's reply to RCPT TO and whether DATA was accepted."""
    try:
        client = smtplib.SMTP(HOST, 25, timeout=20)
        client.ehlo("verify.mailctl.test")
        client.mail(sender)
        code, reply = client.rcpt(rcpt)
        accepted = False
        if code == 250:
            msg = (f"From: {sender}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
                   f"Message-ID: <{subject}@verify.mailctl.test>\r\n\r\nmailctl verify\r\n")
            data_code, _ = client.data(msg)
            accepted = data_code == 250
        client.quit()
        return out(ok=True, rcpt_code=code, rcpt_reply=reply.decode(errors="replace"),
                   accepted=accepted)
    except (OSError, smtplib.SMTPException) as exc:
        return out(ok=False, error=f"{type(exc).__name__}: {exc}")


def read_imap(user, password, subject, timeout):
    deadline = time.monotonic() + float(timeout)
    last = ""
    while time.monotonic() < deadline:
        try:
            client = imaplib.IMAP4_SSL(HOST, 993, ssl_context=_hostname_ctx(), timeout=10)
            client.login(user, password)
            client.select("INBOX", readonly=True)
            _, data = client.search(None, "SUBJECT", f'"{subject}"')
            client.logout()
            if data and data[0].split():
                return out(ok=True, found=len(data[0].split()))
            last = "not in INBOX yet"
        except (OSError, imaplib.IMAP4.error) as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(1)
    return out(ok=False, error=f"no message with subject {subject} within {timeout}s ({last})")


def read_pop3(user, password, subject, timeout):
    deadline = time.monotonic() + float(timeout)
    last = ""
    while time.monotonic() < deadline:
        try:
            client = poplib.POP3_SSL(HOST, 995, context=_hostname_ctx(), timeout=10)
            client.user(user)
            client.pass_(password)
            count = len(client.list()[1])
            found = 0
            for i in range(1, count + 1):
                header = b"\n".join(client.top(i, 0)[1])
                if f"Subject: {subject}".encode() in header:
                    found += 1
            client.quit()
            if found:
                return out(ok=True, found=found)
            last = "not in the maildrop yet"
        except (OSError, poplib.error_proto) as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(1)
    return out(ok=False, error=f"no message with subject {subject} within {timeout}s ({last})")


ACTIONS = {"cert": cert_check, "submit": submit, "smtp25": plain_smtp, "imap": read_imap,
           "pop3": read_pop3}

if __name__ == "__main__":
    ACTIONS[ACTION](*ARGS)
