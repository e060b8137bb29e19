"""The local stack: Kafka, PostgreSQL, fake-gcs-server and bqemulator on 127.0.0.1.

Real services started as local processes (no Docker): ``Stack(settings).up()``.
"""

from stack.core import ServiceStatus, Stack
from stack.errors import StackError

__all__ = ["ServiceStatus", "Stack", "StackError"]
