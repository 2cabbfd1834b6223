"""A small mail client run on the target host (python3 stdlib only): it submits, reads back
and probes, and prints one JSON object. The verify tests ship it with testinfra."""

import base64
import contextlib
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


# STARTTLS per protocol: connect, upgrade the connection, close.
_STARTTLS = {
    "smtp": (lambda port: smtplib.SMTP(HOST, port, timeout=10),
             lambda c: (c.ehlo("verify.mailctl.test"), c.starttls(context=_hostname_ctx())),
             lambda c: c.quit()),
    "imap": (lambda port: imaplib.IMAP4(HOST, port, timeout=10),
             lambda c: c.starttls(ssl_context=_hostname_ctx()),
             lambda c: c.logout()),
    "pop3": (lambda port: poplib.POP3(HOST, port, timeout=10),
             lambda c: c.stls(context=_hostname_ctx()),
             lambda c: c.quit()),
    "sieve": (lambda port: _Sieve(port),
              lambda c: c.starttls(_hostname_ctx()),
              lambda c: c.close()),
}


def cert_check(port, mode):
    """Handshake on port (implicit TLS or STARTTLS), verifying chain and host name."""
    try:
        if mode == "implicit":
            with socket.create_connection((HOST, port), timeout=10) as raw, wrap(raw) as tls:
                return out(ok=True, version=tls.version())
        if mode in _STARTTLS:
            connect, upgrade, close = _STARTTLS[mode]
            client = connect(port)
            upgrade(client)
            version = client.sock.version()
            close(client)
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


# --- Security probes (test_security.py). Each returns what the server said, never a verdict:
# the tests decide. Addresses are sent raw (no smtplib quoting), so relay tricks reach the
# server byte for byte. The "before TLS" probes send a VALID password in clear text, so that
# a refusal cannot be a wrong-password failure; they only ever connect to this host itself.

ERRORS = (OSError, ssl.SSLError, smtplib.SMTPException, imaplib.IMAP4.error, poplib.error_proto)


def _err(exc):
    return f"{type(exc).__name__}: {exc}"


def _smtp(port, mode):
    """An SMTP session after EHLO (and STARTTLS + EHLO again for mode 'starttls')."""
    ctx = _hostname_ctx()
    if mode == "implicit":
        client = smtplib.SMTP_SSL(HOST, port, timeout=20, context=ctx)
    else:
        client = smtplib.SMTP(HOST, port, timeout=20)
    client.ehlo("verify.mailctl.test")
    if mode == "starttls":
        client.starttls(context=ctx)
        client.ehlo("verify.mailctl.test")
    return client


def _cmd(client, line):
    code, reply = client.docmd(line)
    return [code, reply.decode(errors="replace")]


def _features(client):
    return dict(client.esmtp_features)


def relay_probe(addr, sender, local_rcpt, trick_rcpt):
    """Port 25 on addr (not loopback), no AUTH: MAIL FROM, RCPT to a served address (control)
    and RCPT to trick_rcpt; reports the local address the server sees as the client."""
    try:
        client = smtplib.SMTP(addr, 25, timeout=20)
        peer = client.sock.getsockname()[0]
        client.ehlo("verify.mailctl.test")
        mail = _cmd(client, f"MAIL FROM:<{sender}>")
        local = _cmd(client, f"RCPT TO:<{local_rcpt}>")
        trick = _cmd(client, f"RCPT TO:<{trick_rcpt}>")
        _cmd(client, "RSET")  # never DATA: nothing is queued
        client.quit()
        return out(ok=True, client_addr=peer, mail=mail, local=local, trick=trick)
    except ERRORS as exc:
        return out(ok=False, error=_err(exc))


def _auth_plain(user, password):
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def smtp_auth_offer(port, mode, user, password):
    """EHLO before and after TLS, and an AUTH attempt (valid credentials) before TLS."""
    port = int(port)
    result = {"ok": True}
    try:
        if mode == "implicit":
            client = _smtp(port, "implicit")
            result["after"] = _features(client)
            client.quit()
            return out(**result)
        client = smtplib.SMTP(HOST, port, timeout=20)
        client.ehlo("verify.mailctl.test")
        result["before"] = _features(client)
        result["auth_before_tls"] = _cmd(client, f"AUTH PLAIN {_auth_plain(user, password)}")
        client.quit()
        client = _smtp(port, "starttls")
        result["after"] = _features(client)
        client.quit()
        return out(**result)
    except ERRORS as exc:
        return out(ok=False, error=_err(exc), **{k: v for k, v in result.items() if k != "ok"})


