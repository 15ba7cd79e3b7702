"""The README's first command on its embedded default: a SQLite file.

The suite runs on PostgreSQL; this test runs the `make run` steps before the
server (migrate from nothing, write the sample volume, index it) in a child
process on a fresh SQLite file, so a migration that only PostgreSQL can run
fails here, not on a user's first `make run`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_make_run_steps_work_on_a_fresh_sqlite_file(tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'dpd.sqlite3'}",
        "PERSISTENT_STORAGE_PATH": str(tmp_path / "volume"),
    }

    for step in (["migrate", "--no-input"], ["build_sample_volume", "--synthetic", "3"]):
        done = manage(env, *step)
        assert done.returncode == 0, done.stderr
    indexed = manage(env, "reindex")

    assert indexed.returncode == 0, indexed.stderr
    summary = indexed.stdout.splitlines()[-1]
    assert summary.startswith("seen=") and " added=0 " not in summary
    assert " errors=3 " in summary  # the three eb-none-* fixtures, rejected
    shown = manage(
        env,
        "shell",
        "-c",
        "from dpd.models import DataProduct; print(DataProduct.objects.count())",
    )
    assert int(shown.stdout.split()[-1]) >= 15

    # Pages with their totals take another path than on PostgreSQL.
    asked = manage(env, "shell", "-c", PAGED_REQUESTS)
    assert asked.returncode == 0, asked.stderr
    grid, search, open_products = json.loads(asked.stdout.splitlines()[-1])
    assert grid == [open_products, [3, 4]]
    assert search == [open_products, [2, 3, 4], True]

    # Items that every product passes (or none) combine as on PostgreSQL.
    asked = manage(env, "shell", "-c", CONSTANT_ITEMS)
    assert asked.returncode == 0, asked.stderr
    assert json.loads(asked.stdout.splitlines()[-1]) == [open_products, 1, 1, 0, open_products, 0]

    # The home page's aggregates (JSON keys, months) take SQLite's functions.
    asked = manage(env, "shell", "-c", FIRST_CONTACT)
    assert asked.returncode == 0, asked.stderr
    home_status, total, bars, product_status = json.loads(asked.stdout.splitlines()[-1])
    assert home_status == 200 and total == open_products and bars > 0
    assert product_status == 200  # a product page, anonymous, one click from the home page


def test_make_run_tells_how_to_get_an_account_without_giving_a_password():
    run_target = (ROOT / "Makefile").read_text().split("\nrun:", 1)[1].split("\n\n", 1)[0]
    told = [line for line in run_target.splitlines() if line.strip().startswith("@echo")]
    assert any("manage.py createsuperuser" in line for line in told), run_target
    assert "http://127.0.0.1:8000/" in run_target
    assert "password" not in run_target.lower()


PAGED_REQUESTS = """
import json
from django.test import Client
from dpd.models import DataProduct
client = Client()
grid = client.post("/filterdataproducts", {"page": 1, "pageSize": 2}, "application/json").json()
body = {"start_date": "", "end_date": "", "start": 1, "count": 3}
search = client.post("/dataproductsearch", body, "application/json").json()
print(json.dumps([
    [grid["total"], [row["id"] for row in grid["data"]]],
    [search["total"], [row["id"] for row in search["data"]], search["more_results"]],
    DataProduct.objects.filter(access_group__isnull=True).count(),
]))
"""


FIRST_CONTACT = """
import json, re
from django.test import Client
client = Client()
home = client.get("/")
page = home.content.decode()
total = int(re.search(r'id="products-total" data-count="(\\d+)"', page).group(1))
link = re.search(r'href="(/products/[0-9a-f-]{36}/)"', page).group(1)
bars = page.count('class="bar"')
print(json.dumps([home.status_code, total, bars, client.get(link).status_code]))
"""


CONSTANT_ITEMS = """
import json
from django.test import Client
client = Client()
always, never = ["date_created", "isNotEmpty"], ["metadata_store_name", "equals", "DLM"]
one = ["execution_block", "contains", "m005-20231031"]
not_shared = ["metadata_store_name", "doesNotEqual", "shared"]
not_dlm = ["metadata_store_name", "doesNotContain", "dlm"]
def total(logic, *items):
    rows = [dict(zip(["field", "operator", "value"], [*i, ""])) for i in items]
    body = {"filterModel": {"items": rows, "logicOperator": logic}, "pageSize": 100}
    return client.post("/filterdataproducts", body, "application/json").json()["total"]
print(json.dumps([
    total("or", always, one), total("or", never, one), total("and", always, one),
    total("and", never, one), total("and", not_dlm), total("or", not_shared),
]))
"""
