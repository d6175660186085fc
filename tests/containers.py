"""Where the integration tests' Kafka and Postgres come from.

In this order:

1. ``KAFKA_BOOTSTRAP_SERVERS`` and ``DATABASE_URL``, when both are set: the local servers
   ``make test`` starts, or any others;
2. else throw-away containers, started once per session with testcontainers when a Docker
   engine answers: a single-node KRaft Kafka (``LEADVIBE_KAFKA_IMAGE``, default
   ``apache/kafka:4.4.0``) and Postgres (``LEADVIBE_POSTGRES_IMAGE``, default ``postgres:16``),
   published on 127.0.0.1 at ports Docker picks, removed when the session ends;
3. else the integration tests are skipped, with one line saying how to run them.

``make test-containers`` takes the second way with the stand-in images docker/images.sh builds
where no registry is reachable.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Self

import pytest
from testcontainers.community.postgres import PostgresContainer
from testcontainers.core.config import ConnectionMode, testcontainers_config
from testcontainers.core.container import DockerContainer
from testcontainers.core.docker_client import DockerClient
from testcontainers.core.wait_strategies import LogMessageWaitStrategy

KAFKA_IMAGE_ENV = "LEADVIBE_KAFKA_IMAGE"
POSTGRES_IMAGE_ENV = "LEADVIBE_POSTGRES_IMAGE"
DEFAULT_KAFKA_IMAGE = "apache/kafka:4.4.0"
DEFAULT_POSTGRES_IMAGE = "postgres:16"
STARTUP_TIMEOUT = 120
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

SKIP_REASON = (
    "integration tests need Kafka and Postgres: set KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL"
    " (`make test` starts local ones), or start a Docker engine so testcontainers can"
    " (`make test-containers`)"
)


@dataclass(frozen=True)
class Servers:
    """The addresses of one Kafka and one Postgres server, as the services' settings take them."""

    kafka_bootstrap_servers: str
    database_url: str

    @property
    def environ(self) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers,
            "DATABASE_URL": self.database_url,
        }


def servers_from_env() -> Servers | None:
    """The servers the environment names, or None when it names neither."""
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    database = os.environ.get("DATABASE_URL", "").strip()
    if kafka and database:
        return Servers(kafka, database)
    if kafka or database:
        missing = "DATABASE_URL" if kafka else "KAFKA_BOOTSTRAP_SERVERS"
        raise pytest.UsageError(
            f"{missing} is not set: set both KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL,"
            " or neither to use containers"
        )
    return None


def docker_engine_answers() -> bool:
    """True when a Docker engine (DOCKER_HOST, or the local socket) answers a ping."""
    try:
        client = DockerClient()
    except Exception:  # docker's errors when no engine or socket exists are of many kinds
        return False
    try:
        return bool(client.client.ping())
    except Exception:
        return False
    finally:
        client.client.close()


@contextmanager
def provide_servers() -> Iterator[Servers]:
    """The session's servers, exported into ``os.environ`` while the context lasts.

    The export lets everything that reads the environment (``Settings.from_env()``, the
    ``leadvibe`` command and services the tests start as subprocesses) find them, as under
    ``make test``.
    """
    from_env = servers_from_env()
    with ExitStack() as stack:
        servers = from_env or stack.enter_context(containers())
        env = stack.enter_context(pytest.MonkeyPatch.context())
        for name, value in servers.environ.items():
            env.setenv(name, value)
        yield servers


@contextmanager
def containers() -> Iterator[Servers]:
    """Kafka and Postgres in containers, started side by side, always removed afterwards."""
    address = _publish_address()
    kafka = KafkaContainer(os.environ.get(KAFKA_IMAGE_ENV) or DEFAULT_KAFKA_IMAGE, address)
    postgres = PostgresContainer(
        os.environ.get(POSTGRES_IMAGE_ENV) or DEFAULT_POSTGRES_IMAGE,
        username="leadvibe",
        password="leadvibe",
        dbname="leadvibe",
        driver=None,
    )
    _publish(postgres, postgres.port, address)
    with ExitStack() as cleanup:
        # Registered before starting: a container whose start fails half-way is removed too.
        cleanup.callback(kafka.stop)
        cleanup.callback(postgres.stop)
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="testcontainers") as pool:
            kafka_started = pool.submit(kafka.start)
            postgres_started = pool.submit(postgres.start)
        kafka_started.result()
        postgres_started.result()
        database_url = (
            f"postgresql://{postgres.username}:{postgres.password}"
            f"@{_host(postgres)}:{postgres.get_exposed_port(postgres.port)}/{postgres.dbname}"
        )
        yield Servers(kafka.bootstrap_servers, database_url)


