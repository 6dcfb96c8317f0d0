"""Training of the regression network (`facefit.regress.network`).

Data: profiled shards (`facefit.regress.dataset`, labels exact) and AFLW crops with their
visible 21 points (`facefit.regress.aflw21`). Losses per step, summed:

* WPDC, 3DDFA's weighted parameter distance (Zhu et al. 2016): squared error of the normalised
  parameters, each weighted by how far its error moves the projected sparse vertices
  (``|dp_i| * ||d x / d p_i||`` at the target, detached, normalised to max 1 per sample);
* VDC, the vertex distance: mean distance of the projected sparse vertices / crop size;
* the 68-landmark distance / crop size;
* the masked 21-landmark distance on AFLW (2DASL, Tu et al. 2019), weight ``aflw_weight``.

Augmentation per batch: crops re-cut as a face detector would cut them
(`facefit.regress.profiling.jitter_crops`, ``crop_jitter``; labels mapped exactly), then
photometric changes (`facefit.regress.profiling.photometric_augment`).

Validation: balanced 2D NME on AFLW2000-3D dev (crop from the ground-truth box, the 3DDFA
benchmark's protocol); model selection only, never training. Checkpoints are plain tensors
(loaded with ``torch.load(..., weights_only=True)``); ``run`` resumes from ``last.pt``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from facefit.io.atomic import atomic_path
from facefit.model.morphable_model import MorphableModel
from facefit.regress.aflw21 import load_aflw21, masked_landmark_loss
from facefit.regress.dataset import read_shard
from facefit.regress.network import (
    N_POSE,
    ParamNorm,
    Projector,
    build_network,
    sparse_vertex_ids,
)
from facefit.regress.profiling import (
    jitter_crops,
    map_params,
    map_points,
    photometric_augment,
)


@dataclass
class TrainConfig:
    """Hyper-parameters of `run`."""

    epochs: int = 60  # 63-106 s per epoch of 24k views + AFLW on 2 cores: ~82 min
    batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 5e-4
    aflw_weight: float = 1.0
    aflw_every: int = 2
    size: int = 120
    width: float = 0.5
    seed: int = 0  # initial weights, data order and augmentation
    augment: bool = True
    crop_jitter: float = 0.08  # sd of the crop shift, in 68-landmark box sides (0: off)
    threads: int = 2


def load_profiled(folder: str | Path) -> dict[str, np.ndarray]:
    """Every shard of ``folder`` concatenated: images (N, S, S, 3) uint8, params (N, 58),
    landmarks_68 (N, 68, 2)."""
    shards = sorted(Path(folder).glob("*.npz"))
    if not shards:
        raise ValueError(f"{folder}: no profiled shards (run scripts/make_profiled_set.py)")
    parts = [read_shard(s) for s in shards]
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    params = np.concatenate([cat["pose8"], cat["shape"], cat["expression"]], axis=1)
    return {"images": cat["images"], "params": params.astype(np.float32),
            "landmarks_68": cat["landmarks_68"], "yaw_deg": cat["yaw_deg"]}


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float in [0, 1], stored channels last (`run` keeps
    the network's weights channels last too: a step of batch 96 at 120 px took 297 ms on 2
    cores, against 494 ms with plain weights and 423 ms with both plain)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    return x.contiguous(memory_format=torch.channels_last)


class Losses(torch.nn.Module):
    """WPDC, VDC and landmark losses of raw-parameter predictions against targets."""

    def __init__(self, model: MorphableModel, norm: ParamNorm, size: float) -> None:
        super().__init__()
        self.norm, self.size = norm, float(size)
        self.sparse = Projector(model, sparse_vertex_ids(model))
        self.lm = Projector(model, model.landmark_ids["ibug68"])

    def param_weights(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """3DDFA's WPDC weights: |dp_i| times the norm of d(sparse vertices)/dp_i at target."""
        p = self.sparse
        k = p.n_shape + p.n_expr
        coeff = target[:, N_POSE:N_POSE + k]
        v = p.mean[None] + torch.einsum("nck,bk->bnc", p.basis, coeff)  # (B, N, 3)
        n_a = torch.sqrt((v ** 2).sum(1)).repeat(1, 2)  # d x_r / d A_rc = v_c
        n_t = torch.full_like(target[:, :2], float(v.shape[1]) ** 0.5)
        a = target[:, :6].reshape(-1, 2, 3)
        jb = torch.einsum("brc,nck->bnrk", a, p.basis)
        n_c = torch.sqrt((jb ** 2).sum((1, 2)))
        w = torch.cat([n_a, n_t, n_c], 1) * (pred - target).abs()
        return (w / w.max(1, keepdim=True).values.clamp_min(1e-12)).detach()

    def forward(self, out: torch.Tensor, target: torch.Tensor, lm68: torch.Tensor
                ) -> dict[str, torch.Tensor]:
        pred = self.norm.denormalise(out)
        w = self.param_weights(pred, target)
        wpdc = (w * (out - self.norm.normalise(target)) ** 2).sum(1).mean()
        vdc = torch.linalg.norm(self.sparse(pred) - self.sparse(target), dim=-1).mean()
        lmd = torch.linalg.norm(self.lm(pred) - lm68, dim=-1).mean()
        return {"wpdc": wpdc, "vdc": vdc / self.size, "lm68": lmd / self.size}


