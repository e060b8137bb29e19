"""hoststream's settings, a class per role, all read from ``HOSTSTREAM_*`` variables.

``load(WorkerSettings)`` reads one role's; :data:`ROLES` names them all. A
``HOSTSTREAM_*`` variable that is no role's setting is an error, so a typo cannot
silently fall back to a default; one that another role reads is not (one
environment often serves a host's collector, worker and stack alike).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from config.collector import CollectorSettings
from config.common import LOOPBACK, CommonSettings
from config.services import local_postgres_dsn
from config.stack import StackSettings
from config.warehouse import WarehouseSettings
from config.worker import WorkerSettings

__all__ = [
    "LOOPBACK",
    "ROLES",
    "AllSettings",
    "CollectorSettings",
    "StackSettings",
    "UnknownSetting",
    "WarehouseSettings",
    "WorkerSettings",
    "load",
    "local_postgres_dsn",
]

ROLES: dict[str, type[CommonSettings]] = {
    "collector": CollectorSettings,
    "worker": WorkerSettings,
    "stack": StackSettings,
    "warehouse": WarehouseSettings,
}
"""Each role's settings class, by the name ``hoststream config`` shows."""

S = TypeVar("S", bound=CommonSettings)


class AllSettings(CollectorSettings, WorkerSettings, StackSettings, WarehouseSettings):
    """Every role's settings in one: ``hoststream run`` runs the stack, a collector and a
    worker on one machine, and the tests and benchmarks start them from one object."""

    unused_endpoints: ClassVar[frozenset[str]] = frozenset()


class UnknownSetting(ValueError):
    """A ``HOSTSTREAM_*`` variable that names no setting: most likely a typo."""


def load(role: type[S], environ: Mapping[str, str] | None = None, **overrides: Any) -> S:
    """Read one role's settings from the environment; ``overrides`` win over it.

    Raises :class:`UnknownSetting` for a ``HOSTSTREAM_*`` variable that is no
    role's setting, and pydantic's ``ValidationError`` for a bad value.
    """
    environ = os.environ if environ is None else environ
    known = {f"HOSTSTREAM_{name.upper()}" for name in AllSettings.model_fields}
    for variable in sorted(environ):
        if variable.upper().startswith("HOSTSTREAM_") and variable.upper() not in known:
            close = difflib.get_close_matches(variable.upper(), known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise UnknownSetting(f"{variable} is not a hoststream setting{hint}")
    return role(**overrides)
