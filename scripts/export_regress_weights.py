"""Package a trained regression checkpoint as facefit's shipped weights.

Reads ``best.pt`` of `facefit.regress.train` ({"net", "norm_mean", "norm_std"}), checks that it
loads into the network, folds every batch norm into its convolution and writes
``src/facefit/regress/weights/regress_mbv1x05.npz`` (`facefit.regress.inference.save_weights`:
convolution weights in float16, no pickles; numpy runs it, torch is not needed at inference).
Then it runs the folded network on the train-aflw21 crops and records the constant coefficient
offset that moves its 68 points onto AFLW's annotation convention
(`facefit.regress.aflw21.convention_offset`) in ``meta["convention_offset"]``
(`facefit.regress.predictor.RegressionPredictor.in_aflw_convention` adds it to the network's
final answers; ``--aflw ''`` leaves it out). Checks that the file's network gives the
checkpoint's outputs (float16 rounding only) and prints its sha256 (copy it into
``facefit.regress.predictor.WEIGHTS_SHA256`` and the README next to the weights).

    python scripts/export_regress_weights.py [--checkpoint out/regress/best.pt] [--out PATH]
        [--aflw ../shared/data/train-aflw21] [--record]

``--record`` also writes the sha256 into ``WEIGHTS_SHA256`` of ``predictor.py`` and the
``sha256:`` line of the weights README.

Exit 2 on a missing or unreadable checkpoint.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path

import numpy as np
import torch

from facefit.io.atomic import write_bytes_atomic, write_text_atomic
from facefit.model.bfm_3ddfa import load_default_model
from facefit.regress import predictor
from facefit.regress.aflw21 import CONVENTION_RIDGE, convention_offset, load_aflw21
from facefit.regress.inference import from_torch, load_weights, save_weights
from facefit.regress.network import build_network
from facefit.regress.predictor import INPUT_SIZE, MODEL_NAME, WEIGHTS_PATH, WIDTH, landmark_basis
from facefit.regress.train import load_checkpoint

MAX_BYTES = 2_000_000


def aflw_offset(net, model, aflw: str | Path, batch: int = 256) -> tuple[np.ndarray, int]:  # noqa: ANN001
    """`convention_offset` of the folded ``net`` on every train-aflw21 crop in ``aflw`` (the
    network's input size); returns it and the number of crops."""
    from PIL import Image

    paths, points, _ = load_aflw21(aflw)
    params = []
    for i in range(0, len(paths), batch):
        crops = []
        for path in paths[i:i + batch]:
            with Image.open(path) as im:
                crops.append(np.asarray(im.convert("RGB")))
        crops = np.stack(crops)
        if crops.shape[1:3] != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"{aflw}: crops are {crops.shape[1:3]}, not {INPUT_SIZE} px")
        params.append(net(crops))
    mean68, basis68 = landmark_basis(model)
    offset = convention_offset(mean68, basis68, np.concatenate(params), points, INPUT_SIZE)
    return offset, len(paths)


def export(checkpoint: str | Path, out: str | Path, aflw: str | Path | None = None) -> str:
    """Write the packaged weights of ``checkpoint`` to ``out`` (with the AFLW convention offset
    learned on ``aflw`` when given); return their sha256 (hex)."""
    ck = load_checkpoint(checkpoint)
    missing = {"net", "norm_mean", "norm_std"} - set(ck)
    if missing:
        raise ValueError(f"{checkpoint}: checkpoint lacks {', '.join(sorted(missing))}")
    model = load_default_model()
    net = build_network(model, WIDTH)
    net.load_state_dict({k: v.float() if v.is_floating_point() else v
                         for k, v in ck["net"].items()})  # raises on another architecture
    net.eval()
    meta = {"model": model.name, "network": MODEL_NAME, "input_size": INPUT_SIZE,
            "width": WIDTH, "outputs": int(net.head.out_features)}
    folded = from_torch(net.features, net.head, ck["norm_mean"].float().numpy(),
                        ck["norm_std"].float().numpy(), meta)
    if aflw is not None:
        delta, n = aflw_offset(folded, model, aflw)
        delta = np.round(delta, 4)  # a re-run's float summation order cannot show
        folded.meta["convention_offset"] = {
            "data": "train-aflw21", "crops": n, "ridge": CONVENTION_RIDGE,
            "norm": round(float(np.linalg.norm(delta)), 4),
            "coefficients": [float(v) for v in delta]}
    data = save_weights(folded)
    if len(data) > MAX_BYTES:
        raise ValueError(f"{out}: {len(data)} bytes, over the {MAX_BYTES} byte limit")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out, data)
    # the file's network against the checkpoint's, on random crops
    crops = np.random.default_rng(0).integers(0, 256, (4, INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        ref = net(x) * torch.from_numpy(folded.norm_std) + torch.from_numpy(folded.norm_mean)
    got = load_weights(out)(crops)
    err = np.abs(got - ref.numpy()).max() / (np.abs(ref.numpy()).max() + 1e-9)
    if err > 1e-2:
        raise ValueError(f"{out}: the folded float16 network differs from the checkpoint by "
                         f"{err:.2e} of the output range")
    return hashlib.sha256(data).hexdigest()


def record(digest: str) -> None:
    """Write ``digest`` into the predictor's `WEIGHTS_SHA256` and the weights README."""
    for path, pattern, line in (
            (Path(predictor.__file__), r'^WEIGHTS_SHA256 = ".*"$', f'WEIGHTS_SHA256 = "{digest}"'),
            (WEIGHTS_PATH.parent / "README.md", r"^sha256: .*$", f"sha256: {digest}")):
        text = path.read_text()
        new, n = re.subn(pattern, line, text, count=1, flags=re.M)
        if n != 1:
            raise ValueError(f"{path}: no line matching {pattern!r} to record the sha256 in")
        write_text_atomic(path, new)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="out/regress/best.pt")
    ap.add_argument("--out", default=str(WEIGHTS_PATH))
    ap.add_argument("--aflw", default="../shared/data/train-aflw21",
                    help="train-aflw21 folder for the convention offset; '' leaves it out")
    ap.add_argument("--record", action="store_true",
                    help="write the sha256 into predictor.py and the weights README")
    a = ap.parse_args(argv)
    try:
        digest = export(a.checkpoint, a.out, a.aflw or None)
        if a.record:
            record(digest)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"{a.checkpoint}: {e}" if str(a.checkpoint) not in str(e) else str(e),
              file=sys.stderr)
        return 2
    print(f"{a.out}: sha256 {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