def keep_freed_memory() -> bool:
    """Ask glibc's allocator to keep the training step's large tensors (up to 32 MB) on its
    heap and to keep freed memory there, instead of mapping and unmapping each one. Without
    it a short run spent 22 % of its CPU time in the kernel (page faults); with it short
    runs spent 5-10 % and a full run 1.3 % (its first 5 epochs).
    Epochs of short alternating runs took 10-35 % less time, but a full 70-epoch run's
    (78-121 s) were no faster than an earlier day's run without it (63-106 s): on this noisy
    shared box the wall-time gain is unconfirmed. Results are unchanged, bit for bit. False
    where the C library is not glibc. `make train` sets the same limits through the
    environment (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``), before any memory
    is allocated."""
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 32 * 1024 * 1024)) and bool(
        mallopt(m_trim_threshold, 2 ** 31 - 1))


def training_network(model: MorphableModel, cfg: TrainConfig, device: torch.device | str = "cpu"
                     ) -> torch.nn.Module:
    """`run`'s network: seeded from ``cfg.seed``, on ``device``, its weights channels last
    (as `to_tensor`'s crops are: 1.66x faster steps on the CPU than plain weights)."""
    net = build_network(model, cfg.width, seed=cfg.seed)
    return net.to(device, memory_format=torch.channels_last)


def _save(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path) -> dict:
    """A training checkpoint or weights file (plain tensors only: ``weights_only=True``)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets one clear line
        raise ValueError(f"{path}: not a facefit regression checkpoint ({e})") from e


def predict_landmarks(net: torch.nn.Module, lm: Projector, norm: ParamNorm,
                      images: np.ndarray, batch: int = 128) -> np.ndarray:
    """(N, 68, 2) predicted landmark projections for (N, S, S, 3) uint8 crops."""
    net.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = to_tensor(images[i:i + batch]).to(lm.mean.device)
            outs.append(lm(norm.denormalise(net(x))).cpu().numpy())
    return np.concatenate(outs) if outs else np.zeros((0, 68, 2), np.float32)


def aflw2000_crops(root: str | Path, size: int = 120, enlarge: float = 1.5
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(crops (N, S, S, 3), crop-to-image maps (N, 2, 3) [k, 0, ox; 0, k, oy] inverted as
    x = (x' - o) / k, ground truth (N, 68, 3), yaw (N,)) of AFLW2000-3D dev, cropped from the
    ground-truth 68-point box as `facefit.regress.profiling.crop_view` crops training views."""
    import cv2
    from PIL import Image

    from facefit.eval.datasets import load_aflw2000

    crops, maps, gts, yaws = [], [], [], []
    for s in load_aflw2000(root):
        lm = s.landmarks_2d
        side = float((lm.max(0) - lm.min(0)).max()) * enlarge
        k = size / side
        off = (size - 1) / 2 - k * (lm.min(0) + lm.max(0)) / 2
        mat = np.array([[k, 0, off[0]], [0, k, off[1]]])
        with Image.open(s.image_path) as im:
            img = np.asarray(im.convert("RGB"))
        crops.append(cv2.warpAffine(img, mat, (size, size), flags=cv2.INTER_AREA,
                                    borderMode=cv2.BORDER_REPLICATE))
        maps.append(mat)
        gts.append(s.landmarks_3d)
        yaws.append(s.yaw_deg)
    return np.stack(crops), np.stack(maps), np.stack(gts), np.asarray(yaws)


