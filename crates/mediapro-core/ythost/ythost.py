"""ythost: a warm, forking yt-dlp host.

Why this exists: most of the time of a short yt-dlp run (an analyze, a small
download) is the interpreter starting and yt-dlp importing and warming itself up,
paid again on every call. This program pays it once: it imports yt-dlp, warms it
(extractor classes, one throwaway analyze and one throwaway download of a local
input it serves itself on 127.0.0.1), then waits on a Unix socket. Per request it
FORKS; the child runs exactly one yt-dlp invocation and exits, so every job stays
isolated (own process, own process group, killable, memory returned on exit).

Why it lives here (crates/mediapro-core/ythost/): mediapro-core owns running
yt-dlp (the argument builders in src/ytdlp/, the runner in src/process.rs), and
the Rust client that talks to this host belongs beside them. It is the one piece
of the project that is not Rust, because yt-dlp is a Python library. It uses the
standard library only (plus yt-dlp itself).

The child runs `yt_dlp.main(argv)` -- the CLI's own entry point, which turns the
argument vector into options with `yt_dlp.parse_options` -- with the argv the Rust
builders make (crates/mediapro-core/src/ytdlp/command.rs), so the CLI path and the
warm path cannot drift. Its stdout and stderr are the pipes the caller passed, so
the caller reads progress lines, printed paths, the info JSON and the stderr tail
exactly as it reads the CLI's.

Protocol (version 1). One connection per request, on a SOCK_STREAM Unix socket
created 0600; the peer must have the host's uid (SO_PEERCRED). Every message is
one JSON object on one line (UTF-8, "\\n"-terminated).

  caller -> host, with SCM_RIGHTS carrying exactly two fds, [stdout, stderr]
  (the write ends of the caller's pipes; sent with the first bytes):
    {"op": "run", "argv": [...], "env": {"K": "V", ...}, "cwd": "/dir" | null,
     "rlimit_as": <bytes> | null}
  host -> caller:
    {"event": "started", "pid": <pid>}       the child leads its own process
                                              group (pgid == pid), already set
    {"event": "exit", "pid": <pid>, "code": <int> | null, "signal": <int> | null}
  then the host closes the connection. A request the host refuses gets
    {"event": "error", "message": "..."}     and the connection is closed.

  caller -> host, no fds:  {"op": "info"}
  host -> caller:  {"event": "info", "yt_dlp": "<version>", "python": "...",
                    "pid": <host pid>, "jobs": <started so far>, "rss_kib": <int>}

Rules the caller relies on:
  - The child gets exactly the environment in "env" (the host's own is
    dropped), "cwd" as its working directory, stdin from /dev/null, every other
    inherited descriptor closed, default signal dispositions, and an address
    space limit of "rlimit_as" bytes when given. This is the same as the Rust
    runner's spawn: cleared env, private HOME, proxy settings -- all given by
    the caller.
  - The caller kills the job by signalling the process group -pid (SIGTERM,
    then SIGKILL), as it does for a spawned CLI.
  - If the caller closes the connection before "exit", the host SIGKILLs the
    child's process group (the caller went away: nobody reads the output).
  - If the host dies, the connection closes without "exit"; the caller kills
    the group itself and treats the run as failed to start / transient.

Host lifecycle. The host reaps its children (one pidfd per child). After
--max-jobs children, or when its own RSS passes --max-rss-mib, it stops
listening (closes and unlinks the socket), prints {"event": "draining"} on its
stdout, lets the running children finish and exits 0; its supervisor starts a
new one (it may do so as soon as "draining" is printed: the path is free).
SIGTERM and SIGINT drain too. With --watch-stdin, EOF on stdin (the supervisor
died) drains as well. On start the host prints {"event": "ready", ...} with its
yt-dlp version once it listens. It must be started with the environment the
children's locale should have (LANG/LC_ALL), and without the user site
(`python3 -s` or PYTHONNOUSERSITE=1): what a module import leaves in the host
is what every child starts from. After `pip install -U yt-dlp`, restarting the
host picks the new version up (the version is in "ready" and "info").

Usage: python3 -s ythost.py --socket PATH [--max-jobs N] [--max-rss-mib M]
                              [--no-warmup] [--watch-stdin]
"""

