"""Auto-tag rules: a rule tree plus a tag. Customers get the tag while they match and lose
it when they stop — incrementally as events arrive (an event-log consumer evaluates the
rules for that customer in memory) and on a schedule for time-based rules (one SQL query
per rule, so "no order in 60 days" tags people as days pass)."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction

from yutang.core import audit, clock
from yutang.core.errors import N_, Conflict, NotFound, ValidationFailed
from yutang.core.models import Brand, Staff
from yutang.core.permissions import Action, require
from yutang.core.services import is_valid_id
from yutang.customers import services as customers
from yutang.customers.models import Customer, CustomerTag, Tag
from yutang.events.models import Event
from yutang.segments import rules
from yutang.segments.models import AutoTagRule
from yutang.segments.services import (
    context_for,
    customers_matching,
    lease_holder,
    parse_rule,
    rule_query,
)

logger = logging.getLogger("yutang.segments.autotags")
SCHEDULE = dt.timedelta(minutes=60)


def _tag(brand: Brand, tag_id: Any) -> Tag:
    tag = Tag.objects.filter(brand=brand, pk=tag_id).first() if is_valid_id(tag_id) else None
    if tag is None:
        raise ValidationFailed(
            N_("No such tag: {tag_id}."), params={"tag_id": tag_id}, field="tag_id"
        )
    return tag


def create_rule(
    *, actor: Staff, name: str, rule: Any, tag_id: int, is_active: bool = True
) -> AutoTagRule:
    require(actor, Action.SEGMENT_MANAGE)
    name = (name or "").strip()
    if not name or len(name) > 80:
        raise ValidationFailed(
            N_("An auto-tag rule needs a name of at most 80 characters."), field="name"
        )
    node = parse_rule(rule)
    tag = _tag(actor.brand, tag_id)
    now = clock.now()
    try:
        with transaction.atomic():
            created = AutoTagRule.objects.create(
                brand=actor.brand, name=name, rule=rules.to_json(node), tag=tag,
                is_active=is_active, created_by=actor, created_at=now, updated_at=now,
            )  # fmt: skip
            audit.record(brand=actor.brand, actor=actor, action="auto_tag.create", target=created)
    except IntegrityError:
        raise Conflict(
            N_("An auto-tag rule named {name!r} exists already."),
            params={"name": name},
            field="name",
        ) from None
    return created


def get_rule(*, actor: Staff, rule_id: int, action: Action = Action.SEGMENT_VIEW) -> AutoTagRule:
    found = (
        AutoTagRule.objects.for_actor(actor, action).filter(pk=rule_id).first()
        if is_valid_id(rule_id)
        else None
    )
    if found is None:
        raise NotFound(N_("No such auto-tag rule."), field="rule_id")
    return found


def list_rules(*, actor: Staff) -> list[AutoTagRule]:
    return list(
        AutoTagRule.objects.for_actor(actor, Action.SEGMENT_VIEW).select_related("tag__group")
    )


def update_rule(*, actor: Staff, rule_id: int, **changes: Any) -> AutoTagRule:
    found = get_rule(actor=actor, rule_id=rule_id, action=Action.SEGMENT_MANAGE)
    for name, value in changes.items():
        if name == "name":
            value = (value or "").strip()
            if not value or len(value) > 80:
                raise ValidationFailed(N_("name: at most 80 characters."), field="name")
            found.name = value
        elif name == "rule":
            found.rule = rules.to_json(parse_rule(value))
        elif name == "tag_id":
            found.tag = _tag(actor.brand, value)
        elif name == "is_active":
            found.is_active = bool(value)
        else:
            raise ValidationFailed(N_("Unknown field {name!r}."), params={"name": name}, field=name)
    found.updated_at = clock.now()
    try:
        with transaction.atomic():
            found.save()
            audit.record(brand=actor.brand, actor=actor, action="auto_tag.update", target=found)
    except IntegrityError:
        raise Conflict(
            N_("An auto-tag rule named {name!r} exists already."),
            params={"name": found.name},
            field="name",
        ) from None
    return found


def delete_rule(*, actor: Staff, rule_id: int) -> None:
    """Delete the rule and take off the tags it added (manual tags stay)."""
    found = get_rule(actor=actor, rule_id=rule_id, action=Action.SEGMENT_MANAGE)
    with transaction.atomic():
        tagged = CustomerTag.objects.filter(tag=found.tag, source=found.source).values_list(
            "customer_id", flat=True
        )
        customers.remove_tag_by_source(
            customer_ids=list(tagged), tag_id=found.tag_id, source=found.source
        )
        audit.record(brand=actor.brand, actor=actor, action="auto_tag.delete", target=found)
        found.delete()


@dataclass
class ApplyResult:
    rule_id: int
    tagged: int
    untagged: int


def apply_rule(rule: AutoTagRule) -> ApplyResult:
    """Bring the rule's tag in line with the rule for the whole brand (one query to match)."""
    node = rules.parse_rule(rule.rule)
    now = clock.now()
    with rule_query():
        matching = set(customers_matching(brand=rule.brand, node=node).values_list("pk", flat=True))
        has_tag = set(
            CustomerTag.objects.filter(tag=rule.tag).values_list("customer_id", flat=True)
        )
        ours = set(
            CustomerTag.objects.filter(tag=rule.tag, source=rule.source).values_list(
                "customer_id", flat=True
            )
        )
        add = sorted(matching - has_tag)
        remove = sorted(ours - matching)
        CustomerTag.objects.bulk_create(
            [
                CustomerTag(customer_id=c, tag=rule.tag, source=rule.source, created_at=now)
                for c in add
            ],
            batch_size=5000, ignore_conflicts=True,
        )  # fmt: skip
        customers.remove_tag_by_source(customer_ids=remove, tag_id=rule.tag_id, source=rule.source)
        AutoTagRule.objects.filter(pk=rule.pk).update(applied_at=now)
    return ApplyResult(rule_id=rule.pk, tagged=len(add), untagged=len(remove))


