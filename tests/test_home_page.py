"""The home page at `/`: its figures against the database, for a member of an
access group and for someone outside it, and how it follows a run."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from datetime import timedelta

import pytest
import time_machine
from django.db.models import Q
from django.test import Client
from django.utils import timezone

from annotations.models import Annotation
from dpd.home.chart import products_chart
from dpd.metadata import product_uid
from dpd.models import DataProduct
from dpd.sdp_models import Flow
from indexing.leader import volume_prefix
from indexing.models import IndexingState, IndexRun
from tests.annotation_helpers import TEAM, database_unreachable, make_user

SECRET_EB = "eb-team-20240315-00007"


def product(eb: str, day: dt.date, instrument: str | None, kind: str | None, group=None, **extra):
    obscore = {}
    if instrument:
        obscore["instrument_name"] = instrument
    if kind:
        obscore["dataproduct_type"] = kind
    document = {"execution_block": eb, "obscore": obscore, "context": {}}
    columns = {
        "uid": product_uid(eb, f"/volume/{eb}"),
        "execution_block": eb,
        "metadata_file": f"{eb}/ska-data-product.yaml",
        "dataproduct_file": eb,
        "date_created": day,
        "metadata": document,
        "access_group": group,
    }
    return DataProduct.objects.create(**{**columns, **extra})


@pytest.fixture
def catalogue(db):
    """Open products over three months (one month empty between), a team
    product of its own instrument and month, a product hidden from all but
    staff, an SDP placeholder, flows, annotations and runs."""
    product("eb-low-20240105-00001", dt.date(2024, 1, 5), "SKA-Low", "visibility")
    product("eb-low-20240120-00002", dt.date(2024, 1, 20), "SKA-Low", "image")
    product("eb-mid-20240302-00003", dt.date(2024, 3, 2), "SKA-Mid", "image")
    product("eb-odd-20240303-00004", dt.date(2024, 3, 3), None, None)  # metadata says nothing
    product(
        "eb-api-20240304-00008",
        dt.date(2024, 3, 4),
        "SKA-Mid",
        "image",
        source=DataProduct.Source.API,
        metadata_file=None,
    )
    team = product(SECRET_EB, dt.date(2024, 6, 15), "SKA-Team-Only", "cube", group=TEAM)
    product("eb-none-20240101-00005", dt.date(2024, 1, 1), "SKA-Low", "cube", group="")
    DataProduct.objects.create(
        uid=product_uid("eb-sdp-20240701-00009", "sdp"),
        execution_block="eb-sdp-20240701-00009",
        date_created=dt.date(2024, 7, 1),
        metadata={"execution_block": "eb-sdp-20240701-00009"},
        source=DataProduct.Source.SDP,
    )
    for key, eb, status in [
        ("pb-1:data-product:vis", "eb-low-20240105-00001", "FLOWING"),
        ("pb-1:data-product:img", "eb-low-20240105-00001", "COMPLETED"),
        ("pb-9:data-product:vis", "eb-sdp-20240701-00009", "FLOWING"),
        ("pb-7:data-product:cube", SECRET_EB, "FAILED"),
        ("pb-7:data-product:vis", SECRET_EB, "FAILED"),
    ]:
        pb, kind, name = key.split(":")
        Flow.objects.create(
            key=key, processing_block=pb, execution_block=eb, kind=kind, name=name, status=status
        )
    Annotation.objects.create(
        data_product_uid=team.uid,
        annotation_text="Team-only calibration note",
        user_principal_name="a",
    )
    Annotation.objects.create(
        data_product_uid=DataProduct.objects.get(execution_block="eb-mid-20240302-00003").uid,
        annotation_text="Open note on the mid product",
        user_principal_name="b",
    )
    IndexRun.objects.create(
        trigger="command",
        status="completed",
        volume_prefix=volume_prefix(),
        files_found=9,
        files_added=7,
        duration=timedelta(seconds=272),
        errors=[{"path": f"{SECRET_EB}/broken/ska-data-product.yaml", "reason": "empty document"}],
    )


def visible_to(groups: set[str] | None) -> list[DataProduct]:
    """What a caller in `groups` may see, worked out apart from the code under test."""
    rows = DataProduct.objects.exclude(source=DataProduct.Source.SDP)
    if groups is not None:
        rows = rows.filter(Q(access_group__isnull=True) | Q(access_group__in=groups))
    return list(rows)


def signed_in(name: str, **kwargs) -> Client:
    client = Client()
    client.force_login(make_user(name, **kwargs))
    return client


def home(client: Client) -> str:
    response = client.get("/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    return response.content.decode()


def table(page: str, table_id: str) -> dict[str, int]:
    body = re.search(rf'<table id="{table_id}">(.*?)</table>', page, re.S).group(1)
    return {
        name: int(count)
        for name, count in re.findall(r'<tr><td>([^<]+)</td><td class="num">(\d+)</td></tr>', body)
    }


def chart_bars(page: str) -> dict[str, int]:
    return {
        period: int(count)
        for period, count in re.findall(r'data-period="([\d-]+)" data-count="(\d+)"', page)
    }


def section(page: str, section_id: str) -> str:
    return re.search(rf'<section[^>]* id="{section_id}"(.*?)</section>', page, re.S).group(1)


@pytest.mark.parametrize(
    "persona, groups",
    [("member", {TEAM}), ("outsider", {"unrelated"}), ("anonymous", set()), ("staff", None)],
)
def test_the_figures_are_those_of_the_products_the_caller_may_see(catalogue, persona, groups):
    if persona == "anonymous":
        client = Client()
    else:
        client = signed_in(persona, staff=groups is None, groups=tuple(groups or ()))
    expected = visible_to(groups)

    page = home(client)

    assert re.search(rf'id="products-total" data-count="{len(expected)}"', page)
    instruments = Counter(
        p.metadata["obscore"].get("instrument_name", "(not given)") for p in expected
    )
    types = Counter(p.metadata["obscore"].get("dataproduct_type", "(not given)") for p in expected)
    assert table(page, "by-instrument") == dict(instruments)
    assert table(page, "by-type") == dict(types)
    ingested = sum(p.source == DataProduct.Source.API for p in expected)
    assert table(page, "by-store") == {
        "shared (volume)": len(expected) - ingested,
        "shared (API ingest)": ingested,
        "SDP (placeholders)": 1,
    }
    months = Counter(f"{p.date_created:%Y-%m}" for p in expected)
    bars = chart_bars(page)
    assert {period: count for period, count in bars.items() if count} == dict(months)
    assert bars["2024-02"] == 0  # an empty month is a gap, not skipped
    visible_ebs = {p.execution_block for p in expected} | {"eb-sdp-20240701-00009"}
    flows = Counter(f.status for f in Flow.objects.filter(execution_block__in=visible_ebs))
    assert table(page, "flows-by-status") == dict(flows)
    sees_team = groups is None or TEAM in groups
    assert (SECRET_EB in page) is sees_team
    assert ("SKA-Team-Only" in page) is sees_team
    assert ("Team-only calibration note" in page) is sees_team
    assert "Open note on the mid product" in page


def test_run_errors_name_files_only_for_those_who_may_read_the_run_history(catalogue):
    staff_page = home(signed_in("curator", staff=True))
    member_page = home(signed_in("member", groups=(TEAM,)))

    assert f"{SECRET_EB}/broken/ska-data-product.yaml" in section(staff_page, "runs")
    runs = section(member_page, "runs")
    assert SECRET_EB not in runs
    assert "4 min 32 s" in runs and "Completed" in runs  # duration and counts for everyone
    assert re.search(r'<td class="num">1</td>\s*</tr>', runs)  # one error, counted


def test_the_page_costs_a_handful_of_queries_however_big_the_catalogue(
    catalogue, django_assert_max_num_queries
):
    client = signed_in("member", groups=(TEAM,))
    # /status's six, the session, the user and their groups and permissions
    # (may they read run errors?), and seven for the catalogue's figures.
    with django_assert_max_num_queries(18) as few:
        home(client)
    for index in range(40):
        product(
            f"eb-more-20230{index % 9 + 1}01-{index:05d}",
            dt.date(2023, index % 9 + 1, 1),
            "SKA-Mid",
            "image",
        )
    with django_assert_max_num_queries(len(few.captured_queries)):
        home(client)


def test_a_newcomer_reaches_a_product_page_in_one_click_without_an_account(catalogue):
    client = Client()
    page = home(client)

    newest = section(page, "newest")
    links = re.findall(r'href="(/products/[0-9a-f-]{36}/)"', newest)
    assert links
    product_page = client.get(links[0])
    assert product_page.status_code == 200
    assert "Sign in</a> to add an annotation" in product_page.content.decode()


def test_the_links_lead_to_the_docs_admin_annotations_and_metrics(catalogue):
    links = re.search(r'<p class="links" id="links">(.*?)</p>', home(Client()), re.S).group(1)

    for href in ("/docs", "/admin/", "/products/annotations/recent/", "/metrics", "/status"):
        assert f'href="{href}"' in links


def test_while_a_run_is_going_the_bar_shows_its_progress_and_the_page_follows_it(db):
    now = timezone.now()
    IndexingState.objects.create(
        volume_prefix=volume_prefix(),
        indexed_by="pod-a",
        indexing_running=True,
        started_at=now,
        last_heartbeat=now,
        indexing_step="indexing",
        files_processed=30,
        total_files=120,
    )

    page = home(Client())

    assert '<progress id="indexing-bar" max="120" value="30">25%</progress>' in page
    assert 'data-running="true"' in page
    assert '<noscript><meta http-equiv="refresh"' in page  # without JavaScript, too
    assert re.search(r'<script src="/static/dpd/home\.js[^"]*" defer>', page)


def test_an_idle_page_does_not_reload_itself(db):
    page = home(Client())

    assert 'data-running="false"' in page
    assert 'http-equiv="refresh"' not in page
    assert "No products yet." in page and "No runs yet." in page


def test_the_script_is_served_by_the_project(db):
    response = Client().get("/static/dpd/home.js")

    assert response.status_code == 200
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert b"indexing-bar" in body


def test_without_a_dlm_bridge_the_dlm_section_says_it_is_not_enabled(db, settings):
    settings.SKA_DATAPRODUCT_DLM_INTERFACE_ENABLED = False

    assert "DLM not enabled" in section(home(Client()), "dlm")


def test_the_chart_puts_years_of_products_into_yearly_bars():
    series = [(dt.date(2010, 1, 1), 4), (dt.date(2024, 6, 1), 2), (dt.date(2024, 7, 1), 3)]

    chart = products_chart(series)

    assert chart.period == "year"
    assert [bar.label for bar in chart.bars] == [str(year) for year in range(2010, 2025)]
    assert chart.bars[-1].count == 5 and chart.total == 9
    tallest = max(chart.bars, key=lambda bar: bar.height)
    assert tallest.label == "2024" and tallest.y >= 0


def test_with_the_database_down_the_page_says_so_with_a_503(transactional_db):
    with database_unreachable():
        response = Client().get("/")

    assert response.status_code == 503
    page = response.content.decode()
    assert 'id="database-down"' in page and "unavailable" in section(page, "service")


def test_a_volume_naming_many_instruments_gives_ten_rows_the_last_summing_the_rest(db):
    for index in range(30):
        product(
            f"eb-many-20240101-{index:05d}", dt.date(2024, 1, 1), f"Instrument {index:02d}", "x"
        )
    for index in (98, 99):
        product(f"eb-long-20240101-{index:05d}", dt.date(2024, 1, 1), "Z" * 5000, "x")

    rows = table(home(Client()), "by-instrument")

    assert len(rows) == 10
    assert rows["22 others"] == 22 and sum(rows.values()) == 32
    assert rows["Z" * 59 + "…"] == 2  # shortened for the table


def test_the_figures_follow_a_change_of_the_catalogue_at_once(catalogue):
    client = Client()
    before = int(re.search(r'data-count="(\d+)"', home(client)).group(1))

    product("eb-new-20240401-00010", dt.date(2024, 4, 1), "SKA-Low", "image")

    assert re.search(rf'id="products-total" data-count="{before + 1}"', home(client))
    DataProduct.objects.filter(execution_block="eb-new-20240401-00010").delete()
    IndexRun.objects.create(trigger="command", status="completed", volume_prefix=volume_prefix())
    assert re.search(rf'id="products-total" data-count="{before}"', home(client))


def test_while_a_run_writes_the_figures_follow_it_every_ten_seconds(catalogue):
    """A run moves the catalogue at every batch and the page reloads itself
    meanwhile: each reload recounted every document (~1.3 s at 100,000)."""
    client = Client()
    run = IndexRun.objects.create(
        trigger="command", status="running", volume_prefix=volume_prefix()
    )
    with time_machine.travel(dt.datetime.now(dt.UTC), tick=False) as clock:
        before = total(home(client))
        product("eb-new-20240401-00010", dt.date(2024, 4, 1), "SKA-Low", "image")
        during = total(home(client))
        clock.shift(11)
        later = total(home(client))
        product("eb-new-20240401-00011", dt.date(2024, 4, 1), "SKA-Low", "image")
        run.status = "completed"
        run.save()
        ended = total(home(client))
    assert during == before
    assert later == before + 1
    assert ended == before + 2  # the first render after the run counts all


def total(page: str) -> int:
    return int(re.search(r'id="products-total" data-count="(\d+)"', page).group(1))


def test_callers_of_other_groups_never_get_each_others_figures(catalogue):
    member, outsider = signed_in("member", groups=(TEAM,)), signed_in("outsider")

    assert "SKA-Team-Only" in home(member)
    assert "SKA-Team-Only" not in home(outsider)
    assert "SKA-Team-Only" in home(member)


def test_a_group_named_like_two_groups_shares_no_figures_with_them(db):
    product("eb-a-20240101-00001", dt.date(2024, 1, 1), "Only-A", "x", group="a")
    product("eb-b-20240101-00002", dt.date(2024, 1, 1), "Only-B", "x", group="b")
    both, lookalike = signed_in("both", groups=("a", "b")), signed_in("lookalike", groups=("a, b",))

    assert "Only-A" in home(both)
    assert "Only-A" not in home(lookalike)
