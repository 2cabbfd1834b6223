"""The wheel: built from the checkout, installed into a fresh venv (dependencies from the
package index), and working from an unrelated directory with its own copy of the templates."""

from __future__ import annotations

import re
import subprocess
import zipfile
from pathlib import Path

import pytest
from conftest import EXAMPLE, REPO, VENV_BIN

pytestmark = pytest.mark.slow


def run(argv: list[str | Path], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, check=False)
    assert proc.returncode == 0, f"{argv}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    run([VENV_BIN / "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-w", dist,
         REPO], cwd=dist)
    wheels = list(dist.glob("mailctl-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """bin/ of a fresh venv (system python, no site packages) with the wheel installed."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    run(["/usr/bin/python3", "-m", "venv", venv], cwd=venv.parent)
    run([venv / "bin/pip", "install", "--disable-pip-version-check", "-q", wheel],
        cwd=venv.parent, timeout=900)
    return venv / "bin"


def test_wheel_contents(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("mailctl/__init__.py", "mailctl/cli.py", "mailctl/render.py",
                     "mailctl/_share/templates/components.yml",
                     "mailctl/_share/templates/postfix/main.cf.j2",
                     "mailctl/_share/templates/dovecot/dovecot.conf.j2",
                     "mailctl/_share/templates/cyrus/imapd.conf.j2",
                     "mailctl/_share/roles/mail_common/vars/Debian.yml",
                     "mailctl/_share/roles/mail_common/vars/RedHat.yml",
                     "mailctl/_share/roles/mail_common/vars/Suse.yml",
                     "mailctl/_share/inventories/example/hosts.yml"):
        assert required in names, required
    assert not any(n.startswith(("tests/", "cli/", ".venv/")) for n in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "mailctl = mailctl.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_render_from_elsewhere(installed, tmp_path):
    out = tmp_path / "out"
    proc = run([installed / "mailctl", "render", "-i", EXAMPLE, "-o", out], cwd=Path("/tmp"))
    assert re.search(r"^mail1\.example\.test: \d+ files -> ", proc.stdout, re.M)
    assert (out / "mail1.example.test/etc/dovecot/dovecot.conf").is_file()
    assert (out / "mail1.example.test/etc/dovecot/users").is_file()
    assert (out / "mail2.example.test/etc/imapd.conf").is_file()
    assert (out / "mail2.example.test/etc/cyrus.conf").is_file()
    # same bytes as the checkout renders
    ref = tmp_path / "ref"
    run([VENV_BIN / "mailctl", "render", "-i", EXAMPLE, "-o", ref], cwd=Path("/tmp"))
    for path in ref.rglob("*"):
        if path.is_file():
            assert (out / path.relative_to(ref)).read_bytes() == path.read_bytes(), path


def test_installed_uses_its_own_share_dir(installed, tmp_path):
    proc = run([installed / "python", "-c",
                "import mailctl.paths as p; print(p.templates_dir()); print(p.inventories_dir())"],
               cwd=Path("/tmp"))
    templates, inventories = proc.stdout.splitlines()
    assert "/site-packages/mailctl/_share/templates" in templates
    assert not templates.startswith(str(REPO))
    # the example inventory shipped inside the wheel validates too
    proc = run([installed / "mailctl", "validate", "-i", inventories + "/example"], cwd=tmp_path)
    assert proc.stdout.count(": ok (") == 2


def test_installed_version(installed):
    proc = run([installed / "mailctl", "--version"], cwd=Path("/tmp"))
    assert proc.stdout.startswith("mailctl, version ")
