#!/usr/bin/python3
"""stack.py - starts Quarry on one machine: a private PostgreSQL 15, Redis,
quarry-devbroker (librdkafka mock Kafka cluster) and the seven services, all on
loopback ports, under one run directory.

Used two ways:

  /usr/bin/python3 deploy/local/stack.py run     (what `make run` calls)

  from stack import Stack                        (what tests/integration uses)
  st = Stack(bin_dir, run_dir, test_mode=True)
  st.start_all()
  key = st.create_key("acme", "tests", ["admin"])
  ... st.url, st.ports, st.stop("retriever"), st.restart("retriever") ...
  st.stop_all()

Python 3 standard library only. Every process is stopped by the pid recorded
when it was started, never by name; stop_all() also runs at exit and on
SIGTERM/SIGHUP (the handler turns them into KeyboardInterrupt).

Environment read here (not by the services):
  QUARRY_BIN        directory with the quarry-* binaries (run: default build/bin)
  QUARRY_RUN_DIR    run directory for `run` (default <repo>/.run)
  QUARRY_HTTP_PORT  REST port for `run` (default 8080, or a free one if taken)
  QUARRY_SANITIZER  "asan" or "valgrind": run each binary under that tool
"""

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PG_BIN = "/usr/lib/postgresql/15/bin"

# Start order: every service comes after the peers it dials.
SERVICES = ["auth", "retriever", "reranker", "llm-gateway", "feedback",
            "ingestion", "gateway"]

# Defaults of docs/development.md, used by `run` when they are free.
DEFAULT_PORTS = {
    "gateway.grpc": 7000, "gateway.http": 8080,
    "auth.grpc": 7001, "auth.metrics": 9101,
    "ingestion.grpc": 7002, "ingestion.metrics": 9102,
    "retriever.grpc": 7003, "retriever.metrics": 9103,
    "reranker.grpc": 7004, "reranker.metrics": 9104,
    "llm-gateway.grpc": 7005, "llm-gateway.metrics": 9105,
    "feedback.grpc": 7006, "feedback.metrics": 9106,
    "postgres": 5432, "redis": 6379,
}

ADDR_VARS = {
    "auth": "QUARRY_AUTH_ADDR",
    "ingestion": "QUARRY_INGESTION_ADDR",
    "retriever": "QUARRY_RETRIEVER_ADDR",
    "reranker": "QUARRY_RERANKER_ADDR",
    "llm-gateway": "QUARRY_LLM_GATEWAY_ADDR",
    "feedback": "QUARRY_FEEDBACK_ADDR",
}

# Variables of the harness itself; never passed on to services in test mode.
HARNESS_VARS = {"QUARRY_BIN", "QUARRY_PYGEN", "QUARRY_RUN_DIR",
                "QUARRY_HTTP_PORT", "QUARRY_SANITIZER"}


class StackError(Exception):
    pass


def log(msg):
    sys.stderr.write("stack: %s\n" % msg)
    sys.stderr.flush()


def port_is_free(port):
    """Nobody listens on 127.0.0.1:port. SO_REUSEADDR as the servers use it,
    so connections of a previous run in TIME_WAIT do not count."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port(taken):
    """A loopback port nobody listens on: bind port 0 and read it back."""
    for _ in range(100):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        if port not in taken:
            taken.add(port)
            return port
    raise StackError("no free loopback port found")


def tail(path, start=0, lines=40):
    """The last lines of path written after byte offset start."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read()
    except OSError as e:
        return "(cannot read %s: %s)" % (path, e)
    text = data.decode("utf-8", "replace").splitlines()
    return "\n".join(text[-lines:])


def http_get(url, timeout=2.0, headers=None):
    """(status, body bytes) or (None, reason) when nothing answered."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        return None, str(e)


def proc_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return None


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


def install_signal_handlers():
    """Makes SIGTERM and SIGHUP unwind like Ctrl-C, so `finally` blocks and
    atexit (which stops the stack) run. Leaves handlers a program installed
    itself alone; only possible from the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _raise_interrupt)


