"""Shared helpers of the benchmarks: start an isolated API (+ worker) from the
release binaries on a free port, with a temporary SQLite store, storage root and
Redis namespace, and clean everything up afterwards."""

import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("MEDIAPRO_BIN_DIR", os.path.join(ROOT, "target", "release"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(method, url, body=None, headers=None, data=None):
    if body is not None:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


class Service:
    def __init__(self, worker_queues=None, extra_env=None, workers=1):
        self.tmp = tempfile.mkdtemp(prefix="mediapro-bench-")
        self.root = os.path.join(self.tmp, "media")
        os.makedirs(self.root)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.redis_url = os.environ.get("MEDIAPRO__REDIS__URL", "redis://127.0.0.1:6379/0")
        self.namespace = "bench-" + secrets.token_hex(4)
        env = {
            "PATH": os.environ["PATH"],
            "HOME": self.tmp,
            "RUST_LOG": "warn",
            "MEDIAPRO__SERVER__BIND": f"127.0.0.1:{self.port}",
            "MEDIAPRO__REDIS__URL": self.redis_url,
            "MEDIAPRO__REDIS__NAMESPACE": self.namespace,
            "MEDIAPRO__DATABASE__URL": f"sqlite://{self.tmp}/db.sqlite",
            "MEDIAPRO__STORAGE__ROOT": self.root,
            "MEDIAPRO__SECURITY__ALLOW_PRIVATE_NETWORKS": "true",
            **(extra_env or {}),
        }
        self.procs = []
        self.api = self._spawn([os.path.join(BIN, "mediapro-api")], env, "api")
        self._wait_ready()
        if worker_queues:
            for i in range(workers):
                self._spawn([os.path.join(BIN, "mediapro-worker"), "--queues", worker_queues], env, f"worker{i}")
            time.sleep(1.0)

    def _spawn(self, argv, env, name):
        log = open(os.path.join(self.tmp, f"{name}.log"), "w")
        p = subprocess.Popen(argv, env=env, cwd=self.tmp, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def _wait_ready(self):
        for _ in range(300):
            try:
                if request("GET", self.url + "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            if self.api.poll() is not None:
                raise SystemExit("mediapro-api exited during start-up; see " + self.tmp)
            time.sleep(0.1)
        raise SystemExit("mediapro-api did not become ready")

    def wait_final(self, task_id, poll=0.02):
        while True:
            status, task = request("GET", f"{self.url}/api/tasks/{task_id}")
            if task["status"] in ("completed", "failed", "cancelled"):
                return task
            time.sleep(poll)

    def rss_kib(self, proc=None):
        pid = (proc or self.api).pid
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def close(self):
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        try:
            keys = subprocess.run(
                ["redis-cli", "-u", self.redis_url, "--scan", "--pattern", self.namespace + ":*"],
                capture_output=True, text=True, check=False,
            ).stdout.split()
            for i in range(0, len(keys), 500):
                subprocess.run(["redis-cli", "-u", self.redis_url, "del", *keys[i:i + 500]], capture_output=True, check=False)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


def make_clip(path, size, seconds):
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", str(seconds),
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", path],
        check=True,
    )
