"""QR images made locally with segno (PNG and SVG, optionally with the brand's logo in the
middle, at error correction H so the code still scans), and a printable poster."""

from __future__ import annotations

import base64
import io
from html import escape

import segno
from PIL import Image, UnidentifiedImageError

from yutang.core.errors import N_, ValidationFailed

MAX_LOGO_BYTES = 512 * 1024


def _code(url: str, *, logo: bytes | None) -> segno.QRCode:
    return segno.make_qr(url, error="h" if logo else "m")


def check_logo(data: bytes) -> bytes:
    """A PNG or JPEG logo, re-encoded as PNG (so only pixels, never a script, are kept)."""
    if not data or len(data) > MAX_LOGO_BYTES:
        raise ValidationFailed(N_("The logo must be an image of at most 512 KB."), field="logo")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in ("PNG", "JPEG"):
                raise ValidationFailed(N_("The logo must be PNG or JPEG."), field="logo")
            image.thumbnail((512, 512))
            out = io.BytesIO()
            image.convert("RGBA").save(out, format="PNG")
    except (UnidentifiedImageError, OSError):
        raise ValidationFailed(N_("The logo is not a readable image."), field="logo") from None
    return out.getvalue()


def png(url: str, *, logo: bytes | None = None, scale: int = 10) -> bytes:
    out = io.BytesIO()
    _code(url, logo=logo).save(out, kind="png", scale=scale, border=4)
    if not logo:
        return out.getvalue()
    with Image.open(io.BytesIO(out.getvalue())) as base, Image.open(io.BytesIO(logo)) as source:
        canvas = base.convert("RGBA")
        side = canvas.width // 5  # a fifth of the width: well inside what level H recovers
        mark = source.convert("RGBA")
        mark.thumbnail((side, side))
        x, y = (canvas.width - mark.width) // 2, (canvas.height - mark.height) // 2
        canvas.paste(Image.new("RGBA", (mark.width + 8, mark.height + 8), "white"), (x - 4, y - 4))
        canvas.paste(mark, (x, y), mark)
        result = io.BytesIO()
        canvas.convert("RGB").save(result, format="PNG")
    return result.getvalue()


def svg(url: str, *, logo: bytes | None = None, scale: int = 10) -> str:
    out = io.BytesIO()
    code = _code(url, logo=logo)
    code.save(out, kind="svg", scale=scale, border=4, xmldecl=False)
    text = out.getvalue().decode()
    if not logo:
        return text
    width, _ = code.symbol_size(scale=scale, border=4)
    side = width // 5
    pos = (width - side) // 2
    data = base64.b64encode(logo).decode()
    overlay = (
        f'<rect x="{pos - 4}" y="{pos - 4}" width="{side + 8}" height="{side + 8}" fill="#fff"/>'
        f'<image x="{pos}" y="{pos}" width="{side}" height="{side}" '
        f'href="data:image/png;base64,{data}"/>'
    )
    return text.replace("</svg>", overlay + "</svg>")


def poster_html(*, title: str, hook: str, url: str, logo: bytes | None = None) -> str:
    """A printable A6 poster (package card, store counter): title, hook, QR, the link."""
    qr_svg = svg(url, logo=logo, scale=8)
    return f"""<!doctype html>
<html lang="zh-Hans"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>
@page {{ size: A6; margin: 8mm; }}
body {{ font-family: sans-serif; text-align: center; margin: 0; }}
h1 {{ font-size: 20pt; margin: 4mm 0; }}
p.hook {{ font-size: 14pt; color: #c0392b; margin: 2mm 0 4mm; }}
.qr svg {{ width: 70mm; height: 70mm; }}
p.url {{ font-size: 8pt; color: #666; word-break: break-all; }}
</style></head>
<body><h1>{escape(title)}</h1><p class="hook">{escape(hook)}</p>
<div class="qr">{qr_svg}</div><p class="url">{escape(url)}</p></body></html>
"""