import argparse
import atexit
import errno
import io
import json
import os
import selectors
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import traceback

import yt_dlp
import yt_dlp.utils
import yt_dlp.version

PROTOCOL_VERSION = 1
MAX_REQUEST_BYTES = 1024 * 1024
# A connection that has not sent its whole request by then is dropped.
REQUEST_DEADLINE_SECONDS = 10.0


def log(message):
    """One line on stderr (the supervisor's log)."""
    try:
        sys.stderr.write(f"ythost[{os.getpid()}]: {message}\n")
        sys.stderr.flush()
    except OSError:
        pass


def announce(event):
    """One JSON line on stdout (machine-readable, for the supervisor)."""
    try:
        sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
        sys.stdout.flush()
    except OSError:
        pass


def rss_kib():
    with open("/proc/self/statm", "rb") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * (os.sysconf("SC_PAGE_SIZE") // 1024)


# ---------------------------------------------------------------- the child


def _exit_code(exc):
    """Like the interpreter's own handling of SystemExit."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        sys.stderr.write(f"{code}\n")
    except Exception:  # noqa: BLE001 -- the exit must happen regardless
        pass
    return 1


def _std_streams(encoding, errors):
    """Fresh stdin/stdout/stderr on fds 0-2, unbuffered like `python3 -u`
    (the CLI runs with PYTHONUNBUFFERED=1): each line reaches the pipe when
    yt-dlp writes it."""

    def wrap(fd, mode):
        raw = io.FileIO(fd, mode, closefd=False)
        if mode == "r":
            return io.TextIOWrapper(io.BufferedReader(raw), encoding=encoding, errors=errors)
        return io.TextIOWrapper(raw, encoding=encoding, errors=errors, write_through=True)

    sys.stdin = sys.__stdin__ = wrap(0, "r")
    sys.stdout = sys.__stdout__ = wrap(1, "w")
    sys.stderr = sys.__stderr__ = wrap(2, "w")


def run_child(request, out_fd, err_fd, encoding, errors):
    """In the forked child: become a clean, isolated yt-dlp process and run the
    request's argv. Never returns."""
    code = 1
    try:
        os.setpgid(0, 0)  # own process group (the parent sets it too): the caller kills -pid
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGQUIT, signal.SIGUSR1):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.set_wakeup_fd(-1)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        # The listening socket, other jobs' connections and pipes, the
        # selector, pidfds: none of them is this job's business, and a pipe
        # end held here would delay another job's EOF.
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        _std_streams(encoding, errors)
        os.environ.clear()
        os.environ.update(request["env"])
        if request.get("cwd"):
            os.chdir(request["cwd"])
        if request.get("rlimit_as"):
            import resource

            limit = int(request["rlimit_as"])
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        sys.argv = ["yt-dlp", *request["argv"]]
        # The CLI picks a random User-Agent per process at import; so does a child.
        from yt_dlp.utils.networking import random_user_agent, std_headers

        std_headers["User-Agent"] = random_user_agent()
        try:
            yt_dlp.main(list(request["argv"]))
            code = 0
        except SystemExit as e:
            code = _exit_code(e)
        except KeyboardInterrupt:
            code = 128 + signal.SIGINT
        except BaseException:  # noqa: BLE001 -- as the interpreter would: traceback, exit 1
            traceback.print_exc()
            code = 1
        try:
            atexit._run_exitfuncs()
        except BaseException:  # noqa: BLE001
            pass
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001
                pass
    except BaseException:  # noqa: BLE001 -- setting up failed: say why on the job's stderr
        try:
            os.write(2, traceback.format_exc().encode("utf-8", "replace"))
        except OSError:
            pass
        code = 126
    os._exit(code)


# ---------------------------------------------------------------- warm-up


def _serve_warmup_payload(listener):
    """In a forked helper: answer every GET/HEAD with a few KiB typed video/mp4
    (enough for the generic extractor's direct-link path), until killed."""
    body = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 4096
    while True:
        conn, _ = listener.accept()
        try:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data and len(data) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            head = data.startswith(b"HEAD ")
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nConnection: close\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + (b"" if head else body)
            )
        except OSError:
            pass
        finally:
            conn.close()


