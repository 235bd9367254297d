"""Customer pages of the console: list, saved views, portrait, merge queue, imports."""

from __future__ import annotations

import io

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.factories import console_client, make_brand, make_staff, make_store
from yutang.core.permissions import Role
from yutang.customers import services
from yutang.customers.identities import normalize_identity
from yutang.customers.models import ImportJob, MergeCandidate
from yutang.events.services import ingest_events

pytestmark = pytest.mark.django_db


def person(brand, phone, name="", store=None):
    return services.resolve_customer(
        brand=brand,
        identities=[normalize_identity("phone", phone)],
        source="test",
        profile={"display_name": name, **({"owner_store_id": store.pk} if store else {})},
    ).customer


def count_queries(client, url):
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(ctx.captured_queries), response.content.decode()


def test_list_filters_saved_views_and_masking():
    brand = make_brand()
    lead = make_staff(brand, Role.OPERATIONS_LEAD)
    analyst = make_staff(brand, Role.ANALYST)
    person(brand, "13800000001", "林")
    person(brand, "13800000002", "王")
    client = console_client(lead)
    _, body = count_queries(client, "/customers/?search=林")
    assert "林" in body and "王" not in body and "+8613800000001" in body
    client.post("/customers/views/", {"name": "林姓", "search": "林"})
    _, body = count_queries(client, "/customers/")
    assert "林姓" in body
    _, masked = count_queries(console_client(analyst), "/customers/")
    assert "138****0001" in masked and "13800000001" not in masked


def test_list_and_portrait_query_counts_do_not_grow():
    brand = make_brand()
    lead = make_staff(brand, Role.OPERATIONS_LEAD)
    tag = services.create_tag(actor=None, brand=brand, group="兴趣", name="护肤")
    client = console_client(lead)
    first = [person(brand, f"1390000000{n}", f"c{n}") for n in range(3)]
    for c in first:
        services.set_tags(actor=None, customer=c, add=[tag.pk])
    few, _ = count_queries(client, "/customers/")
    more = [person(brand, f"1370000000{n}", f"d{n}") for n in range(8)]
    for c in more:
        services.set_tags(actor=None, customer=c, add=[tag.pk])
    many, _ = count_queries(client, "/customers/")
    assert many == few

    target = more[0]
    small, _ = count_queries(client, f"/customers/{target.pk}/")
    ingest_events(
        brand=brand,
        items=[
            {
                "type": "link.clicked",
                "occurred_at": f"2026-01-0{n + 1}T10:00:00+08:00",
                "idempotency_key": f"k{n}",
                "customer_id": target.pk,
                "properties": {"link": "x"},
            }
            for n in range(6)
        ],
    )
    for n in range(4):
        services.add_note(actor=lead, customer_id=target.pk, body=f"note {n}")
    big, body = count_queries(client, f"/customers/{target.pk}/")
    assert big == small
    assert body.count("link.clicked") == 6 and "note 3" in body


def test_portrait_actions_tags_notes_consent():
    brand = make_brand()
    lead = make_staff(brand, Role.OPERATIONS_LEAD)
    c = person(brand, "13800000001", "林")
    client = console_client(lead)
    client.post(f"/customers/{c.pk}/tags/", {"new_tag": "肤质:干皮"})
    client.post(f"/customers/{c.pk}/notes/", {"body": "喜欢小样"})
    client.post(
        f"/customers/{c.pk}/consent/",
        {"purpose": "marketing", "status": "withdrawn", "proof": "退订"},
    )
    body = client.get(f"/customers/{c.pk}/").content.decode()
    assert "干皮" in body and "喜欢小样" in body and "consent.changed" in body
    assert not services.has_consent(c, purpose="marketing", carrier="wecom")
    analyst = make_staff(brand, Role.ANALYST)
    response = console_client(analyst).post(f"/customers/{c.pk}/notes/", {"body": "x"})
    assert response.status_code == 403
    assert c.notes.count() == 1


