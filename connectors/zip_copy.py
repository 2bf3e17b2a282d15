"""A zip archive copied with some members replaced, as the XLSX tracker saves a workbook.

The members kept are copied as their compressed bytes, not inflated and deflated again; the
new ones are deflated in pieces on every core. The standard library's zipfile compresses a
member whole, in the thread that writes it: a tracker's Reports sheet over 100,000 reports
is 150 MB of XML, most of a second of zlib on one core at the end of every run that changes
a cell. A deflate stream may be made of pieces compressed apart, each but the last ended by
a sync flush on a byte boundary (as pigz makes them), which any inflater reads as one stream.
"""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

PIECE = 4 << 20  # bytes deflated apart: each piece starts without the last one's history
LEVEL = 1  # the fastest: level 6 took three times as long for a file a fifth smaller
# The plain zip format's limits; beyond them zipfile writes its zip64 records instead.
SIZE_LIMIT, COUNT_LIMIT = 0xFFFFFFFF, 0xFFFF

_LOCAL = struct.Struct("<4s2B4HL2L2H")  # local file header, as zipfile packs it
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")  # central directory entry
_END = struct.Struct("<4s4H2LH")  # end of central directory
_UTF8_NAME = 0x800  # the one flag kept: sizes are in the headers, no data descriptor


def copy_with_parts(source: str | Path, target: str | Path, parts: Mapping[str, bytes],
                    *, piece: int = PIECE) -> None:
    """Write the zip archive at `source` to `target` with the members named in `parts`
    holding those bytes instead (deflated, `piece` bytes apart; every other member and their
    order as they were)."""
    with zipfile.ZipFile(source) as book:
        infos = book.infolist()
        deflated = _deflate_all({i.filename: parts[i.filename] for i in infos
                                 if i.filename in parts}, piece)
        sizes = [(len(parts[i.filename]), len(deflated[i.filename])) if i.filename in deflated
                 else (i.file_size, i.compress_size) for i in infos]
        # the archive's size at most: each member's bytes, its two headers, its name twice
        # (4 bytes a character at most); every offset is below it
        end = sum(c + _LOCAL.size + _CENTRAL.size + 2 * 4 * len(i.filename)
                  for (_, c), i in zip(sizes, infos, strict=True))
        if len(infos) >= COUNT_LIMIT or end >= SIZE_LIMIT or max(
                (u for u, _ in sizes), default=0) >= SIZE_LIMIT:
            _copy_with_zipfile(book, target, parts)
            return
        with open(source, "rb") as src, open(target, "wb") as out:
            central = []
            for info in infos:
                offset = out.tell()
                if info.filename in deflated:
                    data = parts[info.filename]
                    crc, usize, method = zlib.crc32(data), len(data), zipfile.ZIP_DEFLATED
                    body = deflated[info.filename]
                else:
                    crc, usize, method = info.CRC, info.file_size, info.compress_type
                    body = _stored_bytes(src, info)
                name = info.filename.encode("utf-8" if info.flag_bits & _UTF8_NAME else "cp437")
                flags = info.flag_bits & _UTF8_NAME
                version = max(info.extract_version, 20)
                dostime, dosdate = _dos(info.date_time)
                out.write(_LOCAL.pack(b"PK\x03\x04", version, 0, flags, method, dostime,
                                      dosdate, crc, len(body), usize, len(name), 0))
                out.write(name)
                out.write(body)
                central.append(_CENTRAL.pack(
                    b"PK\x01\x02", info.create_version, info.create_system, version, 0,
                    flags, method, dostime, dosdate, crc, len(body), usize, len(name), 0, 0,
                    0, info.internal_attr, info.external_attr, offset) + name)
            start = out.tell()
            out.write(b"".join(central))
            out.write(_END.pack(b"PK\x05\x06", 0, 0, len(central), len(central),
                                out.tell() - start, start, 0))


def _deflate_all(parts: Mapping[str, bytes], piece: int) -> dict[str, bytes]:
    """Each part as one raw deflate stream, its pieces compressed in threads (zlib lets go
    of the GIL)."""
    pieces = [(name, at, at + piece >= len(data))
              for name, data in parts.items() for at in range(0, max(len(data), 1), piece)]

    def deflate(job: tuple[str, int, bool]) -> bytes:
        name, at, last = job
        z = zlib.compressobj(LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        out = z.compress(memoryview(parts[name])[at:at + piece])
        return out + z.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)

    with ThreadPoolExecutor(min(len(pieces), os.cpu_count() or 1) or 1) as pool:
        done = list(pool.map(deflate, pieces))
    out: dict[str, list[bytes]] = {name: [] for name in parts}
    for (name, _, _), data in zip(pieces, done, strict=True):
        out[name].append(data)
    return {name: b"".join(chunks) for name, chunks in out.items()}


def _stored_bytes(src: BinaryIO, info: zipfile.ZipInfo) -> bytes:
    """A member's bytes as the archive holds them (compressed), after its local header,
    whose name and extra field may differ in length from the central directory's."""
    src.seek(info.header_offset)
    header = src.read(_LOCAL.size)
    fields = _LOCAL.unpack(header)
    if fields[0] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"no local header for {info.filename}")
    if info.flag_bits & 0x1:
        raise zipfile.BadZipFile(f"{info.filename} is encrypted")
    src.seek(fields[-2] + fields[-1], os.SEEK_CUR)
    body = src.read(info.compress_size)
    if len(body) != info.compress_size:
        raise zipfile.BadZipFile(f"{info.filename} is cut short")
    return body


def _dos(date_time: tuple[int, int, int, int, int, int]) -> tuple[int, int]:
    year, month, day, hour, minute, second = date_time
    return hour << 11 | minute << 5 | second // 2, (year - 1980) << 9 | month << 5 | day


def _copy_with_zipfile(book: zipfile.ZipFile, target: str | Path,
                       parts: Mapping[str, bytes]) -> None:
    """The same copy through zipfile, which writes zip64 records past the plain limits."""
    with zipfile.ZipFile(target, "w") as out:
        for info in book.infolist():
            data = parts.get(info.filename)
            out.writestr(info, book.read(info) if data is None else data,
                         compress_type=info.compress_type, compresslevel=LEVEL)
