"""The one recipe for a local systemd container host, shared by the sandbox and the bench
scripts (molecule's scenarios spell the same options in their platform blocks): the images
built from debootstrap by images/build.sh, the options systemd needs as PID 1 without
--privileged, and waiting for it to finish booting."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable

from .errors import MailctlError
from .paths import share_dir

BASE_IMAGE = "mailctl-base:bookworm-amd64"
# The base image plus the mail packages' .deb files in apt's cache and apt's lists kept:
# a first deploy installs without downloading (the sandbox and the bench use it).
MAIL_IMAGE = "mailctl-base:bookworm-amd64-mail"

# systemd as PID 1 in a container (--privileged is refused on these machines); NET_ADMIN
# lets fail2ban ban addresses with nftables (in the container's own network namespace).
SYSTEMD_OPTIONS = ["--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN",
                   "--security-opt", "seccomp=unconfined",
                   "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--cgroupns=host",
                   "--tmpfs", "/run", "--tmpfs", "/run/lock"]


def docker(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    if shutil.which("docker") is None:
        raise MailctlError("docker is not installed: run scripts/bootstrap (or apt-get install "
                           "docker.io)")
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, check=False,
                          timeout=timeout)
    if check and proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise MailctlError(f"docker {args[0]} failed: {last}")
    return proc


def ensure_engine() -> None:
    if docker("info", check=False).returncode != 0:
        raise MailctlError("the Docker engine is not running: start it (scripts/bootstrap "
                           "does, or run `dockerd &` as root)")


def build_script() -> str:
    """images/build.sh in an installed wheel, molecule/images/build.sh in a checkout."""
    for candidate in (share_dir() / "images", share_dir() / "molecule" / "images"):
        if (candidate / "build.sh").is_file():
            return str(candidate / "build.sh")
    raise MailctlError("images/build.sh not found: reinstall mailctl")


def ensure_image(image: str, log: Callable[[str], None]) -> None:
    """Build `image` (and the images under it) from debootstrap unless it exists."""
    if docker("image", "inspect", image, check=False).returncode == 0:
        return
    args = ["amd64"] + (["--mail"] if image == MAIL_IMAGE else [])
    log(f"building the image {image} from debootstrap (a few minutes, once)")
    if subprocess.run(["bash", build_script(), *args], check=False).returncode != 0:
        raise MailctlError(f"building {image} failed (see the output above)")
    if docker("image", "inspect", image, check=False).returncode != 0:
        raise MailctlError(f"{image} is missing after {build_script()} {' '.join(args)}")


def run_systemd(name: str, image: str, hostname: str, *extra: str) -> None:
    """Start a detached systemd container; `extra` are more `docker run` options."""
    docker("run", "-d", "--name", name, "--hostname", hostname, *SYSTEMD_OPTIONS, *extra,
           image, "/sbin/init")


def wait_booted(name: str, timeout: float = 90) -> None:
    """Until systemd in `name` has started its units ('running' or 'degraded')."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = docker("exec", name, "systemctl", "is-system-running", check=False).stdout
        if state.strip() in ("running", "degraded"):
            return
        time.sleep(0.3)
    raise MailctlError(f"{name}: systemd did not finish booting in {timeout:.0f}s")
