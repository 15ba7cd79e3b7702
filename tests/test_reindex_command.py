"""`manage.py reindex`: progress, errors, one summary line, exit codes."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from dpd.models import DataProduct
from indexing.models import IndexRun
from indexing.services import index_run
from tests.catalogue_indexes import SEARCH_INDEXES, search_indexes

pytestmark = pytest.mark.django_db

SUMMARY = re.compile(
    r"^seen=(\d+) added=(\d+) updated=(\d+) skipped=(\d+) removed=(\d+) errors=(\d+) "
    r"seconds=\d+\.\d\d$"
)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def reindex(*args: str, stdout: io.StringIO | None = None) -> list[str]:
    out = stdout or io.StringIO()
    call_command("reindex", *args, stdout=out)
    return out.getvalue().splitlines()


def test_it_ends_with_one_summary_line_and_lists_each_error_above_it(sample_volume):
    lines = reindex()

    assert SUMMARY.match(lines[-1]).groups() == ("18", "15", "0", "0", "0", "3")
    assert [line for line in lines if line.startswith("error: ")] == [
        "error: eb-none-19700101-00001/ska-data-product.yaml: missing execution_block",
        "error: eb-none-19700101-00002/ska-data-product.yaml: missing execution_block",
        "error: eb-none-19700101-00003/ska-data-product.yaml: empty document",
    ]
    assert DataProduct.objects.count() == 15


def test_a_second_run_reports_every_product_skipped(sample_volume):
    reindex()

    assert SUMMARY.match(reindex()[-1]).groups() == ("18", "0", "0", "15", "0", "3")


def test_it_prints_plain_progress_lines_when_not_on_a_terminal(sample_volume):
    lines = reindex()

    progress = [line for line in lines if line.startswith("progress: ")]
    assert progress and progress[-1] == "progress: completed found=18 processed=18"
    assert not any("\r" in line for line in lines)


def test_it_draws_a_progress_bar_on_a_terminal(sample_volume):
    terminal = Terminal()

    lines = reindex(stdout=terminal)

    assert "\r" in terminal.getvalue()
    assert not any(line.startswith("progress: ") for line in lines)
    assert SUMMARY.match(lines[-1])


def test_path_indexes_another_volume(tmp_path, sample_volume):
    other = tmp_path / "other" / "eb-x-20240101-1"
    other.mkdir(parents=True)
    (other / "ska-data-product.yaml").write_text("execution_block: eb-x-20240101-1\n")

    lines = reindex("--path", str(tmp_path / "other"))

    assert SUMMARY.match(lines[-1]).groups() == ("1", "1", "0", "0", "0", "0")


def test_a_missing_volume_is_a_command_error(tmp_path):
    with pytest.raises(CommandError, match="does not exist"):
        reindex("--path", str(tmp_path / "absent"))


def test_a_missing_volume_exits_non_zero_from_the_shell(tmp_path):
    completed = subprocess.run(
        [sys.executable, "manage.py", "reindex", "--path", str(tmp_path / "absent")],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert completed.returncode == 1
    assert "does not exist or is not a directory" in completed.stderr


@pytest.mark.skipif(
    not settings.IS_POSTGRESQL, reason="the GIN search indexes exist on PostgreSQL only"
)
@pytest.mark.parametrize(
    ("trigger", "dropped_during_load"),
    [(IndexRun.Trigger.COMMAND, True), (IndexRun.Trigger.STARTUP, False)],
)
def test_only_the_foreground_command_drops_the_search_indexes_for_a_first_load(
    sample_volume, settings, trigger, dropped_during_load
):
    # Background runs serve searches while they load: the trigram index stays.
    settings.INDEXING_BATCH_SIZE = 4
    during = []

    run = index_run(trigger, on_progress=lambda progress: during.append(search_indexes()))

    assert run.status == IndexRun.Status.COMPLETED and DataProduct.objects.count() == 15
    assert (during[0] == set()) is dropped_during_load
    assert search_indexes() == SEARCH_INDEXES


@pytest.mark.parametrize(
    ("configured", "trigger", "expected"),
    [
        (0, IndexRun.Trigger.COMMAND, os.cpu_count()),
        (0, IndexRun.Trigger.STARTUP, max(1, os.cpu_count() - 1)),
        (3, IndexRun.Trigger.COMMAND, 3),
        (3, IndexRun.Trigger.STARTUP, 3),
    ],
)
def test_background_runs_leave_a_core_to_the_api_unless_configured(
    sample_volume, settings, client, configured, trigger, expected
):
    settings.INDEXING_PARALLEL_WORKERS = configured

    run = index_run(trigger)

    assert run.status == IndexRun.Status.COMPLETED
    processes = f"{expected} parse process{'es' if expected > 1 else ''}"
    assert f"({trigger}), {processes}" in run.log[0]
    # /status reports what the service's own (background) runs use.
    reported = client.get("/status").json()["pv_interface_status"]
    assert reported["indexing_parallel_workers"] == (configured or max(1, os.cpu_count() - 1))
