"""The private Faust and aiokafka names the runtime relies on, with what it expects of them.

faust-streaming and aiokafka are pinned with ``==``: their internals may change in any
release, and an override of a renamed private method would silently stop being
called. tests/unit/test_runtime_internals.py checks each entry against the installed
versions, and that no module outside runtime/ names one of them, so an upgrade
fails loudly here rather than quietly in production.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PrivateName:
    """A private name of ``owner`` (``module:Class``, or ``module`` for a module global)."""

    owner: str
    name: str
    signature: str | None
    """``str(inspect.signature(...))`` for a method; None for an attribute or global."""
    use: str
    """Where and why the runtime uses it."""


_CONSUMER = "faust.transport.consumer:Consumer"
_THREAD = "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread"
_TP = "faust.types.tuples.TP"

PRIVATE_NAMES = (
    PrivateName(
        _CONSUMER,
        "_drain_messages",
        "(self, fetcher: mode.types.services.ServiceT) -> None",
        "consumer.py replaces the per-record delivery loop with a batch per fetch",
    ),
    PrivateName(
        _CONSUMER,
        "_new_offset",
        f"(self, tp: {_TP}) -> Optional[int]",
        "consumer.py refuses commits past offsets not acknowledged",
    ),
    PrivateName(
        _CONSUMER,
        "_wait_next_records",
        f"(self, timeout: float) -> Tuple[Optional[Mapping[{_TP}, List[Any]]], "
        f"Optional[Set[{_TP}]]]",
        "consumer.py fetches without Faust's per-record generator",
    ),
    PrivateName(
        _CONSUMER,
        "_to_message",
        f"(self, tp: {_TP}, record: Any) -> faust.types.tuples.ConsumerMessage",
        "consumer.py and batch.py build a Faust message for a record when one is needed",
    ),
    PrivateName(
        "faust.transport.consumer:ThreadDelegateConsumer",
        "_new_consumer_thread",
        "(self) -> faust.transport.consumer.ConsumerThread",
        "consumer.py counts seeks in a consumer thread of its own",
    ),
    PrivateName(
        "faust.transport.consumer:ThreadDelegateConsumer",
        "_thread",
        None,
        "consumer.py reads its consumer thread's seek count",
    ),
    *(
        PrivateName(_CONSUMER, name, None, "consumer.py keeps Faust's offset books")
        for name in (
            "_read_offset",
            "_committed_offset",
            "_acked",
            "_acked_index",
            "_n_acked",
            "_gap",
            "_waiting_for_ack",
            "_commit_every",
            "_buffered_partitions",
        )
    ),
    PrivateName(
        _THREAD,
        "_create_worker_consumer",
        "(self, transport: 'Transport') -> aiokafka.consumer.consumer.AIOKafkaConsumer",
        "consumer.py shortens the broker's fetch wait",
    ),
    PrivateName(
        _THREAD,
        "_fetch_records",
        "(self, consumer: aiokafka.consumer.consumer.AIOKafkaConsumer, "
        f"active_partitions: Set[{_TP}], timeout: Optional[float] = None, "
        f"max_records: Optional[int] = None) -> Mapping[{_TP}, List[Any]]",
        "consumer.py notes the seek count when a fetch's records leave aiokafka",
    ),
    PrivateName(
        _THREAD,
        "_seek_wait",
        "(self, consumer: aiokafka.consumer.consumer.AIOKafkaConsumer, "
        f"partitions: Mapping[{_TP}, int]) -> None",
        "consumer.py counts the seeks of table recovery",
    ),
    PrivateName(
        _THREAD,
        "_ensure_consumer",
        "(self) -> aiokafka.consumer.consumer.AIOKafkaConsumer",
        "consumer.py seeks to committed offsets in the consumer's thread",
    ),
    PrivateName(
        "aiokafka.consumer.consumer:AIOKafkaConsumer",
        "_fetch_max_wait_ms",
        None,
        "consumer.py sets it after Faust made the consumer",
    ),
    PrivateName(
        "faust.app.base:App",
        "_new_transport",
        "(self) -> faust.types.transports.TransportT",
        "consumer.py gives the app the batching transport",
    ),
    PrivateName(
        "faust.streams",
        "_current_event",
        None,
        "batch.py sets the event whose partition table reads and writes use",
    ),
)
