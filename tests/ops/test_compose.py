"""Static checks of the production stack: docker-compose.yml and ops/Dockerfile.

Docker is not available where the tests run, so the files are parsed and cross-checked against
the settings the code actually reads. A renamed variable, a service URL left on 127.0.0.1, a
state directory without a volume or a dev extra in the image then fails here, not in production.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import shlex
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import pipeline.settings as settings_module
from agents.dedup_store import INTSET_ENTRIES
from pipeline.settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "ops" / "Dockerfile"
PYPROJECT = REPO / "pyproject.toml"

INFRA = ("kafka", "redis", "mongo")
APPS = ("ingress", "worker")
# The design's configuration contract; the settings parser must find at least these.
DESIGN_ENV = {
    "KAFKA_BROKER", "REDIS_URL", "MONGO_URL", "MONGO_DB", "INGRESS_PORT", "WEB_PORT",
    "TOPIC_PARTITIONS", "SCHOOL_TZ", "FEVER_THRESHOLD", "MAX_TAP_AGE_DAYS",
}
# Where each process finds the other services: defaults point at the developer's machine,
# so these must be set explicitly on both processes.
CONNECTION_ENV = ("KAFKA_BROKER", "REDIS_URL", "MONGO_URL", "MONGO_DB")
# Settings both processes must agree on (the same broker, stores, topics and day rules).
SHARED_FIELDS = (
    "kafka_broker", "redis_url", "mongo_url", "mongo_db", "topic_partitions", "school_tz",
    "fever_threshold", "max_tap_age_days", "taps_topic", "events_topic", "dlq_topic",
)
# A service URL naming the container itself reaches nothing in compose. (0.0.0.0 is fine:
# it is how a server binds every interface.)
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
PUBLISHED = {"ingress": ("ingress_port", 8080), "worker": ("web_port", 6066)}


# --- compose parsing ------------------------------------------------------------------------

_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_]\w*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_]\w*))"
)


def _interpolate(text: str) -> str:
    """Resolve ${NAME:-default} as compose does on a fresh host with no .env file."""

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("braced") or match.group("bare")
        if match.group("op") in (":-", "-"):
            return match.group("arg")
        raise AssertionError(f"${name} has no default: the stack cannot start on a fresh host")

    return _INTERPOLATION.sub(replace, text)


def _resolve(node: Any) -> Any:
    """Interpolate every string value of the compose document, like compose itself."""
    if isinstance(node, dict):
        return {key: _resolve(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve(value) for value in node]
    if isinstance(node, str):
        return _interpolate(node)
    return node


def _env_value(value: Any) -> str | None:
    """Compose passes numbers and booleans to the container as their text."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def service_env(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping, whichever compose syntax it uses."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, None) for item in raw)
    return {name: text for name, value in raw.items() if (text := _env_value(value)) is not None}


def command_text(service: dict[str, Any]) -> str:
    """The command (and entrypoint) as one string, for content checks."""
    parts: list[str] = []
    for key in ("entrypoint", "command"):
        value = service.get(key)
        if isinstance(value, list):
            parts.extend(str(item) for item in value)
        elif value is not None:
            parts.append(str(value))
    return " ".join(parts)


def healthcheck_text(service: dict[str, Any]) -> str:
    test = (service.get("healthcheck") or {}).get("test")
    return " ".join(test) if isinstance(test, list) else str(test or "")


def published_ports(service: dict[str, Any]) -> dict[int, int]:
    """Host port -> container port, from short ("8080:8080") or long port syntax."""
    mapping: dict[int, int] = {}
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            mapping[int(entry["published"])] = int(entry["target"])
            continue
        text = str(entry).split("/", 1)[0]
        parts = text.rsplit(":", 2)
        if len(parts) < 2:
            continue  # container port only: published on a random host port
        mapping[int(parts[-2])] = int(parts[-1])
    return mapping


def volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (named volume or host path)."""
    mounts: dict[str, str] = {}
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            mounts[entry["target"]] = str(entry.get("source", ""))
        else:
            source, _, rest = str(entry).partition(":")
            mounts[rest.split(":", 1)[0]] = source
    return mounts


def hosts_of(url: str) -> list[str]:
    """Host names of a URL or broker list (kafka://a:9092,b:9092; mongodb://u:p@h1,h2/db)."""
    hosts = []
    for part in url.split(","):
        part = part.split("://", 1)[-1].rsplit("@", 1)[-1].split("/", 1)[0]
        hosts.append(part.rsplit(":", 1)[0] if part.count(":") == 1 else part)
    return hosts


# --- settings parsing -----------------------------------------------------------------------

def settings_env_names() -> set[str]:
    """Every environment variable pipeline/settings.py reads, found in its source."""
    tree = ast.parse(Path(settings_module.__file__).read_text(encoding="utf-8"))
    names: set[str] = set()
    readers = {"_env", "_number", "os.environ.get", "os.getenv", "environ.get", "getenv"}
    environ_names = {"os.environ", "environ"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and ast.unparse(node.func) in readers:
            first = node.args[0]
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) in environ_names:
            first = node.slice
        else:
            continue
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            names.add(first.value)
    return names


ENV_NAMES = settings_env_names()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _resolve(yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


SettingsFor = Callable[[str], Settings]


@pytest.fixture
def settings_for(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> Iterator[SettingsFor]:
    """Build Settings exactly as a container of the given service would see them."""

    def build(name: str) -> Settings:
        with monkeypatch.context() as patch:
            for env_name in ENV_NAMES:
                patch.delenv(env_name, raising=False)
            for env_name, value in service_env(services[name]).items():
                patch.setenv(env_name, value)
            return Settings.from_env()

    yield build


# --- Dockerfile parsing ---------------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped and continuation lines joined."""
    lines = [
        line for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
        if not line.lstrip().startswith("#")
    ]
    joined = re.sub(r"\\\s*\n", " ", "\n".join(lines))
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, args = line.strip().partition(" ")
            instructions.append((keyword.upper(), args.strip()))
    return instructions


def exec_form(args: str) -> list[str]:
    """CMD/ENTRYPOINT arguments as a list, from JSON (exec) or shell form."""
    try:
        value = json.loads(args)
    except ValueError:
        return shlex.split(args)
    return [str(item) for item in value]


# --- services and Kafka ---------------------------------------------------------------------

def test_all_services_exist(services: dict[str, dict[str, Any]]) -> None:
    missing = set(INFRA + APPS) - set(services)
    assert not missing, f"docker-compose.yml lacks services {sorted(missing)}"


def test_kafka_runs_in_kraft_mode_without_zookeeper(services: dict[str, dict[str, Any]]) -> None:
    kafka = services["kafka"]
    env = service_env(kafka)
    assert str(kafka.get("image", "")).startswith("apache/kafka:"), "use the official image"
    roles = {role.strip() for role in env.get("KAFKA_PROCESS_ROLES", "").split(",")}
    assert roles == {"broker", "controller"}, "one node must be both broker and controller"
    assert env.get("KAFKA_CONTROLLER_QUORUM_VOTERS"), "a KRaft node needs its controller quorum"
    assert "KAFKA_ZOOKEEPER_CONNECT" not in env
    for name, service in services.items():
        assert "zookeeper" not in name.lower(), f"service {name}: KRaft needs no ZooKeeper"
        assert "zookeeper" not in str(service.get("image", "")).lower()


def test_single_kafka_node_uses_one_replica_for_internal_topics(
    services: dict[str, dict[str, Any]],
) -> None:
    """The defaults (3 replicas) cannot be met by one node: offset commits would never work."""
    env = service_env(services["kafka"])
    for name in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
    ):
        assert env.get(name) == "1", f"{name} must be 1 on a single-node cluster"


@pytest.mark.parametrize("app", APPS)
def test_kafka_advertises_the_address_the_apps_use(
    app: str, services: dict[str, dict[str, Any]], settings_for: SettingsFor
) -> None:
    advertised = service_env(services["kafka"]).get("KAFKA_ADVERTISED_LISTENERS", "")
    endpoints = {part.split("://", 1)[-1] for part in advertised.split(",")}
    for address in settings_for(app).kafka_bootstrap.split(","):
        assert address in endpoints, (
            f"{app} bootstraps from {address} but Kafka advertises {advertised!r}: "
            "clients would be sent to an address they cannot reach"
        )


def test_kafka_init_creates_the_topics_with_the_configured_partitions(
    services: dict[str, dict[str, Any]], settings_for: SettingsFor
) -> None:
    assert "kafka-init" in services, "a one-shot kafka-init service should create the topics"
    init = services["kafka-init"]
    text = command_text(init)
    worker = settings_for("worker")
    for topic in (worker.taps_topic, worker.events_topic, worker.dlq_topic):
        assert topic in text, f"kafka-init does not create {topic}"
    partitions = {int(value) for value in re.findall(r"--partitions[ =](\d+)", text)}
    assert partitions == {worker.topic_partitions}, (
        f"kafka-init uses {partitions} partitions, the apps expect {worker.topic_partitions}"
    )
    assert "--if-not-exists" in text, "kafka-init must be safe to run on every start"
    assert init.get("restart", "no") == "no", "a one-shot service must not be restarted"
    auto = service_env(services["kafka"]).get("KAFKA_NUM_PARTITIONS")
    assert auto == str(worker.topic_partitions), "auto-created topics must match TOPIC_PARTITIONS"


# --- image and build ------------------------------------------------------------------------

@pytest.mark.parametrize("app", APPS)
def test_apps_build_from_the_ops_dockerfile(app: str, services: dict[str, dict[str, Any]]) -> None:
    build = services[app].get("build")
    assert isinstance(build, dict), f"{app} must be built (build: context + dockerfile)"
    context = (COMPOSE_FILE.parent / build.get("context", ".")).resolve()
    assert context == REPO, f"{app} build context must be the repository root"
    assert build.get("dockerfile") == "ops/Dockerfile"
    assert (context / build["dockerfile"]).is_file()


def test_apps_run_their_entry_points(services: dict[str, dict[str, Any]]) -> None:
    """Both processes come from one image; compose chooses the command."""
    assert command_text(services["ingress"]).split() == ["python", "-m", "web.ingress"]
    worker = command_text(services["worker"]).split()
    if not worker:  # falls back to the image's CMD
        worker = next(exec_form(args) for kind, args in dockerfile_instructions() if kind == "CMD")
    assert worker[:4] == ["faust", "-A", "pipeline.app", "worker"]


# --- configuration --------------------------------------------------------------------------

def test_settings_parser_finds_the_design_variables() -> None:
    """Guards the source parsing itself: if it finds nothing, the checks below prove nothing."""
    missing = DESIGN_ENV - ENV_NAMES
    assert not missing, f"pipeline/settings.py no longer reads {sorted(missing)}"
    assert "WORKER_DATA_DIR" in ENV_NAMES


@pytest.mark.parametrize("app", APPS)
def test_compose_sets_only_variables_the_code_reads(
    app: str, services: dict[str, dict[str, Any]]
) -> None:
    """A misspelt name would be silently ignored and the default used instead."""
    unknown = set(service_env(services[app])) - ENV_NAMES
    assert not unknown, f"{app} sets {sorted(unknown)}, which pipeline/settings.py never reads"


@pytest.mark.parametrize("app", APPS)
def test_connection_variables_are_set_explicitly(
    app: str, services: dict[str, dict[str, Any]]
) -> None:
    env = service_env(services[app])
    missing = [name for name in CONNECTION_ENV if not env.get(name)]
    assert not missing, f"{app} relies on developer defaults for {missing}"


@pytest.mark.parametrize("app", APPS)
def test_effective_settings_point_at_compose_services(
    app: str, services: dict[str, dict[str, Any]], settings_for: SettingsFor
) -> None:
    """Every variable is either set or has a default that works inside a container."""
    settings = settings_for(app)  # raises SettingsError for unusable values
    assert set(hosts_of(settings.kafka_broker)) <= {"kafka"}
    assert hosts_of(settings.redis_url) == ["redis"]
    assert hosts_of(settings.mongo_url) == ["mongo"]
    assert settings.mongo_db
    unset = sorted(ENV_NAMES - set(service_env(services[app])))
    for field in dataclasses.fields(Settings):
        value = getattr(settings, field.name)
        if isinstance(value, str):
            assert not any(host in value for host in LOOPBACK), (
                f"{app}: {field.name}={value!r} points at the container itself "
                f"(unset there: {unset})"
            )


def test_both_processes_agree_on_shared_settings(settings_for: SettingsFor) -> None:
    ingress, worker = settings_for("ingress"), settings_for("worker")
    differing = {
        name: (getattr(ingress, name), getattr(worker, name))
        for name in SHARED_FIELDS
        if getattr(ingress, name) != getattr(worker, name)
    }
    assert not differing, f"ingress and worker disagree: {differing}"


@pytest.mark.parametrize("app", APPS)
def test_published_ports_match_the_configured_ports(
    app: str, services: dict[str, dict[str, Any]], settings_for: SettingsFor
) -> None:
    field, host_port = PUBLISHED[app]
    container_port = getattr(settings_for(app), field)
    ports = published_ports(services[app])
    assert ports.get(host_port) == container_port, (
        f"{app} listens on {container_port} ({field}) but publishes {ports}"
    )


def test_worker_state_lives_on_a_volume_the_image_prepared(
    compose: dict[str, Any], services: dict[str, dict[str, Any]], settings_for: SettingsFor
) -> None:
    """RocksDB stores must survive a container replacement and be writable by the app user."""
    assert "WORKER_DATA_DIR" in service_env(services["worker"])
    data_dir = settings_for("worker").data_dir
    assert data_dir.startswith("/"), f"WORKER_DATA_DIR={data_dir!r} must be absolute"
    source = volume_mounts(services["worker"]).get(data_dir)
    assert source in (compose.get("volumes") or {}), f"{data_dir} is not a named volume"
    assert data_dir in DOCKERFILE.read_text(encoding="utf-8"), (
        "the image must create the data directory for its non-root user"
    )


@pytest.mark.parametrize(
    ("name", "path"),
    [("redis", "/data"), ("mongo", "/data/db")],
)
def test_stores_keep_their_data_on_volumes(
    name: str, path: str, compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    source = volume_mounts(services[name]).get(path)
    assert source in (compose.get("volumes") or {}), f"{name} data at {path} is not a named volume"


def test_kafka_log_lives_on_a_volume(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    """An acknowledged tap is only durable if the broker log outlives the container."""
    log_dirs = service_env(services["kafka"]).get("KAFKA_LOG_DIRS")
    assert log_dirs, "set KAFKA_LOG_DIRS; the image default is under /tmp"
    mounts = volume_mounts(services["kafka"])
    for log_dir in log_dirs.split(","):
        assert mounts.get(log_dir) in (compose.get("volumes") or {}), f"{log_dir} has no volume"


def test_redis_persists_dedup_state_and_never_evicts(services: dict[str, dict[str, Any]]) -> None:
    """Lost or evicted dedup keys would let a second check-in count."""
    words = command_text(services["redis"]).split()
    assert "--appendonly" in words and words[words.index("--appendonly") + 1] == "yes"
    assert "--maxmemory-policy" in words
    assert words[words.index("--maxmemory-policy") + 1] == "noeviction"


def test_redis_keeps_dedup_buckets_compact(services: dict[str, dict[str, Any]]) -> None:
    """Each day's dedup bucket must fit Redis's integer-set encoding (agents.dedup_store)."""
    words = command_text(services["redis"]).split()
    assert "--set-max-intset-entries" in words
    assert int(words[words.index("--set-max-intset-entries") + 1].strip('"')) >= INTSET_ENTRIES


# --- health and start order -----------------------------------------------------------------

@pytest.mark.parametrize("name", INFRA + APPS)
def test_services_have_healthchecks(name: str, services: dict[str, dict[str, Any]]) -> None:
    check = services[name].get("healthcheck") or {}
    assert not check.get("disable"), f"{name} healthcheck is disabled"
    test = check.get("test")
    assert test and test != ["NONE"], f"{name} has no healthcheck"


def test_app_healthchecks_probe_their_health_endpoints(services: dict[str, dict[str, Any]]) -> None:
    ingress, worker = healthcheck_text(services["ingress"]), healthcheck_text(services["worker"])
    assert "/health" in ingress and "INGRESS_PORT" in ingress
    assert "/health/" in worker and "WEB_PORT" in worker


@pytest.mark.parametrize(
    ("app", "needs"),
    [("ingress", {"kafka"}), ("worker", {"kafka", "redis", "mongo"}), ("kafka-init", {"kafka"})],
)
def test_depends_on_waits_for_healthy_services(
    app: str, needs: set[str], services: dict[str, dict[str, Any]]
) -> None:
    depends = services[app].get("depends_on")
    assert isinstance(depends, dict), f"{app}: short depends_on only waits for the container start"
    assert needs <= set(depends), f"{app} must wait for {sorted(needs - set(depends))}"
    for dependency, options in depends.items():
        condition = (options or {}).get("condition")
        if services[dependency].get("healthcheck"):
            assert condition == "service_healthy", f"{app} -> {dependency}: {condition}"
        else:
            assert condition == "service_completed_successfully", f"{app} -> {dependency}"
    if "kafka-init" in services and app in APPS:
        assert depends.get("kafka-init", {}).get("condition") == "service_completed_successfully"


# --- Dockerfile -----------------------------------------------------------------------------

def test_dockerfile_is_python_slim_and_copies_the_project() -> None:
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    copied = {
        source.rstrip("/")
        for kind, args in instructions if kind == "COPY"
        for source in args.split()[:-1] if not source.startswith("--")
    }
    include = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["setuptools"][
        "packages"]["find"]["include"]
    packages = {pattern.rstrip("*").rstrip(".") for pattern in include}
    missing = ({"pyproject.toml"} | packages) - copied
    assert not missing, f"ops/Dockerfile does not copy {sorted(missing)}"


def test_dockerfile_installs_runtime_dependencies_only() -> None:
    runs = [args for kind, args in dockerfile_instructions() if kind == "RUN"]
    pip_install = re.compile(r"\bpip3?\s+install\s+([^&;|]*)")
    installs = [match.group(1) for run in runs for match in pip_install.finditer(run)]
    assert any(
        "." in shlex.split(args) or "./" in shlex.split(args) for args in installs
    ), f"ops/Dockerfile must `pip install .` from pyproject.toml, found {installs}"
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    dev = project.get("optional-dependencies", {}).get("dev", [])
    dev_names = {re.match(r"[A-Za-z0-9._-]+", spec).group(0).lower() for spec in dev}
    assert dev_names, "the parser found no dev extras to exclude"
    text = " ".join(runs).lower()
    assert "[dev]" not in text and not re.search(r"\.\[", text), "no extras in production"
    for name in dev_names:
        assert not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), f"installs {name}"
    for args in installs:
        assert not {"-e", "--editable"} & set(shlex.split(args)), "no editable install in the image"


def test_dockerfile_runs_as_non_root_and_defaults_to_the_worker() -> None:
    instructions = dockerfile_instructions()
    users = [(index, args) for index, (kind, args) in enumerate(instructions) if kind == "USER"]
    assert users, "ops/Dockerfile must switch to a non-root user"
    last_index, user = users[-1]
    assert user.split(":")[0] not in {"root", "0"}
    cmds = [(index, args) for index, (kind, args) in enumerate(instructions) if kind == "CMD"]
    assert cmds and cmds[-1][0] > last_index, "the user must be set before the command"
    assert exec_form(cmds[-1][1])[:4] == ["faust", "-A", "pipeline.app", "worker"]
