#!/usr/bin/env python3
"""Starts isolated MediaPro instances for tests and benchmarks (Python 3.11, stdlib only).

An isolated instance is an API and/or worker processes on their own free 127.0.0.1
port, temporary directory (SQLite store + storage root, or a throwaway PostgreSQL
database) and random Redis key namespace, with a clean configuration: every
inherited MEDIAPRO__* variable and MEDIAPRO_CONFIG is dropped, MEDIAPRO_CONFIG
points at tests/isolated.toml (THE list of test settings) and the per-instance keys
(server.bind, redis.url, redis.namespace, database.url, storage.root) come as
MEDIAPRO__SECTION__KEY variables.

Per-instance changes are explicit: an override KEY=VALUE (`overrides={"limits.x": 5}`,
CLI `--set limits.x=5`) becomes a MEDIAPRO__ variable; KEY=None (CLI `--default KEY`)
drops the key from the file, so the built-in default applies (the launcher then writes
a copy of tests/isolated.toml without it into the instance's directory).

From Python (benchmarks, bench/harness.py):

    with Instance(workers=[{"queues": "download,process", "concurrency": 2}]) as inst:
        request("POST", inst.url + "/api/download", {"url": ...})
        inst.kill_worker(0, signal.SIGKILL)

From shell scripts (tests/deploy/nginx_test.sh, tests/scale/run.sh,
bench/pickup-latency.sh), which start the processes themselves:

    launch_env="$(python3 tests/launcher.py env --tmp "$tmp" --set worker.drain_timeout_seconds=5)"
    eval "$launch_env"     # unset inherited MEDIAPRO__*, export the instance's variables
    ...                    # at exit: python3 tests/launcher.py purge-redis (the namespace)

Other commands: `run` starts an instance and blocks until Ctrl-C; `bin-dir` prints
where the binaries are; `purge-redis` deletes a namespace's keys (SCAN + DEL).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The settings every isolated instance uses beyond the built-in defaults.
ISOLATED_TOML = os.path.join(ROOT, "tests", "isolated.toml")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/test"
# Keys the launcher sets for each instance; they are not in tests/isolated.toml.
PER_INSTANCE_KEYS = ("server.bind", "redis.url", "redis.namespace", "database.url", "storage.root")


# --- settings ----------------------------------------------------------------------------
def env_name(key: str) -> str:
    """`redis.heartbeat_seconds` -> `MEDIAPRO__REDIS__HEARTBEAT_SECONDS`."""
    section, sep, field = key.partition(".")
    if not sep or not section or not field or "." in field:
        raise ValueError(f"setting {key!r} is not SECTION.KEY (e.g. redis.heartbeat_seconds)")
    return f"MEDIAPRO__{section.upper()}__{field.upper()}"


def env_value(value) -> str:
    """A setting's value as the binaries read it from the environment."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(env_value(v) for v in value)  # list keys are comma separated
    return str(value)


