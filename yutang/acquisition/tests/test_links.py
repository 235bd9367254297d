"""Short links: entropy, redirects, clicks recorded without the IP, rate limits, and 404s
that reveal nothing; the landing page; QR images that decode back to their URL."""

from __future__ import annotations

import datetime as dt
import io
import math
from collections import Counter

import pytest
import zxingcpp
from django.core.cache import cache
from django.test import Client
from PIL import Image

from tests.factories import make_brand, make_staff
from yutang.acquisition import qr, services
from yutang.acquisition.models import LinkClick
from yutang.acquisition.tests.helpers import make_code, make_customer, make_pool, utc
from yutang.core.clock import FrozenClock, use_clock
from yutang.events.models import Event

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


def decode(png: bytes) -> list[str]:
    return [r.text for r in zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))]


def test_short_codes_carry_at_least_64_bits_of_entropy():
    codes = [services.new_short_code() for _ in range(20_000)]
    assert len(set(codes)) == len(codes)
    assert all(services.SHORT_CODE_PATTERN.match(c) for c in codes)
    # 16 characters from a 64-symbol alphabet = 96 bits; measure the symbol distribution.
    counts = Counter("".join(codes))
    total = sum(counts.values())
    per_symbol = -sum(n / total * math.log2(n / total) for n in counts.values())
    assert len(counts) == 64 and per_symbol > 5.99
    assert per_symbol * 16 >= 64


def test_a_link_redirects_records_the_click_and_keeps_only_a_hashed_ip():
    brand = make_brand()
    admin = make_staff(brand)
    customer = make_customer(brand)
    link = services.create_short_link(
        actor=admin, target_url="https://shop.example.com/new", customer_id=customer.pk
    )
    response = Client().get(
        f"/l/{link.code}", HTTP_USER_AGENT="Mozilla/5.0 (iPhone) MicroMessenger/8.0",
        REMOTE_ADDR="203.0.113.7",
    )  # fmt: skip
    assert response.status_code == 302 and response["Location"] == "https://shop.example.com/new"
    click = LinkClick.objects.get(link=link)
    assert click.agent_class == "wechat" and len(click.ip_hash) == 16
    assert "203.0.113.7" not in click.ip_hash
    event = Event.objects.get(brand=brand, type="link.clicked")
    assert event.customer_id == customer.pk and event.properties["link"] == link.code
    assert "203.0.113.7" not in str(event.properties)


def test_unknown_malformed_and_expired_codes_answer_the_same_404():
    brand = make_brand()
    admin = make_staff(brand)
    clock = FrozenClock(utc(2026, 11, 2, 4, 0))
    with use_clock(clock):
        link = services.create_short_link(
            actor=admin, target_url="https://example.com/",
            expires_at=clock.now() + dt.timedelta(hours=1),
        )  # fmt: skip
        client = Client()
        assert client.get(f"/l/{link.code}").status_code == 302
        clock.advance(dt.timedelta(hours=1))
        expired = client.get(f"/l/{link.code}")
        unknown = client.get("/l/AAAAAAAAAAAAAAAA")
        malformed = client.get("/l/short")
    assert expired.status_code == unknown.status_code == malformed.status_code == 404
    assert expired.content == unknown.content == malformed.content
    assert LinkClick.objects.filter(link=link).count() == 1


def test_clicks_are_rate_limited_per_ip():
    brand = make_brand()
    link = services.create_short_link(actor=make_staff(brand), target_url="https://example.com/")
    client = Client()
    with use_clock(FrozenClock(utc(2026, 11, 2, 4, 0))):
        statuses = [
            client.get(f"/l/{link.code}", REMOTE_ADDR="198.51.100.1").status_code for _ in range(61)
        ]
        other_ip = client.get(f"/l/{link.code}", REMOTE_ADDR="198.51.100.2").status_code
    assert statuses[:60] == [302] * 60 and statuses[60] == 429 and other_ip == 302
    assert LinkClick.objects.filter(link=link).count() == 61


def test_a_link_to_a_live_code_lands_on_a_page_whose_qr_decodes_to_the_landing_url():
    brand = make_brand()
    code = make_code(brand, make_pool(brand, 1))
    link = services.create_short_link(actor=make_staff(brand), live_code_id=code.pk)
    client = Client()
    response = client.get(f"/l/{link.code}", follow=True, HTTP_USER_AGENT="Android Mobile")
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == f"/c/{code.public_token}/"
    assert b"landing-qr" in response.content
    image = client.get(f"/c/{code.public_token}/qr.png")
    assert image["Content-Type"] == "image/png"
    assert decode(image.content) == [f"http://testserver/c/{code.public_token}/"]
    assert client.get("/c/AAAAAAAAAAAAAAAA/").status_code == 404


def test_qr_png_and_svg_with_a_logo_still_decode():
    logo_source = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(logo_source, format="PNG")
    logo = qr.check_logo(logo_source.getvalue())
    url = "https://yutang.example.com/c/abcdefghijklmnop/"
    assert decode(qr.png(url)) == [url]
    assert decode(qr.png(url, logo=logo)) == [url]
    svg = qr.svg(url, logo=logo)
    assert svg.startswith("<svg") and "data:image/png;base64," in svg
    poster = qr.poster_html(title="扫码领券", hook="新人 10 元券", url=url)
    assert "扫码领券" in poster and "<svg" in poster
    with pytest.raises(services.ValidationFailed) as exc:
        qr.check_logo(b"<script>alert(1)</script>")
    assert exc.value.field == "logo"
