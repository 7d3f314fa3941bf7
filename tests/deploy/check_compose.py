#!/usr/bin/env python3
"""Static checks of the container deployment: docker/compose.yaml, docker/Dockerfile
and docker/nginx.conf (no Docker engine is needed or used).

Prints one PASS/FAIL line per check and exits 1 if any check failed (2 if the
files cannot be read or PyYAML is missing).

Usage: python3 tests/deploy/check_compose.py [--compose FILE] [--dockerfile FILE]
Needs PyYAML (Debian: apt-get install -y python3-yaml; pip: PyYAML).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from pathlib import Path

try:
    import yaml
except ImportError:
    # The interpreter first on PATH may be another one than Debian's (pyenv, a
    # venv); python3-yaml installs for /usr/bin/python3 only.
    debian = "/usr/bin/python3"
    if os.environ.get("CHECK_COMPOSE_REEXEC") != "1" and os.path.realpath(sys.executable) != os.path.realpath(
        debian
    ) and os.access(debian, os.X_OK):
        os.environ["CHECK_COMPOSE_REEXEC"] = "1"
        os.execv(debian, [debian, *sys.argv])
    print("check_compose: PyYAML is missing: apt-get install -y python3-yaml (or pip install PyYAML)", file=sys.stderr)
    sys.exit(2)

ROOT = Path(__file__).resolve().parents[2]

REQUIRED_SERVICES = ["redis", "postgres", "api", "worker-download", "worker-process", "nginx"]
APP_SERVICES = ["api", "worker-download", "worker-process"]
WORKERS = {"worker-download": "download,playlist", "worker-process": "process"}
DEFAULT_DRAIN_SECONDS = 25  # worker.drain_timeout_seconds default (README.md)
DEFAULT_API_PORT = 5000
YTDLP_PIN = re.compile(r"yt-dlp==([^\s\"']+)")

results: list[tuple[bool, str]] = []


def check(ok: bool, what: str, detail: str = "") -> bool:
    results.append((bool(ok), what))
    line = f"{'PASS' if ok else 'FAIL'}  {what}"
    if detail:
        line += f"  ({detail})"
    print(line)
    return bool(ok)


# --- helpers -----------------------------------------------------------------


def as_list(command) -> list[str]:
    """A compose command (list or shell-like string) as a list of words."""
    if command is None:
        return []
    if isinstance(command, str):
        return shlex.split(command)
    return [str(c) for c in command]


def env_map(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        out = {}
        for item in env:
            key, _, value = str(item).partition("=")
            out[key] = value
        return out
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def mounts(service: dict) -> list[dict]:
    """Volumes of a service as dicts {type, source, target, read_only}."""
    out = []
    for v in service.get("volumes") or []:
        if isinstance(v, str):
            parts = v.split(":")
            if len(parts) == 1:
                out.append({"type": "volume", "source": None, "target": parts[0], "read_only": False})
                continue
            source, target = parts[0], parts[1]
            mode = parts[2] if len(parts) > 2 else ""
            kind = "bind" if source.startswith((".", "/", "~", "$")) else "volume"
            out.append({"type": kind, "source": source, "target": target, "read_only": "ro" in mode.split(",")})
        else:
            out.append(
                {
                    "type": v.get("type", "volume"),
                    "source": v.get("source"),
                    "target": v.get("target"),
                    "read_only": bool(v.get("read_only", False)),
                }
            )
    return out


DURATION = re.compile(r"(\d+(?:\.\d+)?)(us|ms|h|m|s)")


def seconds(value) -> float | None:
    """A compose duration ("30s", "1m30s", "500ms") or a number of seconds."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    pos, total = 0, 0.0
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    for m in DURATION.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * scale[m.group(2)]
        pos = m.end()
    return total if pos == len(text) and pos > 0 else None


def depends(service: dict) -> dict[str, str]:
    dep = service.get("depends_on") or {}
    if isinstance(dep, list):
        return {d: "service_started" for d in dep}
    return {k: (v or {}).get("condition", "service_started") for k, v in dep.items()}


def healthcheck_disabled(service: dict) -> bool:
    hc = service.get("healthcheck")
    if not isinstance(hc, dict):
        return False
    test = hc.get("test")
    return hc.get("disable") is True or test == ["NONE"] or test == "NONE"