class _SourcedIMAP(imaplib.IMAP4):
    """IMAP4 from a given source address (Dovecot treats a connection whose remote address
    equals its local address, e.g. 127.0.0.1 -> 127.0.0.1, as secured; a client on another
    loopback address is a remote client to it)."""

    source = None

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self.source, 0))


class _SourcedPOP3(poplib.POP3):
    source = None

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self.source, 0))


def imap_plain(port, source, user, password):
    """IMAP on a STARTTLS port from source: capabilities and LOGIN (valid credentials) before
    TLS, then the same after STARTTLS (the control)."""
    result = {"ok": True}
    _SourcedIMAP.source = source
    try:
        client = _SourcedIMAP(HOST, int(port), timeout=20)
        result["client_addr"] = client.sock.getsockname()[0]
        result["caps_before"] = list(client.capabilities)
        try:
            typ, data = client._simple_command("LOGIN", client._quote(user),
                                               client._quote(password))
            result["login_before"] = [typ, b" ".join(d for d in data if d).decode(errors="replace")]
        except ERRORS as exc:
            result["login_before"] = ["ERROR", _err(exc)]
        with contextlib.suppress(ERRORS):
            client.logout()
        client = _SourcedIMAP(HOST, int(port), timeout=20)
        client.starttls(ssl_context=_hostname_ctx())
        result["caps_after"] = list(client.capabilities)
        try:
            typ, _ = client.login(user, password)
            result["login_after"] = [typ, ""]
        except ERRORS as exc:
            result["login_after"] = ["ERROR", _err(exc)]
        client.logout()
        return out(**result)
    except ERRORS as exc:
        return out(ok=False, error=_err(exc), **{k: v for k, v in result.items() if k != "ok"})


def pop3_plain(port, source, user, password):
    """POP3 on a STLS port from source: USER/PASS (valid credentials) before STLS, then after
    (the control)."""
    result = {"ok": True}
    _SourcedPOP3.source = source
    try:
        client = _SourcedPOP3(HOST, int(port), timeout=20)
        result["client_addr"] = client.sock.getsockname()[0]
        try:
            result["capa_before"] = sorted(client.capa())
        except ERRORS as exc:
            result["capa_before"] = [_err(exc)]
        steps = []
        for cmd, arg in (("USER", user), ("PASS", password)):
            try:
                steps.append([cmd, client._shortcmd(f"{cmd} {arg}").decode(errors="replace")])
            except ERRORS as exc:
                steps.append([cmd, "ERR " + _err(exc)])
                break
        result["login_before"] = steps
        with contextlib.suppress(ERRORS):
            client.quit()
        client = _SourcedPOP3(HOST, int(port), timeout=20)
        client.stls(context=_hostname_ctx())
        try:
            client.user(user)
            client.pass_(password)
            result["login_after"] = "ok"
        except ERRORS as exc:
            result["login_after"] = _err(exc)
        client.quit()
        return out(**result)
    except ERRORS as exc:
        return out(ok=False, error=_err(exc), **{k: v for k, v in result.items() if k != "ok"})


class _Sieve:
    """A ManageSieve (RFC 5804) session: the greeting's capabilities, commands, STARTTLS."""

    def __init__(self, port, source=None):
        self.sock = socket.create_connection((HOST, int(port)), 20,
                                             source_address=(source, 0) if source else None)
        self.file = self.sock.makefile("rb")
        self.caps = self._capabilities()

    def _response(self):
        """Lines up to the OK/NO/BYE line; (that line, the lines before)."""
        lines = []
        while True:
            raw = self.file.readline()
            if not raw:
                raise OSError("the server closed the connection")
            line = raw.decode(errors="replace").rstrip("\r\n")
            if line.split(" ", 1)[0] in ("OK", "NO", "BYE"):
                return line, lines
            lines.append(line)

    def _capabilities(self):
        end, lines = self._response()
        if not end.startswith("OK"):
            raise OSError(f"ManageSieve greeting: {end}")
        caps = {}
        for line in lines:
            words = line.split(" ", 1)
            caps[words[0].strip('"').upper()] = words[1].strip('"') if len(words) > 1 else ""
        return caps

    def command(self, line):
        self.sock.sendall(line.encode() + b"\r\n")
        return self._response()[0]

    def starttls(self, ctx):
        end = self.command("STARTTLS")
        if not end.startswith("OK"):
            raise OSError(f"STARTTLS: {end}")
        self.sock = ctx.wrap_socket(self.sock, server_hostname=SERVERNAME)
        self.file = self.sock.makefile("rb")
        self.caps = self._capabilities()

    def authenticate(self, user, password):
        return self.command(f'AUTHENTICATE "PLAIN" "{_auth_plain(user, password)}"')

    def close(self):
        with contextlib.suppress(*ERRORS):
            self.command("LOGOUT")
        self.sock.close()


