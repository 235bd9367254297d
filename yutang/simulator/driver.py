"""SystemDriver: the one module through which the simulated world acts on the real system.

Every method is something a person (or the brand) does; each goes through a real service —
never a write behind a service's back. The same world with `drive=False` runs the model only.

What goes through which service (docs/simulator.md, "What goes through which service"):

- `prepare`: stores and staff (`core.services`), one sandbox carrier account per store (or
  one for the brand) connected with `carriers.services.connect_carrier`, one acquisition
  channel per scenario channel (plus `referral`) with one live code each
  (`acquisition.services`), the brand's touch policy from the scenario's caps
  (`messaging.services.update_policy`), the shipped journeys `1_new_contact` and
  `2_after_first_order` (`journeys.services.create_from_template` + `publish`), demo
  segments and an auto-tag rule (`segments.services`, `segments.autotags`).
- `add_contacts`: the live code routes each add (`acquisition.services.assign_account`,
  counting the account's daily cap), then the add arrives as the sandbox carrier's signed
  callback (`carriers.adapters.sandbox.emit` → `carriers.services.receive_callback` →
  messaging's sink: welcome message, customer resolution, `contact.added`, carrier contact,
  acquisition's attribution and owner). The callback's dedupe key is
  `sim:<run>:add:<person>:<date>`, so a re-run day is handled once.
- delete / reply / click / join / leave: sandbox callbacks on the account the person added
  (`contact.deleted`, `message.received`, `link.clicked`, `group.joined`, `group.left`).
- orders and refunds: `commerce.services.post_order` / `post_refund`.
- `advance` (before each day's behaviour): journeys' fast-forward clock up to the day's
  delivery time (`journeys.engine.fast_forward`: consumers, schedules, due steps), then the
  outbox (`messaging.delivery.deliver_due_messages`: policy gate → sandbox). What the outbox
  delivered since the last pass, per person and kind, is what the model's people receive.
- `refresh_scores` (weekly and at the end): dynamic segments, RFM, lifecycle and auto tags.
"""

from __future__ import annotations

import datetime as dt
import secrets
import zoneinfo
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import transaction
from django.db.models import Count, Min

from yutang.acquisition import services as acquisition
from yutang.acquisition.models import Channel, ChannelCost, ChannelType, LiveCode, Partner
from yutang.carriers import services as carriers
from yutang.carriers.adapters import jsonwire, sandbox
from yutang.carriers.models import CarrierConnection, CarrierContact, InboundReceipt
from yutang.commerce import services as commerce
from yutang.core import clock
from yutang.core import services as core
from yutang.core.errors import N_, ValidationFailed, YutangError
from yutang.core.models import Brand, CarrierAccount, Staff, Store
from yutang.core.permissions import Role
from yutang.customers import services as customers
from yutang.customers.models import Customer
from yutang.events import services as events
from yutang.journeys import engine as journeys_engine
from yutang.journeys import services as journeys
from yutang.journeys.models import Journey
from yutang.messaging import delivery
from yutang.messaging import services as messaging
from yutang.messaging.models import Message
from yutang.segments import autotags, scoring
from yutang.segments import services as segments
from yutang.segments.models import AutoTagRule, Segment
from yutang.simulator.scenario import Scenario