# --- Dockerfile ----------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    if buf.strip():
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def check_dockerfile(path: Path) -> dict:
    """Checks the Dockerfile; returns facts the compose checks use (ENV of the final stage)."""
    print(f"\n== {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    text = path.read_text()
    instr = dockerfile_instructions(text)
    stages: list[list[tuple[str, str]]] = []
    for word, args in instr:
        if word == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((word, args))
    froms = [a for w, a in instr if w == "FROM"]
    check(len(froms) >= 2, "Dockerfile is multi-stage (at least two FROM)", "; ".join(froms))
    if not stages:
        return {}
    final = stages[-1]
    runs_all = " ".join(a for w, a in instr if w == "RUN")
    runs_final = " ".join(a for w, a in final if w == "RUN")
    args = {}
    for w, a in instr:
        if w == "ARG" and "=" in a:
            k, _, v = a.partition("=")
            args[k.strip()] = v.strip().strip('"')

    def expand(s: str) -> str:
        return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), s)

    build = [expand(a) for w, a in instr if w == "RUN" and "cargo build" in a]
    build_text = " ".join(build)
    check(
        bool(build) and "--release" in build_text and "--locked" in build_text,
        "builder runs cargo build --release --locked",
    )
    for binary in ("mediapro-api", "mediapro-worker"):
        builds_it = bool(re.search(rf"(-p|--package)[ =]{binary}\b", build_text)) or "--workspace" in build_text
        check(builds_it, f"builder builds {binary}")
        copied = any(w == "COPY" and binary in a for w, a in final)
        check(copied, f"final stage copies {binary} in")

    check(bool(re.search(r"apt-get install[^&;]*\bffmpeg\b", runs_final)), "final stage installs ffmpeg (apt)")
    check(bool(re.search(r"\btini\b", runs_final)), "final stage installs tini")
    pins = [expand(m.group(0)) for m in YTDLP_PIN.finditer(runs_final)]
    pinned = [p for p in pins if re.fullmatch(r"yt-dlp==\d{4}\.\d{1,2}\.\d{1,2}(\.\d+)?", p)]
    check(bool(pinned), "final stage pins yt-dlp to one release", ", ".join(pins) or "no yt-dlp==VERSION")
    unpinned = re.search(r"pip3? install[^&;]*\byt-dlp\b(?!==)", runs_all)
    check(not unpinned, "no unpinned yt-dlp install")

    users = [a for w, a in final if w == "USER"]
    user = users[-1] if users else ""
    name = user.split(":")[0]
    check(bool(user) and name not in ("root", "0"), "final stage runs as a non-root USER", user or "no USER")
    check(any(w == "HEALTHCHECK" and not a.upper().startswith("NONE") for w, a in final), "final stage has a HEALTHCHECK")
    entry = [a for w, a in final if w == "ENTRYPOINT"]
    check(bool(entry) and "tini" in entry[-1], "ENTRYPOINT is tini (signal forwarding, zombie reaping)", entry[-1] if entry else "")
    cmd = [a for w, a in final if w == "CMD"]
    check(bool(cmd) and "mediapro-api" in cmd[-1], "default CMD runs mediapro-api", cmd[-1] if cmd else "")
    exposes = " ".join(a for w, a in final if w == "EXPOSE")
    check(str(DEFAULT_API_PORT) in exposes.split() or f"{DEFAULT_API_PORT}/tcp" in exposes.split(), "EXPOSE 5000")

    env = {}
    for w, a in final:
        if w == "ENV":
            for m in re.finditer(r"(\w+)=(\"[^\"]*\"|\S+)", a):
                env[m.group(1)] = m.group(2).strip('"')
    check(env.get("MEDIAPRO__SERVER__BIND", "").endswith(f":{DEFAULT_API_PORT}") and env.get(
        "MEDIAPRO__SERVER__BIND", ""
    ).startswith("0.0.0.0"), "ENV MEDIAPRO__SERVER__BIND listens on 0.0.0.0:5000", env.get("MEDIAPRO__SERVER__BIND", "unset"))
    check(bool(env.get("MEDIAPRO__STORAGE__ROOT")), "ENV MEDIAPRO__STORAGE__ROOT set", env.get("MEDIAPRO__STORAGE__ROOT", "unset"))
    return {"env": env}


# --- compose ---------------------------------------------------------------------


