"""Paged grid filters on a common value, through the view, in-process.

    DATABASE_URL=postgres://.../bench_scale_1m python bench/grid_filters.py [NAME ...]

Sends each /filterdataproducts body three times with Django's test client
(one anonymous client, no server, no socket) to the catalogue of
`bench_scale.py`, and prints each body's times and total: the first with
nothing remembered, then the median of the two repeats, which find the total
remembered when it was counted apart (dpd.remembered_counts.match_count: a
user paging or re-sorting the same filter). The filter
is `obscore.instrument_name` on `SKA-Mid`, which half the products hold;
the sorts are on a visible column (`context.observer`, indexed) and a
hidden one (`obscore.t_exptime`, not).
What it isolates is the database work and the view: bench_scale.py measures
the same shapes over HTTP at 1 and 16 clients.

The last line is name=value pairs: each body's first and repeated time over
the 100 ms target of issue 24 at 1,000,000 products, then the times in
seconds.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dpd.settings")

import django

django.setup()

from django.core.cache import caches  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import override_settings  # noqa: E402

SKA_MID = {"field": "obscore.instrument_name", "operator": "equals", "value": "SKA-Mid"}
T_EXPTIME_ASC = [{"field": "obscore.t_exptime", "sort": "asc"}]
# A visible column, sorted from its index (dpd/search_sort.py); t_exptime has none.
OBSERVER_ASC = [{"field": "context.observer", "sort": "asc"}]
OBSERVER_DESC = [{"field": "context.observer", "sort": "desc"}]
TARGET_S = 0.1


def body(items: list[dict], sort: list[dict] | None = None, page: int = 0, size: int = 100):
    return {
        "filterModel": {"items": items, "logicOperator": "and"},
        "searchPanelOptions": {"items": []},
        "sortModel": sort or [],
        "page": page,
        "pageSize": size,
    }


BODIES = {
    "equals_p0": body([SKA_MID]),
    "equals_p1": body([SKA_MID], page=1),
    "equals_sorted_p200": body([SKA_MID], T_EXPTIME_ASC, page=200, size=25),
    "does_not_equal_p0": body([{**SKA_MID, "operator": "doesNotEqual"}]),
    "is_any_of_p0": body([{**SKA_MID, "operator": "isAnyOf", "value": ["SKA-Mid", "SKA-Low"]}]),
    "is_not_empty_p0": body([{"field": "context.observer", "operator": "isNotEmpty"}]),
    "is_empty_p0": body([{"field": "context.observer", "operator": "isEmpty"}]),
    "sorted_column_p0": body([], OBSERVER_ASC),
    "sorted_column_desc_p0": body([], OBSERVER_DESC),
    "sorted_column_p200": body([], OBSERVER_ASC, page=200, size=25),
    "equals_sorted_column_p200": body([SKA_MID], OBSERVER_ASC, page=200, size=25),
    "sorted_hidden_p0": body([], T_EXPTIME_ASC),
}


def main() -> None:
    names = sys.argv[1:] or list(BODIES)
    seconds = {}  # each body's first time, then the median of its repeats
    with override_settings(ALLOWED_HOSTS=["*"]):
        client = Client()
        # The first request of a process also reads the catalogue's field
        # list (dpd.search.catalogue_fields, ~1.6 s at 1,000,000 products),
        # which every later request shares: not a body's cost.
        client.post("/filterdataproducts", json.dumps(BODIES[names[0]]), "application/json")
        for name in names:
            caches["counts"].clear()  # no total remembered from another body
            times, total = [], None
            for _ in range(3):
                start = time.perf_counter()
                response = client.post(
                    "/filterdataproducts", json.dumps(BODIES[name]), content_type="application/json"
                )
                times.append(time.perf_counter() - start)
                answer = response.json()
                total = answer.get("total") if response.status_code == 200 else answer
            seconds[f"{name}_first"] = times[0]
            seconds[f"{name}_again"] = statistics.median(times[1:])
            runs = ", ".join(f"{t:.3f}" for t in times)
            print(f"{name}: runs {runs} s, total {total}", flush=True)
    ratios = [f"{name}_vs_100ms={m / TARGET_S:.2f}" for name, m in seconds.items()]
    figures = [f"{name}_s={m:.3f}" for name, m in seconds.items()]
    print(" ".join([*ratios, *figures]))


if __name__ == "__main__":
    main()
