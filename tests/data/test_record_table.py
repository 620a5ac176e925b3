"""Packed list files: the same samples as read_list, read once per process."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from tcm.data import RecordTable, VideoRecord, read_list, read_table
from tcm.data.annotations import is_int

LIST = """\
# a comment
abseiling/a_000001_000011.mp4 0
arm wrestling/b c_000002_000012.mp4 3

frames/clip 47 2
café/ü 1_2 5
-5 7
"""


def test_table_holds_what_read_list_reads(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text(LIST, encoding="utf-8")
    records = read_list(path)
    table = read_table(path)
    assert list(table) == records and len(table) == 5
    assert [r.line for r in table] == [r.line for r in records] == [2, 3, 5, 6, 7]
    assert table[2] == VideoRecord("frames/clip", 2, 47) and table[-1].path == "-5"
    assert table.path(3) == "café/ü 1_2"  # "1_2" is no frame count: part of the path
    assert table.labels.tolist() == [0, 3, 2, 5, 7]
    assert table.num_frames.tolist() == [-1, -1, 47, -1, -1]
    assert table[1:3] == records[1:3]
    with pytest.raises(IndexError):
        table[5]
    with pytest.raises(ValueError):
        table.labels[0] = 1  # shared between readers: read-only
    assert list(pickle.loads(pickle.dumps(table))) == records  # spawned workers


def test_whole_numbers_are_ascii_digits():
    assert is_int("12") and is_int("-3") and is_int("+0")
    assert not any(is_int(t) for t in ("", "-", "1_2", "1.0", "١٢", "²", " 1"))


def test_a_list_is_read_once_until_it_changes(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("a.mp4 0\nb.mp4 1\n")
    first = read_table(path)
    assert read_table(path) is first
    path.write_text("a.mp4 0\nb.mp4 1\nc.mp4 2\n")
    os.utime(path, ns=(1, 1))  # a changed file with any modification time is read again
    again = read_table(path)
    assert again is not first and len(again) == 3


def test_errors_name_the_file_and_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("a.mp4 0\nno label here\n")
    with pytest.raises(ValueError, match=r"bad\.txt:2: expected 'path label'"):
        read_table(path)
    with pytest.raises(FileNotFoundError):
        read_table(tmp_path / "absent.txt")


def test_records_are_packed_into_a_few_buffers():
    records = [VideoRecord(f"class {i % 400}/clip_{i:08d}.mp4", i % 400) for i in range(10_000)]
    table = RecordTable.from_records(records)
    assert list(table) == records
    assert table.nbytes < 70 * len(records)  # ~32 bytes per path and 32 per sample's numbers
    assert np.array_equal(table.labels, [r.label for r in records])
    with pytest.raises(ValueError, match="line break"):
        RecordTable.from_records([VideoRecord("a\nb", 0)])
