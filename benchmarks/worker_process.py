"""Worker processes: the environment they start in, and one driven one request at a time (a line on
its stdin, one JSON answer on its stdout).

The aggregator study keeps two workers alive at once (the summed step and one method) and asks
them for timed repeats in turn, so that both meet the same load on a shared machine, while each
keeps a process, and so a peak memory, of its own. An answer that does not come in time, an error
answer, or a worker that dies ends in ``WorkerFailed`` with one line saying why, and the worker
(with whatever it started) is killed: a broken worker never hangs the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository: the workers' working folder, on their PYTHONPATH
MAX_ERROR_CHARS = 400
STOP_WAIT_S = 30.0  # a worker that answered its last request gets this long to exit by itself


class WorkerFailed(RuntimeError):
    """The worker gave no usable answer; the message says why, in one line."""


def child_env() -> dict:
    """This process's environment with the repository first on PYTHONPATH, for ``python -m benchmarks.<module>``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def one_line(text: str) -> str:
    """White space folded and long text cut, so that an error fits one line of a report."""
    line = " ".join(text.split())
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 3] + "..."


def answer_of(line: str, marker: str) -> dict | None:
    """The JSON object a line holds when it carries ``marker``; None for any other output."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    with contextlib.suppress(ValueError):
        found = json.loads(line)
        if isinstance(found, dict) and found.get(marker):
            return found
    return None


class WorkerProcess:
    """``command`` started in a session of its own; ``ask`` sends a request and waits for the answer.

    Answers are the stdout lines that carry ``marker`` (other output is ignored); stderr goes to a
    temporary file, whose last line explains a worker that died without answering.
    """

    def __init__(self, command: list[str], env: dict, marker: str, cwd: Path):
        self._stderr = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")
        self.process = subprocess.Popen(command, env=env, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self._stderr, text=True, bufsize=1, start_new_session=True)
        self._answers: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, args=(marker,), daemon=True).start()

    def _read(self, marker: str) -> None:
        for line in self.process.stdout:
            answer = answer_of(line, marker)
            if answer is not None:
                self._answers.put(answer)
        self._answers.put(None)  # the worker closed its stdout: it has ended

    def ask(self, request: str | None, timeout_s: float) -> dict:
        """Send ``request`` (None: send nothing, wait for the first answer) and return the answer."""
        if request is not None:
            with contextlib.suppress(OSError):  # a dead worker: the reader reports its end
                self.process.stdin.write(request + "\n")
                self.process.stdin.flush()
        try:
            answer = self._answers.get(timeout=timeout_s)
        except queue.Empty:
            self._end()
            raise WorkerFailed(f"no answer within {timeout_s:.0f} s: killed (raise the limit with --worker-timeout)") from None
        if answer is None:
            self._end(wait_s=5.0)  # it is ending: its exit status may say why
            raise WorkerFailed(self._why_it_ended())
        if answer.get("error"):
            self._end(wait_s=5.0)
            raise WorkerFailed(one_line(answer["error"]))
        return answer

    def _why_it_ended(self) -> str:
        self._stderr.seek(0)
        lines = [line for line in self._stderr.read().splitlines() if line.strip()]
        return one_line(lines[-1]) if lines else f"exited with status {self.process.returncode} without answering"

    def _end(self, wait_s: float = 0.0) -> None:
        """Wait up to ``wait_s`` for the worker to exit, then kill it and whatever it started."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=wait_s)
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self, request: str, timeout_s: float) -> dict:
        """The answer to a last ``request``, after which the worker exits (or is killed)."""
        answer = self.ask(request, timeout_s)
        self._end(STOP_WAIT_S)
        return answer

    def close(self) -> None:
        """End the worker (killed if still running) and release its pipes; safe to call again."""
        self._end()
        for stream in (self.process.stdin, self.process.stdout, self._stderr):
            with contextlib.suppress(OSError):
                stream.close()

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
