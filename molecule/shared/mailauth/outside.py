"""The internet, as seen from a scenario's mail hosts: runs inside the "outside" container
(Debian python3 with python3-dkim and python3-spf) and resolves through the scenario's own
DNS server (unbound, in the same container). No traffic leaves the scenario network.

  outside.py serve DIR            an SMTP sink on port 25: each message is DIR/N.eml (the
                                  bytes as received) with DIR/N.json (client, HELO, envelope);
                                  and on port 8053 a DNS provider's API for ACME DNS-01:
                                  GET /txt?action=add|remove&name=N&value=V changes the TXT
                                  records unbound serves (unbound-control local_data)
  outside.py send  < JSON         send one message, DKIM-signed if asked; prints the reply
  outside.py dkim FILE            verify the DKIM signature of a stored message
  outside.py spf IP SENDER HELO   evaluate SPF for a client address and envelope sender
Results are one JSON line on stdout.
"""

from __future__ import annotations

import http.server
import json
import smtplib
import socketserver
import ssl
import subprocess
import sys
import threading
import urllib.parse
import uuid
from email.utils import formatdate
from pathlib import Path


class _Sink(socketserver.StreamRequestHandler):
    """Just enough SMTP to take a message from Postfix (no STARTTLS: the client's TLS
    level is 'may', so it sends in the clear)."""

    directory: Path
    counter = iter(range(1, 1_000_000))
    lock = threading.Lock()

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        self.reply("220 mx.sink.example ESMTP outside.py")
        helo, sender, rcpts = "", "", []
        while True:
            line = self.rfile.readline()
            if not line:
                return
            verb = line[:4].decode("ascii", "replace").upper()
            arg = line[4:].strip().decode("utf-8", "replace")
            if verb in ("EHLO", "HELO"):
                helo = arg.split()[0] if arg else ""
                self.reply("250 mx.sink.example")
            elif verb == "MAIL":
                sender, rcpts = arg.split(":", 1)[1].split()[0].strip("<>"), []
                self.reply("250 2.1.0 Ok")
            elif verb == "RCPT":
                rcpts.append(arg.split(":", 1)[1].split()[0].strip("<>"))
                self.reply("250 2.1.5 Ok")
            elif verb == "DATA":
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                data = bytearray()
                while True:
                    chunk = self.rfile.readline()
                    if chunk in (b".\r\n", b".\n", b""):
                        break
                    data += chunk[1:] if chunk.startswith(b"..") else chunk
                self.store(bytes(data), helo, sender, rcpts)
                self.reply("250 2.0.0 Ok: stored")
            elif verb == "RSET":
                sender, rcpts = "", []
                self.reply("250 2.0.0 Ok")
            elif verb == "QUIT":
                self.reply("221 2.0.0 Bye")
                return
            else:
                self.reply("250 2.0.0 Ok" if verb == "NOOP" else "502 5.5.2 Not here")

    def store(self, data: bytes, helo: str, sender: str, rcpts: list[str]) -> None:
        with self.lock:
            n = next(self.counter)
        (self.directory / f"{n}.eml").write_bytes(data)
        meta = {"client": self.client_address[0], "helo": helo, "mail_from": sender,
                "rcpts": rcpts}
        (self.directory / f"{n}.json").write_text(json.dumps(meta))


class _DnsApi(http.server.BaseHTTPRequestHandler):
    """What a DNS provider's API does for an ACME DNS-01 hook: publish or withdraw a TXT
    record, served at once by the scenario's unbound."""

    conf = ""

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        action, name, value = query.get("action"), query.get("name", ""), query.get("value", "")
        if url.path != "/txt" or action not in ("add", "remove") or not name.endswith("."):
            self.send_error(400, "GET /txt?action=add|remove&name=FQDN.&value=V")
            return
        argv = (["local_data", f'{name} 60 IN TXT "{value}"'] if action == "add"
                else ["local_data_remove", name])
        done = subprocess.run(["unbound-control", "-c", self.conf, *argv],
                              capture_output=True, text=True, check=False)
        self.send_response(200 if done.returncode == 0 else 500)
        self.end_headers()
        self.wfile.write((done.stdout + done.stderr).encode())


def serve(directory: str) -> None:
    _Sink.directory = Path(directory)
    _Sink.directory.mkdir(parents=True, exist_ok=True)
    _DnsApi.conf = str(Path(__file__).with_name("unbound.conf"))
    api = http.server.ThreadingHTTPServer(("0.0.0.0", 8053), _DnsApi)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    with socketserver.ThreadingTCPServer(("0.0.0.0", 25), _Sink) as server:
        server.serve_forever()


def send(request: dict) -> dict:
    """request: host, rcpt, mail_from ("" for the null sender <>), from_header, subject,
    body, and optionally sign {domain, selector, key}, helo, message_id, date and headers
    (more header fields, e.g. Precedence)."""
    import dkim

    domain = request["from_header"].split("@")[1]
    message_id = request.get("message_id") or f"<{uuid.uuid4().hex}@{domain}>"
    extra = "".join(f"{name}: {value}\r\n" for name, value in request.get("headers", {}).items())
    message = (
        f"From: {request['from_header']}\r\nTo: {request['rcpt']}\r\n"
        f"Subject: {request['subject']}\r\nDate: {request.get('date') or formatdate()}\r\n"
        f"Message-ID: {message_id}\r\n{extra}"
        f"\r\n{request['body']}\r\n").encode()
    if request.get("sign"):
        sign = request["sign"]
        message = dkim.sign(message, sign["selector"].encode(), sign["domain"].encode(),
                            Path(sign["key"]).read_bytes(),
                            include_headers=[b"from", b"to", b"subject", b"date",
                                             b"message-id"]) + message
    with smtplib.SMTP(request["host"], 25, local_hostname=request.get("helo"),
                      timeout=60) as smtp:
        smtp.ehlo()
        if smtp.has_extn("starttls"):
            smtp.starttls(context=ssl._create_unverified_context())  # the peer's CA is not ours
            smtp.ehlo()
        try:
            smtp.sendmail(request["mail_from"], [request["rcpt"]], message)
        except smtplib.SMTPResponseException as exc:
            return {"code": exc.smtp_code, "message": exc.smtp_error.decode(errors="replace")}
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            return {"code": code, "message": text.decode(errors="replace")}
    return {"code": 250, "message": "accepted"}


def verify_dkim(path: str) -> dict:
    import dkim

    data = Path(path).read_bytes()
    return {"dkim": bool(dkim.verify(data))}


def check_spf(ip: str, sender: str, helo: str) -> dict:
    import spf

    result, explanation = spf.check2(i=ip, s=sender, h=helo)
    return {"spf": result, "explanation": explanation}


def main() -> None:
    command, args = sys.argv[1], sys.argv[2:]
    if command == "serve":
        serve(args[0])
        return
    if command == "send":
        result = send(json.load(sys.stdin))
    elif command == "dkim":
        result = verify_dkim(args[0])
    elif command == "spf":
        result = check_spf(*args)
    else:
        raise SystemExit(f"unknown command {command!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
