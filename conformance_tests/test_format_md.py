"""spec/FORMAT.md cannot drift from the declarations: its tables and worked example are checked."""

from __future__ import annotations

import re
from dataclasses import fields

import hexdump_example

from atlas_format import CODECS, index_v2
from atlas_format.constants import Limits

TEXT = hexdump_example.FORMAT_MD.read_text("utf-8")


def _table_after(marker: str) -> list[list[str]]:
    start = TEXT.index(marker)
    rows = []
    for line in TEXT[start:].splitlines()[1:]:
        if line.startswith("|"):
            rows.append([cell.strip().strip("`") for cell in line.strip("|").split("|")])
        elif rows:
            break
    return rows[2:]  # drop the header row and the separator


def test_index_header_table_matches_declaration():
    rows = _table_after("**V2-INDEX-1.**")
    offset = 0
    declared = []
    for sub in index_v2.IndexHeader.subcons:
        declared.append([str(offset), str(sub.sizeof()), sub.name])
        offset += sub.sizeof()
    assert [row[:3] for row in rows] == declared


def test_index_entry_clause_matches_declaration():
    clause = TEXT[TEXT.index("**V2-INDEX-4.**"):]
    clause = clause[:clause.index("\n\n")]
    names = re.findall(r"`(\w+)` \(u(\d+)", clause)
    assert [(name, int(bits) // 8) for name, bits in names] == [
        (sub.name, sub.sizeof()) for sub in index_v2.IndexEntry.subcons]


def test_codec_table_matches_registry():
    rows = _table_after("**V2-CODEC-1.**")
    assert [(int(row[0]), row[1]) for row in rows] == [(int(c), info.label) for c, info in CODECS.items()]


def test_limits_table_names_every_limit():
    rows = _table_after("**LIM-1.**")
    named = {name for row in rows for name in re.findall(r"max_\w+", row[0])}
    assert named == {f.name for f in fields(Limits)}


def test_clause_ids_are_unique():
    ids = re.findall(r"\*\*([A-Z0-9]+(?:-[A-Z]+)?-\d+)\.\*\*", TEXT)
    assert len(ids) > 40
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})


def test_format_md_hexdump_is_current():
    section = hexdump_example.generate()
    assert hexdump_example.replace_section(TEXT, section) == TEXT, (
        "spec/FORMAT.md section 8 is stale: run `python conformance_tests/hexdump_example.py --write`")