class KafkaContainer(DockerContainer):
    """One Kafka node in KRaft mode (broker and controller) from the official ``apache/kafka``
    image, or an image honouring its environment, for clients on the Docker host.

    The client listener has to advertise the host port Docker picks, known only once the
    container exists: the container starts by waiting for a start script, which ``start()``
    writes once the port is known, the way Testcontainers for Java runs ``apache/kafka``.
    (testcontainers' own ``KafkaContainer`` expects Confluent's images and their scripts.)
    """

    CLIENT_PORT = 9092
    BROKER_PORT = 9093
    CONTROLLER_PORT = 9094
    START_SCRIPT = "/tmp/testcontainers_start.sh"
    STARTED = re.compile(r"Kafka Server started")

    def __init__(self, image: str, address: str) -> None:
        super().__init__(image)
        _publish(self, self.CLIENT_PORT, address)
        self.with_envs(
            CLUSTER_ID="4L6g3nShT-eMCtK--X86sw",
            KAFKA_NODE_ID="1",
            KAFKA_PROCESS_ROLES="broker,controller",
            KAFKA_LISTENERS=(
                f"PLAINTEXT://0.0.0.0:{self.CLIENT_PORT},BROKER://0.0.0.0:{self.BROKER_PORT},"
                f"CONTROLLER://0.0.0.0:{self.CONTROLLER_PORT}"
            ),
            KAFKA_LISTENER_SECURITY_PROTOCOL_MAP=(
                "PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT"
            ),
            KAFKA_INTER_BROKER_LISTENER_NAME="BROKER",
            KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER",
            KAFKA_CONTROLLER_QUORUM_VOTERS=f"1@localhost:{self.CONTROLLER_PORT}",
            KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS="1",
            KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR="1",
            KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
            # As the local broker (scripts/kafka/server.properties): topics exist only when
            # `leadvibe topics create` or a test made them.
            KAFKA_AUTO_CREATE_TOPICS_ENABLE="false",
            KAFKA_HEAP_OPTS="-Xmx512m -Xms512m",
        )
        script = self.START_SCRIPT
        self.with_command(
            ["sh", "-c", f"while [ ! -f {script} ]; do sleep 0.1; done; exec bash {script}"]
        )

    @property
    def bootstrap_servers(self) -> str:
        return f"{_host(self)}:{self.get_exposed_port(self.CLIENT_PORT)}"

    def start(self) -> Self:
        super().start()
        hostname = self.get_wrapped_container().attrs["Config"]["Hostname"]
        self._write_file(
            self.START_SCRIPT,
            "#!/bin/bash\n"
            f"export KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://{self.bootstrap_servers},"
            f"BROKER://{hostname}:{self.BROKER_PORT}\n"
            "exec /etc/kafka/docker/run\n",
        )
        started = LogMessageWaitStrategy(self.STARTED).with_startup_timeout(STARTUP_TIMEOUT)
        started.wait_until_ready(self)
        return self

    def _write_file(self, path: str, text: str) -> None:
        data = text.encode()
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            info = tarfile.TarInfo(name=path.lstrip("/"))
            info.size = len(data)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
        self.get_wrapped_container().put_archive("/", archive.getvalue())


def _publish_address() -> str:
    """The address of the Docker host to publish the containers' ports on.

    An engine on this machine gets 127.0.0.1 only: nothing else can reach the throw-away
    servers. testcontainers is then told to connect through the host's loopback: it guesses
    "running inside a container" from a /.dockerenv file, which some virtual machines' images
    carry, and would connect through the bridge's gateway instead. A remote engine (say a CI
    service's, or a socket shared into this container) publishes on every address, and
    testcontainers' own choice of where to connect stands.
    """
    if DockerClient().host() not in LOCAL_HOSTS:
        return ""
    if not os.environ.get("TESTCONTAINERS_CONNECTION_MODE"):
        testcontainers_config.connection_mode_override = ConnectionMode.docker_host
    return "127.0.0.1"


def _publish(container: DockerContainer, port: int, address: str) -> None:
    """Publish ``port`` on ``address`` of the Docker host ("" for every address, which is
    testcontainers' default), at a port Docker picks."""
    container.ports[str(port)] = (address, None)  # type: ignore[assignment]


def _host(container: DockerContainer) -> str:
    host = container.get_container_host_ip()
    # Local ports are published on 127.0.0.1 only, and "localhost" may resolve to ::1 first.
    return "127.0.0.1" if host == "localhost" else host
