"""runservice's supervisor: its periodic step (the indexing leader watch)
runs while the children run, and a failing step never stops the service."""

from __future__ import annotations

import sys
import threading

from dpd.supervisor import Supervisor


def test_a_failing_periodic_step_never_takes_the_service_down():
    calls = []
    supervisor = Supervisor(
        {"web": [sys.executable, "-c", "import time; time.sleep(30)"]},
        grace_seconds=5,
        poll_seconds=0.01,
        tick_seconds=0.02,
    )

    def failing_step() -> None:
        calls.append(1)
        if len(calls) == 5:
            supervisor.stopping = True  # as SIGTERM does
        raise RuntimeError("database unavailable")

    supervisor.tick = failing_step
    supervisor.start()
    outcome = []
    runner = threading.Thread(target=lambda: outcome.append(supervisor.run()))
    try:
        runner.start()
        runner.join(timeout=20)
    finally:
        supervisor.processes["web"].kill()  # nothing left running if it failed

    assert outcome == [0]  # stopped by the signal flag, not by the failures
    assert len(calls) == 5
    assert supervisor.processes["web"].returncode == -15  # the child was stopped (SIGTERM)
