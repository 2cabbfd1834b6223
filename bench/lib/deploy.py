"""bench/deploy: the cost of a deploy, and of rendering, as ratios within one run.

Deploy (one prepared container, mailctl-bench-deploy, Dovecot):
  first deploy          mailctl deploy on a fresh container (packages downloaded, not installed)
  no-change redeploy    mailctl deploy again (must report changed=0)
  floor                 `ansible -m setup` against the same host: connecting and gathering
                        facts, the least any Ansible run there costs
  with Mitogen          the no-change redeploy with Mitogen for Ansible (its mitogen_linear
                        strategy; the inventory says `docker`, the connection Mitogen
                        replaces), when Mitogen is installed in the venv
Redeploy and floor alternate --repeat times; medians are compared. Target: redeploy ≤ 4x.

Render (no host): an inventory of --hosts hosts is generated (host_vars per host: its mail
name and --users users with passwords, so every host has its own password hashes):
  render                `mailctl render -i INV -o DIR`
  floor                 Ansible loading that inventory and resolving every host's
                        variables (InventoryManager + VariableManager.get_vars per host)
Target: render ≤ 2x.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    DOMAIN,
    PREFIX,
    ensure_engine_and_image,
    guarded,
    host_info,
    log,
    mailctl_env,
    mitogen_env,
    remove,
    run,
    start_container,
    tool,
    write_inventory,
)

NAME = PREFIX + "deploy"

FLOOR_LOAD = """
import sys, time
from ansible.parsing.dataloader import DataLoader
from ansible.inventory.manager import InventoryManager
from ansible.vars.manager import VariableManager
t0 = time.monotonic()
loader = DataLoader()
inv = InventoryManager(loader=loader, sources=[sys.argv[1]])
var = VariableManager(loader=loader, inventory=inv)
n = 0
for host in inv.get_hosts():
    v = var.get_vars(host=host, include_hostvars=False)
    n += len(v.get("mail_users", []))
