"""Builds small PDFs in memory for tests: text pages, an outline, a deflate bomb."""

from __future__ import annotations

import zlib


def _obj(num: int, body: bytes) -> bytes:
    return f"{num} 0 obj\n".encode() + body + b"\nendobj\n"


def make_pdf(
    pages: list[list[str]],
    *,
    title: str | None = None,
    outline: list[tuple[str, int]] | None = None,
    raw_streams: list[bytes] | None = None,
) -> bytes:
    """A PDF with one Helvetica text line per entry of ``pages[i]``.

    ``outline`` is a flat list of (title, 0-based page) bookmarks; ``raw_streams``
    replaces the page content streams with pre-compressed FlateDecode data.
    """
    objects: dict[int, bytes] = {}
    n_pages = len(raw_streams) if raw_streams is not None else len(pages)
    page_ids = [10 + 2 * i for i in range(n_pages)]
    font_id, outline_id, info_id = 3, 4, 5
    objects[font_id] = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
    for i, pid in enumerate(page_ids):
        if raw_streams is not None:
            data = raw_streams[i]
            stream = f"<< /Length {len(data)} /Filter /FlateDecode >>\nstream\n".encode() + data + b"\nendstream"
        else:
            ops = ["BT", "/F1 11 Tf", "14 TL", "72 720 Td"]
            for line in pages[i]:
                esc = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
                ops.append(f"({esc}) Tj T*")
            ops.append("ET")
            content = "\n".join(ops).encode("latin-1")
            stream = f"<< /Length {len(content)} >>\nstream\n".encode() + content + b"\nendstream"
        objects[pid + 1] = stream
        objects[pid] = (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {pid + 1} 0 R "
            f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>"
        ).encode()
    kids = " ".join(f"{p} 0 R" for p in page_ids)
    objects[2] = f"<< /Type /Pages /Kids [{kids}] /Count {n_pages} >>".encode()
    catalog = "<< /Type /Catalog /Pages 2 0 R"
    if outline:
        item_ids = [1000 + i for i in range(len(outline))]
        for i, (text, page) in enumerate(outline):
            links = f"/Parent {outline_id} 0 R /Dest [{page_ids[page]} 0 R /Fit]"
            if i > 0:
                links += f" /Prev {item_ids[i - 1]} 0 R"
            if i < len(outline) - 1:
                links += f" /Next {item_ids[i + 1]} 0 R"
            objects[item_ids[i]] = f"<< /Title ({text}) {links} >>".encode("latin-1")
        objects[outline_id] = (
            f"<< /Type /Outlines /First {item_ids[0]} 0 R /Last {item_ids[-1]} 0 R /Count {len(outline)} >>"
        ).encode()
        catalog += f" /Outlines {outline_id} 0 R"
    objects[1] = (catalog + " >>").encode()
    trailer_info = ""
    if title is not None:
        objects[info_id] = f"<< /Title ({title}) >>".encode("latin-1")
        trailer_info = f" /Info {info_id} 0 R"
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets: dict[int, int] = {}
    for num in sorted(objects):
        offsets[num] = len(out)
        out += _obj(num, objects[num])
    xref_at = len(out)
    top = max(objects) + 1
    out += f"xref\n0 {top}\n0000000000 65535 f \n".encode()
    for num in range(1, top):
        if num in offsets:
            out += f"{offsets[num]:010d} 00000 n \n".encode()
        else:
            out += b"0000000000 65535 f \n"
    out += f"trailer\n<< /Size {top} /Root 1 0 R{trailer_info} >>\nstartxref\n{xref_at}\n%%EOF\n".encode()
    return bytes(out)


def deflate_bomb(inflated_bytes: int) -> bytes:
    """A content stream that inflates to ``inflated_bytes`` of spaces."""
    comp = zlib.compressobj(9)
    chunk = b" " * (1 << 20)
    parts = [comp.compress(chunk) for _ in range(inflated_bytes // len(chunk))]
    parts.append(comp.flush())
    return b"".join(parts)
