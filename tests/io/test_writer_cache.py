"""The writers' per-model caches: keys by content, model arrays hashed once per process."""

import numpy as np

from facefit.io import export


def test_frozen_view_is_stable_read_only_and_keyed_by_content(monkeypatch):
    tri = np.arange(30, dtype=np.int32).reshape(10, 3)
    view = export._frozen(tri)
    assert view is export._frozen(tri)  # the same object for the same array
    assert not view.flags.writeable and np.shares_memory(view, tri)
    np.testing.assert_array_equal(view, tri)
    # the key is that of the contents: equal to a fresh copy's, different for other values
    assert export._cache_key(view, "x") == export._cache_key(tri.copy(), "x")
    assert export._cache_key(view, "x") != export._cache_key(tri + 1, "x")
    assert export._cache_key(view, "x") != export._cache_key(view, "y")
    # hashed once: a second key of the frozen view does not read its bytes again
    calls = []
    real = np.ascontiguousarray
    monkeypatch.setattr(export.np, "ascontiguousarray",
                        lambda a, *k, **kw: calls.append(1) or real(a, *k, **kw))
    export._cache_key(view, "z")
    assert calls == []
    export._cache_key(tri.copy(), "z")  # a writeable array is hashed every time
    assert calls == [1]


def test_glb_index_bytes_follow_the_contents():
    tri = np.array([[0, 1, 2], [2, 1, 3]], np.int64)
    frozen = export._frozen(tri)
    assert export._glb_index_bytes(frozen, True) == tri.astype("<u2").tobytes()
    other = export._frozen(tri[::-1].copy())
    assert export._glb_index_bytes(other, True) == tri[::-1].astype("<u2").tobytes()
    assert export._glb_index_bytes(frozen, False) == tri.astype("<u4").tobytes()