def apply_now(*, actor: Staff, rule_id: int) -> ApplyResult:
    return apply_rule(get_rule(actor=actor, rule_id=rule_id, action=Action.SEGMENT_MANAGE))


def apply_for_customer(customer: Customer, event_type: str | None = None) -> None:
    """Evaluate the brand's active rules for one customer in memory and tag/untag. With
    `event_type` (the consumer), only the rules that event can affect (rules.trigger_types):
    a click does not re-evaluate "spent 500 in 30 days"; time-based changes are the
    scheduled pass's job."""
    active = _active_rules(customer.brand_id)
    if not active:
        return
    _apply_rules(customer, _rules_for(active, event_type), context_for(customer.brand))


ActiveRule = tuple[AutoTagRule, rules.Node, set[str] | None]


def _active_rules(brand_id: int) -> list[ActiveRule]:
    """The brand's active rules, parsed, with the event types that can change each."""
    found = []
    for rule in AutoTagRule.objects.filter(brand_id=brand_id, is_active=True):
        node = rules.parse_rule(rule.rule)
        found.append((rule, node, rules.trigger_types(node)))
    return found


def _rules_for(active: list[ActiveRule], event_type: str | None) -> list[ActiveRule]:
    if event_type is None:
        return active
    return [r for r in active if r[2] is None or event_type in r[2]]


def _apply_rules(customer: Customer, chosen: list[ActiveRule], ctx: rules.Context) -> None:
    now = clock.now()
    for rule, node, _types in chosen:
        matches = rules.evaluate(node, rules.load_facts(customer, node), ctx)
        if matches:
            CustomerTag.objects.get_or_create(
                customer=customer, tag_id=rule.tag_id,
                defaults={"source": rule.source, "created_at": now},
            )  # fmt: skip
        else:
            customers.remove_tag_by_source(
                customer_ids=[customer.pk], tag_id=rule.tag_id, source=rule.source
            )


def event_types() -> set[str] | None:
    """The event types the consumer can act on now (it reads only these; None: every type):
    those that can change an active rule's answer (`rules.trigger_types`), any brand's."""
    types: set[str] = set()
    for rule in AutoTagRule.objects.filter(is_active=True).values_list("rule", flat=True):
        found = rules.trigger_types(rules.parse_rule(rule))
        if found is None:
            return None
        types |= {t for t in found if not t.startswith(SKIPPED)}
    return types


#: The event types the consumer passes over: its own outputs and the scores' (nothing a rule
#: reads changes with them).
SKIPPED = ("segment.", "lifecycle.")


def _skipped(event: Event) -> bool:
    return event.type.startswith(SKIPPED)


def handle_event(event: Event) -> None:
    """The event-log consumer: re-evaluate the rules for the event's (surviving) customer.
    Idempotent: tagging and untagging converge on the rule's answer."""
    if _skipped(event):
        return  # our own outputs; nothing a rule reads changes with them
    customer = Customer.objects.select_related("brand").filter(pk=event.customer_id).first()
    if customer is None:
        return
    if customer.merged_into_id is not None:
        customer = customers.survivor(customer)
    apply_for_customer(customer, event.type)