def load_isolated() -> dict[str, dict]:
    with open(ISOLATED_TOML, "rb") as f:
        return tomllib.load(f)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def config_file(defaults: list[str], directory: str) -> str:
    """The file MEDIAPRO_CONFIG names: tests/isolated.toml itself, or, when some keys
    must take their built-in default, a copy without them written into `directory`."""
    if not defaults:
        return ISOLATED_TOML
    settings = load_isolated()
    for key in defaults:
        section, _, field = key.partition(".")
        if field not in settings.get(section, {}):
            raise ValueError(f"--default {key}: {key} is not in tests/isolated.toml")
        del settings[section][field]
    path = os.path.join(directory, "isolated.toml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"# tests/isolated.toml without {', '.join(defaults)} (written by tests/launcher.py)\n")
        for section, fields in settings.items():
            f.write(f"\n[{section}]\n")
            for field, value in fields.items():
                f.write(f"{field} = {_toml_value(value)}\n")
    return path


def instance_env(
    *,
    tmp: str,
    port: int,
    redis_url: str,
    namespace: str,
    database_url: str,
    overrides: dict | None = None,
    inherit: bool = False,
) -> dict[str, str]:
    """The MEDIAPRO_CONFIG + MEDIAPRO__* variables of one instance.

    Layers, later wins: tests/isolated.toml (minus keys overridden with None),
    inherited MEDIAPRO__* variables (only with `inherit`), `overrides`, and the
    per-instance keys (port, Redis, database, storage root under `tmp`)."""
    overrides = dict(overrides or {})
    for key in overrides:
        env_name(key)  # fails early on a malformed key
        if key in PER_INSTANCE_KEYS:
            raise ValueError(f"{key} is set by the launcher; use its own option instead")
    defaults = [k for k, v in overrides.items() if v is None]
    env = {"MEDIAPRO_CONFIG": config_file(defaults, tmp)}
    if inherit:
        env.update({k: v for k, v in os.environ.items() if k.startswith("MEDIAPRO__")})
        for key in defaults:
            env.pop(env_name(key), None)
    env.update({env_name(k): env_value(v) for k, v in overrides.items() if v is not None})
    storage_root = os.path.join(tmp, "media")
    os.makedirs(storage_root, exist_ok=True)
    env.update({
        "MEDIAPRO__SERVER__BIND": f"127.0.0.1:{port}",
        "MEDIAPRO__REDIS__URL": redis_url,
        "MEDIAPRO__REDIS__NAMESPACE": namespace,
        "MEDIAPRO__DATABASE__URL": database_url,
        "MEDIAPRO__STORAGE__ROOT": storage_root,
    })
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_namespace(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


def bin_dir(profile: str = "release") -> str:
    """MEDIAPRO_BIN_DIR, else <CARGO_TARGET_DIR or target>/<profile>."""
    if os.environ.get("MEDIAPRO_BIN_DIR"):
        return os.path.abspath(os.environ["MEDIAPRO_BIN_DIR"])
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    return os.path.abspath(os.path.join(ROOT, target, profile))


# --- Redis (a minimal RESP client: SELECT, SCAN, DEL) ---------------------------------------
def _resp_command(sock_file, *args) -> object:
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    sock_file.write(b"".join(out))
    sock_file.flush()
    return _resp_read(sock_file)


def _resp_read(sock_file) -> object:
    line = sock_file.readline()
    if not line:
        raise ConnectionError("Redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(f"Redis error: {rest.decode()}")
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else sock_file.read(n + 2)[:-2].decode()
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(sock_file) for _ in range(n)]
    raise RuntimeError(f"unexpected Redis reply {line!r}")


def purge_redis(redis_url: str, namespace: str) -> int:
    """Deletes every `<namespace>:*` key (SCAN + DEL); returns how many."""
    if not namespace:
        raise ValueError("empty namespace")
    url = urllib.parse.urlsplit(redis_url)
    if url.scheme != "redis":
        raise ValueError(f"{redis_url}: only redis:// URLs are supported")
    with socket.create_connection((url.hostname or "127.0.0.1", url.port or 6379), timeout=5) as sock:
        f = sock.makefile("rwb")
        if url.password:
            _resp_command(f, "AUTH", *([url.username] if url.username else []), urllib.parse.unquote(url.password))
        db = url.path.strip("/") or "0"
        _resp_command(f, "SELECT", db)
        deleted, cursor = 0, "0"
        while True:
            cursor, keys = _resp_command(f, "SCAN", cursor, "MATCH", f"{namespace}:*", "COUNT", 500)
            if keys:
                deleted += _resp_command(f, "DEL", *keys)
            if cursor == "0":
                return deleted


# --- PostgreSQL (throwaway databases, with psql) --------------------------------------------
def _psql(server_url: str, sql: str) -> None:
    subprocess.run(["psql", server_url, "-v", "ON_ERROR_STOP=1", "-qc", sql],
                   check=True, stdout=subprocess.DEVNULL)


def create_pg_database(server_url: str, prefix: str) -> tuple[str, str]:
    """Creates `mediapro_<prefix>_<random>` on the server; returns (name, its URL)."""
    name = "mediapro_" + "".join(c if c.isalnum() else "_" for c in prefix) + "_" + secrets.token_hex(4)
    _psql(server_url, f"CREATE DATABASE {name}")
    url = urllib.parse.urlsplit(server_url)
    return name, urllib.parse.urlunsplit(url._replace(path="/" + name))


def drop_pg_database(server_url: str, name: str) -> None:
    try:
        _psql(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    except subprocess.CalledProcessError:
        _psql(server_url, f"DROP DATABASE IF EXISTS {name}")  # servers before PostgreSQL 13


# --- HTTP -------------------------------------------------------------------------------------
def request(method: str, url: str, body=None, headers=None, data=None, timeout: float = 600):
    """(status, parsed JSON body) of one request; HTTP errors are answers too."""
    if body is not None:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


# --- an instance ------------------------------------------------------------------------------
class Instance:
    """An isolated API and/or workers; stop() (or leaving the `with`) removes everything
    it started or created: processes, temp dir, Redis keys, PostgreSQL database.

    workers: one dict per worker process: {"queues": "download,process", "concurrency": 2}
        ("concurrency" optional: `--concurrency`, which overrides both per-queue settings).
    overrides: {"section.key": value} (None = the built-in default, see the module doc).
    store: "sqlite" (a file in the temp dir) or "postgres" (a throwaway database on
        MEDIAPRO_TEST_PG_URL, default postgres://postgres@127.0.0.1:5432/test);
        database_url= uses that database as it is (not dropped).
    redis_url: default MEDIAPRO_TEST_REDIS_URL or redis://127.0.0.1:6379/15.
    """

    def __init__(self, api: bool = True, workers=(), overrides: dict | None = None, store: str = "sqlite",
                 database_url: str | None = None, redis_url: str | None = None, bins: str | None = None,
                 name: str = "test", rust_log: str = "warn"):
        self.tmp = tempfile.mkdtemp(prefix=f"mediapro-{name}-")
        self.bin_dir = bins or bin_dir()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.redis_url = redis_url or os.environ.get("MEDIAPRO_TEST_REDIS_URL", DEFAULT_REDIS_URL)
        self.namespace = new_namespace(name)
        self.api = None
        self.workers: list[subprocess.Popen] = []
        self._pg = None  # (server URL, database name) of a database to drop
        self._stopped = False
        try:
            if database_url is None and store == "postgres":
                server = os.environ.get("MEDIAPRO_TEST_PG_URL", DEFAULT_PG_URL)
                db_name, database_url = create_pg_database(server, name)
                self._pg = (server, db_name)
            elif database_url is None and store == "sqlite":
                database_url = f"sqlite://{self.tmp}/db.sqlite"
            elif database_url is None:
                raise ValueError(f"store must be 'sqlite' or 'postgres', not {store!r}")
            self.database_url = database_url
            settings = instance_env(tmp=self.tmp, port=self.port, redis_url=self.redis_url,
                                    namespace=self.namespace, database_url=database_url, overrides=overrides)
            self.storage_root = settings["MEDIAPRO__STORAGE__ROOT"]
            # The children see only this: no inherited MEDIAPRO__* or MEDIAPRO_CONFIG.
            self.env = {"PATH": os.environ["PATH"], "HOME": self.tmp, "RUST_LOG": rust_log, **settings}
            if api:
                self.api = self._spawn(["mediapro-api"], "api")
                self.wait_ready()
            for spec in workers:
                self.start_worker(**spec)
            if workers:
                time.sleep(1.0)  # let them register with Redis before the caller submits
        except BaseException:
            self.stop()
            raise

    def __enter__(self) -> "Instance":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _spawn(self, argv: list[str], log_name: str) -> subprocess.Popen:
        exe = os.path.join(self.bin_dir, argv[0])
        if not os.access(exe, os.X_OK):
            raise FileNotFoundError(f"{exe} not found: build it (cargo build --release -p mediapro-api "
                                    "-p mediapro-worker) or set MEDIAPRO_BIN_DIR")
        with open(os.path.join(self.tmp, f"{log_name}.log"), "w") as log:
            # The working directory is the temp dir: no mediapro.toml of the repository.
            return subprocess.Popen([exe, *argv[1:]], env=self.env, cwd=self.tmp, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Waits until the API's /readyz answers 200 (Redis and the store answer)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if request("GET", self.url + "/readyz", timeout=2)[0] == 200:
                    return
            except (OSError, ValueError):
                pass
            if self.api.poll() is not None:
                raise RuntimeError(f"mediapro-api exited during start-up: {self.log_tail('api')}")
            time.sleep(0.1)
        raise RuntimeError(f"mediapro-api not ready within {timeout:.0f} s: {self.log_tail('api')}")

    def start_worker(self, queues: str = "download,process", concurrency: int | None = None) -> subprocess.Popen:
        """Starts one more worker process; it is `self.workers[-1]`."""
        argv = ["mediapro-worker", "--queues", queues]
        if concurrency is not None:
            argv += ["--concurrency", str(concurrency)]
        proc = self._spawn(argv, f"worker{len(self.workers)}")
        self.workers.append(proc)
        return proc

    def kill_worker(self, i: int, sig: int = signal.SIGKILL, timeout: float = 60.0) -> int:
        """Sends `sig` to worker i and waits for it to exit; returns its exit status."""
        proc = self.workers[i]
        proc.send_signal(sig)
        return proc.wait(timeout=timeout)

    def log_tail(self, log_name: str, lines: int = 15) -> str:
        try:
            with open(os.path.join(self.tmp, f"{log_name}.log"), errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Stops the processes (SIGTERM, SIGKILL after 30 s), then removes the Redis
        keys of the namespace, the throwaway database and the temp dir. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        procs = [p for p in [self.api, *self.workers] if p is not None]
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        try:
            purge_redis(self.redis_url, self.namespace)
        except (OSError, RuntimeError, ValueError) as err:
            print(f"[launcher] could not delete Redis keys {self.namespace}:*: {err}", file=sys.stderr)
        if self._pg:
            try:
                drop_pg_database(*self._pg)
            except (OSError, subprocess.CalledProcessError) as err:
                print(f"[launcher] could not drop database {self._pg[1]}: {err}", file=sys.stderr)
        shutil.rmtree(self.tmp, ignore_errors=True)


# --- command line -----------------------------------------------------------------------------
def _overrides(args) -> dict:
    """--set KEY=VALUE and --default KEY, in order (a later one wins)."""
    overrides: dict = {}
    for kind, item in args.changes:
        if kind == "set":
            key, sep, value = item.partition("=")
            if not sep:
                raise SystemExit(f"launcher: --set {item}: expected KEY=VALUE")
            overrides[key] = value
        else:
            overrides[item] = None
    return overrides


class _Change(argparse.Action):
    """Collects --set and --default into one ordered list."""

    def __call__(self, parser, namespace, value, option_string=None):
        kind = "set" if option_string == "--set" else "default"
        namespace.changes = [*(namespace.changes or []), (kind, value)]


def _add_settings_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action=_Change, dest="changes", metavar="KEY=VALUE", default=[],
                   help="set a setting, e.g. worker.drain_timeout_seconds=5 (repeatable)")
    p.add_argument("--default", action=_Change, dest="changes", metavar="KEY",
                   help="use the built-in default of a key of tests/isolated.toml (repeatable)")
    p.add_argument("--redis-url", help=f"Redis (default MEDIAPRO_TEST_REDIS_URL or {DEFAULT_REDIS_URL})")
    p.add_argument("--name", default="test", help="prefix of the Redis namespace (default test)")


def cmd_env(args) -> int:
    """Prints `unset`/`export` lines for a shell script to eval."""
    if args.tmp:
        tmp = os.path.abspath(args.tmp)
        os.makedirs(tmp, exist_ok=True)
    else:
        tmp = tempfile.mkdtemp(prefix=f"mediapro-{args.name}-")
        print(f"[launcher] created {tmp}; the caller removes it", file=sys.stderr)
    env = instance_env(
        tmp=tmp,
        port=args.port or free_port(),
        redis_url=args.redis_url or os.environ.get("MEDIAPRO_TEST_REDIS_URL", DEFAULT_REDIS_URL),
        namespace=new_namespace(args.name),
        database_url=args.database_url or f"sqlite://{tmp}/db.sqlite",
        overrides=_overrides(args),
        inherit=args.inherit,
    )
    for name in sorted(os.environ):
        if (name.startswith("MEDIAPRO__") or name == "MEDIAPRO_CONFIG") and name not in env:
            print(f"unset {name}")
    for name, value in env.items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


def cmd_run(args) -> int:
    """Starts an instance and blocks until SIGINT/SIGTERM."""
    workers = []
    for spec in args.worker:
        queues, _, concurrency = spec.partition(":")
        workers.append({"queues": queues, "concurrency": int(concurrency) if concurrency else None})
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    profile_bins = bin_dir(args.profile)
    with Instance(api=not args.no_api, workers=workers, overrides=_overrides(args), store=args.store,
                  database_url=args.database_url, redis_url=args.redis_url, bins=profile_bins,
                  name=args.name, rust_log=os.environ.get("RUST_LOG", "info")) as inst:
        print(f"[launcher] {inst.url if inst.api else 'no API'}; {len(inst.workers)} worker(s); "
              f"namespace {inst.namespace}; storage {inst.storage_root}; logs in {inst.tmp}; Ctrl-C stops",
              flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("env", help="print shell `unset`/`export` lines of an isolated instance")
    _add_settings_options(p)
    p.add_argument("--tmp", help="directory for the SQLite file and storage root (created if needed)")
    p.add_argument("--port", type=int, help="API port (default: a free one)")
    p.add_argument("--database-url", help="task store (default: sqlite in --tmp)")
    p.add_argument("--inherit", action="store_true",
                   help="keep inherited MEDIAPRO__* variables (below --set and the per-instance keys)")
    p.set_defaults(func=cmd_env)

    p = sub.add_parser("run", help="start an isolated instance and wait for Ctrl-C")
    _add_settings_options(p)
    p.add_argument("--worker", action="append", default=[], metavar="QUEUES[:CONCURRENCY]",
                   help="start a worker process, e.g. download,process:2 (repeatable)")
    p.add_argument("--no-api", action="store_true")
    p.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--database-url")
    p.add_argument("--profile", choices=["release", "debug"], default="release")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("bin-dir", help="print the directory of the binaries")
    p.add_argument("--profile", choices=["release", "debug"], default="release")
    p.set_defaults(func=lambda a: print(bin_dir(a.profile)) or 0)

    p = sub.add_parser("purge-redis", help="delete the keys of a Redis namespace (SCAN + DEL)")
    p.add_argument("--redis-url", required=True)
    p.add_argument("--namespace", required=True)
    p.set_defaults(func=lambda a: print(purge_redis(a.redis_url, a.namespace)) or 0)

    args = ap.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:
        print(f"launcher: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