def _quietly(fn):
    """Runs fn with fds 1 and 2 on /dev/null (the warm-up's output is noise)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        try:
            return fn()
        except SystemExit as e:
            return e.code
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def warm_up():
    """Loads the extractor classes and runs one analyze and one download of a
    local input through the CLI entry point, so the lazy imports (the generic
    extractor, the HTTP downloader, the post-processors, the ffmpeg version
    probe) are done before the first fork. Loopback only. Returns a dict of
    timings; failures are logged, not fatal (the children still work, cold)."""
    timings = {}
    t = time.monotonic()
    yt_dlp.list_extractor_classes()
    timings["extractors_ms"] = round((time.monotonic() - t) * 1000)

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    server = os.fork()
    if server == 0:
        try:
            _serve_warmup_payload(listener)
        finally:
            os._exit(0)
    listener.close()
    url = f"http://127.0.0.1:{port}/warmup.mp4"
    common = ["--ignore-config", "--no-plugin-dirs", "--no-exec", "--no-cache-dir", "--no-batch-file",
              "--default-search", "error", "--no-playlist", "--no-wait-for-video", "--socket-timeout", "5"]
    try:
        t = time.monotonic()
        rc = _quietly(lambda: yt_dlp.main(common + ["--dump-single-json", "--skip-download", "--", url]))
        timings["analyze_ms"] = round((time.monotonic() - t) * 1000)
        if rc not in (0, None):
            log(f"warm-up analyze exited {rc}")
        with tempfile.TemporaryDirectory(prefix="ythost-warmup-") as tmp:
            t = time.monotonic()
            rc = _quietly(lambda: yt_dlp.main(common + [
                "--no-part", "--no-mtime", "-P", f"home:{tmp}", "-P", f"temp:{tmp}/.part",
                "-o", "%(title).100B.%(ext)s", "--no-simulate", "--print", "after_move:MPFILE %(filepath)s",
                "--progress", "--newline", "--progress-template", "download:MPPROG %(progress.status)s",
                "--", url]))
            timings["download_ms"] = round((time.monotonic() - t) * 1000)
            if rc not in (0, None):
                log(f"warm-up download exited {rc}")
    except Exception as e:  # noqa: BLE001 -- best effort
        log(f"warm-up failed: {e!r}")
    finally:
        os.kill(server, signal.SIGKILL)
        os.waitpid(server, 0)
        # yt-dlp's entry point renamed this process; the host is not a yt-dlp run.
        yt_dlp.utils.setproctitle("ythost")
    return timings


# ---------------------------------------------------------------- the host


class Conn:
    """One caller's connection: reading its request, then waiting for its child."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.fds = []
        self.pid = None
        self.pidfd = None
        self.deadline = time.monotonic() + REQUEST_DEADLINE_SECONDS

    def send(self, event):
        try:
            self.sock.sendall(json.dumps(event, separators=(",", ":")).encode() + b"\n")
            return True
        except OSError:
            return False

    def close_fds(self):
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []


class Host:
    def __init__(self, path, max_jobs, max_rss_kib, watch_stdin):
        self.path = path
        self.max_jobs = max_jobs
        self.max_rss_kib = max_rss_kib
        self.jobs = 0
        self.draining = False
        self.conns = set()
        self.sel = selectors.DefaultSelector()
        self.uid = os.getuid()
        old = os.umask(0o177)
        try:
            if os.path.exists(path) and not self._is_live(path):
                os.unlink(path)  # a socket left by a host that died
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.listener.bind(path)
        finally:
            os.umask(old)
        self.inode = os.stat(path).st_ino
        self.listener.listen(128)
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, ("listen", None))
        # Signals only set a flag and wake the loop through this pipe.
        self.wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        self.stop_requested = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop_signal)
        self.sel.register(self.wake_r, selectors.EVENT_READ, ("wake", None))
        if watch_stdin:
            self.sel.register(sys.stdin.fileno(), selectors.EVENT_READ, ("stdin", None))
        self.encoding = sys.stdout.encoding
        self.errors = sys.stdout.errors

    @staticmethod
    def _is_live(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
            return True
        except OSError:
            return False
        finally:
            probe.close()

    def _on_stop_signal(self, signum, frame):
        self.stop_requested = True

    def info(self):
        return {
            "event": "info",
            "protocol": PROTOCOL_VERSION,
            "yt_dlp": yt_dlp.version.__version__,
            "python": sys.version.split()[0],
            "pid": os.getpid(),
            "jobs": self.jobs,
            "rss_kib": rss_kib(),
        }

    # -- accepting and reading requests

    def _accept(self):
        while True:
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE):
                    log(f"accept: {e}")
                    return
                raise
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _, peer_uid, _ = struct.unpack("3i", creds)
            if peer_uid != self.uid:
                log(f"refused a connection from uid {peer_uid}")
                sock.close()
                continue
            sock.setblocking(False)
            conn = Conn(sock)
            self.conns.add(conn)
            self.sel.register(sock, selectors.EVENT_READ, ("conn", conn))

    def _read(self, conn):
        try:
            data, fds, _, _ = socket.recv_fds(conn.sock, 65536, 4)
        except BlockingIOError:
            return
        except OSError:
            data, fds = b"", []
        conn.fds.extend(fds)
        if conn.pid is not None:
            # Running: the caller has nothing more to say; EOF means it went away.
            for fd in fds:
                os.close(fd)
            if not data:
                self._caller_gone(conn)
            return
        if not data:
            self._drop(conn)
            return
        conn.buf += data
        if b"\n" not in conn.buf:
            if len(conn.buf) > MAX_REQUEST_BYTES:
                self._refuse(conn, "request too large")
            return
        line = conn.buf.split(b"\n", 1)[0]
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("not an object")
        except ValueError as e:
            self._refuse(conn, f"request is not a JSON object: {e}")
            return
        op = request.get("op")
        if op == "info":
            conn.send(self.info())
            self._drop(conn)
        elif op == "run":
            self._start(conn, request)
        else:
            self._refuse(conn, f"unknown op {op!r}")

    def _refuse(self, conn, message):
        conn.send({"event": "error", "message": message})
        self._drop(conn)

    def _drop(self, conn):
        conn.close_fds()
        if conn in self.conns:
            self.conns.discard(conn)
            try:
                self.sel.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
            conn.sock.close()

    # -- running a job

    @staticmethod
    def _validate(request):
        argv, env, cwd, limit = request.get("argv"), request.get("env"), request.get("cwd"), request.get("rlimit_as")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            return "argv must be a non-empty list of strings"
        if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            return "env must be an object of strings"
        if any("\0" in s for s in argv) or any("\0" in k or "=" in k or "\0" in v for k, v in env.items()):
            return "argv and env must not contain NUL (or '=' in a name)"
        if cwd is not None and (not isinstance(cwd, str) or not os.path.isabs(cwd)):
            return "cwd must be an absolute path or null"
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0):
            return "rlimit_as must be a positive integer or null"
        return None

    def _start(self, conn, request):
        problem = self._validate(request)
        if problem is None and len(conn.fds) != 2:
            problem = f"expected 2 descriptors (stdout, stderr), got {len(conn.fds)}"
        if problem is None and self.draining:
            problem = "draining"
        if problem is not None:
            self._refuse(conn, problem)
            return
        out_fd, err_fd = conn.fds
        if threading.active_count() != 1:
            # fork() copies only the calling thread; the host never starts one.
            log(f"warning: {threading.active_count()} threads at fork")
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as e:  # EAGAIN, ENOMEM: this run cannot start; the host carries on
            self._refuse(conn, f"fork failed: {e}")
            return
        if pid == 0:
            run_child(request, out_fd, err_fd, self.encoding, self.errors)  # never returns
        # Set here too, so the group exists before "started" reaches the caller
        # (whichever of parent and child runs first).
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass  # the child already did, or is already gone
        conn.close_fds()  # the child holds the pipe ends now; EOF is its business
        conn.pid = pid
        self.jobs += 1
        conn.pidfd = os.pidfd_open(pid)
        self.sel.register(conn.pidfd, selectors.EVENT_READ, ("child", conn))
        if not conn.send({"event": "started", "pid": pid}):
            self._caller_gone(conn)
        if self.max_jobs and self.jobs >= self.max_jobs:
            self._drain(f"{self.jobs} jobs started (max {self.max_jobs})")
        elif self.max_rss_kib and rss_kib() > self.max_rss_kib:
            self._drain(f"RSS {rss_kib()} KiB above {self.max_rss_kib} KiB")

    def _caller_gone(self, conn):
        """The caller closed its connection while its child runs: nobody will
        read the output or kill the group, so the host does."""
        try:
            os.killpg(conn.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
        conn.sock = None

    def _reap(self, conn):
        _, status = os.waitpid(conn.pid, 0)
        self.sel.unregister(conn.pidfd)
        os.close(conn.pidfd)
        conn.pidfd = None
        if conn.sock is not None:
            code = os.waitstatus_to_exitcode(status)
            conn.send({
                "event": "exit",
                "pid": conn.pid,
                "code": code if code >= 0 else None,
                "signal": -code if code < 0 else None,
            })
            try:
                self.sel.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
            conn.sock.close()
            conn.sock = None
        self.conns.discard(conn)

    # -- lifecycle

    def _drain(self, why):
        if self.draining:
            return
        self.draining = True
        log(f"draining: {why}")
        self.sel.unregister(self.listener)
        self.listener.close()
        try:
            if os.stat(self.path).st_ino == self.inode:
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        announce({"event": "draining", "reason": why, "jobs": self.jobs})
        # Connections still reading a request will never be served.
        for conn in [c for c in self.conns if c.pid is None]:
            self._refuse(conn, "draining")

    def _expire_requests(self):
        now = time.monotonic()
        for conn in [c for c in self.conns if c.pid is None and c.deadline < now]:
            self._refuse(conn, "request not received in time")

    def serve(self):
        while True:
            if self.stop_requested:
                self._drain("signal")
            if self.draining and not self.conns:
                return
            for key, _ in self.sel.select(timeout=1.0):
                kind, conn = key.data
                try:
                    self._handle(kind, conn)
                except Exception:  # noqa: BLE001 -- one bad connection must not end the host
                    log(f"error handling {kind}: {traceback.format_exc()}")
                    if kind == "conn" and conn.pid is None:
                        self._drop(conn)
            self._expire_requests()

    def _handle(self, kind, conn):
        if kind == "listen":
            self._accept()
        elif kind == "conn":
            # An earlier event of the same batch may have closed it.
            if conn.sock is not None and conn.sock.fileno() != -1:
                self._read(conn)
        elif kind == "child":
            if conn.pidfd is not None:
                self._reap(conn)
        elif kind == "wake":
            try:
                os.read(self.wake_r, 512)
            except BlockingIOError:
                pass
        elif kind == "stdin":
            if not os.read(sys.stdin.fileno(), 4096):
                self.sel.unregister(sys.stdin.fileno())
                self._drain("stdin closed")


def main(argv=None):
    parser = argparse.ArgumentParser(description="warm, forking yt-dlp host")
    parser.add_argument("--socket", required=True, help="path of the Unix socket to listen on")
    parser.add_argument("--max-jobs", type=int, default=0, help="drain and exit after this many jobs (0: never)")
    parser.add_argument("--max-rss-mib", type=int, default=0, help="drain and exit above this RSS (0: never)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the throwaway analyze and download")
    parser.add_argument("--watch-stdin", action="store_true", help="drain and exit when stdin reaches EOF")
    args = parser.parse_args(argv)
    started = time.monotonic()
    timings = {} if args.no_warmup else warm_up()
    host = Host(args.socket, args.max_jobs, args.max_rss_mib * 1024, args.watch_stdin)
    announce({**host.info(), "event": "ready", "warmup": timings,
              "startup_ms": round((time.monotonic() - started) * 1000)})
    host.serve()
    log(f"exiting after {host.jobs} jobs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