def sieve_plain(port, source, user, password):
    """ManageSieve from source: SASL mechanisms and AUTHENTICATE (valid credentials) before
    STARTTLS; after it, a wrong password, then the right one (the control)."""
    result = {"ok": True}
    try:
        client = _Sieve(port, source)
        result["client_addr"] = client.sock.getsockname()[0]
        result["caps_before"] = client.caps
        result["auth_before"] = client.authenticate(user, password)
        client.close()
        client = _Sieve(port, source)
        client.starttls(_hostname_ctx())
        result["caps_after"] = client.caps
        result["auth_wrong"] = client.authenticate(user, password + "-wrong")
        client.close()
        client = _Sieve(port, source)
        client.starttls(_hostname_ctx())
        result["auth_after"] = client.authenticate(user, password)
        client.close()
        return out(**result)
    except ERRORS as exc:
        return out(ok=False, error=_err(exc), **{k: v for k, v in result.items() if k != "ok"})


def _login(port, user, password):
    """Log in on a TLS port (587 STARTTLS, 465, 993, 995); None on success, else the error."""
    port = int(port)
    try:
        if port in (587, 465):
            client = _smtp(port, "starttls" if port == 587 else "implicit")
            try:
                client.login(user, password)
            finally:
                client.close()
        elif port == 993:
            client = imaplib.IMAP4_SSL(HOST, port, ssl_context=_hostname_ctx(), timeout=20)
            try:
                client.login(user, password)
            finally:
                client.shutdown()
        elif port == 995:
            client = poplib.POP3_SSL(HOST, port, context=_hostname_ctx(), timeout=20)
            try:
                client.user(user)
                client.pass_(password)
            finally:
                client.close()
        else:
            return f"no login probe for port {port}"
        return None
    except ERRORS as exc:
        return _err(exc)


def bad_password(port, user, password):
    """A wrong password, then the right one (the control)."""
    wrong = _login(port, user, password + "-wrong")
    right = _login(port, user, password)
    return out(ok=True, wrong_error=wrong, right_error=right)


def sender_probe(port, user, password, sender, rcpt):
    """Authenticated as user: MAIL FROM:<sender>, RCPT TO:<rcpt>; never DATA."""
    port = int(port)
    try:
        client = _smtp(port, "starttls" if port == 587 else "implicit")
        client.login(user, password)
        mail = _cmd(client, f"MAIL FROM:<{sender}>")
        rcpt_reply = _cmd(client, f"RCPT TO:<{rcpt}>") if mail[0] == 250 else None
        _cmd(client, "RSET")
        client.quit()
        return out(ok=True, mail=mail, rcpt=rcpt_reply)
    except ERRORS as exc:
        return out(ok=False, error=_err(exc))


def size_probe(port, mode, user, password, sender, limit):
    """EHLO SIZE, then MAIL FROM with SIZE=limit+1 and SIZE=limit (the control)."""
    port, limit = int(port), int(limit)
    try:
        client = _smtp(port, mode)
        if user != "-":
            client.login(user, password)
        size = client.esmtp_features.get("size")
        over = _cmd(client, f"MAIL FROM:<{sender}> SIZE={limit + 1}")
        _cmd(client, "RSET")
        at = _cmd(client, f"MAIL FROM:<{sender}> SIZE={limit}")
        _cmd(client, "RSET")
        client.quit()
        return out(ok=True, size=size, over=over, at=at)
    except ERRORS as exc:
        return out(ok=False, error=_err(exc))


