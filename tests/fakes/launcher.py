"""The `nearmiss` command line in child processes forked from one warm interpreter.

A cold `python -m jobs.cli run` spends seconds importing pandas, SQLAlchemy and (inside the
run) great-expectations before it touches anything; a test that runs and SIGKILLs the
command dozens of times pays that once here. Each command is a real child process: its own
memory, SQLite connections, lock and SMTP connection, ended by the kernel on SIGKILL exactly
as a cold one would be. Only the imports are shared, done before the fork with no store,
file or socket of a run open.

`python -m tests.fakes.launcher` reads one JSON request a line on stdin:

    {"argv": [...], "cwd": "...", "kill_after": seconds or null, "after_open": text or null}

It forks `jobs.cli.main(argv)` and SIGKILLs it `kill_after` seconds after the fork, or,
with `after_open`, that long after the child first opens a file in `cwd` whose name
contains that text (seen through an audit hook, which changes nothing the child does; a
child that never opens one runs to its end). It answers one JSON line:

    {"pid", "killed", "returncode", "seconds", "opened", "stdout", "stderr"}

`killed` is true only when the signal ended a live process (one that had exited is not
"killed"); `seconds` is how long it lived, `opened` when it first opened such a file (null
if it did not, or none was asked about).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

# What a run imports, lazily or not, so a forked child imports (next to) nothing.
WARM = ("jobs.cli", "jobs.pipeline")
WARM_IF_PRESENT = ("great_expectations", "great_expectations.expectations",
                   "great_expectations.expectations.row_conditions",
                   "great_expectations.data_context.types.base")


def _child(argv: list[str], cwd: str, out: int, err: int, after_open: str | None,
           opened: int) -> None:
    """In the forked child: run the command with its own stdio, and never return."""
    code = 1
    try:
        os.chdir(cwd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        if after_open:
            told = False

            def tell(event: str, args: tuple[Any, ...]) -> None:
                nonlocal told
                if event == "open" and not told and isinstance(args[0], str) and (
                        after_open in os.path.basename(args[0])
                        and os.path.abspath(args[0]).startswith(cwd)):
                    told = True
                    os.write(opened, b"!")

            sys.addaudithook(tell)
        from jobs.cli import main

        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # a bug in the command: its traceback is the answer's stderr
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def launch(argv: list[str], cwd: str, kill_after: float | None,
           after_open: str | None = None) -> dict[str, Any]:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        told, tell = os.pipe()
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            os.close(told)
            _child(argv, cwd, out.fileno(), err.fileno(), after_open, tell)
        os.close(tell)
        pidfd = os.pidfd_open(pid)
        opened = None
        watch = [pidfd, told] if after_open else [pidfd]
        timeout = None if after_open else kill_after
        try:
            while True:
                ready, _, _ = select.select(watch, [], [], timeout)
                if pidfd in ready:
                    break
                if told in ready:
                    watch = [pidfd]
                    if os.read(told, 1):  # not the end of the pipe: the child's exit
                        opened = time.monotonic() - started
                        timeout = kill_after
                    continue
                # the pidfd signals this process itself, never one that reused its pid
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                break
            _, status = os.waitpid(pid, 0)
        finally:
            os.close(pidfd)
            os.close(told)
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        return {"pid": pid, "killed": os.WIFSIGNALED(status)
                and os.WTERMSIG(status) == signal.SIGKILL,
                "returncode": os.waitstatus_to_exitcode(status), "seconds": seconds,
                "opened": opened,
                "stdout": out.read().decode(errors="replace"),
                "stderr": err.read().decode(errors="replace")}


def serve() -> None:
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # stray prints from imports must not reach the answer channel
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # great-expectations imports deprecated modules
        for module in WARM:
            importlib.import_module(module)
        for module in WARM_IF_PRESENT:
            with contextlib.suppress(ImportError):
                importlib.import_module(module)
    answers.write(json.dumps({"ready": os.getpid()}) + "\n")
    answers.flush()
    for line in sys.stdin:
        request = json.loads(line)
        answers.write(json.dumps(launch(request["argv"], request["cwd"],
                                        request.get("kill_after"),
                                        request.get("after_open"))) + "\n")
        answers.flush()


class Launcher:
    """The warm interpreter, started as a subprocess with a clean environment; `run` one
    command in a fresh child of it. Several launchers warm up side by side: each waits for
    its imports only on first use."""

    def __init__(self, root: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.launcher"], cwd=root, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.ready = False

    def run(self, argv: list[str], cwd: Path, kill_after: float | None = None,
            after_open: str | None = None) -> dict[str, Any]:
        if not self.ready:
            if not self.stdout.readline():
                raise RuntimeError("the launcher did not start (its stderr says why)")
            self.ready = True
        self.stdin.write(json.dumps({"argv": argv, "cwd": str(cwd), "kill_after": kill_after,
                                     "after_open": after_open}) + "\n")
        self.stdin.flush()
        answer = self.stdout.readline()
        if not answer:
            raise RuntimeError("the launcher died (its stderr says why)")
        return json.loads(answer)

    def __enter__(self) -> Launcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


if __name__ == "__main__":
    serve()
