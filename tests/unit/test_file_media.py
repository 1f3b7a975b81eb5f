"""Telling a file by its bytes, refusing polyglots and truncated files, clean file names (pure)."""

import io
import zipfile

import pytest

from storage.media import PDF, PNG, WEBP, clean_filename, image_problem, polyglot_problem, sniff
from tests.support.files import bomb_png, jpeg_with_gps, pdf_document, png_image, webp_image


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.txt", "hello")
    return buffer.getvalue()


def problem(content: bytes):
    kind = sniff(content[:16])
    assert kind is not None
    return polyglot_problem(kind, content[:1024], content[-(65_535 + 22) :], len(content))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (jpeg_with_gps(32, 32), "image/jpeg"),
        (png_image(), PNG),
        (webp_image(), WEBP),
        (pdf_document(), PDF),
        (b"GIF89a", None),
        (b"RIFF\x00\x00\x00\x00WAVE", None),
        (b"<svg xmlns=", None),
        (b"", None),
    ],
)
def test_the_first_bytes_tell_the_type(content, expected):
    assert sniff(content[:16]) == expected


@pytest.mark.parametrize("content", [jpeg_with_gps(64, 64), png_image(), webp_image(), pdf_document()])
def test_honest_files_pass(content):
    assert problem(content) is None


def test_a_zip_appended_to_an_image_or_pdf_is_a_polyglot():
    for content in (jpeg_with_gps(64, 64) + zip_bytes(), pdf_document() + zip_bytes()):
        refusal = problem(content)
        assert refusal is not None and refusal.status == 415 and "ZIP" in refusal.reason


def test_markup_or_a_pdf_header_in_the_first_kilobyte_is_a_polyglot():
    html = problem(png_image()[:40] + b"<ScRiPt>alert(1)</script>" + png_image()[40:])
    assert html is not None and html.status == 415
    pdf_in_jpeg = problem(b"\xff\xd8\xff\xe0" + b"%PDF-1.5" + jpeg_with_gps(32, 32)[4:])
    assert pdf_in_jpeg is not None and "PDF" in pdf_in_jpeg.reason


def test_truncated_or_padded_files_are_422():
    assert problem(png_image()[:-5]).status == 422
    assert problem(png_image() + b"trailer").status == 422
    assert problem(webp_image()[:-4]).status == 422
    assert problem(webp_image() + b"\x00\x00").status == 422
    assert problem(pdf_document() + b"x" * 2000).status == 422


def test_a_decompression_bomb_is_found_in_its_header(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png(20_000, 20_000))
    refusal = image_problem(path, PNG, max_pixels=100_000_000)
    assert refusal is not None and refusal.status == 422 and "decompression bomb" in refusal.reason
    path.write_bytes(bomb_png(12_000, 12_000))
    over = image_problem(path, PNG, max_pixels=100_000_000)
    assert over is not None and over.status == 422 and "12000x12000" in over.reason
    fine = tmp_path / "fine.png"
    fine.write_bytes(png_image(100, 100))
    assert image_problem(fine, PNG, max_pixels=100_000_000) is None
    assert image_problem(fine, "image/jpeg", max_pixels=100_000_000).status == 415


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("photo.jpg", "photo.jpg"),
        ("C:\\Users\\priya\\Desktop\\deed.pdf", "deed.pdf"),
        ("../../etc/passwd", "passwd"),
        ("a\x00b\r\nc.png", "abc.png"),
        (None, ""),
        ("x" * 300 + ".png", ("x" * 300 + ".png")[-255:]),
    ],
)
def test_file_names_keep_only_their_last_component(raw, clean):
    assert clean_filename(raw) == clean