TLS_VERSIONS = {"TLSv1": ssl.TLSVersion.TLSv1, "TLSv1.1": ssl.TLSVersion.TLSv1_1,
                "TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


def _pinned_ctx(version, ciphers):
    """A context that offers exactly one protocol version; SECLEVEL=0 so that the client
    itself does not refuse old versions or weak ciphers (a failure is then the server's)."""
    import warnings
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # TLSv1, TLSv1_1
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=CA)
    ctx.set_ciphers(ciphers)
    ctx.minimum_version = TLS_VERSIONS[version]
    ctx.maximum_version = TLS_VERSIONS[version]
    original = ctx.wrap_socket

    def wrap_socket(sock, *args, **kwargs):
        kwargs["server_hostname"] = SERVERNAME
        return original(sock, *args, **kwargs)

    ctx.wrap_socket = wrap_socket
    return ctx


def _handshake(port, mode, ctx):
    """(version, cipher) of a handshake on port; the handshake's own error is raised, not a
    later one from closing the broken connection."""
    if mode == "implicit":
        with socket.create_connection((HOST, port), timeout=10) as raw, \
                ctx.wrap_socket(raw) as tls:
            return tls.version(), tls.cipher()[0]
    if mode == "smtp":
        client = smtplib.SMTP(HOST, port, timeout=10)
        client.ehlo("verify.mailctl.test")
        start, close = (lambda: client.starttls(context=ctx)), client.close
    elif mode == "imap":
        client = imaplib.IMAP4(HOST, port, timeout=10)
        start, close = (lambda: client.starttls(ssl_context=ctx)), client.shutdown
    elif mode == "pop3":
        client = poplib.POP3(HOST, port, timeout=10)
        start, close = (lambda: client.stls(context=ctx)), client.close
    elif mode == "sieve":
        client = _Sieve(port)
        start, close = (lambda: client.starttls(ctx)), client.sock.close
    else:
        raise ValueError(f"unknown mode {mode}")
    try:
        start()
        return client.sock.version(), client.sock.cipher()[0]
    finally:
        with contextlib.suppress(ERRORS):
            close()


def tls_scan(port, mode, allowed_ciphers):
    """One handshake per protocol version (every cipher offered), plus TLS 1.2 handshakes
    offering every cipher except allowed_ciphers (colon-separated), one per key exchange
    (ECDHE, RSA, DHE: a server may fail one of them for its own reasons, e.g. no DH
    parameters, which must not hide that it accepts another)."""
    port = int(port)
    everything = "ALL:COMPLEMENTOFALL:@SECLEVEL=0"
    probes = {v: (v, everything) for v in TLS_VERSIONS}
    excluded = "".join(f":!{c}" for c in allowed_ciphers.split(":"))
    for kx in ("ECDHE", "RSA", "DHE"):
        probes[f"TLSv1.2-other-{kx}"] = ("TLSv1.2", f"k{kx}:@SECLEVEL=0{excluded}")
    results = {}
    for name, (version, ciphers) in probes.items():
        try:
            ctx = _pinned_ctx(version, ciphers)
            usable = {"TLSv1": ("SSLv3", "TLSv1"), "TLSv1.1": ("SSLv3", "TLSv1"),
                      "TLSv1.2": ("SSLv3", "TLSv1", "TLSv1.2"), "TLSv1.3": ("TLSv1.3",)}
            offered = [c["name"] for c in ctx.get_ciphers() if c["protocol"] in usable[version]]
        except (ValueError, ssl.SSLError) as exc:
            results[name] = {"ok": False, "client_error": _err(exc), "offered": 0}
            continue
        try:
            got_version, cipher = _handshake(port, mode, ctx)
            results[name] = {"ok": True, "version": got_version, "cipher": cipher}
        except ERRORS as exc:
            results[name] = {"ok": False, "error": _err(exc)}
        results[name]["offered"] = len(offered)
    return out(ok=True, results=results)


ACTIONS = {"cert": cert_check, "submit": submit, "smtp25": plain_smtp, "imap": read_imap,
           "pop3": read_pop3, "relay": relay_probe, "smtp_auth": smtp_auth_offer,
           "imap_plain": imap_plain, "pop3_plain": pop3_plain, "badpass": bad_password,
           "sender": sender_probe, "size": size_probe, "tls_scan": tls_scan,
           "sieve_plain": sieve_plain}

if __name__ == "__main__":
    ACTIONS[ACTION](*ARGS)
