"""Range and conditional request parsing for downloads (pure)."""

import pytest

from api.common.downloads import ByteRange, Unsatisfiable, content_disposition, matches, parse_range


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-99", ByteRange(0, 99)),
        ("bytes=100-", ByteRange(100, 999)),
        ("bytes=-10", ByteRange(990, 999)),
        ("bytes=-5000", ByteRange(0, 999)),
        ("bytes=900-5000", ByteRange(900, 999)),
        ("bytes=0-1,5-6", None),  # several ranges: the whole file
        ("bytes=9-3", None),  # invalid: ignored
        ("items=0-1", None),
        ("bytes=-", None),
    ],
)
def test_ranges(header, expected):
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_ranges_past_the_end_are_unsatisfiable(header):
    with pytest.raises(Unsatisfiable):
        parse_range(header, 1000)


def test_if_none_match_compares_weakly_and_takes_lists_and_star():
    assert matches('"abc"', '"abc"') and matches('W/"abc"', '"abc"') and matches('"x", "abc"', '"abc"')
    assert matches("*", '"abc"') and not matches('"abd"', '"abc"') and not matches(None, '"abc"')


def test_content_disposition_carries_a_safe_ascii_name_and_the_utf8_one():
    header = content_disposition('Villa "Kokapet" తెలుగు.pdf', inline=False)
    assert header.startswith('attachment; filename="Villa Kokapet .pdf"')
    assert "filename*=UTF-8''Villa%20%22Kokapet%22%20" in header