def test_store_role_cannot_open_another_stores_customer():
    brand = make_brand()
    mine, other = make_store(brand), make_store(brand)
    advisor = make_staff(brand, Role.ADVISOR, stores=[mine])
    theirs = person(brand, "13800000009", "别人", store=other)
    client = console_client(advisor)
    assert client.get(f"/customers/{theirs.pk}/").status_code == 404
    assert client.post(f"/customers/{theirs.pk}/notes/", {"body": "x"}).status_code == 404
    assert "别人" not in client.get("/customers/").content.decode()
    assert theirs.notes.count() == 0


def test_merge_queue_merge_and_undo():
    brand = make_brand()
    lead = make_staff(brand, Role.OPERATIONS_LEAD)
    a = person(brand, "13800000001", "甲")
    b = services.resolve_customer(
        brand=brand, identities=[normalize_identity("taobao_buyer", "tb1")], source="t"
    ).customer
    services.resolve_customer(
        brand=brand,
        identities=[
            normalize_identity("phone", "13800000001"),
            normalize_identity("taobao_buyer", "tb1"),
        ],
        source="t",
    )
    candidate = MergeCandidate.objects.get()
    client = console_client(lead)
    assert "甲" in client.get("/customers/merges/").content.decode()
    response = client.post(
        f"/customers/merges/{candidate.pk}/decide/",
        {"decision": "merge"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 204
    b.refresh_from_db()
    assert b.merged_into_id == a.pk
    merge = a.merges_kept.get()
    client.post(f"/merges/{merge.pk}/undo/")
    b.refresh_from_db()
    assert b.merged_into_id is None


def test_import_pages_preview_then_start(django_capture_on_commit_callbacks):
    brand = make_brand()
    lead = make_staff(brand, Role.OPERATIONS_LEAD)
    client = console_client(lead)
    data = "客户姓名,手机号,性别,生日,省份,城市,标签\n林,13800000001,女,,上海,上海,\n".encode("gbk")
    upload = io.BytesIO(data)
    upload.name = "有赞客户.csv"
    response = client.post("/imports/", {"kind": "customers", "file": upload})
    job = ImportJob.objects.get()
    assert response.status_code == 302 and job.status == "draft"
    page = client.get(f"/imports/{job.pk}/").content.decode()
    assert "youzan_customers" in page and "13800000001" in page
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/imports/{job.pk}/start/")
    job.refresh_from_db()
    assert job.status == "pending"
    from yutang.customers.imports import run_import

    run_import(job.pk)
    progress = client.get(f"/imports/{job.pk}/", headers={"HX-Request": "true"}).content.decode()
    assert "1 rows" in progress or "1 行" in progress


def test_import_progress_shows_rows_of_total_and_errors_so_far_in_chinese():
    """What the HTMX poll shows while an all-or-nothing import applies its checked rows."""
    brand = make_brand()
    lead = make_staff(brand, Role.OPERATIONS_LEAD)
    job = ImportJob.objects.create(
        brand=brand,
        kind="customers",
        filename="big.csv",
        path="/nonexistent/big.csv",
        status=ImportJob.Status.RUNNING,
        rows_done=3000,
        rows_total=1_000_000,
        rejected=2,
        created_at=brand.created_at,
    )
    html = (
        console_client(lead)
        .get(f"/imports/{job.pk}/", headers={"HX-Request": "true"})
        .content.decode()
    )
    assert "已处理 3000 / 1000000 行，目前有 2 行有误" in html
    assert 'hx-trigger="every 2s"' in html
    job.status = ImportJob.Status.CHECKING
    job.save()
    checking = (
        console_client(lead)
        .get(f"/imports/{job.pk}/", headers={"HX-Request": "true"})
        .content.decode()
    )
    assert "正在逐行检查" in checking and 'hx-trigger="every 2s"' in checking
