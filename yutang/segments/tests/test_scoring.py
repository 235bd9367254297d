"""RFM on a hand-checked fixture (quintiles and thresholds), lifecycle stage transitions with
lifecycle.changed events, auto-tags added and removed (incrementally and on the schedule),
and the REST endpoints."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.factories import Api, make_brand, make_staff, make_store
from yutang.carriers import services as carriers
from yutang.commerce.models import Order, Product
from yutang.core.clock import FrozenClock, use_clock
from yutang.core.permissions import Role
from yutang.customers.models import Customer, CustomerTag
from yutang.events import consumers
from yutang.events.models import CustomerAggregate, Event
from yutang.events.services import ingest_events
from yutang.segments import autotags, rules, scoring
from yutang.segments.models import CustomerRfm
from yutang.segments.tests.builders import (
    T0,
    aggregate,
    carrier_account,
    customer,
    event,
    tag,
    tag_customer,
)

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)


def scores(brand):
    return {
        r.customer_id: (r.recency, r.frequency, r.monetary, r.rfm_class)
        for r in CustomerRfm.objects.filter(brand=brand)
    }


def test_rfm_quintiles_on_a_hand_checked_fixture():
    """Six buyers. Percent rank = (rank - 1) / 5, so ranks give 0, .2, .4, .6, .8, 1 and
    scores 1, 2, 3, 4, 5, 5; ties share the lower rank. High means a score of 3 or more."""
    brand = make_brand()
    rows = [  # days since last order, orders, net spend (fen)
        (1, 9, 90_000),   # newest, most, richest
        (5, 1, 80_000),
        (10, 4, 500),
        (30, 1, 400),
        (60, 2, 70_000),
        (90, 1, 100),     # oldest
    ]  # fmt: skip
    people = []
    for days, orders, net in rows:
        c = customer(brand)
        aggregate(c, order_count=orders, paid_fen=net + 1000, refunded_fen=1000,
                  last_order_at=T0 - days * DAY)  # fmt: skip
        people.append(c)
    nobody = customer(brand)
    aggregate(nobody, order_count=0)
    with use_clock(FrozenClock(T0)):
        result = scoring.recompute_rfm(brand=brand)
    assert result.customers == 6
    got = scores(brand)
    # recency: 90d→1, 60d→2, 30d→3, 10d→4, 5d→5, 1d→5
    # frequency: 1,1,1 (rank 1, pr 0)→1; 2 (pr .6)→4; 4 (pr .8)→5; 9 (pr 1)→5
    # monetary: 100→1, 400→2, 500→3, 70000→4, 80000→5, 90000→5
    assert got[people[0].pk] == (5, 5, 5, "important_value")
    assert got[people[1].pk] == (5, 1, 5, "important_develop")
    assert got[people[2].pk] == (4, 5, 3, "important_value")
    assert got[people[3].pk] == (3, 1, 2, "general_develop")
    assert got[people[4].pk] == (2, 4, 4, "important_keep")
    assert got[people[5].pk] == (1, 1, 1, "general_retain")
    assert nobody.pk not in got
    assert result.changed == 6

    # The next night nothing changed: nothing is written, computed_at stays.
    with use_clock(FrozenClock(T0 + DAY)):
        same = scoring.recompute_rfm(brand=brand)
    assert (same.customers, same.changed) == (6, 0) and scores(brand) == got
    assert set(CustomerRfm.objects.filter(brand=brand).values_list("computed_at", flat=True)) == {
        T0
    }
    # Then the oldest buyer is merged away and `nobody` orders: their rows go and come, and
    # only the rows whose scores moved are rewritten.
    Customer.objects.filter(pk=people[5].pk).update(merged_into=people[3])
    CustomerAggregate.objects.filter(customer=nobody).update(
        order_count=1, paid_fen=100, last_order_at=T0 - 2 * DAY
    )
    with use_clock(FrozenClock(T0 + 2 * DAY)):
        again = scoring.recompute_rfm(brand=brand)
    after = scores(brand)
    assert again.customers == 6 and people[5].pk not in after and nobody.pk in after
    moved = {pk for pk, row in after.items() if got.get(pk) != row}
    assert again.changed == len(moved) and nobody.pk in moved
    for pk, at in CustomerRfm.objects.filter(brand=brand).values_list("customer_id", "computed_at"):
        assert at == (T0 + 2 * DAY if pk in moved else T0)


def test_rfm_rows_without_database_foreign_keys_still_follow_their_customers():
    """CustomerRfm has no database foreign keys (PostgreSQL checked one per inserted row at
    commit, more than the scores cost for a first computation of a million): deleting a
    customer through the ORM still deletes its row, and a row whose customer is gone (a raw
    delete) goes at the next recompute without stopping it."""
    brand = make_brand()
    kept, gone = customer(brand), customer(brand)
    for c in (kept, gone):
        aggregate(c, order_count=1, paid_fen=100, last_order_at=T0 - DAY)
    with use_clock(FrozenClock(T0)):
        scoring.recompute_rfm(brand=brand)
    assert set(scores(brand)) == {kept.pk, gone.pk}
    gone.delete()
    assert set(scores(brand)) == {kept.pk}
    stray = max(Customer.objects.values_list("pk", flat=True)) + 1000
    CustomerRfm.objects.create(
        customer_id=stray, brand=brand, recency=1, frequency=1, monetary=1,
        rfm_class="general_retain", computed_at=T0,
    )  # fmt: skip
    with use_clock(FrozenClock(T0 + DAY)):
        result = scoring.recompute_rfm(brand=brand)
    assert set(scores(brand)) == {kept.pk} and result.customers == 1


def _expected_quintile(values: list, v) -> int:
    """PERCENT_RANK = (values below v) / (n - 1), scored as the docs say (1 for a lone buyer)."""
    n = len(values)
    rank = sum(1 for x in values if x < v) / (n - 1) if n > 1 else 0.0
    return 1 + sum(rank >= cut for cut in (0.2, 0.4, 0.6, 0.8))


@pytest.mark.parametrize("buyers", [1, 2, 5, 11, 60])
def test_rfm_quintiles_equal_percent_rank_with_ties(buyers):
    """On PostgreSQL the quintiles come from cut values (percentile_disc) instead of window
    functions over every row: on data full of ties, every score equals the PERCENT_RANK
    definition, computed here in Python (on SQLite the window functions are checked)."""
    import random

    rng = random.Random(buyers)
    brand = make_brand()
    rows = {}
    for _ in range(buyers):
        c = customer(brand)
        days, orders, net = (
            rng.choice([1, 2, 3, 40]),
            rng.choice([1, 1, 2, 7]),
            rng.choice([100, 500, 500, 9000]),
        )
        aggregate(c, order_count=orders, paid_fen=net, last_order_at=T0 - days * DAY)
        rows[c.pk] = (T0 - days * DAY, orders, net)
    with use_clock(FrozenClock(T0)):
        scoring.recompute_rfm(brand=brand)
    got = scores(brand)
    for dim in range(3):
        values = [r[dim] for r in rows.values()]
        for pk, r in rows.items():
            assert got[pk][dim] == _expected_quintile(values, r[dim]), (buyers, dim, pk)


def test_rfm_brand_thresholds():
    brand = make_brand()
    admin = make_staff(brand, Role.BRAND_ADMIN)
    scoring.update_settings(
        actor=admin, rfm_method="thresholds", recency_days=[7, 30, 90, 180],
        frequency_orders=[2, 3, 5, 8], monetary_fen=[10_000, 50_000, 100_000, 500_000],
    )  # fmt: skip
    a, b = customer(brand), customer(brand)
    aggregate(a, order_count=8, paid_fen=500_000, last_order_at=T0 - 3 * DAY)
    aggregate(b, order_count=2, paid_fen=9_999, last_order_at=T0 - 100 * DAY)
    with use_clock(FrozenClock(T0)):
        scoring.recompute_rfm(brand=brand)
    got = scores(brand)
    assert got[a.pk] == (5, 5, 5, "important_value")
    assert got[b.pk] == (2, 2, 1, "general_retain")
    with pytest.raises(Exception, match="four ascending"):
        scoring.update_settings(actor=admin, recency_days=[30, 7, 90, 180])


def test_lifecycle_stage_transitions_emit_events():
    brand = make_brand()
    Product.objects.create(
        brand=brand, sku="CREAM", name="面霜", price_fen=100, usage_cycle_days=30
    )
    clock = FrozenClock(T0)
    with use_clock(clock):
        person = customer(brand)
        assert scoring.recompute_lifecycle(brand=brand).changed == 1
        person.refresh_from_db()
        assert person.lifecycle_stage == "new_contact"

        event(person, "link.clicked", T0, link="x")
        agg = CustomerAggregate.objects.get(customer=person)  # made by the lifecycle event
        agg.last_click_at = T0
        agg.save()
        scoring.recompute_lifecycle(brand=brand)
        person.refresh_from_db()
        assert person.lifecycle_stage == "engaged"

        order = Order.objects.create(
            brand=brand, source="tmall", external_id="o1", customer=person, paid_at=T0,
            amount_fen=100, items=[{"sku": "CREAM", "qty": 1}], created_at=T0,
        )  # fmt: skip
        agg.order_count, agg.last_order_at, agg.first_order_at = 1, order.paid_at, order.paid_at
        agg.save()
        scoring.recompute_lifecycle(brand=brand)
        person.refresh_from_db()
        assert person.lifecycle_stage == "first_order"
        assert (
            scoring.predicted_next_purchase(person) == (T0 + 30 * DAY).astimezone(brand.tz).date()
        )

        agg.order_count = 2
        agg.save()
        scoring.recompute_lifecycle(brand=brand)
        person.refresh_from_db()
        assert person.lifecycle_stage == "repeat"

        # Past the cream's 30-day cycle plus 15 days of slack, with no new event: at risk.
        clock.advance(46 * DAY)
        scoring.recompute_lifecycle(brand=brand)
        person.refresh_from_db()
        assert person.lifecycle_stage == "at_risk"
        assert person.lifecycle_changed_at == clock.now()

        agg.last_contact_added_at = T0
        agg.last_contact_deleted_at = clock.now()
        agg.save()
        scoring.recompute_lifecycle(brand=brand)
        person.refresh_from_db()
        assert person.lifecycle_stage == "lost"
        # Nothing moved: no new event.
        assert scoring.recompute_lifecycle(brand=brand).changed == 0
    moves = [
        (e.properties["from"], e.properties["to"])
        for e in Event.objects.filter(type="lifecycle.changed").order_by("id")
    ]
    assert moves == [
        ("", "new_contact"), ("new_contact", "engaged"), ("engaged", "first_order"),
        ("first_order", "repeat"), ("repeat", "at_risk"), ("at_risk", "lost"),
    ]  # fmt: skip


def _stage(person):
    person.refresh_from_db()
    return person.lifecycle_stage


def test_lost_means_every_carrier_contact_deleted_and_re_adding_brings_them_back():
    """Two WeCom staff accounts hold the customer. Deleting one is not "lost" (the latest
    contact event is a deletion, but a carrier is still held); deleting both is; adding one
    back again is not. Each move is a lifecycle.changed event."""
    brand = make_brand()
    first, second = carrier_account(brand), carrier_account(brand)
    clock = FrozenClock(T0)
    n = iter(range(100))

    def contact_event(person, type, account):
        (result,) = ingest_events(brand=brand, items=[{
            "type": type, "occurred_at": clock.now(), "customer_id": person.pk,
            "idempotency_key": f"{type}:{next(n)}",
            "properties": {"carrier": "wecom", "account_id": str(account.pk)},
        }])  # fmt: skip
        assert result.status == "stored", result

    def add(person, account):
        carriers.record_contact(account_id=account.pk, brand_id=brand.pk, external_id=f"wm{person.pk}",
                                customer=person, state="", at=clock.now())  # fmt: skip
        contact_event(person, "contact.added", account)

    def delete(person, account):
        carriers.mark_contact_lost(account_id=account.pk, external_id=f"wm{person.pk}",
                                   by="customer", at=clock.now())  # fmt: skip
        contact_event(person, "contact.deleted", account)

    with use_clock(clock):
        person = customer(brand)
        add(person, first)
        add(person, second)
        scoring.recompute_lifecycle(brand=brand)
        assert _stage(person) == "new_contact"

        clock.advance(DAY)
        delete(person, first)
        assert scoring.recompute_lifecycle(brand=brand).changed == 0
        assert _stage(person) == "new_contact"

        clock.advance(DAY)
        delete(person, second)
        assert scoring.recompute_lifecycle(brand=brand).changed == 1
        assert _stage(person) == "lost"
        assert person.lifecycle_changed_at == clock.now()

        clock.advance(DAY)
        add(person, first)  # the customer adds the staff member again
        scoring.recompute_lifecycle(brand=brand)
        assert _stage(person) == "new_contact"
    moves = [
        (e.properties["from"], e.properties["to"])
        for e in Event.objects.filter(type="lifecycle.changed", customer=person).order_by("id")
    ]
    assert moves == [("", "new_contact"), ("new_contact", "lost"), ("lost", "new_contact")]


def test_lost_by_inactivity_even_while_a_carrier_is_held():
    brand = make_brand()
    admin = make_staff(brand, Role.BRAND_ADMIN)
    scoring.update_settings(actor=admin, lost_inactive_days=90)
    account = carrier_account(brand)
    quiet, recent, never_added = customer(brand), customer(brand), customer(brand)
    for person, days in ((quiet, 91), (recent, 89)):
        carriers.record_contact(account_id=account.pk, brand_id=brand.pk, external_id=f"wm{person.pk}",
                                customer=person, state="", at=T0 - days * DAY)  # fmt: skip
        aggregate(person, last_contact_added_at=T0 - days * DAY)
    # No carrier contact row at all: the event log's figures decide (latest is a deletion).
    aggregate(never_added, last_contact_added_at=T0 - 5 * DAY, last_contact_deleted_at=T0 - DAY)
    with use_clock(FrozenClock(T0)):
        scoring.recompute_lifecycle(brand=brand)
    assert (_stage(quiet), _stage(recent), _stage(never_added)) == ("lost", "new_contact", "lost")


def test_loyal_threshold_from_settings():
    brand = make_brand()
    admin = make_staff(brand, Role.BRAND_ADMIN)
    scoring.update_settings(actor=admin, loyal_min_orders=3, default_cycle_days=None)
    c = customer(brand)
    aggregate(c, order_count=3, last_order_at=T0 - 400 * DAY, last_inbound_at=T0)
    with use_clock(FrozenClock(T0)):
        scoring.recompute_lifecycle(brand=brand)
    c.refresh_from_db()
    assert c.lifecycle_stage == "loyal"


def test_auto_tag_added_and_removed_incrementally_and_on_schedule():
    brand = make_brand()
    admin = make_staff(brand, Role.BRAND_ADMIN)
    vip = tag(brand, "近期活跃")
    clock = FrozenClock(T0)
    with use_clock(clock):
        clicker = customer(brand)
        manual = customer(brand)
        tag_customer(manual, vip)  # a person tagged by hand keeps the tag
        rule = autotags.create_rule(
            actor=admin, name="clicked in 7 days", tag_id=vip.pk,
            rule={"kind": "event", "type": "link.clicked", "window": {"days": 7}},
        )  # fmt: skip
        clicked = event(clicker, "link.clicked", T0, link="x")
        autotags.handle_event(clicked)
        assert CustomerTag.objects.filter(tag=vip, customer=clicker, source=rule.source).exists()

        result = autotags.apply_rule(rule)
        assert (result.tagged, result.untagged) == (0, 0)

        clock.advance(8 * DAY)  # time alone makes the rule stop matching
        assert autotags.apply_due_rules() == 1
        assert not CustomerTag.objects.filter(tag=vip, customer=clicker).exists()
        assert CustomerTag.objects.filter(tag=vip, customer=manual).exists()
        assert autotags.apply_due_rules() == 0  # not due again within the hour


def test_trigger_types_follow_the_conditions():
    parse = rules.parse_rule
    assert rules.trigger_types(parse({"kind": "event", "type": "link.clicked"})) == {"link.clicked"}
    assert rules.trigger_types(
        parse({"or": [
            {"kind": "aggregate", "field": "paid_fen", "op": "gte", "value": 1},
            {"not": {"kind": "touches", "window": {"days": 7}, "op": "gte", "value": 1}},
            {"kind": "aggregate", "field": "days_since_last_click", "op": "lte", "value": 3},
            {"kind": "consent", "purpose": "marketing", "status": "granted"},
        ]})
    ) == {"order.paid", "message.sent", "link.clicked", "consent.changed"}  # fmt: skip
    # A profile condition may change without a matching event type: every event counts.
    assert (
        rules.trigger_types(
            parse({"and": [
                {"kind": "event", "type": "order.paid"},
                {"kind": "profile", "field": "city", "op": "eq", "value": "上海"},
            ]})
        )
        is None
    )  # fmt: skip
    assert (
        rules.trigger_types(
            parse({"kind": "aggregate", "field": "event_count", "op": "gte", "value": 2})
        )
        is None
    )


def test_the_consumer_evaluates_only_the_rules_an_event_can_change():
    brand = make_brand()
    admin = make_staff(brand, Role.BRAND_ADMIN)
    clicked_tag, any_tag = tag(brand, "clicked"), tag(brand, "anyone")
    with use_clock(FrozenClock(T0)):
        c = customer(brand, city="上海")
        autotags.create_rule(
            actor=admin, name="clicked", tag_id=clicked_tag.pk,
            rule={"kind": "event", "type": "link.clicked", "window": {"days": 7}},
        )  # fmt: skip
        autotags.create_rule(
            actor=admin, name="in Shanghai", tag_id=any_tag.pk,
            rule={"kind": "profile", "field": "city", "op": "eq", "value": "上海"},
        )  # fmt: skip
        # The click is in the log, but the consumer sees a message first: the click rule is
        # not evaluated (nothing a message changes can make it match); the profile rule is.
        event(c, "link.clicked", T0, link="x")
        autotags.handle_event(event(c, "message.sent", T0, carrier="wecom", message_id="m"))
        assert set(CustomerTag.objects.filter(customer=c).values_list("tag_id", flat=True)) == {
            any_tag.pk
        }
        autotags.handle_event(event(c, "link.clicked", T0, link="y"))
        assert set(CustomerTag.objects.filter(customer=c).values_list("tag_id", flat=True)) == {
            any_tag.pk,
            clicked_tag.pk,
        }


@pytest.mark.django_db(transaction=True)
def test_auto_tags_follow_the_event_log_consumer():
    brand = make_brand()
    admin = make_staff(brand, Role.BRAND_ADMIN)
    t = tag(brand, "护肤买家")
    autotags.create_rule(
        actor=admin, name="skin", tag_id=t.pk,
        rule={"kind": "event", "type": "order.paid",
              "filters": [{"property": "category", "op": "eq", "value": "护肤"}]},
    )  # fmt: skip
    from yutang.events.services import ingest_events

    with use_clock(FrozenClock(T0)):
        results = ingest_events(brand=brand, items=[{
            "type": "order.paid", "occurred_at": T0.isoformat(), "idempotency_key": "p1",
            "identities": [{"kind": "external", "value": "U1"}],
            "properties": {"order_id": "1", "source": "tmall", "amount_fen": 100, "category": "护肤"},
        }])  # fmt: skip
    with use_clock(FrozenClock(T0 + dt.timedelta(minutes=1))):
        consumers.run_consumer("segments.auto_tags")
    customer_id = results[0].customer_id
    assert customer_id is not None
    assert CustomerTag.objects.filter(tag=t, customer_id=customer_id).exists()


def test_rest_rfm_lifecycle_auto_tags_and_scoping():
    brand = make_brand()
    admin = make_staff(brand, Role.BRAND_ADMIN)
    store = make_store(brand)
    c1 = customer(brand, owner_store=store)
    c2 = customer(brand)
    aggregate(c1, order_count=3, paid_fen=100, last_order_at=T0)
    aggregate(c2, order_count=1, paid_fen=50, last_order_at=T0 - 10 * DAY)
    api = Api(admin)
    with use_clock(FrozenClock(T0)):
        body = api.post("/rfm/recompute", {}).json()
    assert body["rfm_customers"] == 2 and body["lifecycle_customers"] == 2
    table = {r["rfm_class"]: r for r in api.get("/rfm").json()}
    assert table["important_value"]["name"] == "重要价值客户"
    assert sum(r["customers"] for r in table.values()) == 2
    stages = {r["stage"]: r["customers"] for r in api.get("/lifecycle").json()}
    assert stages["repeat"] == 1 and stages["first_order"] == 1
    manager = make_staff(brand, Role.STORE_MANAGER, stores=[store])
    assert sum(r["customers"] for r in Api(manager).get("/rfm").json()) == 1
    assert Api(manager).post("/rfm/recompute", {}).status_code == 403

    t = tag(brand, "x")
    created = api.post("/auto-tags", {"name": "buyers", "tag_id": t.pk,
                                      "rule": {"kind": "aggregate", "field": "order_count", "op": "gte", "value": 2}})  # fmt: skip
    assert created.status_code == 201
    rule_id = created.json()["id"]
    assert api.post(f"/auto-tags/{rule_id}/apply", {}).json() == {
        "rule_id": rule_id,
        "tagged": 1,
        "untagged": 0,
    }
    bad = api.patch(f"/auto-tags/{rule_id}", {"rule": {"kind": "aggregate", "field": "x"}})
    assert bad.status_code == 422 and bad.json()["field"] == "rule.field"
    assert (
        api.post(
            "/auto-tags",
            {"name": "n", "tag_id": 999999, "rule": {"kind": "channel", "channels": ["a"]}},
        ).json()["field"]
        == "tag_id"
    )
    assert api.delete(f"/auto-tags/{rule_id}").status_code == 204
    assert not CustomerTag.objects.filter(tag=t).exists()
    patched = api.patch("/segment-settings", {"loyal_min_orders": 0})
    assert patched.status_code == 422 and patched.json()["field"] == "loyal_min_orders"
