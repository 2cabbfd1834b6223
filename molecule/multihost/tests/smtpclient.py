"""SMTP client run IN the sender container ("the internet"; python3 stdlib only).

    python3 smtpclient.py < request.json     # prints one JSON object

request: {"server": IP, "port": 25, "helo": name, "from": addr,
          "messages": [{"to": [addr, ...], "msgid": "<...>", "subject": "..."}, ...]}
Each message goes in its own transaction over one session; the reply is recorded per
message: {"results": [{"msgid", "code", "reply", "stage"}]} where stage is the SMTP step
that answered last (rcpt when a recipient was refused, data when the message was taken or
refused after DATA). Bounded: 20 s per network operation.
"""

import json
import smtplib
import sys
from email.message import EmailMessage


def main():
    req = json.load(sys.stdin)
    results = []
    with smtplib.SMTP(req["server"], req.get("port", 25), local_hostname=req["helo"],
                      timeout=20) as smtp:
        smtp.ehlo()
        for m in req["messages"]:
            results.append(one(smtp, req["from"], m))
            smtp.rset()
    print(json.dumps({"results": results}))


def one(smtp, sender, m):
    out = {"msgid": m["msgid"]}
    code, reply = smtp.mail(sender)
    if code != 250:
        return {**out, "stage": "mail", "code": code, "reply": reply.decode()}
    for rcpt in m["to"]:
        code, reply = smtp.rcpt(rcpt)
        if code not in (250, 251):
            return {**out, "stage": "rcpt", "code": code, "reply": reply.decode()}
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(m["to"])
    msg["Subject"] = m.get("subject", "mailctl multihost test")
    msg["Message-ID"] = m["msgid"]
    msg.set_content("Sent from the internet to a mailctl edge relay.\n")
    code, reply = smtp.data(msg.as_bytes())
    return {**out, "stage": "data", "code": code, "reply": reply.decode()}


if __name__ == "__main__":
    main()
