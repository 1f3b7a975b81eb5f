"""The optimiser's image work (Pillow, no Kafka): variants at the promised widths, no metadata left,
never upscaled; what cannot be decoded safely is rejected with a reason."""

import io

import pytest
from PIL import Image

from schemas.files import VariantFormat
from streams.files.images import ImageRejected, load, render
from tests.support.files import GPS_IFD, bomb_png, jpeg_with_gps, png_image


def source(tmp_path, content: bytes, name: str = "photo.jpg", largest: int = 1600):
    path = tmp_path / name
    path.write_bytes(content)
    return load(path, max_pixels=120_000_000, largest_width=largest)


@pytest.mark.parametrize("fmt", [VariantFormat.WEBP, VariantFormat.JPEG])
@pytest.mark.parametrize("width", [320, 768, 1600])
def test_variants_have_the_width_asked_and_no_exif_gps_or_xmp(tmp_path, width, fmt):
    photo = jpeg_with_gps(2400, 1800)
    assert Image.open(io.BytesIO(photo)).getexif().get_ifd(GPS_IFD)
    rendered = render(source(tmp_path, photo), width, fmt)
    image = Image.open(io.BytesIO(rendered.data))
    assert image.size == (width, width * 3 // 4) == (rendered.width, rendered.height)
    assert image.format == {"webp": "WEBP", "jpeg": "JPEG"}[fmt.value]
    assert len(image.getexif()) == 0 and "xmp" not in image.info and b"GPSLatitude" not in rendered.data


def test_the_exif_orientation_is_applied_to_the_pixels(tmp_path):
    image = Image.new("RGB", (400, 200), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    rendered = render(source(tmp_path, buffer.getvalue()), 320, VariantFormat.JPEG)
    assert (rendered.width, rendered.height) == (200, 400)  # a narrower original is never upscaled


def test_transparency_survives_in_webp_and_png(tmp_path):
    image = Image.new("RGBA", (100, 50), (255, 0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    rendered = render(source(tmp_path, buffer.getvalue(), "a.png"), 320, VariantFormat.PNG)
    assert Image.open(io.BytesIO(rendered.data)).mode == "RGBA" and rendered.width == 100


def test_truncated_images_are_rejected_with_the_reason(tmp_path):
    whole = jpeg_with_gps(800, 600)
    with pytest.raises(ImageRejected, match="truncated"):
        source(tmp_path, whole[: len(whole) // 2])
    with pytest.raises(ImageRejected, match="truncated"):
        source(tmp_path, png_image(300, 300)[:-40], "cut.png")


def test_bombs_and_non_images_are_rejected(tmp_path):
    with pytest.raises(ImageRejected, match="decompression bomb"):
        source(tmp_path, bomb_png(), "bomb.png")
    with pytest.raises(ImageRejected, match="not a decodable"):
        source(tmp_path, b"%PDF-1.7\n%%EOF\n", "doc.jpg")
