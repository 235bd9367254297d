"""Factory functions for tests: real rows through the real services where it matters."""

from __future__ import annotations

import itertools
from typing import Any

from django.test import Client

from yutang.core import services
from yutang.core.models import Brand, CarrierAccount, Staff, Store
from yutang.core.permissions import Role

_seq = itertools.count(1)
PASSWORD = "correct-horse-battery"


def make_brand(name: str | None = None, **settings: Any) -> Brand:
    brand = services.create_brand(name=name or f"Brand {next(_seq)}")
    if settings:
        brand.settings = settings
        brand.save(update_fields=["settings"])
    return brand


def make_store(
    brand: Brand, *, code: str | None = None, kind: str = "direct", **fields: Any
) -> Store:
    n = next(_seq)
    return services.create_store(
        actor=None, brand=brand, code=code or f"S{n:03d}", name=fields.pop("name", f"Store {n}"),
        kind=kind, **fields,
    )  # fmt: skip


def make_staff(
    brand: Brand,
    role: Role | str = Role.BRAND_ADMIN,
    *,
    stores: list[Store] | None = None,
    username: str | None = None,
    phone: str = "",
) -> Staff:
    return services.create_staff(
        actor=None, brand=brand, username=username or f"user{next(_seq)}",
        display_name=f"{role} {next(_seq)}", role=role,
        store_ids=[s.pk for s in stores or []], password=PASSWORD, phone=phone,
    ).staff  # fmt: skip


def make_account(
    brand: Brand,
    *,
    staff: Staff | None = None,
    store: Store | None = None,
    external_id: str | None = None,
) -> CarrierAccount:
    return services.create_carrier_account(
        actor=None, brand=brand, kind="wecom", external_id=external_id or f"wecom-user-{next(_seq)}",
        display_name="Persona", staff_id=staff.pk if staff else None,
        store_id=store.pk if store else None,
    )  # fmt: skip


def token_for(staff: Staff) -> str:
    return services.create_api_token(actor=None, staff=staff, name="test")[1]


class Api:
    """A REST client authenticated with a real bearer token."""

    def __init__(self, staff: Staff):
        self.client = Client()
        self.headers = {"Authorization": f"Bearer {token_for(staff)}"}

    def _call(self, method: str, path: str, json: Any = None) -> Any:
        kwargs: dict[str, Any] = {"headers": self.headers}
        if json is not None:
            kwargs.update(data=json, content_type="application/json")
        return getattr(self.client, method)(f"/api/v1{path}", **kwargs)

    def get(self, path: str) -> Any:
        return self._call("get", path)

    def post(self, path: str, json: Any) -> Any:
        return self._call("post", path, json)

    def put(self, path: str, json: Any) -> Any:
        return self._call("put", path, json)

    def patch(self, path: str, json: Any) -> Any:
        return self._call("patch", path, json)

    def delete(self, path: str) -> Any:
        return self._call("delete", path)


def console_client(staff: Staff) -> Client:
    client = Client()
    assert client.login(username=staff.user.get_username(), password=PASSWORD)
    return client
