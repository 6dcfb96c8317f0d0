"""`facefit.io.torch_state`: torch state dicts read without torch, and nothing else."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from facefit.io.torch_state import StateDictError, read_state_dict


def test_zip_format_round_trip(tmp_path) -> None:
    sd = {"w": torch.randn(3, 4).t(),  # a non-contiguous view: strides matter
          "b": torch.arange(5), "h": torch.randn(2, 2).half(), "s": torch.tensor(2.5)}
    torch.save(sd, tmp_path / "a.pt")
    got = read_state_dict(tmp_path / "a.pt")
    assert list(got) == list(sd)
    for k, v in sd.items():
        assert got[k].dtype == v.numpy().dtype
        np.testing.assert_array_equal(got[k], v.numpy())


def test_legacy_format_round_trip(tmp_path) -> None:
    sd = {"conv.weight": torch.randn(4, 3, 3, 3), "conv.bias": torch.randn(4)}
    torch.save(sd, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    assert (tmp_path / "old.pt").read_bytes()[:2] != b"PK"
    got = read_state_dict(tmp_path / "old.pt")
    for k, v in sd.items():
        np.testing.assert_array_equal(got[k], v.numpy())


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_code_in_the_pickle_is_refused(tmp_path, capsys) -> None:
    torch.save({"w": torch.zeros(2), "x": _Payload()}, tmp_path / "bad.pt")
    with pytest.raises(StateDictError, match="refuses to load .*print"):
        read_state_dict(tmp_path / "bad.pt")
    assert "must never run" not in capsys.readouterr().out
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(StateDictError, match="plain.pkl"):
        read_state_dict(tmp_path / "plain.pkl")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(StateDictError, match="junk.pt"):
        read_state_dict(tmp_path / "junk.pt")
