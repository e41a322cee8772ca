"""Unit tests for configuration from the environment (pipeline.settings)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from pipeline.settings import Settings, SettingsError

ENV_VARS = (
    "KAFKA_BROKER",
    "REDIS_URL",
    "MONGO_URL",
    "MONGO_DB",
    "INGRESS_PORT",
    "WEB_PORT",
    "TOPIC_PARTITIONS",
    "SCHOOL_TZ",
    "FEVER_THRESHOLD",
    "MAX_TAP_AGE_DAYS",
    "WORKER_DATA_DIR",
    "BATCH_SIZE",
    "PRODUCE_TIMEOUT_S",
    "BROKER_SESSION_TIMEOUT_S",
    "DLQ_MAX_ATTEMPTS",
    "FETCH_MAX_WAIT_MS",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Every test starts from an environment without any of the settings' variables."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# --- defaults ------------------------------------------------------------------------


def test_defaults_from_an_empty_environment() -> None:
    s = Settings.from_env()
    assert s.kafka_broker == "kafka://127.0.0.1:9092"
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.mongo_url == "mongodb://127.0.0.1:27017"
    assert s.mongo_db == "rollcall"
    assert s.ingress_port == 8080
    assert s.web_port == 6066
    assert s.topic_partitions == 8
    assert s.school_tz == "UTC"
    assert s.tz == ZoneInfo("UTC")
    assert s.fever_threshold == 38.0
    assert s.max_tap_age_days == 7
    assert s.data_dir == "./worker-data"
    assert (s.taps_topic, s.events_topic, s.dlq_topic) == ("attendance-taps", "attendance-events", "attendance-dlq")
    assert s.batch_size == 2000
    assert s.produce_timeout_s == 3.0
    assert s.session_timeout_s == 10.0
    assert s.dlq_max_attempts == 3
    assert s.fetch_max_wait_ms == 50
    assert s.kafka_bootstrap == "127.0.0.1:9092"


def test_from_env_defaults_equal_the_class_defaults() -> None:
    assert Settings.from_env() == Settings()


def test_number_types() -> None:
    s = Settings.from_env()
    assert type(s.ingress_port) is int
    assert type(s.topic_partitions) is int
    assert type(s.max_tap_age_days) is int
    assert type(s.fever_threshold) is float
    assert type(s.produce_timeout_s) is float


@pytest.mark.parametrize("blank", ["", "   "])
def test_blank_values_fall_back_to_defaults(clean_env: pytest.MonkeyPatch, blank: str) -> None:
    for name in ENV_VARS:
        clean_env.setenv(name, blank)
    assert Settings.from_env() == Settings()


# --- overrides -------------------------------------------------------------------------


def test_every_variable_overrides_its_setting(clean_env: pytest.MonkeyPatch) -> None:
    values = {
        "KAFKA_BROKER": "kafka://broker-1:19092",
        "REDIS_URL": "redis://cache:6380/2",
        "MONGO_URL": "mongodb://db:27018",
        "MONGO_DB": "rollcall_test",
        "INGRESS_PORT": "18080",
        "WEB_PORT": "16066",
        "TOPIC_PARTITIONS": "16",
        "SCHOOL_TZ": "Asia/Kolkata",
        "FEVER_THRESHOLD": "37.5",
        "MAX_TAP_AGE_DAYS": "3",
        "WORKER_DATA_DIR": "/var/lib/rollcall",
        "BATCH_SIZE": "500",
        "PRODUCE_TIMEOUT_S": "2.5",
        "BROKER_SESSION_TIMEOUT_S": "6",
        "DLQ_MAX_ATTEMPTS": "5",
        "FETCH_MAX_WAIT_MS": "250",
    }
    for name, value in values.items():
        clean_env.setenv(name, value)
    s = Settings.from_env()
    assert s.kafka_broker == "kafka://broker-1:19092"
    assert s.kafka_bootstrap == "broker-1:19092"
    assert s.redis_url == "redis://cache:6380/2"
    assert s.mongo_url == "mongodb://db:27018"
    assert s.mongo_db == "rollcall_test"
    assert s.ingress_port == 18080
    assert s.web_port == 16066
    assert s.topic_partitions == 16
    assert s.school_tz == "Asia/Kolkata"
    assert s.tz == ZoneInfo("Asia/Kolkata")
    assert s.fever_threshold == 37.5
    assert s.max_tap_age_days == 3
    assert s.data_dir == "/var/lib/rollcall"
    assert s.batch_size == 500
    assert s.produce_timeout_s == 2.5
    assert s.session_timeout_s == 6.0
    assert s.dlq_max_attempts == 5
    assert s.fetch_max_wait_ms == 250


def test_values_are_stripped(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TOPIC_PARTITIONS", " 12 ")
    clean_env.setenv("SCHOOL_TZ", " Europe/Berlin\n")
    s = Settings.from_env()
    assert s.topic_partitions == 12
    assert s.school_tz == "Europe/Berlin"


def test_integer_fever_threshold_is_a_float(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("FEVER_THRESHOLD", "38")
    s = Settings.from_env()
    assert s.fever_threshold == 38.0
    assert type(s.fever_threshold) is float


@pytest.mark.parametrize(
    ("name", "value"),
    [("INGRESS_PORT", "1"), ("TOPIC_PARTITIONS", "1"), ("MAX_TAP_AGE_DAYS", "1"), ("FEVER_THRESHOLD", "0"),
     ("PRODUCE_TIMEOUT_S", "0.1"), ("BROKER_SESSION_TIMEOUT_S", "1"), ("DLQ_MAX_ATTEMPTS", "1")],
)
def test_minimums_are_accepted(clean_env: pytest.MonkeyPatch, name: str, value: str) -> None:
    clean_env.setenv(name, value)
    Settings.from_env()


# --- bad values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("INGRESS_PORT", "http"),
        ("INGRESS_PORT", "8080.5"),
        ("WEB_PORT", "0"),
        ("WEB_PORT", "-1"),
        ("TOPIC_PARTITIONS", "eight"),
        ("TOPIC_PARTITIONS", "0"),
        ("TOPIC_PARTITIONS", "8.0"),
        ("FEVER_THRESHOLD", "hot"),
        ("FEVER_THRESHOLD", "-1"),
        ("FEVER_THRESHOLD", "38,0"),
        ("MAX_TAP_AGE_DAYS", "0"),
        ("MAX_TAP_AGE_DAYS", "a week"),
        ("BATCH_SIZE", "0"),
        ("PRODUCE_TIMEOUT_S", "0"),
        ("PRODUCE_TIMEOUT_S", "fast"),
        ("BROKER_SESSION_TIMEOUT_S", "0.5"),
        ("DLQ_MAX_ATTEMPTS", "0"),
        ("DLQ_MAX_ATTEMPTS", "3.5"),
        ("FETCH_MAX_WAIT_MS", "0"),
        ("FETCH_MAX_WAIT_MS", "soon"),
        ("FETCH_MAX_WAIT_MS", "60000"),
    ],
)
def test_bad_numbers_raise_settings_error_naming_the_variable(
    clean_env: pytest.MonkeyPatch, name: str, value: str
) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        Settings.from_env()
    assert f"{name}={value!r}" in str(info.value)


def test_settings_error_is_a_value_error() -> None:
    assert issubclass(SettingsError, ValueError)


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "utc", "Not/AZone", "../etc/passwd", "/etc/localtime"])
def test_unknown_school_tz_raises_settings_error(clean_env: pytest.MonkeyPatch, zone: str) -> None:
    clean_env.setenv("SCHOOL_TZ", zone)
    with pytest.raises(SettingsError) as info:
        Settings.from_env()
    assert "SCHOOL_TZ" in str(info.value)
    assert repr(zone) in str(info.value)


def test_unknown_zone_in_the_constructor_raises_settings_error() -> None:
    with pytest.raises(SettingsError, match="SCHOOL_TZ"):
        Settings(school_tz="Nowhere/Special")


def test_school_tz_that_is_a_zone_folder_raises_settings_error(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SCHOOL_TZ", "America")
    with pytest.raises(SettingsError, match="SCHOOL_TZ"):
        Settings.from_env()


def test_nan_fever_threshold_raises_settings_error(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("FEVER_THRESHOLD", "nan")
    with pytest.raises(SettingsError, match="FEVER_THRESHOLD"):
        Settings.from_env()


def test_port_above_65535_raises_settings_error(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("INGRESS_PORT", "70000")
    with pytest.raises(SettingsError, match="INGRESS_PORT"):
        Settings.from_env()


# --- Kafka broker URLs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "broker", "bootstrap"),
    [
        ("broker:9092", "kafka://broker:9092", "broker:9092"),
        ("10.0.0.5:19092", "kafka://10.0.0.5:19092", "10.0.0.5:19092"),
        ("kafka://broker:9092", "kafka://broker:9092", "broker:9092"),
        ("aiokafka://broker:9092", "aiokafka://broker:9092", "broker:9092"),
        ("a:1,b:2", "kafka://a:1,b:2", "a:1,b:2"),
        ("kafka://a:1,kafka://b:2", "kafka://a:1,kafka://b:2", "a:1,b:2"),
    ],
)
def test_kafka_broker_scheme_and_bootstrap(
    clean_env: pytest.MonkeyPatch, env: str, broker: str, bootstrap: str
) -> None:
    clean_env.setenv("KAFKA_BROKER", env)
    s = Settings.from_env()
    assert s.kafka_broker == broker
    assert s.kafka_bootstrap == bootstrap


def test_kafka_bootstrap_skips_empty_parts() -> None:
    assert Settings(kafka_broker="kafka://a:1,,kafka://b:2,").kafka_bootstrap == "a:1,b:2"


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.topic_partitions = 4  # type: ignore[misc]
