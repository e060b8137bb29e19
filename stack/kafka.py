"""Apache Kafka as a single KRaft node (broker and controller in one JVM)."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import uuid
from importlib import resources
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from config import LOOPBACK
from stack import process
from stack.errors import StackError
from stack.service import Port, Service

JAVA_HINT = "apt-get install -y openjdk-17-jre-headless maven"

# Heap small enough for a laptop next to the other services; Kafka's own
# default (1 GB) buys nothing for one topic of host metrics.
_JVM_OPTIONS = ("-Xmx512m", "-Xms256m", "-XX:+UseG1GC", "-Djava.awt.headless=true")

_LOG4J = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
# Per-request and per-partition state logs would drown the startup messages.
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.log.LogCleaner=WARN
log4j.logger.org.apache.kafka.storage.internals.log=WARN
"""


def _pom_text() -> str:
    return (resources.files("stack") / "kafka-pom.xml").read_text()


def kafka_version() -> str:
    """The Kafka version the bundled pom pins."""
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", _pom_text())
    if match is None:  # the pom ships with the package: this is a packaging bug
        raise StackError("stack/kafka-pom.xml has no <kafka.version>: reinstall hoststream")
    return match.group(1)


def _cluster_id() -> str:
    """A cluster id in the format of Kafka's ``Uuid.randomUuid().toString()``.

    Base64url of 16 random bytes without padding, never starting with '-'
    (Kafka's rule, so the id is not taken for a command-line flag). Made here
    rather than with ``StorageTool random-uuid`` to spare a JVM start.
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


class Kafka(Service):
    """Kafka broker+controller from jars fetched with Maven (no tarball, no Docker)."""

    name = "kafka"
    marker = "kafka.Kafka"

    @property
    def ports(self) -> tuple[Port, ...]:
        """Broker port, then the KRaft controller port."""
        return (
            Port(self.settings.stack_kafka_port, "stack_kafka_port"),
            Port(self.settings.stack_kafka_controller_port, "stack_kafka_controller_port"),
        )

    @property
    def libs(self) -> Path:
        """Folder of the broker's jars."""
        return self.settings.kafka_libs_dir.resolve()

    @property
    def _data(self) -> Path:
        return self.dir / "data"

    @property
    def _properties(self) -> Path:
        return self.dir / "server.properties"

    @property
    def _log4j(self) -> Path:
        return self.dir / "log4j.properties"

    def _java(self, main_class: str, *args: str) -> list[str]:
        return [
            "java",
            *_JVM_OPTIONS,
            f"-Dlog4j.configuration={self._log4j.as_uri()}",
            "-cp",
            f"{self.libs}/*",
            main_class,
            *args,
        ]

    def jars_present(self) -> bool:
        """Whether the jars of the pinned Kafka version are in ``libs``."""
        return (self.libs / f"kafka_2.13-{kafka_version()}.jar").is_file()

    def install(self) -> None:
        """Check java; fetch the jars from Maven Central when they are not there yet."""
        if shutil.which("java") is None:
            raise StackError(f"java not found: install it with `{JAVA_HINT}`")
        if self.jars_present():
            return
        mvn = shutil.which("mvn")
        if mvn is None:
            raise StackError(f"mvn not found (needed once, to fetch Kafka): `{JAVA_HINT}`")
        self.echo(f"fetching Kafka {kafka_version()} jars from Maven Central...")
        # Fetch beside the target and rename, so an interrupted download never
        # leaves a folder that looks complete.
        partial = self.libs.with_name(self.libs.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.parent.mkdir(parents=True, exist_ok=True)
        with resources.as_file(resources.files("stack") / "kafka-pom.xml") as pom:
            result = subprocess.run(
                [
                    mvn,
                    "-q",
                    "-B",
                    "-f",
                    str(pom),
                    "dependency:copy-dependencies",
                    "-DincludeScope=runtime",
                    f"-DoutputDirectory={partial}",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
        if result.returncode != 0:
            raise StackError(
                "fetching the Kafka jars with Maven failed (is Maven Central reachable?)",
                "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:]),
            )
        shutil.rmtree(self.libs, ignore_errors=True)
        partial.rename(self.libs)

    def prepare(self) -> None:
        """Write the broker's configuration (every start: ports may have changed); format once."""
        super().prepare()
        port, controller = (p.number for p in self.ports)
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{LOOPBACK}:{controller}",
            "listeners": f"PLAINTEXT://{LOOPBACK}:{port},CONTROLLER://{LOOPBACK}:{controller}",
            "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self._data),
            "num.partitions": str(self.settings.topic_partitions),
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            # One node: waiting for more group members to join only delays workers.
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
        }
        self._properties.write_text("".join(f"{k}={v}\n" for k, v in properties.items()))
        self._log4j.write_text(_LOG4J)
        if (self._data / "meta.properties").exists():
            return
        props = self._properties
        result = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "-t", _cluster_id(), "-c", str(props)),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(
                f"formatting Kafka's storage in {self._data} failed",
                (result.stdout + result.stderr).strip(),
            )

    def command(self) -> list[str]:
        """The broker's JVM command line."""
        return self._java("kafka.Kafka", str(self._properties))

    def ready(self) -> bool:
        """Whether the broker answers a metadata request and lists itself."""
        # aiokafka logs every refused connection as an error: probe the port first.
        if not process.port_accepts(self.ports[0].number):
            return False
        try:
            cluster = process.run_async(self._describe_cluster)
        except Exception:  # any failure just means "not yet"
            return False
        return bool(cluster.get("brokers"))

    def _admin(self) -> AIOKafkaAdminClient:
        return AIOKafkaAdminClient(bootstrap_servers=self.address, request_timeout_ms=5000)

    async def _describe_cluster(self) -> dict[str, object]:
        admin = self._admin()
        try:
            await admin.start()
            return await admin.describe_cluster()
        finally:
            await admin.close()

    def provision(self) -> None:
        """Create the metrics topic and its dead-letter topic when missing."""
        process.run_async(self._create_topics)

    async def _create_topics(self) -> None:
        topic, partitions = self.settings.topic, self.settings.topic_partitions
        admin = self._admin()
        try:
            await admin.start()
            # All topics: asking for one by name would auto-create it with defaults.
            existing = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics()}
            wanted = [name for name in (topic, f"{topic}.dlq") if name not in existing]
            if wanted:
                response = await admin.create_topics(
                    [NewTopic(name, partitions, 1) for name in wanted]
                )
                for name, code, *_ in response.topic_errors:
                    if code not in (0, TopicAlreadyExistsError.errno):
                        raise StackError(f"creating Kafka topic {name!r} failed (error {code})")
        finally:
            await admin.close()
        if existing.get(topic, partitions) != partitions:
            self.echo(
                f"note: topic {topic!r} already exists with {existing[topic]} partitions, "
                f"not HOSTSTREAM_TOPIC_PARTITIONS={partitions}; delete it to change that"
            )
