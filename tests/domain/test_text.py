"""Text made safe for spreadsheet cells and email headers, for any text at all."""

from email.message import EmailMessage

from hypothesis import example, given, settings
from hypothesis import strategies as st
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from domain.text import CELL_LIMIT, REPLACEMENT, header_text, safe_text, sheet_text

# Any code point, surrogates included, with C0/C1 controls and line ends drawn often.
ANY_CHAR = st.one_of(
    st.characters(codec=None, categories=None),
    st.characters(min_codepoint=0, max_codepoint=0x9F),
    st.characters(categories=["Cs"]),
    st.sampled_from(["\r", "\n", "\t", "\ufffe", "\uffff", "\ud800", "\udfff", "😀", "\u202e",
                     "ש"]),
)
# What a cell holds unchanged: no control but tab and LF, no surrogate, no XML non-character.
SAFE_CHAR = st.one_of(
    st.characters(exclude_categories=["Cc", "Cs"], exclude_characters=["\ufffe", "\uffff"]),
    st.sampled_from(["\t", "\n"]),
)


def sized(alphabet: st.SearchStrategy[str], max_size: int) -> st.SearchStrategy[str]:
    """Short text, or a short piece repeated to a size around the cell limit or far above:
    generating 100,000 characters one by one would be slow."""
    piece = st.text(alphabet=alphabet, min_size=1, max_size=40)
    size = st.integers(0, max_size)
    if max_size > CELL_LIMIT:
        size = st.one_of(size, st.integers(CELL_LIMIT // 2 - 10, CELL_LIMIT + 10))
    return st.one_of(st.text(alphabet=alphabet),
                     st.builds(lambda s, n: (s * (n // len(s) + 1))[:n], piece, size))


ANY_TEXT = sized(ANY_CHAR, 100_000)


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@settings(max_examples=200, deadline=None)
@given(ANY_TEXT)
@example("\ud83d\ude00 \ud800")  # a surrogate pair as two code points, a lone one
@example("x" * 100_000)
@example("😀" * 16_384)  # one UTF-16 unit over the limit
@example("a\r\n\x00" * 12_000)
def test_sheet_text_holds_nothing_a_cell_refuses_and_fits_the_limit(text):
    out = sheet_text(text)
    assert not ILLEGAL_CHARACTERS_RE.search(out)
    assert "\r" not in out  # XML readers turn CR into LF: it would never read back equal
    assert not any(0xD800 <= ord(c) <= 0xDFFF for c in out)
    assert "\ufffe" not in out and "\uffff" not in out
    out.encode("utf-8")  # no lone surrogate
    assert len(out) <= CELL_LIMIT and utf16_units(out) <= CELL_LIMIT
    assert sheet_text(out) == out


@settings(max_examples=200, deadline=None)
@given(sized(SAFE_CHAR, 40_000))
def test_safe_text_that_fits_is_left_as_it_is(text):
    if utf16_units(text) <= CELL_LIMIT:
        assert sheet_text(text) == text
        assert safe_text(text) == text


def test_controls_and_surrogates_are_replaced_visibly_and_line_ends_kept():
    assert sheet_text("a\x00b\x0bc\x1fd\x7fe\x85f\ud800g\uffff") == "a" + f"{REPLACEMENT}b" \
        f"{REPLACEMENT}c{REPLACEMENT}d{REPLACEMENT}e{REPLACEMENT}f{REPLACEMENT}g{REPLACEMENT}"
    assert sheet_text("one\r\ntwo\rthree\n\tfour") == "one\ntwo\nthree\n\tfour"
    assert sheet_text("\u202eשלום 😀 =SUM(A1)") == "\u202eשלום 😀 =SUM(A1)"


def test_long_text_is_cut_with_a_note_inside_the_limit():
    out = sheet_text("x" * 100_000)
    assert len(out) == CELL_LIMIT
    assert out.endswith(" … [cut: 100,000 characters; the full text is in the store]")
    assert out.startswith("x" * 30_000)
    emoji = sheet_text("😀" * 20_000)  # two UTF-16 units each, as Excel counts
    assert CELL_LIMIT - 2 <= utf16_units(emoji) <= CELL_LIMIT
    assert "[cut: 20,000 characters;" in emoji


@settings(max_examples=200, deadline=None)
@given(sized(ANY_CHAR, 2_000), st.one_of(st.none(), st.integers(1, 300)))
@example("x\r\nBcc: all@example.org " * 5_000, 250)
def test_header_text_is_one_line_the_email_package_accepts(text, limit):
    out = header_text(text, limit)
    assert len(out.splitlines()) <= 1 and out == out.strip()
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in out)
    assert limit is None or len(out) <= limit
    assert header_text(out, limit) == out
    msg = EmailMessage()
    msg["Subject"] = out  # raises on a line break
    msg.set_content("x")
    assert bytes(msg).count(b"\x00") == 0
