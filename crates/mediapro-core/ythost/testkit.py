"""What the host's tests (test_ythost.py) and its benchmark (bench/ythost_bench.py)
share: a reference client of the host protocol (the Rust client is the real one),
the argument vectors the Rust builders make, the environment the Rust runner
gives a child, a local fixture server and clip, and the bare CLI to compare with.

Everything here talks to 127.0.0.1 or Unix sockets only."""

import http.server
import json
import os
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
HOST_SCRIPT = os.path.join(HERE, "ythost.py")


def ytdlp_cli():
    """The yt-dlp entry script of this interpreter (not a version-manager shim,
    which would add a shell start to every bare run), else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "yt-dlp")
    return beside if os.access(beside, os.X_OK) else shutil.which("yt-dlp")


# -- the argument vectors of crates/mediapro-core/src/ytdlp/command.rs (keep equal)

def _hardening(socket_timeout, proxy=None):
    args = ["--proxy", proxy] if proxy else []
    return args + ["--ignore-config", "--no-plugin-dirs", "--no-exec", "--no-cache-dir", "--no-batch-file",
                   "--default-search", "error", "--no-playlist", "--no-wait-for-video",
                   "--socket-timeout", str(socket_timeout)]


def analyze_argv(url, socket_timeout=20, proxy=None):
    return _hardening(socket_timeout, proxy) + [
        "--dump-single-json", "--skip-download", "--flat-playlist", "--playlist-items", "1:50",
        "--no-warnings", "--", url]


PROGRESS_TEMPLATE = ("download:MPPROG %(progress.status)s %(progress.downloaded_bytes)s %(progress.total_bytes)s "
                     "%(progress.total_bytes_estimate)s %(info.format_id)s %(progress.speed)s %(progress.eta)s")
POSTPROCESS_TEMPLATE = "postprocess:MPPOST %(progress.status)s %(progress.postprocessor)s"


def download_argv(url, output_dir, max_filesize=10 * 1024**3, socket_timeout=20, proxy=None, extra=()):
    """`extra` goes before `--` (tests only)."""
    return _hardening(socket_timeout, proxy) + [
        "--retries", "3", "--fragment-retries", "3", "--playlist-items", "1", "--restrict-filenames",
        "--trim-filenames", "120", "--no-mtime", "--no-part",
        "-P", f"home:{output_dir}", "-P", f"temp:{os.path.join(output_dir, '.part')}",
        "-o", "%(title).100B.%(ext)s", "--max-filesize", str(max_filesize), "--no-simulate",
        "--print", "after_move:MPFILE %(filepath)s", "--progress", "--newline",
        "--progress-template", PROGRESS_TEMPLATE, "--progress-template", POSTPROCESS_TEMPLATE,
        *extra, "--", url]


def child_env(home, extra=None):
    """The environment crates/mediapro-core/src/process.rs gives a child."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": home,
        "PYTHONNOUSERSITE": "1",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra or {})
    return env


# -- the host

class HostProcess:
    """A host started as the supervisor would: cleared environment, private HOME,
    no user site. `ready` is its first stdout line (decoded)."""

    def __init__(self, *args, extra_env=None, socket_path=None):
        self.dir = tempfile.mkdtemp(prefix="ythost-test-")
        os.chmod(self.dir, 0o700)
        self.socket = socket_path or os.path.join(self.dir, "host.sock")
        home = os.path.join(self.dir, "home")
        os.mkdir(home, 0o700)
        self.proc = subprocess.Popen(
            [sys.executable, "-s", HOST_SCRIPT, "--socket", self.socket, *args],
            env=child_env(home, extra_env), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"host did not start: {self.proc.stderr.read()}")
        self.ready = json.loads(line)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            f.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def host_info(sock_path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(sock_path)
        s.sendall(b'{"op":"info"}\n')
        return json.loads(_read_line(s))


def _read_line(s):
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf.decode()


class Job:
    """One run through the host: pipes made here, their write ends passed over
    the socket, the output read here until EOF, then the exit event."""

    def __init__(self, sock_path, argv, env, cwd=None, rlimit_as=None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(sock_path)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        request = {"op": "run", "argv": argv, "env": env, "cwd": cwd, "rlimit_as": rlimit_as}
        try:
            socket.send_fds(self.sock, [json.dumps(request).encode() + b"\n"], [out_w, err_w])
        finally:
            os.close(out_w)
            os.close(err_w)
        self.out_r, self.err_r = out_r, err_r
        self.rfile = self.sock.makefile("rb")
        started = json.loads(self.rfile.readline() or b"null")
        if not started or started.get("event") != "started":
            os.close(out_r)
            os.close(err_r)
            raise RuntimeError(f"host refused: {started}")
        self.pid = started["pid"]

    def finish(self, timeout=120):
        """Drains stdout and stderr to EOF, then reads the exit event."""
        out, err = bytearray(), bytearray()
        sel = selectors.DefaultSelector()
        sel.register(self.out_r, selectors.EVENT_READ, out)
        sel.register(self.err_r, selectors.EVENT_READ, err)
        deadline = time.monotonic() + timeout
        while sel.get_map():
            if time.monotonic() > deadline:
                raise TimeoutError("job output not finished in time")
            for key, _ in sel.select(timeout=1):
                chunk = os.read(key.fd, 65536)
                if chunk:
                    key.data.extend(chunk)
                else:
                    sel.unregister(key.fd)
                    os.close(key.fd)
        sel.close()
        self.sock.settimeout(timeout)
        line = self.rfile.readline()
        self.close()
        self.exit = json.loads(line) if line else None
        self.stdout, self.stderr = out.decode(), err.decode()
        return self

    def close(self):
        self.rfile.close()
        self.sock.close()


def run_cli(argv, env, cwd=None, timeout=120):
    return subprocess.run([ytdlp_cli(), *argv], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, start_new_session=True)


# -- the local fixture

def make_clip(path, seconds, size="320x180"):
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25", "-f", "lavfi", "-i", "sine",
         "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-shortest", path],
        check=True)


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/stall/"):
            # Headers and a first chunk, then nothing: a download that hangs.
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(50 * 1024 * 1024))
            self.end_headers()
            try:
                self.wfile.write(b"\x00" * 65536)
                self.wfile.flush()
                time.sleep(60)
            except OSError:
                pass
            return
        super().do_GET()


class FixtureServer:
    """http.server on 127.0.0.1 (random port) serving `root`; `/stall/<name>`
    answers and then hangs."""

    def __init__(self, root):
        handler = lambda *a, **kw: _Handler(*a, directory=root, **kw)  # noqa: E731
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def group_members(pgid):
    """Pids (not zombies) whose process group is `pgid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry))
    return found
