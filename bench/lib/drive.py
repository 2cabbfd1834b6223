#!/usr/bin/python3
"""Load driver, copied into a bench container and run there (python3 only, no mailctl).

    drive.py --store dovecot|cyrus|none [--messages 5000] [--sessions 20] [--size 4096]
             [--domain bench.test] [--users 10] [--password-prefix P] [--timeout 300]

Sends --messages messages of --size bytes with Postfix's smtp-source to 127.0.0.1:25, in
--sessions parallel SMTP sessions spread evenly over --users recipients u0..u<n-1>@domain
(one smtp-source per recipient, so every Message-ID is unique: smtp-source writes
<pid.session.count@host>). Times:

  accept  until every smtp-source has exited (each message got its 250 reply),
  drain   until Postfix's queue is empty AND the store counts every new message:
          dovecot: `doveadm mailbox status -A messages INBOX` (the store's own tool);
          cyrus:   IMAP STATUS INBOX MESSAGES as each user (STARTTLS on 127.0.0.1);
          none:    the queue is empty (for the discard ceiling).

Memory: the stack's PSS (every process in the container but the driver and smtp-source)
before the load (idle) and its highest one-second sample until drained (peak).

The queue is polled by reading its directories (cheap, no process started); the store is
counted only once the queue is empty, so counting does not compete with delivery. Prints one
JSON line. Exit 1 on a failed smtp-source or when the timeout passes.
"""

from __future__ import annotations

import argparse
import contextlib
import imaplib
import json
import os
import re
import ssl
import subprocess
import sys
import threading
import time

QUEUE = "/var/spool/postfix"
QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")


def queue_size() -> int:
    total = 0
    for name in QUEUES:
        for _root, _dirs, files in os.walk(os.path.join(QUEUE, name)):
            total += len(files)
    return total


def count_dovecot(args: argparse.Namespace) -> int:
    out = subprocess.run(["doveadm", "-f", "flow", "mailbox", "status", "-A", "messages",
                          "INBOX"], capture_output=True, text=True, check=True).stdout
    return sum(int(n) for n in re.findall(r"messages=(\d+)", out))


def count_cyrus(args: argparse.Namespace) -> int:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # counting on the host itself; the cert is mailctl's CA
    total = 0
    for user in users(args):
        imap = imaplib.IMAP4("127.0.0.1", 143, timeout=30)
        try:
            imap.starttls(ctx)
            imap.login(user, args.password_prefix + user.split("@")[0])
            typ, data = imap.status("INBOX", "(MESSAGES)")
            if typ != "OK":
                raise RuntimeError(f"STATUS INBOX as {user}: {data}")
            total += int(re.search(rb"MESSAGES (\d+)", data[0]).group(1))
        finally:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                imap.logout()
    return total


def cpu_by_process() -> dict[tuple[int, str], tuple[int, int]]:
    """{(pid, name): (own CPU ticks, reaped children's CPU ticks)} from /proc/*/stat."""
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as handle:
                stat = handle.read()
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                argv0 = handle.read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        own, children = int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])
        label = name  # Postfix's lmtp client and Dovecot's lmtp share a name: tell them apart
        if argv0.startswith("dovecot/") or argv0 == "/usr/sbin/dovecot":
            label = argv0.split()[0]
        elif name == "lmtp":
            label = "postfix/lmtp"
        found[(int(pid), label)] = (own, children)
    return found


def breakdown(before: dict, after: dict) -> dict[str, float]:
    """CPU seconds per process name between two snapshots: processes alive at the end
    (their own time, minus what they had at the start), plus what each parent reaped from
    children that exited meanwhile (Postfix's and Dovecot's masters reap their workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for key, (own, children) in after.items():
        own0, children0 = before.get(key, (0, 0))
        out[key[1]] = out.get(key[1], 0) + (own - own0) / tick
        if children - children0:
            name = f"{key[1]} (exited children)"
            out[name] = out.get(name, 0) + (children - children0) / tick
    return {k: round(v, 2) for k, v in sorted(out.items(), key=lambda kv: -kv[1]) if v > 0}


def stack_pss_kib() -> int:
    """The stack's memory: the proportional set size (shared pages split among their users)
    of every process in the container but this driver and its smtp-source load."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/comm") as handle:
                if handle.read().strip() == "smtp-source":
                    continue
            with open(f"/proc/{pid}/smaps_rollup") as handle:
                total += sum(int(line.split()[1]) for line in handle if line.startswith("Pss:"))
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile, or a kernel thread
    return total


class PeakMemory(threading.Thread):
    """Samples stack_pss_kib() every second until stopped; .peak is the highest."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(1.0):
            self.peak = max(self.peak, stack_pss_kib())


def users(args: argparse.Namespace) -> list[str]:
    return [f"u{i}@{args.domain}" for i in range(args.users)]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--store", choices=["dovecot", "cyrus", "none"], required=True)
    p.add_argument("--messages", type=int, default=5000)
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--domain", default="bench.test")
    p.add_argument("--users", type=int, default=10)
    p.add_argument("--password-prefix", default="bench-pw-")
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--breakdown", action="store_true",
                   help="also report CPU seconds per process name (from /proc)")
    args = p.parse_args()
    if args.messages % args.users or args.sessions % args.users:
        p.error("--messages and --sessions must be multiples of --users")
    counter = {"dovecot": count_dovecot, "cyrus": count_cyrus, "none": lambda a: 0}[args.store]

    if queue_size():
        print(json.dumps({"error": "the queue is not empty before the run"}))
        return 1
    before = counter(args)
    idle_kib = stack_pss_kib()
    sampler = PeakMemory()
    sampler.start()
    snapshot = cpu_by_process() if args.breakdown else {}
    per_user, sessions = args.messages // args.users, args.sessions // args.users
    t0 = time.monotonic()
    procs = [subprocess.Popen(["smtp-source", "-s", str(sessions), "-m", str(per_user),
                               "-l", str(args.size), "-f", f"bench@{args.domain}",
                               "-t", user, "127.0.0.1:25"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for user in users(args)]
    errors = []
    for proc in procs:
        out, _ = proc.communicate(timeout=args.timeout)
        if proc.returncode != 0 or out.strip():
            errors.append(out.strip()[-300:] or f"smtp-source exited {proc.returncode}")
    accept = time.monotonic() - t0
    if errors:
        print(json.dumps({"error": "smtp-source: " + " | ".join(errors[:3])}))
        return 1

    delivered, drain = 0, None
    deadline = t0 + args.timeout
    while time.monotonic() < deadline:
        if queue_size() == 0:
            delivered = counter(args) - before
            if delivered >= args.messages or args.store == "none":
                drain = time.monotonic() - t0
                break
            time.sleep(0.2)
        else:
            time.sleep(0.05)
    sampler.done.set()
    sampler.join()
    result = {"store": args.store, "messages": args.messages, "accept_s": round(accept, 3),
              "memory_idle_mib": round(idle_kib / 1024, 1),
              "memory_peak_mib": round(max(sampler.peak, idle_kib) / 1024, 1),
              "delivered": delivered if args.store != "none" else args.messages,
              "drain_s": round(drain, 3) if drain else None}
    if args.breakdown:
        result["cpu_s_by_process"] = breakdown(snapshot, cpu_by_process())
    if drain is None:
        result["error"] = (f"timeout after {args.timeout:.0f}s: {delivered} of "
                           f"{args.messages} in the store, {queue_size()} in the queue")
        print(json.dumps(result))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
