"""Service errors are English in logs, the REST API and tests, and in the console's language
when shown there: the template is translated at display, then filled."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import translation

from tests.factories import Api, console_client, make_brand, make_staff
from yutang.core.errors import N_, Conflict, ValidationFailed
from yutang.core.models import Role, Store

ROOT = Path(__file__).resolve().parents[3]
PLACEHOLDER = re.compile(r"\{[A-Za-z_]\w*(?:![rsa])?(?::[^}]*)?\}")


def test_message_is_english_and_localized_follows_the_active_language():
    exc = Conflict(N_("A store with code {code!r} exists."), params={"code": "GZ1"}, field="code")
    assert exc.message == "A store with code 'GZ1' exists." == str(exc)
    assert exc.as_dict() == {"code": "conflict", "message": exc.message, "field": "code"}
    with translation.override("zh-hans"):
        assert exc.localized() == "编码为 'GZ1' 的门店已存在。"
    with translation.override("en"):
        assert exc.localized() == exc.message


def test_untranslated_or_literal_messages_show_as_given():
    plain = ValidationFailed("Something only English knows.")
    braces = ValidationFailed(N_("An identity is {kind, value, namespace} of text."))
    with translation.override("zh-hans"):
        assert plain.localized() == "Something only English knows."
        assert braces.localized() == "身份标识应为文本形式的 {kind, value, namespace}。"
    assert braces.message == "An identity is {kind, value, namespace} of text."


def _templates() -> list[tuple[str, str]]:
    found = []
    for path in sorted((ROOT / "yutang").rglob("*.py")):
        if "tests" in path.parts or "migrations" in path.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "N_"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.append((f"{path.relative_to(ROOT)}:{node.lineno}", node.args[0].value))
    return found


def test_every_marked_error_template_has_a_chinese_translation_with_the_same_placeholders():
    templates = _templates()
    assert len(templates) > 200  # the marked services: core, customers, events, commerce, …
    missing, mismatched = [], []
    with translation.override("zh-hans"):
        for where, template in templates:
            translated = translation.gettext(template)
            if translated == template:
                missing.append(f"{where}: {template}")
            elif sorted(PLACEHOLDER.findall(translated)) != sorted(PLACEHOLDER.findall(template)):
                mismatched.append(f"{where}: {template} -> {translated}")
    assert missing == [] and mismatched == []


@pytest.mark.django_db
def test_the_console_shows_a_service_error_in_chinese_and_the_api_in_english():
    brand = make_brand()
    admin = make_staff(brand, Role.BRAND_ADMIN)
    Store.objects.create(brand=brand, code="GZ1", name="广州店", kind="direct")
    client = console_client(admin)
    form = {"code": "GZ1", "name": "again", "kind": "direct"}
    body = client.post("/stores/new/", form).content.decode()
    assert "编码为 &#x27;GZ1&#x27; 的门店已存在。" in body
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    body = client.post("/stores/new/", form).content.decode()
    assert "A store with code &#x27;GZ1&#x27; exists." in body
    response = Api(admin).post("/stores", {"code": "GZ1", "name": "again", "kind": "direct"})
    assert response.status_code == 409
    assert response.json()["message"] == "A store with code 'GZ1' exists."
