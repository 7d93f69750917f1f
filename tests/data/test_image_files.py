"""data/image_files.py: byte-identical copies (the unlabelled folders of data.unlabeled and suggest)."""

from __future__ import annotations


def test_byte_copies_finds_equal_bytes_only(tmp_path):
    from transferkit.data.image_files import byte_copies

    original, same, other, longer = (tmp_path / n for n in ("a.png", "b.png", "c.png", "d.png"))
    original.write_bytes(b"12345")
    same.write_bytes(b"12345")
    other.write_bytes(b"12346")  # the same size, other bytes
    longer.write_bytes(b"123456")
    assert byte_copies([same, other, longer, tmp_path / "missing.png"], [original]) == {same}
    assert byte_copies([same], []) == set()
