"""The image work of the optimiser, with Pillow: decode once, render each variant, strip metadata.

Every variant is a fresh encode of the pixels only: EXIF (GPS location, camera serials, the time a
photo of someone's home was taken), XMP and comments are dropped; the EXIF orientation is applied to
the pixels first so nothing looks rotated without it. The colour profile (ICC) is kept: it says
nothing about anyone and keeps colours right. Variants are never wider than the original.
Anything Pillow cannot decode safely raises `ImageRejected` with a reason a person can act on:
a decompression bomb, a truncated file, bytes that are no image.
"""

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from schemas.files import VARIANT_CONTENT_TYPES, VariantFormat

_SAVE_OPTIONS: dict[VariantFormat, dict[str, object]] = {
    VariantFormat.WEBP: {"format": "WEBP", "quality": 80, "method": 4},
    VariantFormat.JPEG: {"format": "JPEG", "quality": 82, "optimize": True, "progressive": True},
    VariantFormat.PNG: {"format": "PNG", "optimize": True},
}


class ImageRejected(Exception):
    """The source cannot be optimised, for good; the message says why."""


@dataclass(frozen=True)
class Source:
    image: Image.Image
    icc_profile: bytes | None


@dataclass(frozen=True)
class Rendered:
    width: int
    height: int
    format: VariantFormat
    content_type: str
    data: bytes


def load(path: Path, max_pixels: int, largest_width: int) -> Source:
    """Decode the image (a JPEG only at the scale the largest variant needs), orientation applied."""
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                width, height = opened.size
                if width * height > max_pixels:
                    raise ImageRejected(f"decompression bomb: {width}x{height} is more than {max_pixels:,} pixels")
                if opened.format == "JPEG":
                    # Decode at the smallest 1/2, 1/4 or 1/8 scale still at least as wide as the largest
                    # variant (in the orientation it will be shown in): far less work for a 48 MP photo.
                    sideways = opened.getexif().get(0x0112, 1) in (5, 6, 7, 8)
                    shown_width, shown_height = (height, width) if sideways else (width, height)
                    box = (largest_width, -(-largest_width * shown_height // shown_width))
                    opened.draft("RGB", (box[1], box[0]) if sideways else box)
                icc = opened.info.get("icc_profile")
                oriented = ImageOps.exif_transpose(opened)
                oriented.load()
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(f"decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        raise ImageRejected("not a decodable JPEG, PNG or WebP image") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        reason = str(exc) or type(exc).__name__
        if "truncated" in reason:
            raise ImageRejected(f"truncated image: {reason}") from None
        raise ImageRejected(f"undecodable image: {reason}") from None
    if oriented.mode not in ("RGB", "RGBA", "L", "LA"):
        oriented = oriented.convert("RGBA" if "A" in oriented.getbands() or "transparency" in oriented.info else "RGB")
    return Source(oriented, icc if isinstance(icc, bytes) else None)


def render(source: Source, width: int, format: VariantFormat) -> Rendered:
    image = source.image
    target = min(width, image.width)
    height = max(1, round(image.height * target / image.width))
    if target == image.width:
        resized = image.copy()
    else:
        # reducing_gap: a box reduction first, then Lanczos over the last factor of 3: near-identical
        # output, several times faster on large originals.
        resized = image.resize((target, height), Image.Resampling.LANCZOS, reducing_gap=3.0)
    if format == VariantFormat.JPEG and resized.mode not in ("RGB", "L"):
        resized = resized.convert("RGB")
    # A fresh image carries no metadata of the source: only what we pass to save() is written.
    resized.info = {}
    options = dict(_SAVE_OPTIONS[format])
    if source.icc_profile:
        options["icc_profile"] = source.icc_profile
    buffer = io.BytesIO()
    resized.save(buffer, **options)  # type: ignore[arg-type]
    return Rendered(target, height, format, VARIANT_CONTENT_TYPES[format], buffer.getvalue())
