"""The embedded stack: starts only what is missing, and leaves nothing behind."""

from __future__ import annotations

import os
import signal

import pytest

from conftest import RunningStack

pytestmark = pytest.mark.integration


def test_up_again_starts_only_what_is_not_running(stack: RunningStack) -> None:
    assert stack.stack.up() == []
    os.killpg(stack.stack.pid("ingress"), signal.SIGKILL)
    stack.stack.stop("ingress")  # reaps it and clears the PID file
    assert stack.stack.up() == ["ingress"]
    assert stack.http.get(f"{stack.ingress_url}/health", timeout=5).status_code == 200


def test_env_file_names_every_url(stack: RunningStack) -> None:
    text = (stack.stack.state / "env").read_text()
    for name in ("KAFKA_BROKER", "REDIS_URL", "MONGO_URL", "INGRESS_URL", "WEB_URL"):
        assert f"{name}=" in text
    assert ":6379/" not in text and ":9092" not in text and ":27017" not in text
