"""The sidecar as the benchmarks run it: ``data-service`` commands and ``serve`` as a real
subprocess, its CPU time and memory from /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from .couch import ROOT, Couch, cpu_seconds, log

SIDECAR = ROOT / ".venv" / "bin" / "data-service"
MODELS = ROOT / "models" / "sample.yaml"


class Sidecar:
    def __init__(
        self, couch: Couch, database: str, port: int, logfile: Path, extra: list[str], models: Path = MODELS
    ) -> None:
        self.couch, self.database, self.port, self.logfile = couch, database, port, logfile
        self.command = [
            str(SIDECAR),
            "serve",
            f"--couchdb={couch.url}",
            f"--couchdb-user={couch.user}",
            f"--database={database}",
            f"--models={models}",
            f"--port={port}",
            "--log-level=warning",
            *extra,
        ]
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, seconds: float = 30.0) -> None:
        with open(self.logfile, "ab") as out:
            self.proc = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=sidecar_env(self.couch),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + seconds
        status = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the sidecar exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/_health?quick=false", timeout=2) as resp:
                    status = resp.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError:
                status = None
            if status == 200:
                return
            time.sleep(0.1)
        raise RuntimeError(
            f"the sidecar was not ready after {seconds:.0f}s (last /_health?quick=false: {status}):\n{self.log_tail()}"
        )

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 10 s; returns the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            log(f"bench: the sidecar (pid {self.proc.pid}) ignored SIGTERM for 10 s; killing it")
            self.proc.kill()
            return self.proc.wait()

    def stop_with(self, stack: contextlib.ExitStack) -> None:
        """Stop it (and say so) when ``stack`` closes."""

        def stop() -> None:
            code = self.stop()
            if self.proc is not None:
                log(f"bench: sidecar pid {self.proc.pid} ended (exit status {code})")

        stack.callback(stop)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def pids(self) -> list[int]:
        """The serving processes: the sidecar itself, or its workers (``--workers``)."""
        assert self.proc is not None
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                children = [int(pid) for pid in f.read().split()]
        except OSError:
            children = []
        return children or [self.proc.pid]

    def cpu_seconds(self) -> float | None:
        times = [cpu_seconds(pid) for pid in self.pids()]
        return None if None in times else sum(t for t in times if t is not None)

    def memory(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak RSS) in KiB, from /proc/<pid>/status: of the largest
        worker when there are several."""
        assert self.proc is not None
        rss, hwm = 0, 0
        for pid in self.pids():
            out = {}
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        key, _, value = line.partition(":")
                        if key in ("VmRSS", "VmHWM"):
                            out[key] = int(value.split()[0])
            except OSError:
                pass
            if len(out) < 2 or self.proc.poll() is not None:
                raise RuntimeError(f"the sidecar (pid {pid}) is gone")
            rss, hwm = max(rss, out["VmRSS"]), max(hwm, out["VmHWM"])
        return {"rss_kib": rss, "hwm_kib": hwm}


def sidecar_env(couch: Couch) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "COUCHDB_URL"}
    env["DATA_SERVICE_COUCHDB_PASSWORD"] = couch.password  # never on the command line
    return env


def data_service(couch: Couch, *command: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``data-service COMMAND...`` with the CouchDB password in its environment."""
    return subprocess.run(
        [str(SIDECAR), *command],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=sidecar_env(couch),
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )


def prepare_sidecar(couch: Couch, database: str, directory: Path, steps: list[str], models: Path = MODELS) -> list[str]:
    """What this version of the sidecar needs before ``serve``; returns extra ``serve`` flags.

    - Tink keysets (``--keys-dir``): a fresh set in ``directory`` (``data-service keys create``);
    - an installer (``data-service install``): run on the fresh database, so the design docs
      and ``_security`` are there (readiness checks them). Its time is not measured.
    Both are skipped for a sidecar whose usage does not mention them."""
    usage = subprocess.run([str(SIDECAR), "--help"], capture_output=True, text=True).stdout
    extra: list[str] = []

    def step(*command: str) -> None:
        done = data_service(couch, *command)
        steps.append(" ".join(command[:2]) if command[0] == "keys" else command[0])
        if done.returncode != 0:
            raise RuntimeError(
                f"data-service {command[0]} failed ({done.returncode}):\n{(done.stdout + done.stderr).strip()}"
            )

    if "--keys-dir" in usage:
        keys = directory / "keys"
        step("keys", "create", f"--keys-dir={keys}")
        extra.append(f"--keys-dir={keys}")
    if "data-service install" in usage:
        step("install", *extra, *couchdb_flags(couch, database, models))
    return extra


def couchdb_flags(couch: Couch, database: str, models: Path | None = MODELS) -> list[str]:
    """The flags every ``data-service`` command against the run's database takes
    (``verify`` takes no models file: ``models=None``)."""
    return [
        *([f"--models={models}"] if models else []),
        f"--couchdb={couch.url}",
        f"--couchdb-user={couch.user}",
        f"--database={database}",
        "--log-level=warning",
    ]
