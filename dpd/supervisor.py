"""Run the service's processes (web server, django-q2 worker) as one unit.

`manage.py runservice` starts both so that one command gives users everything
(the API answers at once while indexing runs in the worker). The supervisor
forwards SIGTERM/SIGINT to every child, and when any child exits on its own it
stops the others and exits with that child's code, so a container or systemd
restarts the whole service instead of leaving half of it running.

Each child gets its own process group: after the grace period the whole group
is killed, including the gunicorn workers and the django-q2 worker processes
that a child's own shutdown did not stop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


@dataclass
class Supervisor:
    commands: dict[str, list[str]]
    grace_seconds: float = 20.0
    poll_seconds: float = 0.2
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    stopping: bool = False
    # A step run every tick_seconds while the children run (e.g. the leader watch).
    tick: Callable[[], object] | None = None
    tick_seconds: float = 60.0

    def start(self) -> None:
        for name, argv in self.commands.items():
            self.processes[name] = subprocess.Popen(argv, start_new_session=True)
            logger.info("started %s (pid %s)", name, self.processes[name].pid)

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        logger.info("received %s: stopping", signal.Signals(signum).name)
        self.stopping = True

    def run(self) -> int:
        """Wait until a signal arrives or a child exits; stop all; return the exit code."""
        code = 0
        next_tick = time.monotonic() + self.tick_seconds
        while not self.stopping:
            exited = self._first_exited()
            if exited is not None:
                name, code = exited
                logger.error("%s exited with code %s: stopping the service", name, code)
                code = code or 1  # a child that stops on its own is a failure of the service
                break
            if self.tick is not None and time.monotonic() >= next_tick:
                next_tick = time.monotonic() + self.tick_seconds
                self._run_tick()
            time.sleep(self.poll_seconds)
        self.stop()
        return code

    def _run_tick(self) -> None:
        try:
            self.tick()
        except Exception:  # a failed step must never take the service down
            logger.exception("the supervisor's periodic step failed")

    def _first_exited(self) -> tuple[str, int] | None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                return name, process.returncode
        return None

    def stop(self) -> None:
        """SIGTERM every child, wait the grace period, then kill what is left."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_seconds
        for name, process in self.processes.items():
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop within %s s: killing it", name, self.grace_seconds)
        for process in self.processes.values():
            # The group also holds the child's own workers (gunicorn, django-q2).
            with contextlib.suppress(OSError):  # the group is already gone
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