CARRIER = "sandbox"
#: How messaging names a sandbox contact's identity (as for WeCom's external_userid).
CONTACT_IDENTITY = "wecom_external_userid"
#: A sandbox callback carries at most this many facts (the JSON contract's limit).
CALLBACK_BATCH = jsonwire.MAX_EVENTS
#: The shipped journeys the simulated brand runs (journeys/templates_json).
JOURNEY_TEMPLATES = ("1_new_contact", "2_after_first_order")
#: Local time of the day's outbox pass: inside every shipped scenario's send window and
#: outside the default quiet hours, so the gate's quiet-hours rule defers nothing it sends.
DELIVERY_MINUTE = 12 * 60
#: Demo segments (docs/segments.md rule syntax).
SEGMENTS = (
    ("高价值客户 Important value", {"kind": "rfm", "classes": ["important_value"]}),
    ("流失风险 At risk", {"kind": "lifecycle", "stages": ["at_risk"]}),
    (
        "活跃点击 Clicked ≥2 in 14 days",
        {"kind": "event", "type": "link.clicked", "window": {"days": 14}, "op": "gte", "value": 2},
    ),
    ("复购客户 Repeat buyers", {"kind": "lifecycle", "stages": ["repeat", "loyal"]}),
)
AUTO_TAG = (
    "两单及以上 Two or more orders",
    ("价值", "复购客户"),
    {"kind": "event", "type": "order.paid", "op": "gte", "value": 2},
)
PLAN_MARKETING = "本周新品限时优惠，点击查看 https://sim.invalid/offer"
PLAN_SERVICE = "穿搭小贴士：换季衣物这样收纳更省心。"
FIXED_COST_NOTE = "fixed cost (simulated)"
CHANNEL_TYPES = {
    "koc": ChannelType.KOC_POST,
    "kol": ChannelType.KOL_POST,
    "store": ChannelType.STORE,
    "clinic": ChannelType.STORE,
    "douyin": ChannelType.FEED_AD,
    "live": ChannelType.LIVESTREAM,
    "mini": ChannelType.PLATFORM_FOLLOWERS,
    "referral": ChannelType.REFERRAL,
}


def channel_type(key: str) -> str:
    if key in ChannelType.values:
        return key
    for word, kind in CHANNEL_TYPES.items():
        if word in key:
            return str(kind)
    return str(ChannelType.EVENT)


@dataclass
class Delivered:
    """What the outbox did since the previous pass, per person (indexed like the model)."""

    marketing: np.ndarray
    service: np.ndarray
    blocked_marketing: int
    sent: int


