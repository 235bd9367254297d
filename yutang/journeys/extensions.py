"""Extension points other apps fill in their AppConfig.ready (journeys never imports them):

- ``register_action(name, handler)``: a journey step ``{"type": "extension", "name": …}``
  (grant a coupon, award points) calls ``handler(brand=, customer=, params=,
  idempotency_key=, at=)`` inside the step's transaction; the key makes a replay harmless.
- ``register_staff_notifier(notifier)``: replaces how an overdue task's reminder reaches a
  staff member. ``notifier(staff=, task=, text=)`` returns the channel name. Without one the
  carrier layer's notifier is used (`yutang.carriers.staff_notify`: a WeCom app message to
  the member's userid, the sandbox's record, else ``console``). The carrier layer sits below
  journeys and cannot import it, so journeys calls it rather than carriers registering it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

ActionHandler = Callable[..., Any]
Notifier = Callable[..., str]

_ACTIONS: dict[str, ActionHandler] = {}
_NOTIFIER: list[Notifier] = []


def register_action(name: str, handler: ActionHandler) -> None:
    _ACTIONS[name] = handler


def unregister_action(name: str) -> None:
    _ACTIONS.pop(name, None)


def action(name: str) -> ActionHandler | None:
    return _ACTIONS.get(name)


def action_names() -> list[str]:
    return sorted(_ACTIONS)


def register_staff_notifier(notifier: Notifier) -> None:
    _NOTIFIER[:] = [notifier]


def clear_staff_notifier() -> None:
    _NOTIFIER.clear()


def notify_staff(*, staff: Any, task: Any, text: str, at: dt.datetime) -> str:
    """Send through the registered notifier, else the carrier layer's; returns the channel
    name used. Raises `yutang.carriers.staff_notify.NotifyFailed` (``retry_later``) when the
    carrier refused or rate-limited it."""
    if _NOTIFIER:
        return _NOTIFIER[0](staff=staff, task=task, text=text)
    from yutang.carriers.staff_notify import notify_staff as by_carrier

    sent = by_carrier(
        brand_id=staff.brand_id, staff_id=staff.pk, text=text, key=f"task:{task.pk}:{staff.pk}"
    )
    return sent.channel
