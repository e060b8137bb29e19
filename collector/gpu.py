"""NVIDIA GPUs through NVML (``nvidia-ml-py``): absent, silently, where there are none.

Most hosts have no NVIDIA driver; finding that out must cost one failed library
load at start and nothing per sample, and must not log anything.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from collector.sampler import present

log = logging.getLogger(__name__)
T = TypeVar("T")

LINUX_DRIVER = Path("/proc/driver/nvidia")
"""Present wherever the NVIDIA kernel driver is loaded (containers given GPUs included).
Without it NVML finds nothing, and not importing nvidia-ml-py to learn that keeps
1.5 MB out of the collector's memory."""


class NvidiaGpus:
    """The NVIDIA GPUs of this host; :meth:`open` returns ``None`` when there are none."""

    def __init__(self, nvml: Any, handles: list[Any]) -> None:
        self._nvml = nvml
        self._handles = handles
        self._static = [
            (
                self._read(nvml.nvmlDeviceGetName, handle) or f"GPU {index}",
                self._read(nvml.nvmlDeviceGetUUID, handle) or "",
            )
            for index, handle in enumerate(handles)
        ]

    @classmethod
    def open(cls, driver: Path = LINUX_DRIVER) -> NvidiaGpus | None:
        """Initialise NVML; ``None`` without the library, a driver or a device."""
        if sys.platform.startswith("linux") and not driver.exists():
            return None
        try:
            import pynvml
        except ImportError:
            return None
        try:
            pynvml.nvmlInit()
        except (pynvml.NVMLError, OSError):
            return None
        try:
            count = pynvml.nvmlDeviceGetCount()
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except pynvml.NVMLError as exc:
            log.warning("NVML found a driver but no usable GPU (%s); GPUs not reported", exc)
            handles = []
        if not handles:
            pynvml.nvmlShutdown()
            return None
        return cls(pynvml, handles)

    def read(self) -> list[dict[str, Any]]:
        """The ``gpus`` group (:class:`~schemas.metrics.Gpu` each); a figure the
        device does not report is absent."""
        nvml = self._nvml
        gpus = []
        for index, (handle, (name, uuid)) in enumerate(
            zip(self._handles, self._static, strict=True)
        ):
            utilization = self._read(nvml.nvmlDeviceGetUtilizationRates, handle)
            memory = self._read(nvml.nvmlDeviceGetMemoryInfo, handle)
            temperature = self._read(
                nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU
            )
            power_mw = self._read(nvml.nvmlDeviceGetPowerUsage, handle)
            limit_mw = self._read(nvml.nvmlDeviceGetEnforcedPowerLimit, handle)
            figures = (
                ("utilization_percent", None if utilization is None else float(utilization.gpu)),
                ("memory_used_bytes", None if memory is None else int(memory.used)),
                ("memory_total_bytes", None if memory is None else int(memory.total)),
                ("temperature_celsius", None if temperature is None else float(temperature)),
                # NVML reports milliwatts.
                ("power_watts", None if power_mw is None else power_mw / 1000.0),
                ("power_limit_watts", None if limit_mw is None else limit_mw / 1000.0),
            )
            gpus.append(present((("index", index), ("name", name), ("uuid", uuid), *figures)))
        return gpus

    def close(self) -> None:
        with contextlib.suppress(self._nvml.NVMLError):
            self._nvml.nvmlShutdown()

    def _read(self, call: Callable[..., T], *args: Any) -> Any:
        # NVML raises NotSupported for figures a board lacks (power on many laptops) and
        # GpuIsLost after a driver fault: either way that one figure is absent, the rest stay.
        try:
            value: Any = call(*args)
        except self._nvml.NVMLError:
            return None
        # Older nvidia-ml-py releases return names and UUIDs as bytes.
        return value.decode() if isinstance(value, bytes) else value