print(len(inv.get_hosts()), n)
"""


def timed(*argv: str, env: dict | None = None) -> tuple[float, str]:
    t0 = time.monotonic()
    proc = run(*argv, env=env)
    return time.monotonic() - t0, proc.stdout + proc.stderr


def changed_count(output: str) -> int | None:
    found = re.findall(r"changed[=: ]+(\d+)", output)
    return sum(int(n) for n in found) if found else None


def bench_deploy(args: argparse.Namespace, workdir: Path) -> list[str]:
    env, with_mitogen = mailctl_env(), mitogen_env()
    inv = write_inventory(workdir / "deploy-inv", {NAME: "dovecot"}, args.users)
    start_container(NAME, reuse=False)
    log(f"{NAME}: first deploy …")
    first, _ = timed(tool("mailctl"), "deploy", "-i", str(inv), env=env)
    redeploys, floors, changed, mitogens, mitogen_changed = [], [], [], [], []
    for i in range(args.repeat):
        log(f"no-change redeploy and floor, {i + 1}/{args.repeat} …")
        took, out = timed(tool("mailctl"), "deploy", "-i", str(inv), env=env)
        redeploys.append(took)
        changed.append(changed_count(out))
        took, _ = timed(tool("ansible"), "-i", str(inv / "hosts.yml"), NAME, "-m", "setup",
                        env=env)
        floors.append(took)
        if with_mitogen:
            mitogen_inv = write_inventory(workdir / "deploy-inv-mitogen", {NAME: "dovecot"},
                                          args.users, connection="docker")
            t0 = time.monotonic()
            # the same local CA and DKIM keys, or each variant would reinstall its own
            proc = run(tool("mailctl"), "deploy", "-i", str(mitogen_inv), "--ca-dir",
                       str(inv / ".mailctl-ca"), env=with_mitogen, check=False)
            mitogens.append(time.monotonic() - t0)
            mitogen_changed.append(changed_count(proc.stdout + proc.stderr)
                                   if proc.returncode == 0 else f"FAILED (exit {proc.returncode})")
            if proc.returncode:
                for line in (proc.stdout + proc.stderr).strip().splitlines()[-10:]:
                    log(f"  mitogen | {line}")
    red, flo = statistics.median(redeploys), statistics.median(floors)
    ratio = red / flo
    mitogen_lines = [
        f"  with Mitogen (median)        {statistics.median(mitogens):7.1f} s   "
        f"{statistics.median(mitogens) / flo:5.1f}x floor   runs: "
        f"{', '.join(f'{t:.1f}' for t in mitogens)} s; reported changed: "
        f"{', '.join('?' if c is None else str(c) for c in mitogen_changed)}",
    ] if mitogens else ["  with Mitogen: not measured (not installed in the venv)"]
    return [
        "deploy (one container, Dovecot, mailctl-base:bookworm-amd64-mail):",
        f"  first deploy                 {first:7.1f} s   {first / flo:5.1f}x floor",
        f"  no-change redeploy (median)  {red:7.1f} s   {ratio:5.1f}x floor   "
        f"runs: {', '.join(f'{t:.1f}' for t in redeploys)} s; reported changed: "
        f"{', '.join('?' if c is None else str(c) for c in changed)}",
        f"  floor: ansible -m setup      {flo:7.1f} s           "
        f"runs: {', '.join(f'{t:.1f}' for t in floors)} s",
        *mitogen_lines,
        f"  redeploy / floor = {ratio:.2f}   target ≤ 4: {'met' if ratio <= 4 else 'MISSED'}",
        *task_profile(inv),
    ]


# One SHA512-CRYPT string for every user of the pre-hashed variant (rendering copies it).
FIXED_HASH = ("{SHA512-CRYPT}$6$benchsaltbenchsa$" + "x" * 86)


def write_big_inventory(directory: Path, hosts: int, users: int, hashed: bool = False) -> Path:
    (directory / "host_vars").mkdir(parents=True)
    (directory / "group_vars" / "all").mkdir(parents=True)
    groups = 10
    lines = ["---", "all:", "  children:"]
    for g in range(groups):
        lines += [f"    site{g}:", "      hosts:"]
        lines += [f"        mail{h}.site{g}.{DOMAIN}:" for h in range(g, hosts, groups)]
    (directory / "hosts.yml").write_text("\n".join(lines) + "\n")
    (directory / "group_vars" / "all" / "main.yml").write_text(
        "---\nansible_connection: local\nmail_backend: dovecot\n"
        "mail_postfix_overrides:\n  smtp_dns_support_level: disabled\n")
    for g in range(groups):
        (directory / "group_vars" / f"site{g}.yml").write_text(
            f"---\nmail_domains: [site{g}.{DOMAIN}]\nmail_message_size_limit: 50M\n")
    for h in range(hosts):
        g = h % groups
        name = f"mail{h}.site{g}.{DOMAIN}"
        body = ["---", f"mail_hostname: {name}", "mail_users:"]
        for u in range(users):
            secret = (f"    password_hash: '{FIXED_HASH}'" if hashed else
                      f"    password: bench-{h}-{u}")
            body += [f"  - address: user{u}.{h}@site{g}.{DOMAIN}", secret, "    quota: 2G"]
        body += ["mail_aliases:", f"  - address: team{h}@site{g}.{DOMAIN}",
                 f"    to: [user0.{h}@site{g}.{DOMAIN}]"]
        (directory / "host_vars" / f"{name}.yml").write_text("\n".join(body) + "\n")
    return directory


def bench_render(args: argparse.Namespace, workdir: Path) -> list[str]:
    env = mailctl_env()
    variants = {"password": write_big_inventory(workdir / "render-inv", args.hosts,
                                                args.render_users),
                "password_hash": write_big_inventory(workdir / "render-inv-hashed", args.hosts,
                                                     args.render_users, hashed=True)}
    renders: dict[str, list[float]] = {k: [] for k in variants}
    floors = []
    for i in range(args.repeat):
        log(f"render (both variants) and floor, {i + 1}/{args.repeat} …")
        for key, inv in variants.items():
            out = workdir / f"rendered-{key}-{i}"
            took, _ = timed(tool("mailctl"), "render", "-i", str(inv), "-o", str(out),
                            env=env)
            renders[key].append(took)
        took, _ = timed(tool("python"), "-c", FLOOR_LOAD, str(variants["password"]), env=env)
        floors.append(took)
    files = sum(1 for p in (workdir / "rendered-password-0").rglob("*") if p.is_file())
    flo = statistics.median(floors)
    ren = statistics.median(renders["password"])
    pre = statistics.median(renders["password_hash"])
    return [
        f"render ({args.hosts} hosts, {args.render_users} users each, {files} files written):",
        f"  mailctl render, users with `password` (median)       {ren:6.1f} s   {ren / flo:5.1f}x "
        f"floor   runs: {', '.join(f'{t:.1f}' for t in renders['password'])} s",
        f"  mailctl render, users with `password_hash` (median)  {pre:6.1f} s   {pre / flo:5.1f}x "
        f"floor   runs: {', '.join(f'{t:.1f}' for t in renders['password_hash'])} s",
        f"  floor: Ansible loads the inventory + each host's vars {flo:5.1f} s   runs: "
        f"{', '.join(f'{t:.1f}' for t in floors)} s",
        f"  render / floor = {ren / flo:.2f}   target ≤ 2: "
        f"{'met' if ren / flo <= 2 else 'MISSED'}   (with password_hash: {pre / flo:.2f})",
    ]


def task_profile(inventory: Path) -> list[str]:
    """One more no-change redeploy with Ansible's profile_tasks callback: the costliest
    tasks."""
    env = mailctl_env()
    env["ANSIBLE_CALLBACKS_ENABLED"] = "ansible.posix.profile_tasks"
    env["PROFILE_TASKS_TASK_OUTPUT_LIMIT"] = "8"
    _, out = timed(tool("mailctl"), "deploy", "-v", "-i", str(inventory), env=env)
    lines = out.splitlines()
    start = next((i for i, ln in enumerate(lines) if "TASKS RECAP" in ln), None)
    if start is None:
        return []
    picked = [ln.strip() for ln in lines[start + 1:] if re.search(r"-{3,} +[0-9.]+s$", ln)]
    return ["  costliest tasks of one more no-change redeploy (profile_tasks):"] + [
        "    " + re.sub(r" -{3,} ", "  ", ln) for ln in picked[:8]]


def main() -> int:
    p = argparse.ArgumentParser(prog="bench/deploy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3, help="redeploy/floor and render/floor pairs")
    p.add_argument("--users", type=int, default=10, help="users in the deployed inventory")
    p.add_argument("--hosts", type=int, default=1000, help="hosts in the render inventory")
    p.add_argument("--render-users", type=int, default=3, help="users per host for render")
    p.add_argument("--only", choices=["deploy", "render"], default=None)
    p.add_argument("--keep", action="store_true", help="leave the container running")
    args = p.parse_args()
    print(f"bench/deploy — {host_info()}")
    report: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mailctl-bench-") as tmp:
        if args.only in (None, "deploy"):
            ensure_engine_and_image()
            try:
                report += bench_deploy(args, Path(tmp))
            finally:
                if not args.keep:
                    remove([NAME])
        if args.only in (None, "render"):
            report += bench_render(args, Path(tmp))
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