class SystemDriver:
    def __init__(
        self,
        *,
        brand: Brand,
        run_key: str,
        order_source: str,
        channel_keys: Sequence[str],
        scenario: Scenario | None = None,
    ):
        self.brand = brand
        self.run_key = run_key
        self.order_source = order_source
        self.channel_keys = list(channel_keys)
        self.scenario = scenario
        self.tz = zoneinfo.ZoneInfo(brand.time_zone)
        self.actor: Staff | None = None
        self.live_codes: list[LiveCode] = []
        self.configs: dict[int, Any] = {}  # account id → sandbox AccountConfig
        self.contact_of: dict[int, tuple[int, str]] = {}  # person → (account id, external id)
        self.person_of: dict[int, int] = {}  # customer id → person
        self._facts: dict[int, list[dict[str, Any]]] = defaultdict(list)
        self._orders: list[commerce.NewOrder] = []
        self._last_delivery: dt.datetime | None = None
        # No message below this id can be sent or blocked after the last delivery pass (on a
        # brand whose outbox was empty when the run began: `_floors`).
        self._message_floor: int | None = None
        self._floors = False

    # --- set-up -----------------------------------------------------------------------------

    def prepare(self, *, stores: Sequence[str]) -> None:
        """Create, through the services, what the brand needs before day one. Idempotent: a
        second run on the same brand finds and reuses everything."""
        brand = self.brand
        existing = {s.code: s for s in Store.objects.filter(brand=brand)}
        for code in stores:
            if code not in existing:
                existing[code] = core.create_store(
                    actor=None, brand=brand, code=code, name=code, kind="direct"
                )
        self.actor = self._staff("lead", Role.BRAND_ADMIN, [])
        accounts = []
        for code in stores or [""]:
            store = existing.get(code)
            staff = (
                self._staff(code, Role.ADVISOR, [store.pk])
                if store is not None
                else self._staff("community", Role.COMMUNITY_OPERATOR, [])
            )
            accounts.append(self._account(code or "brand", staff, store))
        self._policy()
        self.live_codes = [self._live_code(key, accounts, stores) for key in self.channel_keys]
        self._journeys()
        self._segments()

    def _username(self, what: str) -> str:
        return f"sim.{self.brand.pk}.{what}"[:150]

    def _staff(self, what: str, role: Role, store_ids: list[int]) -> Staff:
        username = self._username(what)
        found = Staff.objects.filter(brand=self.brand, user__username=username).first()
        if found is not None:
            return found
        return core.create_staff(
            actor=None, brand=self.brand, username=username,
            display_name=f"模拟 {what}", role=role, store_ids=store_ids,
        ).staff  # fmt: skip

    def _account(self, what: str, staff: Staff, store: Store | None) -> CarrierAccount:
        external_id = f"sim-{what}"
        account = CarrierAccount.objects.filter(
            brand=self.brand, kind=CARRIER, external_id=external_id
        ).first()
        if account is None:
            account = core.create_carrier_account(
                actor=None, brand=self.brand, kind=CARRIER, external_id=external_id,
                display_name=f"模拟顾问 {what}", staff_id=staff.pk,
                store_id=store.pk if store else None, daily_add_cap=None,
            )  # fmt: skip
        if not CarrierConnection.objects.filter(account=account).exists():
            carriers.connect_carrier(
                actor=None, account=account,
                credentials={"callback_secret": secrets.token_urlsafe(24)}, settings={},
            )  # fmt: skip
        self.configs[account.pk] = carriers.account_config(account)
        return account

    def _policy(self) -> None:
        """The scenario's caps become the brand's policy. A plan that does not enforce them
        (spam.yaml) meets the policy defaults: the real gate is not switched off."""
        assert self.actor is not None
        if self.scenario is None or not self.scenario.plan.policy.enforce:
            return
        p = self.scenario.plan.policy
        changes = {
            "marketing_per_day": p.marketing_per_day,
            "marketing_per_week": p.marketing_per_week,
            "quiet_start": p.quiet_start,
            "quiet_end": p.quiet_end,
        }
        current = messaging.get_policy(brand=self.brand).model_dump()
        if any(current.get(k) != v for k, v in changes.items()):
            messaging.update_policy(actor=self.actor, changes=changes)

    def _live_code(
        self, key: str, accounts: list[CarrierAccount], stores: Sequence[str]
    ) -> LiveCode:
        channel = Channel.objects.filter(brand=self.brand, code=key).first()
        spec = None
        if self.scenario is not None:
            spec = next((c for c in self.scenario.channels if c.key == key), None)
        if channel is None:
            fields: dict[str, Any] = {
                "code": key,
                "name": spec.name[:120] if spec else key,
                "type": channel_type(key),
                "tags": [f"渠道/{key}"],
            }
            if spec is not None:
                fields.update(
                    cost_per_reach_fen=round(spec.cost_per_reach_fen),
                    cost_per_add_fen=round(spec.cost_per_add_fen),
                    cps_bp=round(spec.cps_share * 10000),
                    hook_description=f"hook strength {spec.hook_strength}",
                )
                kind = fields["type"]
                if kind in (ChannelType.KOC_POST, ChannelType.KOL_POST):
                    # KOC/KOL channels are paid through a partner (CPA/CPS settlements).
                    name = f"{spec.name[:100]} 合作方"
                    partner = Partner.objects.filter(brand=self.brand, name=name).first()
                    if partner is None:
                        partner = acquisition.create_partner(
                            actor=None, brand=self.brand, name=name,
                            kind="koc" if kind == ChannelType.KOC_POST else "kol",
                            cpa_fen=round(spec.cost_per_add_fen),
                            cps_bp=round(spec.cps_share * 10000),
                        )  # fmt: skip
                    fields["partner_id"] = partner.pk
            channel = acquisition.create_channel(actor=None, brand=self.brand, **fields)
        code = LiveCode.objects.filter(brand=self.brand, channel=channel).order_by("pk").first()
        if code is None:
            allowed = set(spec.stores) if spec is not None and spec.stores else set(stores)
            members = [
                a for a in accounts if a.store is None or not allowed or a.store.code in allowed
            ] or accounts
            code = acquisition.create_live_code(
                actor=None, brand=self.brand, channel_id=channel.pk,
                name=f"{channel.name} 活码"[:120],
                rule="round_robin", members=[{"account_id": a.pk} for a in members],
                welcome_text="{name}你好，我是{staff}，很高兴认识你！",
            )  # fmt: skip
        return code

    def _journeys(self) -> None:
        assert self.actor is not None
        templates = {t["key"]: t for t in journeys.shipped_templates()}
        for key in JOURNEY_TEMPLATES:
            name = str(templates[key]["name"])
            journey = Journey.objects.filter(brand=self.brand, name=name).first()
            if journey is None:
                journey = journeys.create_from_template(actor=self.actor, key=key)
            if journey.status != Journey.Status.LIVE:
                journeys.publish(actor=self.actor, journey_id=journey.pk)

    def _segments(self) -> None:
        assert self.actor is not None
        for name, rule in SEGMENTS:
            if not Segment.objects.filter(brand=self.brand, name=name).exists():
                segments.create_segment(actor=self.actor, name=name, kind="dynamic", rule=rule)
        name, (group, tag_name), rule = AUTO_TAG
        if not AutoTagRule.objects.filter(brand=self.brand, name=name).exists():
            tag = customers.create_tag(actor=None, brand=self.brand, group=group, name=tag_name)
            autotags.create_rule(actor=self.actor, name=name, rule=rule, tag_id=tag.pk)

    # --- days -------------------------------------------------------------------------------

    @contextmanager
    def day(self, date: dt.date, simulated_clock: clock.FrozenClock) -> Iterator[None]:
        """One simulated day: the clock stands at the day's end (so every event of the day
        is in the past) and the day's writes commit together or not at all."""
        simulated_clock.set(self.at(date, 24 * 60 - 1))
        with transaction.atomic():
            yield
            self.flush()

    def at(self, date: dt.date, minute: int) -> dt.datetime:
        local = dt.datetime.combine(date, dt.time(minute // 60, minute % 60), tzinfo=self.tz)
        return local.astimezone(dt.UTC)

    def external_id(self, person: int) -> str:
        return f"sim-{self.run_key}-{person}"

    def _key(self, what: str, person: int, date: dt.date) -> str:
        return f"sim:{self.run_key}:{what}:{person}:{date.isoformat()}"

    def advance(
        self,
        date: dt.date,
        simulated_clock: clock.FrozenClock,
        people: int,
        intent: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> Delivered:
        """Journeys run up to the day's delivery time, the plan's own touches (`intent`, when
        the scenario sends them through the outbox) are enqueued, then the outbox delivers
        what is due through the policy gate. Returns what was delivered (and blocked) since
        the last pass, per person: the touches the model's people receive today."""
        until = self.at(date, DELIVERY_MINUTE)
        if self._last_delivery is None:
            # On a brand with an outbox already (a second run over the same days), messages
            # sent at simulated times after this pass exist already: read the whole outbox.
            self._floors = not Message.objects.filter(brand=self.brand).exists()
        if clock.now() < until:
            journeys_engine.fast_forward(until=until, brand_id=self.brand.pk)
            simulated_clock.set(until)
        if intent is not None:
            self.enqueue_plan(date, *intent)
        for _ in range(1000):
            if not delivery.deliver_due_messages():
                break
        since = self._last_delivery or until - dt.timedelta(days=1)
        floor = self._message_floor if self._last_delivery is not None and self._floors else None
        self._last_delivery = until
        window = Message.objects.filter(brand=self.brand)
        if floor is not None:
            # Only messages still open at the last pass, or made since, can have been sent or
            # blocked since: read those ids on, not the whole outbox (which grows every day).
            window = window.filter(pk__gte=floor)
        sent = (
            window.filter(sent_at__gt=since, sent_at__lte=until)
            .values_list("customer_id", "kind")
            .annotate(n=Count("pk"))
        )
        marketing = np.zeros(people, dtype=np.int64)
        service = np.zeros(people, dtype=np.int64)
        total = 0
        for customer_id, kind, n in sent:
            person = self.person_of.get(customer_id)
            total += n
            if person is None or person >= people:
                continue
            if kind == Message.Kind.MARKETING:
                marketing[person] += n
            else:
                service[person] += n
        blocked = window.filter(
            status=Message.Status.BLOCKED,
            kind=Message.Kind.MARKETING,
            finished_at__gt=since,
            finished_at__lte=until,
        ).count()
        self._message_floor = self._open_message_floor()
        return Delivered(marketing, service, blocked, total)

    def _open_message_floor(self) -> int:
        """The lowest id a message sent or blocked after now can have: that of the brand's
        oldest message still open (queued, deferred, sending, waiting for confirmation;
        every other status is final, and a sent message's `sent_at` is now or earlier), or
        above every id when none is open (a message made later gets a higher id)."""
        open_statuses = (
            Message.Status.QUEUED,
            Message.Status.DEFERRED,
            Message.Status.SENDING,
            Message.Status.PENDING_CONFIRMATION,
        )
        lowest = Message.objects.filter(brand=self.brand, status__in=open_statuses).aggregate(
            m=Min("pk")
        )["m"]
        highest = Message.objects.order_by("-pk").values_list("pk", flat=True).first()
        above = (highest or 0) + 1
        return above if lowest is None else min(lowest, above)

    def enqueue_plan(
        self, date: dt.date, people: np.ndarray, marketing: np.ndarray, service: np.ndarray
    ) -> int:
        """The plan's touches of the day, one outbox message each (cause `campaign`), due
        now: `messaging.services.enqueue_message`; the gate decides at delivery. Each day's
        text differs (a brand does not repeat itself daily; the gate's duplicate rule would
        block it)."""
        by_person = {p: c for c, p in self.person_of.items()}
        found = Customer.objects.in_bulk([by_person[p] for p in people.tolist() if p in by_person])
        accounts = CarrierAccount.objects.in_bulk(list(self.configs))
        count = 0
        with transaction.atomic():
            for person, m, s in zip(
                people.tolist(), marketing.tolist(), service.tolist(), strict=True
            ):
                customer = found.get(by_person.get(person, 0))
                if customer is None or person not in self.contact_of:
                    continue
                account = accounts[self.contact_of[person][0]]
                for kind, n, text in (
                    ("marketing", m, PLAN_MARKETING),
                    ("service", s, PLAN_SERVICE),
                ):
                    for k in range(n):
                        messaging.enqueue_message(
                            brand=self.brand, customer=customer, account=account, kind=kind,
                            content={"type": "text", "text": f"【{date:%m-%d} #{k + 1}】{text}"},
                            cause="campaign",
                            idempotency_key=self._key(f"plan-{kind}-{k}", person, date),
                        )  # fmt: skip
                        count += 1
        return count

    def refresh_scores(self) -> None:
        """Dynamic segments, RFM, lifecycle stages and auto tags at the simulated time."""
        scoring.recompute_rfm(brand=self.brand)
        scoring.recompute_lifecycle(brand=self.brand)
        for segment in Segment.objects.filter(brand=self.brand, kind=Segment.Kind.DYNAMIC):
            segments.refresh_segment(segment=segment)
        for rule in AutoTagRule.objects.filter(brand=self.brand, is_active=True):
            autotags.apply_rule(rule)

    def record_reach(self, *, date: dt.date, reach: Sequence[int]) -> None:
        """The day's reach per public channel (the channel report's funnel top), and the
        channel's fixed cost of the day when it has one."""
        assert self.actor is not None
        specs = self.scenario.channels if self.scenario is not None else []
        codes = list(zip(self.live_codes, reach, specs, strict=False))
        acquisition.record_reaches(
            actor=self.actor,
            date=date,
            counts={code.channel_id: count for code, count, _s in codes},
        )
        scale = self.scenario.scale if self.scenario is not None else 0
        fixed = {
            code.channel_id: round(spec.fixed_cost_per_day_fen * scale) for code, _c, spec in codes
        }
        fixed = {pk: amount for pk, amount in fixed.items() if amount > 0}
        if fixed:
            booked = set(
                ChannelCost.objects.filter(
                    channel_id__in=list(fixed), date=date, note=FIXED_COST_NOTE
                ).values_list("channel_id", flat=True)
            )
            items = [(pk, n, FIXED_COST_NOTE) for pk, n in fixed.items() if pk not in booked]
            if items:
                acquisition.add_costs(actor=self.actor, date=date, items=items)

    # --- what people do ---------------------------------------------------------------------

    def add_contacts(
        self, *, people: Sequence[int], channels: Sequence[int], ats: Sequence[dt.datetime]
    ) -> list[int]:
        """People scan a channel's live code and add the account it routes them to; the add
        arrives as the sandbox carrier's callback. Returns their customer ids."""
        self.flush()
        keys = [
            self._key("add", p, at.astimezone(self.tz).date())
            for p, at in zip(people, ats, strict=True)
        ]
        handled = dict(
            InboundReceipt.objects.filter(brand=self.brand, dedupe_key__in=keys).values_list(
                "dedupe_key", "account_id"
            )
        )
        order = sorted(range(len(people)), key=lambda i: (ats[i], people[i]))
        # The live codes route the day's new adds in time order (one batch call, the same
        # accounts as one call per add).
        routed = iter(
            acquisition.assign_accounts(
                items=[
                    (self.live_codes[channels[i]], ats[i]) for i in order if keys[i] not in handled
                ]
            )
        )
        by_account: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for i in order:
            person, code, at = people[i], self.live_codes[channels[i]], ats[i]
            account_id = handled.get(keys[i])
            if account_id is None:
                account_id = next(routed).pk
            external = self.external_id(person)
            self.contact_of[person] = (account_id, external)
            by_account[account_id].append(
                {
                    "id": keys[i],
                    "type": "contact.added",
                    "occurred_at": at.isoformat(),
                    "contact": external,
                    "display_name": f"顾客{person}",
                    "state": acquisition.state_for(code),
                }
            )
        for account_id, items in by_account.items():
            self._emit(account_id, items)
        hashes = {carriers.contact_hash(*self.contact_of[p]): p for p in people}
        found = dict(
            CarrierContact.objects.filter(
                brand=self.brand, external_hash__in=list(hashes)
            ).values_list("external_hash", "customer_id")
        )
        refs = []
        for person in people:
            customer_id = found[carriers.contact_hash(*self.contact_of[person])]
            self.person_of[customer_id] = person
            refs.append(customer_id)
        self._consent(people, ats)
        return refs

    def _consent(self, people: Sequence[int], ats: Sequence[dt.datetime]) -> None:
        """Each new contact opts in to member offers when adding (the live code's welcome
        asks): their word is a `consent.changed` event, which the log applies as consent.
        Without it the gate blocks every marketing message (rule `consent`)."""
        items = [
            {
                "type": "consent.changed",
                "occurred_at": at + dt.timedelta(seconds=1),
                "idempotency_key": self._key("consent", person, at.astimezone(self.tz).date()),
                "source": "simulator",
                "identities": [{"kind": CONTACT_IDENTITY, "value": self.external_id(person)}],
                "properties": {
                    "purpose": "marketing",
                    "status": "granted",
                    "carrier": "",
                    "proof": "opted in to member offers when adding the contact (simulated)",
                },
            }
            for person, at in zip(people, ats, strict=True)
        ]
        for start in range(0, len(items), events.MAX_BATCH):
            for result in events.ingest_events(
                brand=self.brand, items=items[start : start + events.MAX_BATCH]
            ):
                if result.status == "rejected":
                    raise ValidationFailed(
                        N_("consent.changed rejected: {error}"),
                        params={"error": result.error},
                        field="events",
                    )

    def add_contact(self, *, person: int, channel: int, at: dt.datetime) -> int:
        return self.add_contacts(people=[person], channels=[channel], ats=[at])[0]

    def _fact(self, person: int, what: str, at: dt.datetime, **fields: Any) -> None:
        self._post_orders()  # a fact after the day's orders follows them in the log
        account_id, external = self.contact_of[person]
        self._facts[account_id].append(
            {
                "id": self._key(what, person, at.astimezone(self.tz).date()),
                "occurred_at": at.isoformat(),
                "contact": external,
                **fields,
            }
        )
        if len(self._facts[account_id]) >= CALLBACK_BATCH:
            self._emit(account_id, self._facts.pop(account_id))

    def delete_contact(self, *, customer_id: int, person: int, at: dt.datetime) -> None:
        self._fact(person, "delete", at, type="contact.deleted", by="customer")

    def join_group(self, *, customer_id: int, person: int, at: dt.datetime, group: str) -> None:
        self._fact(person, "join", at, type="group.joined", group_id=group)

    def leave_group(self, *, customer_id: int, person: int, at: dt.datetime, group: str) -> None:
        self._fact(person, "leave", at, type="group.left", group_id=group)

    def reply(self, *, customer_id: int, person: int, at: dt.datetime, count: int) -> None:
        for n in range(count):
            self._fact(
                person, f"reply{n}", at + dt.timedelta(seconds=n), type="message.received",
                text="好的，谢谢", message_id=self._key(f"reply{n}", person, at.date()),
            )  # fmt: skip

    def click_link(self, *, customer_id: int, person: int, at: dt.datetime, count: int) -> None:
        for n in range(count):
            self._fact(
                person, f"click{n}", at + dt.timedelta(seconds=n), type="link.clicked",
                link="https://sim.invalid/offer",
            )  # fmt: skip

    def record_touches(
        self, *, customer_id: int, person: int, at: dt.datetime, marketing: int, service: int
    ) -> None:
        """Driven, the outbox records the real sends: nothing to do."""

    def place_order(
        self,
        *,
        customer_id: int,
        person: int,
        seq: int,
        at: dt.datetime,
        amount_fen: int,
        discount_fen: int,
        store_code: str | None,
    ) -> None:
        # The order's own event follows the day's earlier events in the log; the day's run
        # of orders is posted together (`commerce.services.post_orders`, the same outcome as
        # posting them one by one) before anything that comes after them.
        self._emit_facts()
        self._orders.append(
            commerce.NewOrder(
                source=self.order_source,
                external_id=self.order_id(person, seq),
                paid_at=at,
                amount_fen=amount_fen,
                discount_fen=discount_fen,
                customer_id=customer_id,
                store_code=store_code,
            )
        )

    def refund(self, *, person: int, seq: int, at: dt.datetime, amount_fen: int) -> None:
        self._post_orders()
        commerce.post_refund(
            brand=self.brand,
            actor=None,
            source=self.order_source,
            order_external_id=self.order_id(person, seq),
            external_id=f"r{seq}",
            amount_fen=amount_fen,
            refunded_at=at,
            reason="simulated",
        )

    def order_id(self, person: int, seq: int) -> str:
        return f"sim-{self.run_key}-{person}-{seq}"

    # --- batching ---------------------------------------------------------------------------

    def _emit(self, account_id: int, items: list[dict[str, Any]]) -> None:
        for start in range(0, len(items), CALLBACK_BATCH):
            sandbox.emit(self.configs[account_id], items[start : start + CALLBACK_BATCH])

    def _post_orders(self) -> None:
        if not self._orders:
            return
        orders, self._orders = self._orders, []
        for outcome in commerce.post_orders(brand=self.brand, actor=None, orders=orders):
            if isinstance(outcome, YutangError):
                raise outcome

    def _emit_facts(self) -> None:
        while self._facts:
            account_id, items = self._facts.popitem()
            self._emit(account_id, items)

    def flush(self) -> None:
        """Hand over what is pending, in the order it happened: orders, then later facts."""
        self._post_orders()
        self._emit_facts()
