"""bench/throughput: mail throughput of the deployed stack, in one run, as ratios.

Configurations, each in its own container (mailctl-bench-*) on this host:
  (a) mailctl, Dovecot       mailctl deploy, templates and defaults as shipped
  (b) mailctl, Cyrus         the same inventory with mail_backend: cyrus
  (c) baseline               Debian's stock Postfix + Dovecot with an administrator's hand
                             edits for LMTP delivery (bench/baseline/)
  (d) ceiling                (a)'s Postfix with virtual_transport = discard: and no
                             milters (queue files still written and fsynced; nothing
                             delivered)
  (e) (a) without milters    (a) with smtpd_milters and non_smtpd_milters emptied for the
                             run: what OpenDKIM signing costs (the load comes from
                             127.0.0.1, in mynetworks, so every message is signed;
                             OpenDMARC does not judge mynetworks)
  (f) (a) without the        (a) with Dovecot's sieve_before (the duplicate guard,
      duplicate guard        mail_sieve.duplicates) commented out for the run: what dropping
                             a redelivered Message-ID costs

Each measurement: bench/lib/drive.py inside the container sends the messages with
smtp-source to 127.0.0.1:25 and times accept and drain (store counted by doveadm / IMAP).
Rounds interleave the configurations (a b c d, a b c d, ...) so a burst of load from
elsewhere on this shared machine hits them alike; the best round of each is reported, with
the container's CPU time per message (cgroup cpuacct), which noise affects much less.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    BENCH,
    DOMAIN,
    PASSWORD_PREFIX,
    PREFIX,
    BenchError,
    deploy,
    docker,
    ensure_engine_and_image,
    guarded,
    host_info,
    log,
    remove,
    start_container,
    write_inventory,
)

CONTAINERS = {"a": PREFIX + "dovecot", "b": PREFIX + "cyrus", "c": PREFIX + "baseline"}
LABELS = {"a": "(a) mailctl, Dovecot", "b": "(b) mailctl, Cyrus",
          "c": "(c) baseline: stock Debian + hand edits", "d": "(d) ceiling: Postfix → discard",
          "e": "(e) (a) without its milters", "f": "(f) (a) without the duplicate guard"}
STORE = {"a": "dovecot", "b": "cyrus", "c": "dovecot", "d": "none", "e": "dovecot",
         "f": "dovecot"}
# measured on (a)'s container with these main.cf settings for the run
NO_MILTERS = {"smtpd_milters": "", "non_smtpd_milters": ""}
VARIANTS = {"d": {"virtual_transport": "discard:", **NO_MILTERS},
            "e": NO_MILTERS, "f": {}}
# ... and these dovecot.conf settings commented out
DOVECOT_OFF = {"f": ("sieve_before",)}
TARGETS = [("a", "c", 1.3), ("a", "d", 0.6), ("b", "a", 1.0)]
COMPARISONS = [("a", "e", "what the milters leave of (a)'s throughput"),
               ("a", "f", "what the duplicate guard leaves of (a)'s throughput")]


def cpu_ns(name: str) -> int:
    cid = docker("inspect", "-f", "{{.Id}}", name).stdout.strip()
    return int(Path(f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage").read_text())


def prepare(configs: set[str], args: argparse.Namespace, workdir: Path) -> None:
    mailctl_hosts = {CONTAINERS[k]: STORE[k] for k in "ab" if k in configs or
                     (k == "a" and configs & set(VARIANTS))}
    for key, name in CONTAINERS.items():
        if name in mailctl_hosts or (key == "c" and "c" in configs):
            reused = start_container(name, reuse=args.reuse)
            log(f"{name}: {'reused' if reused else 'started'}")
    if mailctl_hosts:
        inv = write_inventory(workdir / "inventory", mailctl_hosts, args.users)
        log(f"mailctl deploy of {', '.join(mailctl_hosts)} …")
        took = deploy(inv, "--forks", str(len(mailctl_hosts)))
        log(f"deployed in {took:.0f}s")
    if "c" in configs:
        name = CONTAINERS["c"]
        if docker("exec", name, "test", "-e", "/etc/dovecot/local.conf",
                  check=False).returncode != 0:
            log(f"{name}: installing stock Postfix + Dovecot and the hand edits …")
            docker("cp", str(BENCH / "baseline"), f"{name}:/root/baseline")
            docker("exec", "-e", f"BENCH_USERS={args.users}", name, "sh",
                   "/root/baseline/setup.sh", timeout=600)
    for key in configs:
        name = CONTAINERS.get(key, CONTAINERS["a"])
        docker("cp", str(BENCH / "lib" / "drive.py"), f"{name}:/root/drive.py")


def set_variant(key: str, on: bool) -> None:
    """Give (a) the main.cf settings and the dovecot.conf lines of variant `key` (on), or its
    own files back."""
    settings = " ".join(f"'{k} = {v}'" for k, v in VARIANTS[key].items())
    script = ("cp -p /etc/postfix/main.cf /root/main.cf.bench && "
              "cp -p /etc/dovecot/dovecot.conf /root/dovecot.conf.bench && "
              + (f"postconf -e {settings} && " if settings else "")
              + "".join(f"sed -i 's/^\\( *\\){name} =/\\1#{name} =/' "
                        "/etc/dovecot/dovecot.conf && " for name in DOVECOT_OFF.get(key, ()))
              + "postfix reload && doveadm reload" if on else
              "cp -p /root/main.cf.bench /etc/postfix/main.cf && "
              "cp -p /root/dovecot.conf.bench /etc/dovecot/dovecot.conf && "
              "postfix reload && doveadm reload")
    docker("exec", CONTAINERS["a"], "sh", "-c", script + " >/dev/null 2>&1")
    time.sleep(2)  # let master restart qmgr and the smtpd processes pick up the change


def measure(key: str, args: argparse.Namespace, others: list[str]) -> dict:
    """One measurement; the other bench containers are paused (frozen) meanwhile."""
    name = CONTAINERS.get(key, CONTAINERS["a"])
    if key in VARIANTS:
        set_variant(key, True)
    paused = [n for n in others if n != name]
    for other in paused:
        docker("pause", other)
    try:
        before = cpu_ns(name)
        proc = docker("exec", name, "python3", "/root/drive.py", "--store", STORE[key],
                      "--messages", str(args.messages), "--sessions", str(args.sessions),
                      "--size", str(args.size), "--users", str(args.users),
                      "--domain", DOMAIN, "--password-prefix", PASSWORD_PREFIX,
                      "--timeout", str(args.timeout), "--breakdown", check=False,
                      timeout=args.timeout + 120)
        cpu = cpu_ns(name) - before
    finally:
        for other in paused:
            docker("unpause", other, check=False)
        if key in VARIANTS:
            set_variant(key, False)
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise BenchError(f"{LABELS[key]}: drive.py printed no result: "
                         f"{(proc.stdout + proc.stderr).strip()[-500:]}") from None
    if proc.returncode != 0 or result.get("error"):
        raise BenchError(f"{LABELS[key]}: {result.get('error', proc.stderr.strip()[-300:])}")
    result["cpu_ms_per_msg"] = cpu / 1e6 / args.messages
    result["rate"] = args.messages / result["drain_s"]
    return result


def breakdown_table(best: dict[str, dict], messages: int) -> list[str]:
    """CPU per message by process, inside each container (from /proc, like pidstat)."""
    names: dict[str, float] = {}
    for res in best.values():
        for name, secs in res.get("cpu_s_by_process", {}).items():
            names[name] = max(names.get(name, 0), secs)
    shown = [n for n, secs in sorted(names.items(), key=lambda kv: -kv[1])
             if secs * 1000 / messages >= 0.05]
    keys = list(best)
    lines = [f"  {'process (ms CPU per message)':38}" + "".join(f"{'(' + k + ')':>8}"
                                                            for k in keys)]
    for name in shown:
        row = [best[k].get("cpu_s_by_process", {}).get(name, 0) * 1000 / messages
               for k in keys]
        lines.append(f"  {name[:38]:38}" + "".join(f"{v:8.2f}" for v in row))
    return lines


def main() -> int:
    p = argparse.ArgumentParser(prog="bench/throughput", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=5000)
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--size", type=int, default=4096, help="bytes per message")
    p.add_argument("--users", type=int, default=10, help="recipients the load is spread over")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds (best is kept)")
    p.add_argument("--only", default="abcdef", help="configurations to run, e.g. 'ad'")
    p.add_argument("--timeout", type=float, default=240, help="per measurement, seconds")
    p.add_argument("--reuse", action="store_true",
                   help="reuse running bench containers (redeploying mailctl's)")
    p.add_argument("--keep", action="store_true", help="leave the containers running")
    args = p.parse_args()
    configs = [k for k in "abcdef" if k in args.only]
    if not configs:
        p.error("--only: nothing to run")

    print(f"bench/throughput — {host_info()}")
    print(f"load: {args.messages} messages of {args.size} B, {args.sessions} SMTP sessions, "
          f"{args.users} recipients, smtp-source → 127.0.0.1:25 inside each container; "
          f"{args.rounds} interleaved round(s), best kept")
    ensure_engine_and_image()
    used = sorted({CONTAINERS.get(k, CONTAINERS["a"]) for k in configs})
    results: dict[str, list[dict]] = {k: [] for k in configs}
    try:
        with tempfile.TemporaryDirectory(prefix="mailctl-bench-") as tmp:
            prepare(set(configs), args, Path(tmp))
            for rnd in range(1, args.rounds + 1):
                for key in configs:
                    res = measure(key, args, used)
                    results[key].append(res)
                    log(f"round {rnd} {LABELS[key]}: {res['rate']:.0f} msg/s "
                        f"(accept {res['accept_s']:.1f}s, drain {res['drain_s']:.1f}s, "
                        f"{res['cpu_ms_per_msg']:.2f} ms CPU/msg)")
    finally:
        if not args.keep:
            remove(used)

    print()
    print(f"{'configuration':42} {'msg/s':>7} {'accept s':>9} {'drain s':>8} "
          f"{'CPU ms/msg':>11}  rounds (msg/s)")
    best = {}
    for key in configs:
        runs = results[key]
        top = max(runs, key=lambda r: r["rate"])
        best[key] = top
        spread = ", ".join(f"{r['rate']:.0f}" for r in runs)
        cpu = statistics.median(r["cpu_ms_per_msg"] for r in runs)
        top["cpu_median"] = cpu
        print(f"{LABELS[key]:42} {top['rate']:7.0f} {top['accept_s']:9.1f} "
              f"{top['drain_s']:8.1f} {cpu:11.2f}  {spread}")
    print()
    print("ratios (throughput, best rounds; CPU per message, medians — lower CPU is better):")
    for num, den, target in TARGETS:
        if num in best and den in best:
            ratio = best[num]["rate"] / best[den]["rate"]
            cpu_ratio = best[den]["cpu_median"] / best[num]["cpu_median"]
            verdict = "met" if ratio >= target else "MISSED"
            print(f"  ({num})/({den}) = {ratio:.2f}   target ≥ {target}: {verdict}"
                  f"   (by CPU per message: {cpu_ratio:.2f})")
    for num, den, meaning in COMPARISONS:
        if num in best and den in best:
            ratio = best[num]["rate"] / best[den]["rate"]
            cpu_ratio = best[den]["cpu_median"] / best[num]["cpu_median"]
            print(f"  ({num})/({den}) = {ratio:.2f}   {meaning}"
                  f"   (by CPU per message: {cpu_ratio:.2f})")
    print()
    print("memory: the stack's PSS inside the container (all processes but the load driver), "
          "MiB — idle before the load, and the highest one-second sample under it (most of "
          "each round):")
    for key in configs:
        runs = results[key]
        print(f"  {LABELS[key]:42} idle {min(r['memory_idle_mib'] for r in runs):7.1f}"
              f"   under load {max(r['memory_peak_mib'] for r in runs):7.1f}")
    print()
    print("where the CPU goes, best round of each (per process inside the container, from "
          "/proc; 'exited children' = workers that ended during the run, mostly Postfix's "
          "cleanup and smtpd, reaped by master):")
    print("\n".join(breakdown_table(best, args.messages)))
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
