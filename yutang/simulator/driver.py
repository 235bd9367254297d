"""SystemDriver: the one module through which the simulated world acts on the real system.

Every method is something a person (or the brand's plan) does; each goes through a real
service — never a write behind a service's back. Events carry idempotency keys built from
(run, person, what, day), so re-running a day stores nothing twice.

TODAY (this branch: core, customers, events, commerce):
- add_contact / delete_contact / join_group / leave_group / reply / click_link are events
  (`contact.added`, `contact.deleted`, `group.joined`, `group.left`, `message.received`,
  `link.clicked`) stored through `events.services.ingest_events` in batches of ≤ 1,000;
- place_order / refund go through `commerce.services.post_order` / `post_refund`;
- the brand's touch plan (how many marketing and useful-content touches each contact gets)
  is applied by the simulator itself (`model.World.step`, mirroring the policy gate's
  defaults: 1 marketing touch a day, 3 a week, quiet hours 21:30–08:30) and, when the
  scenario sets `record_touches: true`, written as `message.sent` events here
  (`record_touches`). `touches_delivered` returns None: "use the simulator's own plan".

AT INTEGRATION (after carriers, messaging, acquisition, journeys merge) change only this file:
- add_contacts: create one `acquisition` LiveCode per scenario channel in `prepare` and
  deliver each add through the sandbox carrier's inbound callback with the live code's
  `state`, so attribution, welcome messages and journeys run as for a real scan; read the
  customer id back from the callback's result instead of from `ingest_events`;
- delete_contacts / join_group / leave_group / reply / click_link: send them through the
  sandbox carrier's inbound path (it emits the same events);
- touches_delivered: return, per person, the marketing and service messages the outbox
  delivered today (read the log's `message.sent` events with their `kind`, or the outbox),
  so the touches come from journeys through the policy gate; then set the scenario's
  `plan.touches_per_day` to 0 (or drop the stand-in in `World.step`) so the plan is not
  applied twice, and advance the journeys' fast-forward clock in `end_day`;
- record_touches: becomes a no-op (the outbox records real sends).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from django.db import transaction

from yutang.commerce import services as commerce
from yutang.core import clock
from yutang.core.errors import ValidationFailed
from yutang.core.models import Brand
from yutang.core.services import create_store
from yutang.events import services as events
from yutang.events.models import Event

BATCH = events.MAX_BATCH
CARRIER = "sandbox"


class SystemDriver:
    def __init__(
        self, *, brand: Brand, run_key: str, order_source: str, channel_keys: Sequence[str]
    ):
        self.brand = brand
        self.run_key = run_key
        self.order_source = order_source
        self.channel_keys = list(channel_keys)
        self.tz = zoneinfo.ZoneInfo(brand.time_zone)
        self._buffer: list[dict[str, Any]] = []
        self.rejected: list[dict[str, Any]] = []

    # --- set-up and days ------------------------------------------------------------------

    def prepare(self, *, stores: Sequence[str]) -> None:
        """Create what the scenario needs before day one (stores; later: live codes)."""
        from yutang.core.models import Store

        existing = set(Store.objects.filter(brand=self.brand).values_list("code", flat=True))
        for code in stores:
            if code not in existing:
                create_store(actor=None, brand=self.brand, code=code, name=code, kind="direct")

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

    def identity(self, person: int) -> dict[str, str]:
        return {"kind": "wecom_external_userid", "value": f"sim-{self.run_key}-{person}"}

    def _key(self, what: str, person: int, date: dt.date) -> str:
        return f"sim:{self.run_key}:{what}:{person}:{date.isoformat()}"

    # --- what people do -------------------------------------------------------------------

    def add_contacts(
        self, *, people: Sequence[int], channels: Sequence[int], ats: Sequence[dt.datetime]
    ) -> list[int]:
        """People add the brand's contact through a channel; returns their customer ids."""
        items = [
            {
                "type": "contact.added",
                "occurred_at": at,
                "idempotency_key": self._key("add", person, at.astimezone(self.tz).date()),
                "source": "simulator",
                "identities": [self.identity(person)],
                "properties": {"carrier": CARRIER, "channel": self.channel_keys[channel]},
            }
            for person, channel, at in zip(people, channels, ats, strict=True)
        ]
        refs: list[int] = []
        for start in range(0, len(items), BATCH):
            chunk = items[start : start + BATCH]
            results = events.ingest_events(brand=self.brand, items=chunk)
            missing = [r.index for r in results if r.customer_id is None]
            known: dict[str, int | None] = {}
            if missing:  # duplicates (a re-run day): the log knows whose they were
                keys = [chunk[i]["idempotency_key"] for i in missing]
                known = dict(
                    Event.objects.filter(brand=self.brand, idempotency_key__in=keys).values_list(
                        "idempotency_key", "customer_id"
                    )
                )
            for result, item in zip(results, chunk, strict=True):
                if result.status == "rejected":
                    raise ValidationFailed(
                        f"contact.added rejected: {result.error}", field="events"
                    )
                ref = result.customer_id or known[str(item["idempotency_key"])]
                assert ref is not None
                refs.append(ref)
        return refs

    def add_contact(self, *, person: int, channel: int, at: dt.datetime) -> int:
        return self.add_contacts(people=[person], channels=[channel], ats=[at])[0]

    def delete_contact(self, *, customer_id: int, person: int, at: dt.datetime) -> None:
        self._event("contact.deleted", "delete", customer_id, person, at, {"carrier": CARRIER})

    def join_group(self, *, customer_id: int, person: int, at: dt.datetime, group: str) -> None:
        self._event("group.joined", "join", customer_id, person, at, {"group_id": group})

    def leave_group(self, *, customer_id: int, person: int, at: dt.datetime, group: str) -> None:
        self._event("group.left", "leave", customer_id, person, at, {"group_id": group})

    def reply(self, *, customer_id: int, person: int, at: dt.datetime, count: int) -> None:
        self._event(
            "message.received", "reply", customer_id, person, at,
            {"carrier": CARRIER, "text": "", "count": count},
        )  # fmt: skip

    def click_link(self, *, customer_id: int, person: int, at: dt.datetime, count: int) -> None:
        self._event(
            "link.clicked", "click", customer_id, person, at,
            {"link": "https://sim.invalid/offer", "count": count},
        )  # fmt: skip

    def record_touches(
        self, *, customer_id: int, person: int, at: dt.datetime, marketing: int, service: int
    ) -> None:
        """The stand-in for the outbox: the touches the plan delivered, as message.sent."""
        for kind, count in (("marketing", marketing), ("service", service)):
            for n in range(count):
                self._event(
                    "message.sent", f"sent-{kind}-{n}", customer_id, person, at,
                    {"carrier": CARRIER, "message_id": f"sim-{kind}-{n}", "kind": kind},
                )  # fmt: skip

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
        self.flush()  # the order's own event follows the day's earlier events in the log
        commerce.post_order(
            brand=self.brand,
            actor=None,
            source=self.order_source,
            external_id=self.order_id(person, seq),
            paid_at=at,
            amount_fen=amount_fen,
            discount_fen=discount_fen,
            customer_id=customer_id,
            store_code=store_code,
        )

    def refund(self, *, person: int, seq: int, at: dt.datetime, amount_fen: int) -> None:
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

    # --- the pull side --------------------------------------------------------------------

    def touches_delivered(self, *, date: dt.date) -> Mapping[int, tuple[int, int]] | None:
        """Per person, (marketing, service) touches delivered today; None means the
        simulator applies the brand's touch plan itself (until messaging and journeys)."""
        return None

    # --- batching -------------------------------------------------------------------------

    def _event(
        self,
        type_: str,
        what: str,
        customer_id: int,
        person: int,
        at: dt.datetime,
        properties: dict[str, Any],
    ) -> None:
        self._buffer.append(
            {
                "type": type_,
                "occurred_at": at,
                "idempotency_key": self._key(what, person, at.astimezone(self.tz).date()),
                "source": "simulator",
                # The person's identity rather than customer_id: ingestion resolves a whole
                # batch of known identities in one query (customer_id costs one per event).
                "identities": [self.identity(person)],
                "properties": properties,
            }
        )
        if len(self._buffer) >= BATCH:
            self.flush()

    def flush(self) -> None:
        while self._buffer:
            chunk, self._buffer = self._buffer[:BATCH], self._buffer[BATCH:]
            for result, item in zip(
                events.ingest_events(brand=self.brand, items=chunk), chunk, strict=True
            ):
                if result.status == "rejected":
                    raise ValidationFailed(
                        f"{item['type']} rejected: {result.error}", field="events"
                    )
