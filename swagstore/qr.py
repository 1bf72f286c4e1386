"""QR codes for buy URLs: SVG a phone camera reads from across the booth."""

from __future__ import annotations

import hashlib
from functools import lru_cache

import qrcode
from qrcode.image.svg import SvgPathFillImage


@lru_cache(maxsize=256)
def svg(url: str) -> bytes:
    """Return the QR code of a URL as SVG: error correction M, four-module quiet zone."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    code.add_data(url)
    code.make(fit=True)
    return code.make_image(image_factory=SvgPathFillImage).to_string()


def version(url: str) -> str:
    """Return a short tag that changes whenever the URL does (ETag and cache buster)."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]
