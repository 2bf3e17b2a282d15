"""A zip copied with some members replaced: every member reads back as it should, in its
order, the kept ones copied as their compressed bytes; a member deflated in pieces is one
stream any reader inflates; past the plain zip limits zipfile writes the copy."""

import io
import os
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook, load_workbook
from python_calamine import CalamineWorkbook

import connectors.zip_copy as zip_copy
from connectors.zip_copy import copy_with_parts


def archive(path: Path, members: dict[str, tuple[bytes, int]]) -> None:
    with zipfile.ZipFile(path, "w") as z:
        for name, (data, method) in members.items():
            z.writestr(name, data, compress_type=method)


def raw(path: Path, name: str) -> bytes:
    """A member's compressed bytes, as the archive holds them."""
    with zipfile.ZipFile(path) as z, open(path, "rb") as f:
        return zip_copy._stored_bytes(f, z.getinfo(name))


def read_all(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None
        return {i.filename: z.read(i) for i in z.infolist()}


MEMBERS = {
    "[Content_Types].xml": (b"<Types/>", zipfile.ZIP_DEFLATED),
    "xl/worksheets/sheet1.xml": (b"<row>" * 5000, zipfile.ZIP_DEFLATED),
    "xl/media/image1.png": (os.urandom(3000), zipfile.ZIP_STORED),
    "xl/notes/café.xml": (b"<note/>", zipfile.ZIP_DEFLATED),  # a UTF-8 name
}


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(new=st.binary(max_size=5000) | st.text(max_size=3000).map(str.encode),
       piece=st.integers(1, 6000), also=st.booleans())
def test_what_is_replaced_reads_back_and_the_rest_is_copied_as_stored(
        tmp_path_factory, new, piece, also):
    folder = tmp_path_factory.mktemp("zip")
    source, target = folder / "in.xlsx", folder / "out.xlsx"
    archive(source, MEMBERS)
    parts = {"xl/worksheets/sheet1.xml": new, **({"xl/notes/café.xml": new[::-1]} if also
                                                 else {})}
    copy_with_parts(source, target, parts, piece=piece)
    expected = {name: parts.get(name, data) for name, (data, _) in MEMBERS.items()}
    assert read_all(target) == expected
    assert list(read_all(target)) == list(MEMBERS)  # in their order
    for name in MEMBERS.keys() - parts.keys():
        assert raw(target, name) == raw(source, name)  # not inflated and deflated again
    with zipfile.ZipFile(target) as z:
        assert z.getinfo("xl/media/image1.png").compress_type == zipfile.ZIP_STORED
        assert z.getinfo("xl/worksheets/sheet1.xml").compress_type == zipfile.ZIP_DEFLATED


def test_a_member_written_with_a_data_descriptor_is_copied(tmp_path):
    """zipfile writing to a stream it cannot seek puts a member's sizes after its data."""
    buffer = io.BytesIO()

    class Unseekable(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, b) -> int:  # type: ignore[override]
            return buffer.write(b)

    with zipfile.ZipFile(Unseekable(), "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.xml", b"<a/>" * 100)
        z.writestr("b.xml", b"<b/>" * 100)
    source, target = tmp_path / "in.zip", tmp_path / "out.zip"
    source.write_bytes(buffer.getvalue())
    with zipfile.ZipFile(source) as z:
        assert z.getinfo("a.xml").flag_bits & 0x08  # the sizes follow the data
    copy_with_parts(source, target, {"b.xml": b"<c/>"})
    assert read_all(target) == {"a.xml": b"<a/>" * 100, "b.xml": b"<c/>"}


def test_a_workbook_copied_in_pieces_opens_in_every_reader(tmp_path):
    source, target = tmp_path / "in.xlsx", tmp_path / "out.xlsx"
    wb = Workbook()
    for i in range(1, 2001):
        wb.active.append([f"NM-{i:06d}", i, "A description long enough to compress " * 3])
    wb.save(source)
    with zipfile.ZipFile(source) as z:
        sheet = z.read("xl/worksheets/sheet1.xml")
    changed = sheet.replace(b"NM-000007", b"NM-777777")
    copy_with_parts(source, target, {"xl/worksheets/sheet1.xml": changed}, piece=4096)
    assert load_workbook(target).active["A7"].value == "NM-777777"
    rows = CalamineWorkbook.from_path(target).get_sheet_by_index(0).to_python()
    assert rows[6][0] == "NM-777777" and len(rows) == 2000
    assert read_all(target)["xl/worksheets/sheet1.xml"] == changed  # CRCs checked too


def test_past_the_plain_zip_limits_zipfile_writes_the_copy(tmp_path, monkeypatch):
    source, target = tmp_path / "in.xlsx", tmp_path / "out.xlsx"
    archive(source, MEMBERS)
    monkeypatch.setattr(zip_copy, "SIZE_LIMIT", 1000)  # as if a member were over 4 GB
    used: list[bool] = []
    real = zip_copy._copy_with_zipfile
    monkeypatch.setattr(zip_copy, "_copy_with_zipfile",
                        lambda *a: used.append(True) or real(*a))
    copy_with_parts(source, target, {"[Content_Types].xml": b"<Types></Types>"})
    assert used == [True]
    assert read_all(target)["[Content_Types].xml"] == b"<Types></Types>"


def test_a_member_without_its_local_header_is_refused(tmp_path):
    source = tmp_path / "in.xlsx"
    archive(source, MEMBERS)
    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as z:
        at = z.getinfo("xl/media/image1.png").header_offset
    data[at:at + 4] = b"XXXX"  # its local header is gone
    source.write_bytes(bytes(data))
    with pytest.raises(zipfile.BadZipFile):
        copy_with_parts(source, tmp_path / "out.xlsx", {})