def handle_events(batch: list[Event]) -> None:
    """The consumer's batch form (same effect as `handle_event` on each event in order):
    the rules are loaded and parsed once per brand, and only the events some rule can react
    to load their customer and evaluate — a click does not cost a query when no rule reads
    clicks. When no active rule reads tags (`_order_free`), each customer's rules are
    evaluated once for the batch, from facts read for all of them together."""
    by_brand: dict[int, list[ActiveRule]] = {}
    wanted: list[tuple[Event, list[ActiveRule]]] = []
    for event in batch:
        if _skipped(event) or event.customer_id is None:
            continue
        if event.brand_id not in by_brand:
            by_brand[event.brand_id] = _active_rules(event.brand_id)
        chosen = _rules_for(by_brand[event.brand_id], event.type)
        if chosen:
            wanted.append((event, chosen))
    if not wanted:
        return
    found = Customer.objects.select_related("brand").in_bulk(
        {event.customer_id for event, _ in wanted}
    )
    contexts: dict[int, rules.Context] = {}
    targets: list[tuple[Customer, list[ActiveRule]]] = []
    for event, chosen in wanted:
        customer = found.get(event.customer_id)
        if customer is None:
            continue
        if customer.merged_into_id is not None:
            customer = customers.survivor(customer)
        if customer.brand_id not in contexts:
            contexts[customer.brand_id] = context_for(customer.brand)
        targets.append((customer, chosen))
    if all(_order_free(active) for active in by_brand.values()):
        _apply_rules_together(targets, contexts)
        return
    for customer, chosen in targets:
        _apply_rules(customer, chosen, contexts[customer.brand_id])


def _order_free(active: list[ActiveRule]) -> bool:
    """Whether evaluating these rules reads nothing that applying them writes, so that one
    evaluation per customer and batch gives what one per event gives: no rule reads tags
    (the only facts tagging changes), and every condition is a built-in kind (a registered
    kind reads what it likes); and whether the rules' tags differ (two rules of one tag
    would make the order of their adds and removals matter)."""
    tags = [rule.tag_id for rule, _node, _types in active]
    return len(set(tags)) == len(tags) and all(
        isinstance(c, rules.Condition)
        and type(c).__module__ == rules.__name__
        and not isinstance(c, rules.TagCondition)
        for _rule, node, _types in active
        for c in rules.walk(node)
    )


def _apply_rules_together(
    targets: list[tuple[Customer, list[ActiveRule]]], contexts: dict[int, rules.Context]
) -> None:
    """`_apply_rules` for each (customer, rules) in order, for rules that are `_order_free`:
    each rule is evaluated once per customer (a second evaluation reads the same facts and
    gives the same answer), from facts read for every customer of the batch in one query per
    kind of fact (`rules.load_facts_many`); tags are added, in the order `_apply_rules` would have
    added them, and removed in bulk."""
    people: dict[int, Customer] = {}
    for customer, _chosen in targets:
        people.setdefault(customer.pk, customer)
    nodes = [node for _c, chosen in targets for _r, node, _t in chosen]
    facts = rules.load_facts_many(list(people.values()), nodes)
    now = clock.now()
    done: set[tuple[int, int]] = set()
    add: list[CustomerTag] = []
    remove: dict[tuple[int, str], list[int]] = {}
    for customer, chosen in targets:
        ctx = contexts[customer.brand_id]
        for rule, node, _types in chosen:
            if (customer.pk, rule.pk) in done:
                continue
            done.add((customer.pk, rule.pk))
            if rules.evaluate(node, facts[customer.pk], ctx):
                add.append(
                    CustomerTag(
                        customer_id=customer.pk, tag_id=rule.tag_id, source=rule.source,
                        created_at=now,
                    )
                )  # fmt: skip
            else:
                remove.setdefault((rule.tag_id, rule.source), []).append(customer.pk)
    # get_or_create's effect: a customer who has the tag already (from any source) keeps it.
    CustomerTag.objects.bulk_create(add, ignore_conflicts=True)
    for (tag_id, source), ids in remove.items():
        customers.remove_tag_by_source(customer_ids=ids, tag_id=tag_id, source=source)


def apply_due_rules() -> int:
    """The scheduled pass (worker loop): re-apply each active rule once per SCHEDULE, so
    rules that depend on time alone ("no order in 60 days") follow the clock."""
    from yutang.core.worker import acquire_lease, release_lease

    now = clock.now()
    done = 0
    for rule in AutoTagRule.objects.filter(is_active=True).select_related("brand", "tag"):
        if rule.applied_at is not None and rule.applied_at + SCHEDULE > now:
            continue
        lease = f"auto-tag:{rule.pk}"
        holder = lease_holder()
        if not acquire_lease(lease, holder, dt.timedelta(minutes=10)):
            continue
        try:
            apply_rule(rule)
            done += 1
        except Exception:
            logger.exception("auto-tag rule %s failed", rule.pk)
        finally:
            release_lease(lease, holder)
    return done