class Proc:
    """One process started by the stack."""

    def __init__(self, name, popen, log_path, log_start, argv):
        self.name = name
        self.popen = popen
        self.pid = popen.pid
        self.log_path = log_path
        self.log_start = log_start
        self.argv = argv

    def alive(self):
        return self.popen.poll() is None


class Stack:
    """The whole local stack under run_dir.

    bin_dir: directory holding quarry-<svc> and quarry-devbroker.
    test_mode: faster, throw-away PostgreSQL (fsync off), Redis without
      persistence, all ports chosen at run time, QUARRY_* variables of the
      caller's environment not passed on.
    env: extra variables for every service (e.g. QUARRY_MAX_UPLOAD_BYTES).
    svc_env: {svc: {var: value}} extra variables for one service.
    ports: {"gateway.http": 8080, ...} preferred ports (used when free).
    """

    def __init__(self, bin_dir, run_dir, test_mode=True, env=None,
                 svc_env=None, ports=None, sanitizer=None, ready_timeout=None,
                 quiet=False):
        self.bin_dir = os.path.abspath(bin_dir)
        self.run_dir = os.path.abspath(run_dir)
        self.test_mode = test_mode
        self.extra_env = dict(env or {})
        self.svc_env = {k: dict(v) for k, v in (svc_env or {}).items()}
        self.quiet = quiet
        if sanitizer is None:
            sanitizer = os.environ.get("QUARRY_SANITIZER", "")
        if sanitizer not in ("", "asan", "valgrind"):
            raise StackError("QUARRY_SANITIZER must be asan or valgrind, not %r"
                             % sanitizer)
        self.sanitizer = sanitizer
        # Valgrind makes everything ~20-50x slower.
        self.slow = 8.0 if sanitizer == "valgrind" else (2.0 if sanitizer else 1.0)
        self.ready_timeout = ready_timeout or 30.0 * self.slow
        self.log_dir = os.path.join(self.run_dir, "logs")
        self.blob_dir = os.path.join(self.run_dir, "blobs")
        self.pg_root = os.path.join(self.run_dir, "pg")
        self.pg_data = os.path.join(self.pg_root, "data")
        self.procs = {}          # name -> Proc
        self.pg_started = False
        self.kafka_brokers = None
        self.grace_ms = int(self.extra_env.get("QUARRY_GRACE_MS",
                                               "5000" if test_mode else "10000"))
        self._lock = threading.RLock()
        self._stopped = False
        self._preferred_ports = dict(ports or {})
        self._pick_ports(self._preferred_ports)
        atexit.register(self.stop_all)
        install_signal_handlers()

    # ---- ports ---------------------------------------------------------

    def _pick_ports(self, preferred):
        names = ["postgres", "redis", "gateway.grpc", "gateway.http"]
        for s in SERVICES:
            if s != "gateway":
                names += [s + ".grpc", s + ".metrics"]
        taken = set()
        self.ports = {}
        for n in names:
            want = preferred.get(n)
            if want and want not in taken and port_is_free(want):
                self.ports[n] = want
                taken.add(want)
            else:
                self.ports[n] = free_port(taken)

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.ports["gateway.http"]

    @property
    def pg_dsn(self):
        return "postgresql://quarry@127.0.0.1:%d/quarry" % self.ports["postgres"]

    @property
    def redis_addr(self):
        return "127.0.0.1:%d" % self.ports["redis"]

    def grpc_addr(self, svc):
        return "127.0.0.1:%d" % self.ports[svc + ".grpc"]

    def side_listen(self, svc):
        # The gateway serves /metrics, /healthz, /readyz on its REST port and
        # has no side port.
        if svc == "gateway":
            return ""
        return "127.0.0.1:%d" % self.ports[svc + ".metrics"]

    def metrics_url(self, svc):
        if svc == "gateway":
            return self.url
        return "http://127.0.0.1:%d" % self.ports[svc + ".metrics"]

    def log_path(self, name):
        return os.path.join(self.log_dir, name + ".log")

    # ---- helpers -------------------------------------------------------

    def _say(self, msg):
        if not self.quiet:
            log(msg)

    def _as_postgres(self, argv):
        """PostgreSQL refuses to run as root: use the postgres user then."""
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--"] + argv
        return argv

    def _mkdirs(self):
        os.makedirs(self.run_dir, exist_ok=True)
        # postgres must be able to reach <run>/pg when we run as root and the
        # run dir came from mkdtemp (mode 0700).
        if os.geteuid() == 0:
            st = os.stat(self.run_dir)
            if st.st_mode & 0o011 != 0o011:
                os.chmod(self.run_dir, st.st_mode | 0o011)
        for d in (self.log_dir, self.blob_dir):
            os.makedirs(d, exist_ok=True)
        if not os.path.isdir(self.pg_root):
            os.makedirs(self.pg_root, mode=0o700)
        if os.geteuid() == 0:
            import pwd
            pw = pwd.getpwnam("postgres")
            os.chown(self.pg_root, pw.pw_uid, pw.pw_gid)

    def _base_env(self):
        env = {}
        for k, v in os.environ.items():
            if k in HARNESS_VARS:
                continue
            # Tests must not depend on the developer's shell.
            if self.test_mode and k.startswith("QUARRY_") and k != "QUARRY_LOG_LEVEL":
                continue
            env[k] = v
        if self.sanitizer == "asan":
            supp = os.path.join(REPO, "tests", "lsan.supp")
            env["ASAN_OPTIONS"] = "detect_leaks=1:exitcode=99:abort_on_error=0"
            env["LSAN_OPTIONS"] = "suppressions=%s:print_suppressions=0" % supp
            env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1:exitcode=99"
        return env

    def _wrapper(self):
        if self.sanitizer == "valgrind":
            return ["valgrind", "--error-exitcode=99", "--leak-check=full",
                    "--errors-for-leak-kinds=definite",
                    "--suppressions=%s" % os.path.join(REPO, "tests", "valgrind.supp"),
                    "--log-fd=2"]
        return []

    def binary(self, name):
        path = os.path.join(self.bin_dir, name)
        if not os.access(path, os.X_OK):
            raise StackError("%s is missing; build it first (make all)" % path)
        return path

    def _spawn(self, name, argv, env):
        logp = self.log_path(name)
        f = open(logp, "ab")
        start = f.tell()
        main_thread = threading.current_thread() is threading.main_thread()

        def child_setup():
            # Die with the harness if it is killed without cleaning up
            # (PR_SET_PDEATHSIG fires when the forking *thread* exits, so
            # only from the main thread).
            if main_thread:
                try:
                    import ctypes
                    libc = ctypes.CDLL("libc.so.6", use_errno=True)
                    libc.prctl(1, signal.SIGTERM, 0, 0, 0)
                except Exception:
                    pass

        try:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f,
                                 stderr=subprocess.STDOUT, env=env,
                                 cwd=self.run_dir, start_new_session=True,
                                 preexec_fn=child_setup)
        finally:
            f.close()
        proc = Proc(name, p, logp, start, argv)
        self.procs[name] = proc
        self._save_pids()
        return proc

    def _save_pids(self):
        data = {n: {"pid": p.pid, "argv": p.argv}
                for n, p in self.procs.items() if p.alive()}
        pm = self._postmaster_pid()
        if pm:
            data["postgres"] = {"pid": pm, "argv": None}
        tmp = os.path.join(self.run_dir, "pids.json.tmp")
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, os.path.join(self.run_dir, "pids.json"))

    def reap_stale(self):
        """Stops processes a previous run in this run dir left behind
        (harness killed with SIGKILL): by recorded pid, after checking the
        pid still runs the recorded command line."""
        path = os.path.join(self.run_dir, "pids.json")
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError):
            data = {}
        for name, rec in data.items():
            pid, argv = rec.get("pid"), rec.get("argv")
            if name == "postgres" or not pid or not argv:
                continue
            cmd = proc_cmdline(pid)
            if cmd and cmd[0].decode(errors="replace") == argv[0]:
                self._say("stopping %s left over from a previous run (pid %d)"
                          % (name, pid))
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
                deadline = time.time() + 10
                while pid_alive(pid) and time.time() < deadline:
                    time.sleep(0.1)
                if pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)
        if os.path.exists(os.path.join(self.pg_data, "postmaster.pid")):
            r = subprocess.run(self._as_postgres(
                [PG_BIN + "/pg_ctl", "-D", self.pg_data, "status"]),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if r.returncode == 0:
                self._say("stopping PostgreSQL left over from a previous run")
                subprocess.run(self._as_postgres(
                    [PG_BIN + "/pg_ctl", "-D", self.pg_data, "-m", "fast",
                     "-w", "stop"]), stdout=subprocess.DEVNULL)

    # ---- PostgreSQL ----------------------------------------------------

    def _postmaster_pid(self):
        try:
            with open(os.path.join(self.pg_data, "postmaster.pid")) as f:
                return int(f.readline().strip())
        except (OSError, ValueError):
            return None

    def start_postgres(self):
        port = self.ports["postgres"]
        pglog = os.path.join(self.pg_root, "postgres.log")
        if not os.path.exists(os.path.join(self.pg_data, "PG_VERSION")):
            r = subprocess.run(self._as_postgres(
                [PG_BIN + "/initdb", "-D", self.pg_data, "-A", "trust",
                 "-U", "quarry", "-E", "UTF8", "--locale=C.UTF-8"]),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
            if r.returncode != 0:
                raise StackError("initdb failed:\n" + r.stdout.decode(errors="replace"))
        opts = "-p %d -c listen_addresses=127.0.0.1" % port
        # The socket path must stay under 107 bytes; without one, clients
        # connect over TCP (which is all the services use).
        if len(self.pg_data) < 90:
            opts += " -k %s" % self.pg_data
        else:
            opts += " -c unix_socket_directories=''"
        if self.test_mode:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        r = subprocess.run(self._as_postgres(
            [PG_BIN + "/pg_ctl", "-D", self.pg_data, "-o", opts, "-l", pglog,
             "-w", "-t", "60", "start"]),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=90)
        if r.returncode != 0:
            raise StackError("PostgreSQL did not start:\n%s\n--- %s:\n%s" % (
                r.stdout.decode(errors="replace"), pglog, tail(pglog)))
        self.pg_started = True
        self._save_pids()
        psql = [PG_BIN + "/psql", "-h", "127.0.0.1", "-p", str(port),
                "-U", "quarry", "-d", "postgres", "-tAc",
                "SELECT 1 FROM pg_database WHERE datname='quarry'"]
        r = subprocess.run(psql, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=30)
        if r.returncode != 0:
            raise StackError("psql failed: " + r.stderr.decode(errors="replace"))
        if r.stdout.strip() != b"1":
            r = subprocess.run([PG_BIN + "/createdb", "-h", "127.0.0.1", "-p",
                                str(port), "-U", "quarry", "quarry"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=30)
            if r.returncode != 0:
                raise StackError("createdb failed: " + r.stdout.decode(errors="replace"))
        self._say("postgres   %s (data %s)" % (self.pg_dsn, self.pg_data))

    def stop_postgres(self):
        if not self.pg_started:
            return
        self.pg_started = False
        r = subprocess.run(self._as_postgres(
            [PG_BIN + "/pg_ctl", "-D", self.pg_data, "-m", "fast", "-w",
             "-t", "30", "stop"]),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            pid = self._postmaster_pid()
            log("pg_ctl stop failed: %s" % r.stdout.decode(errors="replace").strip())
            if pid and pid_alive(pid):
                os.kill(pid, signal.SIGQUIT)

    # ---- Redis ---------------------------------------------------------

    def start_redis(self):
        port = self.ports["redis"]
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                "--daemonize", "no", "--save", "", "--protected-mode", "yes"]
        if self.test_mode:
            argv += ["--appendonly", "no"]
        else:
            rdir = os.path.join(self.run_dir, "redis")
            os.makedirs(rdir, exist_ok=True)
            argv += ["--appendonly", "yes", "--dir", rdir]
        exe = shutil.which("redis-server")
        if not exe:
            raise StackError("redis-server not found (make deps)")
        argv[0] = exe
        proc = self._spawn("redis", argv, dict(os.environ))
        deadline = time.time() + 20
        while time.time() < deadline:
            if not proc.alive():
                raise StackError("redis exited:\n" + tail(proc.log_path, proc.log_start))
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        self._say("redis      %s" % self.redis_addr)
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise StackError("redis not ready:\n" + tail(proc.log_path, proc.log_start))

    # ---- Kafka (quarry-devbroker) --------------------------------------

    def start_devbroker(self):
        bfile = os.path.join(self.run_dir, "kafka.bootstrap")
        try:
            os.unlink(bfile)
        except FileNotFoundError:
            pass
        argv = [self.binary("quarry-devbroker"), "--bootstrap-file", bfile]
        proc = self._spawn("devbroker", argv, self._base_env())
        deadline = time.time() + 20 * self.slow
        while time.time() < deadline:
            if not proc.alive():
                raise StackError("quarry-devbroker exited with %s:\n%s" % (
                    proc.popen.returncode, tail(proc.log_path, proc.log_start)))
            try:
                with open(bfile) as f:
                    text = f.read().strip()
            except OSError:
                text = ""
            if text:
                if text.startswith("bootstrap="):
                    text = text[len("bootstrap="):]
                self.kafka_brokers = text.splitlines()[0].strip()
                self._say("kafka      %s" % self.kafka_brokers)
                return
            time.sleep(0.05)
        raise StackError("quarry-devbroker wrote no bootstrap file:\n"
                         + tail(proc.log_path, proc.log_start))

    # ---- Quarry services -----------------------------------------------

    def service_env(self, svc):
        env = self._base_env()
        env.update({
            "QUARRY_GRPC_LISTEN": self.grpc_addr(svc),
            "QUARRY_METRICS_LISTEN": self.side_listen(svc),
            "QUARRY_PG_DSN": self.pg_dsn,
            "QUARRY_REDIS_ADDR": self.redis_addr,
            "QUARRY_KAFKA_BROKERS": self.kafka_brokers or "",
            "QUARRY_BLOB_DIR": self.blob_dir,
            "QUARRY_GRACE_MS": str(self.grace_ms),
        })
        for peer, var in ADDR_VARS.items():
            if peer != svc:
                env[var] = self.grpc_addr(peer)
        # The llm-gateway's default template path is relative to the repo
        # root; services run in the run dir.
        if svc == "llm-gateway" and "QUARRY_PROMPT_TEMPLATE" not in env:
            env["QUARRY_PROMPT_TEMPLATE"] = os.path.join(
                REPO, "services", "llm-gateway", "prompts", "answer.v2.txt")
        if svc == "llm-gateway" and "QUARRY_ANSWER_SYNONYMS" not in env:
            env["QUARRY_ANSWER_SYNONYMS"] = os.path.join(
                REPO, "services", "llm-gateway", "prompts", "synonyms.txt")
        # The same for the reranker's weights file.
        if svc == "reranker" and "QUARRY_RERANK_MODEL" not in env:
            env["QUARRY_RERANK_MODEL"] = os.path.join(
                REPO, "services", "reranker", "models", "features.v1.json")
        if svc == "gateway":
            env["QUARRY_HTTP_LISTEN"] = "127.0.0.1:%d" % self.ports["gateway.http"]
            if self.test_mode:
                # Every test client comes from 127.0.0.1, so a per-address
                # cap would count the whole suite as one client; the hostile
                # tests set their own.
                env["QUARRY_HTTP_MAX_CONNECTIONS_PER_IP"] = "0"
        env.update(self.extra_env)
        env.update(self.svc_env.get(svc, {}))
        return env

    def start(self, svc):
        """Starts one service and waits until it reports ready."""
        if svc not in SERVICES:
            raise StackError("unknown service %r" % svc)
        with self._lock:
            old = self.procs.get(svc)
            if old and old.alive():
                raise StackError("%s is already running (pid %d)" % (svc, old.pid))
            argv = self._wrapper() + [self.binary("quarry-" + svc)]
            t0 = time.time()
            proc = self._spawn(svc, argv, self.service_env(svc))
        self.wait_ready(svc)
        self._say("%-11s grpc %s  http %s  pid %d  (%.1fs)" % (
            svc, self.grpc_addr(svc), self.metrics_url(svc), proc.pid,
            time.time() - t0))
        return proc

    def wait_ready(self, svc, timeout=None):
        proc = self.procs[svc]
        base = self.metrics_url(svc)
        deadline = time.time() + (timeout or self.ready_timeout)
        last = "no answer yet"
        while time.time() < deadline:
            if not proc.alive():
                raise StackError("quarry-%s exited with status %s while starting; "
                                 "log %s:\n%s" % (svc, proc.popen.returncode,
                                                  proc.log_path,
                                                  tail(proc.log_path, proc.log_start)))
            code, body = http_get(base + "/readyz", timeout=2)
            if code == 200:
                return
            if svc == "gateway" and code == 404:
                code, body = http_get(base + "/healthz", timeout=2)
                if code == 200:
                    return
            last = "%s %s" % (code, body[:200] if isinstance(body, bytes) else body)
            time.sleep(0.1)
        raise StackError("quarry-%s not ready after %.0fs (last /readyz: %s); "
                         "log %s:\n%s" % (svc, timeout or self.ready_timeout, last,
                                          proc.log_path,
                                          tail(proc.log_path, proc.log_start)))

    def stop(self, svc, sig=signal.SIGTERM, timeout=None):
        """Sends sig to the process and waits for it to exit. Returns its exit
        status (negative: killed by that signal), or None when it did not
        exit within timeout (it is then killed with SIGKILL)."""
        proc = self.procs.get(svc)
        if proc is None:
            raise StackError("%s was never started" % svc)
        if timeout is None:
            timeout = self.grace_ms / 1000.0 + 10 * self.slow
        if proc.alive():
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                pass
        try:
            rc = proc.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            log("%s (pid %d) still running %.0fs after signal %d: killing"
                % (svc, proc.pid, timeout, sig))
            proc.popen.kill()
            proc.popen.wait()
            rc = None
        self._save_pids()
        return rc

    def kill(self, svc):
        """SIGKILL: a crash, no clean-up."""
        return self.stop(svc, signal.SIGKILL, timeout=10)

    def restart(self, svc):
        proc = self.procs.get(svc)
        if proc and proc.alive():
            self.stop(svc)
        return self.start(svc)

    def alive(self, svc):
        proc = self.procs.get(svc)
        return bool(proc and proc.alive())

    def exit_code(self, svc):
        proc = self.procs.get(svc)
        return proc.popen.poll() if proc else None

    def pid(self, svc):
        return self.procs[svc].pid

    def log_tail(self, name, lines=40, since_start=True):
        proc = self.procs.get(name)
        start = proc.log_start if (proc and since_start) else 0
        return tail(self.log_path(name), start, lines)

    # ---- everything ----------------------------------------------------

    def start_all(self):
        self._mkdirs()
        if not self.test_mode:
            self.reap_stale()
            # What the previous run held is free again.
            self._pick_ports(self._preferred_ports)
        self._say("run dir    %s" % self.run_dir)
        try:
            self.start_postgres()
            self.start_redis()
            self.start_devbroker()
            for svc in SERVICES:
                self.start(svc)
        except BaseException:
            self.stop_all()
            raise

    def stop_all(self, check=False):
        """Stops services (SIGTERM, reverse start order), then the broker,
        Redis and PostgreSQL. Returns {svc: exit status} of the services that
        were running."""
        with self._lock:
            codes = {}
            for svc in reversed(SERVICES):
                proc = self.procs.get(svc)
                if proc and proc.alive():
                    codes[svc] = self.stop(svc)
            for name in ("devbroker", "redis"):
                proc = self.procs.get(name)
                if proc and proc.alive():
                    codes[name] = self.stop(name, timeout=15 * self.slow)
            self.stop_postgres()
            if os.path.isdir(self.run_dir):
                try:
                    self._save_pids()
                except OSError:
                    pass
            return codes

    def create_key(self, tenant, name, roles=("admin",)):
        """Creates an API key with `quarry-auth create-key`; returns it."""
        if isinstance(roles, str):
            roles = [roles]
        argv = self._wrapper() + [self.binary("quarry-auth"), "create-key",
                                  "--tenant", tenant, "--name", name,
                                  "--roles", ",".join(roles)]
        env = self._base_env()
        env["QUARRY_PG_DSN"] = self.pg_dsn
        env.update(self.extra_env)
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=env, timeout=60 * self.slow)
        key = r.stdout.decode(errors="replace").strip()
        if r.returncode != 0 or not key or "\n" in key:
            raise StackError("quarry-auth create-key failed (status %d):\n"
                             "stdout: %s\nstderr: %s" % (
                                 r.returncode, key[:500],
                                 r.stderr.decode(errors="replace")[-2000:]))
        return key


# ---- `stack.py run` ------------------------------------------------------


def api(stack, method, path, key=None, body=None, ctype=None, timeout=30):
    headers = {}
    if key:
        headers["Authorization"] = "Bearer " + key
    if ctype:
        headers["Content-Type"] = ctype
    req = urllib.request.Request(stack.url + path, data=body, method=method,
                                 headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


def admin_key(stack):
    """Reuses the key saved in the run dir when auth still accepts it."""
    path = os.path.join(stack.run_dir, "admin.key")
    try:
        with open(path) as f:
            key = f.read().strip()
    except OSError:
        key = ""
    if key:
        code, _ = api(stack, "GET", "/v1/me", key=key)
        if code != 401:
            return key
    key = stack.create_key("default", "make-run-admin", ["admin"])
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key


def ingest_samples(stack, key):
    sdir = os.path.join(HERE, "samples")
    jobs = []
    for name in sorted(os.listdir(sdir)):
        ext = os.path.splitext(name)[1].lower()
        ctype = {".md": "text/markdown", ".markdown": "text/markdown",
                 ".txt": "text/plain"}.get(ext)
        if not ctype:
            continue
        with open(os.path.join(sdir, name), "rb") as f:
            body = f.read()
        title = body.split(b"\n", 1)[0].lstrip(b"# ").decode("utf-8").strip() or name
        qs = urllib.parse.urlencode({"title": title, "external_id": "sample:" + name,
                                     "filename": name})
        code, resp = api(stack, "POST", "/v1/documents?" + qs, key=key, body=body,
                         ctype=ctype)
        if code != 202:
            raise StackError("uploading %s: HTTP %s %s" % (name, code, resp))
        state = "unchanged" if resp.get("unchanged") else "version %s" % resp.get("version")
        log("sample     %s -> document %s (%s)" % (name, resp.get("document_id"), state))
        if resp.get("job_id"):
            jobs.append((name, resp["job_id"]))
    deadline = time.time() + 120 * stack.slow
    for name, job in jobs:
        while True:
            code, resp = api(stack, "GET", "/v1/jobs/" + job, key=key)
            status = resp.get("status") if isinstance(resp, dict) else None
            if code == 200 and status == "done":
                break
            if code == 200 and status == "failed":
                raise StackError("ingesting %s failed: %s" % (name, resp.get("error")))
            if code != 200:
                raise StackError("GET /v1/jobs/%s: HTTP %s %s" % (job, code, resp))
            if time.time() > deadline:
                raise StackError("ingesting %s: job %s still %s" % (name, job, status))
            time.sleep(0.2)


def print_box(stack, key):
    sample = os.path.join(HERE, "samples", "travel-policy.md")
    shown = os.path.relpath(sample, os.getcwd())
    if shown.startswith(".."):
        shown = sample
    cli = os.path.relpath(os.path.join(stack.bin_dir, "quarry"), os.getcwd())
    if cli.startswith(".."):
        cli = os.path.join(stack.bin_dir, "quarry")
    lines = [
        "Quarry is running.",
        "",
        "Web app    %s/  (open it in a browser; sign in with the key)" % stack.url,
        "REST API   %s" % stack.url,
        "Admin key  %s" % key,
        "Run dir    %s  (logs in logs/)" % stack.run_dir,
        "",
        "Ask a question about the bundled samples:",
        "  KEY=%s" % key,
        "  curl -s %s/v1/query -H \"Authorization: Bearer $KEY\" \\" % stack.url,
        "    -H 'Content-Type: application/json' \\",
        "    -d '{\"query\":\"What is the hotel limit per night in London?\"}'",
        "",
        "Upload a document of your own:",
        "  curl -s '%s/v1/documents?title=My+notes' \\" % stack.url,
        "    -H \"Authorization: Bearer $KEY\" -H 'Content-Type: text/markdown' \\",
        "    --data-binary @%s" % shown,
        "",
        "Or with the command-line client, %s (docs/cli.md):" % cli,
        "  export QUARRY_URL=%s QUARRY_API_KEY=$KEY" % stack.url,
        "  %s ask \"What is the hotel limit per night in London?\"" % cli,
        "  %s docs list" % cli,
        "",
        "Metrics: %s/metrics    Ctrl-C stops everything." % stack.url,
    ]
    width = max(len(x) for x in lines) + 2
    out = ["+" + "-" * width + "+"]
    out += ["| " + x.ljust(width - 1) + "|" for x in lines]
    out.append("+" + "-" * width + "+")
    print("\n".join(out), flush=True)


class Interrupted(Exception):
    pass


def run_main():
    bin_dir = os.environ.get("QUARRY_BIN") or os.path.join(REPO, "build", "bin")
    run_dir = os.environ.get("QUARRY_RUN_DIR") or os.path.join(REPO, ".run")
    ports = dict(DEFAULT_PORTS)
    want_http = os.environ.get("QUARRY_HTTP_PORT")
    if want_http:
        try:
            ports["gateway.http"] = int(want_http)
        except ValueError:
            log("QUARRY_HTTP_PORT must be a port number, not %r" % want_http)
            return 2
        if not port_is_free(ports["gateway.http"]):
            log("QUARRY_HTTP_PORT=%s is in use" % want_http)
            return 2

    def on_signal(signum, frame):
        raise Interrupted()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    stack = Stack(bin_dir, run_dir, test_mode=False, ports=ports)
    try:
        stack.start_all()
        key = admin_key(stack)
        ingest_samples(stack, key)
        print_box(stack, key)
        warned = set()
        while True:
            time.sleep(1)
            for svc in SERVICES:
                if svc not in warned and not stack.alive(svc):
                    warned.add(svc)
                    log("quarry-%s exited with status %s; log tail:\n%s" % (
                        svc, stack.exit_code(svc), stack.log_tail(svc)))
    except Interrupted:
        # Ignore further Ctrl-C while shutting down in order.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        log("stopping")
        codes = stack.stop_all()
        for name, rc in codes.items():
            if rc != 0:
                log("%s exited with status %s" % (name, rc))
        log("stopped")
        return 0
    except StackError as e:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        log("error: %s" % e)
        stack.stop_all()
        return 1


def main(argv):
    if len(argv) >= 2 and argv[1] == "run":
        return run_main()
    sys.stderr.write("usage: %s run\n\nStarts the local Quarry stack "
                     "(see the module docstring).\n" % argv[0])
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