def validate(net: torch.nn.Module, lm: Projector, norm: ParamNorm, val: tuple) -> dict:
    """Balanced 2D NME (fractions) of the network on the AFLW2000-3D crops of `aflw2000_crops`."""
    from facefit.eval.landmarks import evaluate_aflw2000

    crops, maps, gt, yaw = val
    pred = predict_landmarks(net, lm, norm, crops)
    k = maps[:, 0, 0][:, None, None]
    pred_img = (pred - maps[:, None, :, 2]) / k
    res = evaluate_aflw2000(pred_img, gt, yaw)
    return {"balanced_2d": res.balanced_2d, "buckets_2d": list(map(float, res.bucket_nme_2d))}


def _aflw_batch(paths: list[Path], pts: np.ndarray, idx: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    imgs = []
    for i in idx:
        with Image.open(paths[i]) as im:
            imgs.append(np.asarray(im.convert("RGB")))
    return np.stack(imgs), pts[idx]


def plot_history(history: list[dict], path: Path) -> None:
    """Loss and validation NME per epoch (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    for key in ("wpdc", "vdc", "lm68", "aflw21"):
        a.plot(ep, [h["train"].get(key, np.nan) for h in history], label=key)
    a.set_yscale("log")
    a.set_xlabel("epoch")
    a.legend()
    a.set_title("training losses")
    b.plot(ep, [100 * h.get("val", {}).get("balanced_2d", np.nan) for h in history], "o-")
    b.set_xlabel("epoch")
    b.set_title("AFLW2000-3D dev balanced NME (%)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)


def run(model: MorphableModel, profiled: str | Path, out: str | Path,
        aflw: str | Path | None = None, val_root: str | Path | None = None,
        config: TrainConfig | None = None, log=print,  # noqa: ANN001
        stop_after: int | None = None) -> list[dict]:
    """Train (or resume from ``out/last.pt``) and return the per-epoch history; with
    ``stop_after``, return after that many epochs of this call (train in chunks on a shared
    machine; the schedule is the full ``config.epochs`` one).

    Writes ``out/last.pt`` each epoch, ``out/best.pt`` (weights + norm) at the best validation
    NME, ``out/history.json`` and ``out/losses.png``."""
    cfg = config or TrainConfig()
    torch.set_num_threads(cfg.threads)
    keep_freed_memory()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_profiled(profiled)
    norm = ParamNorm.from_targets(data["params"])
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # a GPU if present
    net = training_network(model, cfg, dev)
    losses = Losses(model, norm, cfg.size).to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, len(data["images"]) // cfg.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.epochs
                                                * steps_per_epoch)
    history: list[dict] = []
    start = 0
    if (out / "last.pt").exists():
        ck = load_checkpoint(out / "last.pt")
        if int(ck.get("total_epochs", cfg.epochs)) != cfg.epochs:
            raise ValueError(f"{out / 'last.pt'}: started with --epochs {int(ck['total_epochs'])},"
                             f" not {cfg.epochs}")
        net.load_state_dict({k: v.to(dev) for k, v in ck["net"].items()})
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        norm = ParamNorm(ck["norm_mean"].numpy(), ck["norm_std"].numpy())
        losses = Losses(model, norm, cfg.size).to(dev)
        history = json.loads(ck["history"])
        start = int(ck["epoch"])
        log(f"resumed at epoch {start}")
    aflw_data = load_aflw21(aflw) if aflw is not None else None
    log(f"training on {dev}: {len(data['images'])} profiled views"
        + (f", {len(aflw_data[0])} AFLW crops" if aflw_data is not None else ""))
    val = aflw2000_crops(val_root, cfg.size) if val_root is not None else None
    best = min([h["val"]["balanced_2d"] for h in history if "val" in h], default=np.inf)
    end = cfg.epochs if stop_after is None else min(cfg.epochs, start + stop_after)
    for epoch in range(start, end):
        rng = np.random.default_rng([cfg.seed, epoch])
        torch.manual_seed(cfg.seed * 1000 + epoch)
        net.train()
        order = rng.permutation(len(data["images"]))
        sums: dict[str, float] = {}
        t0 = time.time()
        for step in range(steps_per_epoch):
            idx = order[step * cfg.batch:(step + 1) * cfg.batch]
            imgs, params, lm68 = (data[k][idx] for k in ("images", "params", "landmarks_68"))
            if cfg.augment and cfg.crop_jitter > 0:
                imgs, maps = jitter_crops(imgs, rng, cfg.crop_jitter)
                params, lm68 = map_params(params, maps), map_points(lm68, maps)
            if cfg.augment:
                imgs = np.stack([photometric_augment(im, rng) for im in imgs])
            out_p = net(to_tensor(imgs).to(dev))
            parts = losses(out_p, torch.from_numpy(params).to(dev),
                           torch.from_numpy(lm68).to(dev))
            if aflw_data is not None and step % cfg.aflw_every == 0:
                ai = rng.choice(len(aflw_data[0]), cfg.batch // 2, replace=False)
                aimg, apts = _aflw_batch(aflw_data[0], aflw_data[1], ai)
                if cfg.augment and cfg.crop_jitter > 0:
                    aimg, maps = jitter_crops(aimg, rng, cfg.crop_jitter)
                    apts = map_points(apts, maps)
                if cfg.augment:
                    aimg = np.stack([photometric_augment(im, rng) for im in aimg])
                pred68 = losses.lm(norm.denormalise(net(to_tensor(aimg).to(dev))))
                parts["aflw21"] = cfg.aflw_weight * masked_landmark_loss(
                    pred68, torch.from_numpy(apts).to(dev), cfg.size)
            loss = sum(parts.values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            for key, v in parts.items():
                sums[key] = sums.get(key, 0.0) + float(v.detach())
        rec: dict = {"epoch": epoch + 1, "seconds": time.time() - t0,
                     "train": {k: v / steps_per_epoch for k, v in sums.items()}}
        if val is not None:
            rec["val"] = validate(net, losses.lm, norm, val)
        history.append(rec)
        log(json.dumps(rec))
        state = {"net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                 "norm_mean": torch.from_numpy(norm.mean), "norm_std": torch.from_numpy(norm.std),
                 "history": json.dumps(history), "epoch": epoch + 1,
                 "total_epochs": cfg.epochs}
        if "val" in rec and rec["val"]["balanced_2d"] < best:
            best = rec["val"]["balanced_2d"]
            _save(out / "best.pt", {k: state[k] for k in ("net", "norm_mean", "norm_std")})
        _save(out / "last.pt", state)
        with atomic_path(out / "history.json") as tmp:
            tmp.write_text(json.dumps(history, indent=1))
        plot_history(history, out / "losses.png")
    return history


def main(argv: list[str] | None = None) -> int:
    """``python -m facefit.regress.train``: train (or resume) into ``--out``. Exit 2 on bad
    input (a missing or unreadable data folder or checkpoint)."""
    import argparse
    import sys

    from facefit.model.bfm_3ddfa import load_default_model

    ap = argparse.ArgumentParser(description="Train facefit's 3DMM regression network.")
    ap.add_argument("--profiled", default="out/profiled", help="shards of make_profiled_set.py")
    ap.add_argument("--aflw", default="../shared/data/train-aflw21", help="'' to leave out")
    ap.add_argument("--val", default="../shared/data/aflw2000-3d-dev", help="'' to leave out")
    ap.add_argument("--out", default="out/regress")
    for f in ("epochs", "batch", "seed", "threads", "aflw_every"):
        ap.add_argument(f"--{f.replace('_', '-')}", type=int, default=getattr(TrainConfig, f))
    for f in ("lr", "aflw_weight", "width", "crop_jitter"):
        ap.add_argument(f"--{f.replace('_', '-')}", type=float, default=getattr(TrainConfig, f))
    ap.add_argument("--no-augment", action="store_true")
    ap.add_argument("--stop-after", type=int, default=None, help="epochs to run in this call")
    a = ap.parse_args(argv)
    cfg = TrainConfig(epochs=a.epochs, batch=a.batch, lr=a.lr, aflw_weight=a.aflw_weight,
                      aflw_every=a.aflw_every, width=a.width, seed=a.seed,
                      augment=not a.no_augment, crop_jitter=a.crop_jitter,
                      threads=a.threads)
    try:
        run(load_default_model(), a.profiled, a.out, aflw=a.aflw or None, val_root=a.val or None,
            config=cfg, log=lambda s: print(s, flush=True), stop_after=a.stop_after)
    except (ValueError, FileNotFoundError) as e:
        print(str(e), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
