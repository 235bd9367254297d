"""Extension points other apps fill in their AppConfig.ready (journeys never imports them):

- ``register_action(name, handler)``: a journey step ``{"type": "extension", "name": …}``
  (grant a coupon, award points) calls ``handler(brand=, customer=, params=,
  idempotency_key=, at=)`` inside the step's transaction; the key makes a replay harmless.
- ``register_staff_notifier(notifier)``: how an overdue task reaches its assignee (WeCom app
  message, sandbox). ``notifier(staff=, task=, text=)``; the default records a console note.
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
    """Send through the registered notifier; returns the channel name used."""
    if not _NOTIFIER:
        return "console"
    return _NOTIFIER[0](staff=staff, task=task, text=text)
