"""What a file is, told by its bytes, never by its name or the declared Content-Type.

Accepted: JPEG, PNG, WebP (images) and PDF (documents). A polyglot, a file that is also read as
something else by another program, is refused; what counts, and why:
- the first KiB must not hold another format's signature (`%PDF-` in an image: PDF readers look for
  it anywhere in the first 1024 bytes) nor HTML/script markup (browsers sniff the first bytes);
- no ZIP end-of-central-directory record in the last 64 KiB + 22 bytes (where ZIP readers look for
  it): a JAR, APK, DOCX or plain ZIP appended to an image or PDF;
- PNG must end with its IEND chunk, WebP must be exactly as long as its RIFF header says, PDF must
  end with `%%EOF` within its last KiB: nothing hides after the end, and a truncated file shows.
JPEG gets no end check: phones append data after the image on purpose (motion photos); the ZIP and
header checks still apply, and the file service serves every download with `nosniff`.
Pixel counts (decompression bombs) are read from the image header with Pillow, which decodes
nothing at this stage; the optimiser checks again when it decodes.
"""

import re
import unicodedata
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from PIL import Image, UnidentifiedImageError

JPEG = "image/jpeg"
PNG = "image/png"
WEBP = "image/webp"
PDF = "application/pdf"
IMAGE_TYPES = frozenset({JPEG, PNG, WEBP})
ACCEPTED_TYPES = frozenset({*IMAGE_TYPES, PDF})
SNIFF_BYTES = 16
HEAD_BYTES = 1024
ZIP_TAIL_BYTES = 65_535 + 22
EXTENSIONS = {JPEG: "jpg", PNG: "png", WEBP: "webp", PDF: "pdf"}
_PILLOW_FORMATS = {JPEG: "JPEG", PNG: "PNG", WEBP: "WEBP"}

_MARKUP = (b"<html", b"<script", b"<!doctype html", b"<?php", b"<svg", b"<iframe", b"<body", b"<object", b"<embed")
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
FILENAME_MAX = 255


def sniff(head: bytes) -> str | None:
    """The media type the first bytes announce, or None when it is none we accept."""
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if head.startswith(b"%PDF-"):
        return PDF
    return None


@dataclass(frozen=True)
class Refusal:
    status: int  # 415: not a type we take; 422: a type we take, but this file is broken or dangerous
    reason: str


def polyglot_problem(content_type: str, head: bytes, tail: bytes, size: int) -> Refusal | None:
    """Why this file (its first KiB, its last 64 KiB, its size) must be refused, or None."""
    window = head[:HEAD_BYTES].lower()
    if any(marker in window for marker in _MARKUP):
        return Refusal(415, "carries HTML or script markup in its first bytes (a polyglot)")
    if content_type in IMAGE_TYPES and b"%pdf-" in window:
        return Refusal(415, "is an image that is also a PDF (a polyglot)")
    if b"PK\x03\x04" in head[4:HEAD_BYTES] or b"PK\x05\x06" in tail[-ZIP_TAIL_BYTES:]:
        return Refusal(415, "carries a ZIP archive (a polyglot)")
    if content_type == PNG and not tail.endswith(_PNG_END):
        return Refusal(422, "is not a complete PNG: it is truncated or has data after its IEND chunk")
    if content_type == WEBP and int.from_bytes(head[4:8], "little") + 8 != size:
        return Refusal(422, "is not the length its RIFF header declares: truncated or with data appended")
    if content_type == PDF and b"%%EOF" not in tail[-HEAD_BYTES:]:
        return Refusal(422, "does not end with %%EOF: a truncated PDF or one with data appended")
    return None


def image_problem(path: Path, content_type: str, max_pixels: int) -> Refusal | None:
    """Reads only the header: the image's format must be the one its signature announced, and its
    pixel count within `max_pixels` (a 50 KB PNG can announce 2 GB of pixels)."""
    # Pillow refuses outright at twice its own limit; ours is the one that counts.
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                found, (width, height) = image.format, image.size
    except Image.DecompressionBombError:
        return Refusal(422, f"is a decompression bomb: more than {max_pixels:,} pixels")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        return Refusal(422, f"is not a readable {EXTENSIONS[content_type].upper()} image ({exc})")
    if found != _PILLOW_FORMATS[content_type]:
        return Refusal(415, f"announces {EXTENSIONS[content_type].upper()} but is {found}")
    if width * height > max_pixels:
        return Refusal(422, f"is {width}x{height} pixels, more than the {max_pixels:,} allowed")
    return None


def clean_filename(raw: str | None) -> str:
    """The last path component, without control characters, NFC, at most 255 characters."""
    name = PurePosixPath(PureWindowsPath(raw or "").name).name
    name = unicodedata.normalize("NFC", _CONTROL.sub("", name)).strip().strip(".")
    return name[-FILENAME_MAX:]
