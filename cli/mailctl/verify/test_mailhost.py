"""What a deployed mail host must do: packages, services, listeners, TLS, and mail flowing
from SMTP submission through LMTP into the store and back out over IMAP and POP3."""

from __future__ import annotations

import pytest

SERVICE_PORTS = [25, 465, 587, 143, 993, 110, 995, 4190]
TLS_PROBES = [(25, "smtp"), (587, "smtp"), (465, "implicit"), (143, "imap"),
              (993, "implicit"), (110, "pop3"), (995, "implicit"), (4190, "sieve")]
WAIT = 60  # seconds a message may take from submission to the mailbox


def test_packages_installed(host, components):
    wanted = [p for c in components for p in c.packages]
    missing = [p for p in wanted if not host.package(p).is_installed]
    assert not missing, f"packages not installed: {missing}"


@pytest.mark.parametrize("component", ["postfix", "store"])
def test_service_running(host, mail, components, component):
    by_name = {c.name: c for c in components}
    wanted = by_name["postfix" if component == "postfix" else mail.backend]
    if host.file("/run/systemd/system").is_directory:  # booted with systemd
        assert host.service(wanted.service).is_running, f"{wanted.service} is not running"
    else:
        # SysV init (e.g. ppc64le under qemu-user, where init scripts' pid checks do not
        # recognise emulated binaries): look for the daemon in the process list.
        assert host.run(f"pgrep -f {wanted.process}").rc == 0, \
            f"{wanted.service} ({wanted.process}) is not running"


@pytest.mark.parametrize("port", SERVICE_PORTS)
def test_listening(host, port):
    assert host.socket(f"tcp://0.0.0.0:{port}").is_listening or \
        host.socket(f"tcp://:::{port}").is_listening, f"nothing listens on port {port}"


def test_store_sockets(host, components):
    sockets = [c.socket for c in components if c.socket]
    assert sockets, "the registry names no socket for this host's components"
    for path in sockets:
        assert host.file(path).is_socket, f"no socket at {path}"


@pytest.mark.parametrize(("port", "mode"), TLS_PROBES)
def test_certificate_matches_host_and_ca(client, port, mode):
    result = client("cert", port, mode)
    assert result["ok"], f"TLS on {port} ({mode}): {result.get('error')}"
    assert result["version"] in ("TLSv1.2", "TLSv1.3")


def test_submission_reads_back_over_imap_and_pop3(client, two_users, subject):
    sender, rcpt = two_users
    sent = client("submit", sender.address, sender.password, sender.address, rcpt.address,
                  subject)
    assert sent["ok"], f"submission on 587 failed: {sent}"
    imap = client("imap", rcpt.address, rcpt.password, subject, WAIT)
    assert imap["ok"], imap.get("error")
    pop3 = client("pop3", rcpt.address, rcpt.password, subject, WAIT)
    assert pop3["ok"], pop3.get("error")


def test_port25_delivers_to_local_user_without_auth(client, two_users, subject):
    _, rcpt = two_users
    result = client("smtp25", "someone@remote.mailctl.test", rcpt.address, subject)
    assert result["ok"] and result["rcpt_code"] == 250 and result["accepted"], result
    imap = client("imap", rcpt.address, rcpt.password, subject, WAIT)
    assert imap["ok"], imap.get("error")


def test_unknown_local_recipient_rejected_at_rcpt(client, mail, subject):
    catchalls = {a.domain for a in mail.aliases if a.is_catchall}
    plain = [d for d in mail.domains if d not in catchalls]
    if not plain:
        pytest.fail("every domain has a catch-all, so no address is unknown: nothing to test")
    domain = plain[0]
    result = client("smtp25", "someone@remote.mailctl.test",
                    f"no-such-user-{subject}@{domain}", subject)
    assert result["ok"], result
    assert 500 <= result["rcpt_code"] < 600, f"unknown recipient not refused: {result}"


def test_installed_files_are_what_mailctl_renders(host, mail, mail_inventory):
    """The single source of truth: every file `mailctl render` writes for this host is on the
    host byte for byte (secrets compared by checksum, so they are never printed)."""
    import hashlib
    import os

    from mailctl.render import render_host

    differing = []
    _, topology = mail_inventory.mail_plan(mail.name, os.environ.get("MAILCTL_BACKEND"))
    for rendered in render_host(mail, topology):
        installed = host.file(rendered.path)
        if not installed.exists:
            differing.append(f"{rendered.path}: missing")
            continue
        expected = hashlib.sha256(rendered.content.encode()).hexdigest()
        if installed.sha256sum != expected:
            differing.append(f"{rendered.path}: differs from the render")
        elif (installed.user, installed.group, f"{installed.mode:04o}") != (
                rendered.owner, rendered.group, rendered.mode):
            differing.append(f"{rendered.path}: owner/group/mode "
                             f"{installed.user}:{installed.group} {installed.mode:04o}, "
                             f"expected {rendered.owner}:{rendered.group} {rendered.mode}")
    assert not differing, "; ".join(differing)


def test_architecture(host):
    """The host's CPU architecture; MAILCTL_EXPECT_ARCH (set by the ppc64le scenario) makes
    sure an emulated PowerLinux run cannot pass on x86_64 by accident."""
    import os

    arch = host.system_info.arch
    print(f"host architecture: {arch}")
    expected = os.environ.get("MAILCTL_EXPECT_ARCH")
    if expected:
        assert arch == expected
    else:
        assert arch in ("x86_64", "ppc64le", "aarch64"), f"unsupported architecture {arch}"
