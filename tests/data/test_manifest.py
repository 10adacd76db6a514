import json

import pytest

from worldsim.data.manifest import REQUIRED_KEYS, ManifestError, append_manifest, compact_manifest, read_manifest


def row(i, **kw):
    r = {k: None for k in REQUIRED_KEYS}
    r.update(id=f"ep-{i:03d}", path=f"e{i}.npz", index=i, **kw)
    return r


def test_append_read_and_compact(tmp_path):
    for i in (2, 0, 1):
        (tmp_path / f"e{i}.npz").write_bytes(b"x")
    append_manifest(tmp_path, [row(2), row(0)])
    append_manifest(tmp_path, [row(1), row(1)])
    assert [r["id"] for r in read_manifest(tmp_path)] == ["ep-002", "ep-000", "ep-001", "ep-001"]
    out = compact_manifest(tmp_path)
    assert [r["id"] for r in out] == ["ep-000", "ep-001", "ep-002"]
    assert [r["id"] for r in read_manifest(tmp_path)] == ["ep-000", "ep-001", "ep-002"]


def test_a_line_cut_short_is_skipped_then_repaired(tmp_path):
    (tmp_path / "e0.npz").write_bytes(b"x")
    (tmp_path / "e1.npz").write_bytes(b"x")
    append_manifest(tmp_path, [row(0)])
    with open(tmp_path / "manifest.jsonl", "a") as f:
        f.write(json.dumps(row(9))[:30])  # a crash mid-line
    with pytest.warns(UserWarning, match="incomplete last line"):
        assert [r["id"] for r in read_manifest(tmp_path)] == ["ep-000"]
    append_manifest(tmp_path, [row(1)])  # starts on a fresh line
    with pytest.warns(UserWarning, match="malformed"):
        rows = read_manifest(tmp_path)
    assert [r["id"] for r in rows] == ["ep-000", "ep-001"]
    with pytest.raises(ManifestError, match="malformed"):
        read_manifest(tmp_path, strict=True)
    compact_manifest(tmp_path)
    assert [r["id"] for r in read_manifest(tmp_path, strict=True)] == ["ep-000", "ep-001"]


def test_compact_drops_lines_whose_file_is_gone(tmp_path):
    (tmp_path / "e0.npz").write_bytes(b"x")
    append_manifest(tmp_path, [row(0), row(1)])
    assert [r["id"] for r in compact_manifest(tmp_path)] == ["ep-000"]