def check_compose(path: Path, dockerfile: Path, image_env: dict[str, str]) -> None:
    print(f"\n== {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    doc = yaml.safe_load(path.read_text())
    services = doc.get("services") or {}
    for name in REQUIRED_SERVICES:
        check(name in services, f"service {name} exists")
    if not all(n in services for n in REQUIRED_SERVICES):
        return
    declared_volumes = doc.get("volumes") or {}
    for vol in ("media", "redis-data", "pg-data"):
        check(vol in declared_volumes, f"named volume {vol} declared")

    # redis
    redis = services["redis"]
    words = as_list(redis.get("command"))
    joined = " ".join(words)
    check("--appendonly yes" in joined, "redis: --appendonly yes", joined)
    check("--appendfsync everysec" in joined, "redis: --appendfsync everysec")
    check("--maxmemory-policy noeviction" in joined, "redis: --maxmemory-policy noeviction")
    check(any(m["source"] == "redis-data" and m["target"] == "/data" for m in mounts(redis)), "redis: redis-data volume at /data")

    # postgres
    pg = services["postgres"]
    pg_env = env_map(pg)
    check(str(pg.get("image", "")).startswith("postgres:"), "postgres: postgres image", pg.get("image", ""))
    check(all(k in pg_env for k in ("POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD")), "postgres: POSTGRES_DB/USER/PASSWORD set")
    check(any(m["source"] == "pg-data" for m in mounts(pg)), "postgres: pg-data volume")
    test = " ".join(as_list((pg.get("healthcheck") or {}).get("test")))
    check("pg_isready" in test, "postgres: healthcheck runs pg_isready", test)

    # application image
    for name in APP_SERVICES:
        svc = services[name]
        build = svc.get("build")
        if isinstance(build, dict):
            context = (path.parent / build.get("context", ".")).resolve()
            df = (context / build.get("dockerfile", "Dockerfile")).resolve()
            check(df == dockerfile.resolve(), f"{name}: built from {dockerfile.name}", f"context {context}, dockerfile {df}")
        else:
            check(bool(svc.get("image")), f"{name}: uses an image", "no build section")
    images = {services[n].get("image") for n in APP_SERVICES}
    check(len(images) == 1 and None not in images, "api and workers run the same image", ", ".join(map(str, images)))

    # settings shared by api and workers
    envs = {n: {**image_env, **env_map(services[n])} for n in APP_SERVICES}
    for key in ("MEDIAPRO__DATABASE__URL", "MEDIAPRO__REDIS__URL", "MEDIAPRO__STORAGE__ROOT"):
        values = {envs[n].get(key) for n in APP_SERVICES}
        check(len(values) == 1 and None not in values, f"api and workers agree on {key}", ", ".join(map(str, values)))
    db = envs["api"].get("MEDIAPRO__DATABASE__URL", "")
    check(db.startswith(("postgres://", "postgresql://")) and "@postgres" in db, "task store is the postgres service", db)
    check(envs["api"].get("MEDIAPRO__REDIS__URL", "").startswith("redis://redis:"), "queues are the redis service", envs["api"].get("MEDIAPRO__REDIS__URL", ""))

    # the shared media volume
    storage = envs["api"].get("MEDIAPRO__STORAGE__ROOT")
    media_mounts = {}
    for name in APP_SERVICES:
        at = [m for m in mounts(services[name]) if m["target"] == storage]
        media_mounts[name] = (at[0]["type"], at[0]["source"], at[0]["target"], at[0]["read_only"]) if at else None
        check(bool(at) and at[0]["source"], f"{name}: a volume at the storage root {storage}", str(media_mounts[name]))
    same = len(set(media_mounts.values())) == 1 and None not in media_mounts.values()
    check(same, "api and workers mount the same volume at the same path")
    any_mount = next(iter(media_mounts.values()))
    if same and any_mount and any_mount[0] == "volume":
        check(any_mount[1] in declared_volumes, f"the media volume '{any_mount[1]}' is a declared named volume")
    check(all(m and not m[3] for m in media_mounts.values()), "media volume is writable in api and workers")

    # api
    api = services["api"]
    api_cmd = as_list(api.get("command")) or ["mediapro-api"]
    check(api_cmd[0] == "mediapro-api", "api: runs mediapro-api", " ".join(api_cmd))
    dep = depends(api)
    check(dep.get("redis") == "service_healthy" and dep.get("postgres") == "service_healthy", "api: waits for healthy redis and postgres", str(dep))
    check(not healthcheck_disabled(api), "api: keeps a healthcheck")

    # workers
    drain = DEFAULT_DRAIN_SECONDS
    for name, queue in WORKERS.items():
        svc = services[name]
        words = as_list(svc.get("command"))
        queues = None
        for i, w in enumerate(words):
            if w == "--queues" and i + 1 < len(words):
                queues = words[i + 1]
            elif w.startswith("--queues="):
                queues = w.split("=", 1)[1]
        check(bool(words) and words[0] == "mediapro-worker" and queues == queue, f"{name}: runs mediapro-worker --queues {queue}", " ".join(words))
        d = seconds(envs[name].get("MEDIAPRO__WORKER__DRAIN_TIMEOUT_SECONDS", DEFAULT_DRAIN_SECONDS))
        drain = d if d is not None else DEFAULT_DRAIN_SECONDS
        grace = seconds(svc.get("stop_grace_period"))
        check(
            grace is not None and grace >= 30 and grace > drain,
            f"{name}: stop_grace_period >= 30s and longer than the {drain:g} s drain",
            f"stop_grace_period {svc.get('stop_grace_period')}",
        )
        check(healthcheck_disabled(svc) or bool((svc.get("healthcheck") or {}).get("test")), f"{name}: image's HTTP healthcheck disabled or replaced")
        wdep = depends(svc)
        check(wdep.get("redis") == "service_healthy" and wdep.get("postgres") == "service_healthy", f"{name}: waits for healthy redis and postgres")
        replicas = (svc.get("deploy") or {}).get("replicas")
        check(replicas is None or int(replicas) >= 1, f"{name}: replicas {replicas if replicas is not None else 'default (1)'}")

    # nginx
    nginx = services["nginx"]
    check(str(nginx.get("image", "")).startswith("nginx:"), "nginx: nginx image", nginx.get("image", ""))
    ports = [str(p) if not isinstance(p, dict) else f"{p.get('published')}:{p.get('target')}" for p in nginx.get("ports") or []]
    check(any(p.split(":")[-1].split("/")[0] == "80" for p in ports), "nginx: publishes container port 80", ", ".join(ports))
    conf_mount = [m for m in mounts(nginx) if m["source"] and m["source"].endswith("nginx.conf")]
    conf_path = (path.parent / conf_mount[0]["source"]).resolve() if conf_mount else None
    check(bool(conf_path) and conf_path.is_file(), "nginx: mounts docker/nginx.conf", str(conf_path))
    check(bool(conf_mount) and conf_mount[0]["target"].startswith("/etc/nginx/conf.d/") and conf_mount[0]["target"].endswith(".conf"), "nginx: config mounted into /etc/nginx/conf.d/ (http context)")
    if conf_path and conf_path.is_file():
        conf = conf_path.read_text()
        upstream = re.search(r"^\s*server\s+([\w.-]+):(\d+)", conf, re.M)
        api_port = envs["api"].get("MEDIAPRO__SERVER__BIND", f":{DEFAULT_API_PORT}").rsplit(":", 1)[-1]
        check(
            bool(upstream) and upstream.group(1) == "api" and upstream.group(2) == api_port,
            "nginx: upstream is the api service on its bind port",
            upstream.group(0).strip() if upstream else "no upstream server",
        )
        check(bool(re.search(r"location\s+(\^~\s+)?/api/?\s*\{", conf)), "nginx: location /api/ proxied")
        ui = re.search(r"location\s+/\s*\{([^}]*)\}", conf)
        check(bool(ui) and "proxy_pass http://mediapro_api" in ui.group(1), "nginx: location / (the web UI) is proxied to the API")
        check("SECURITY__API_KEYS" in " ".join(envs["api"].keys()), "api: keys are configured (required on a non-loopback bind)")
    dep = depends(nginx)
    check("api" in dep, "nginx: depends on api", str(dep))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compose", type=Path, default=ROOT / "docker" / "compose.yaml")
    ap.add_argument("--dockerfile", type=Path, default=ROOT / "docker" / "Dockerfile")
    opts = ap.parse_args()
    for p in (opts.compose, opts.dockerfile):
        if not p.is_file():
            print(f"check_compose: {p} not found", file=sys.stderr)
            return 2
    facts = check_dockerfile(opts.dockerfile)
    check_compose(opts.compose, opts.dockerfile, facts.get("env", {}))
    failed = sum(1 for ok, _ in results if not ok)
    passed = len(results) - failed
    print(f"\ncheck_compose: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
