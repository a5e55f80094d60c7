"""Fine-tune EfficientNet-Lite0 + a 128-d head with a CosFace loss on the Fashion-MNIST TRAIN split.

Each sample is rendered the way the embedder will see it at serving time, through the same
transforms (embedder.transforms): a catalog image, a shopper's photo cropped by foreground_box
(crop, pad to square, resize), or a whole shopper's photo, with JPEG artefacts and flips.
The learning rate follows a cosine over max(step progress, wall-clock progress) so a run stopped
by --budget-min still ends annealed. A checkpoint is written every epoch and every 10 minutes.

    python models/fmnist-lite0/train.py --out /tmp/fmnist-lite0 --epochs 5 --budget-min 42
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

from history import stages  # noqa: E402
from net import IMAGE_SIZE, CosFace, EmbedNet  # noqa: E402

from embedder.transforms import foreground_box, prepare  # noqa: E402
from imgcore.fmnist import load_fmnist, render_catalog, render_shop_photo  # noqa: E402

CROP_MARGIN = 0.05  # must match embedder.model.CROP_MARGIN / the card


def jpeg(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(35, 95))])
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]) if ok else img


def catalog_sample(img28: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """A catalog image with a small zoom/shift, so near-duplicates are not memorised by position."""
    cat = render_catalog(img28, size)
    scale = rng.uniform(0.88, 1.04)
    tx, ty = rng.uniform(-0.04, 0.04, size=2) * size
    m = cv2.getRotationMatrix2D((size / 2, size / 2), float(rng.uniform(-4, 4)), scale)
    m[:, 2] += (tx, ty)
    out = cv2.warpAffine(cat, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=(255, 255, 255))
    return np.asarray(out, dtype=np.uint8)


def shop_sample(img28: np.ndarray, rng: np.random.Generator, size: int, crop: bool) -> np.ndarray:
    if not crop:
        photo = render_shop_photo(img28, rng, size)
        return jpeg(photo, rng) if rng.random() < 0.6 else photo
    photo = render_shop_photo(img28, rng, int(rng.integers(size, 2 * size)))
    if rng.random() < 0.6:
        photo = jpeg(photo, rng)
    box = foreground_box(photo)
    return prepare(photo, box, size, CROP_MARGIN).transpose(1, 2, 0).astype(np.uint8)


class RenderedFMNIST(Dataset[tuple[torch.Tensor, int]]):
    def __init__(self, images: np.ndarray, labels: np.ndarray, size: int, p_catalog: float, p_crop: float):
        self.images, self.labels, self.size = images, labels, size
        self.p_catalog, self.p_crop = p_catalog, p_crop
        self.rng = np.random.default_rng()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        rng, img28 = self.rng, self.images[i]
        u = rng.random()
        if u < self.p_catalog:
            img = catalog_sample(img28, rng, self.size)
        else:
            img = shop_sample(img28, rng, self.size, crop=u < self.p_catalog + self.p_crop)
        if rng.random() < 0.5:
            img = img[:, ::-1]
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))), int(self.labels[i])


def worker_init(worker_id: int) -> None:
    info = torch.utils.data.get_worker_info()
    assert info is not None
    info.dataset.rng = np.random.default_rng(info.seed % 2**32)  # type: ignore[attr-defined]
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("/tmp/fmnist-lite0"))
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--budget-min", type=float, default=42.0, help="wall-clock budget; LR anneals within it")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr-backbone", type=float, default=3e-4)
    ap.add_argument("--lr-head", type=float, default=3e-3)
    ap.add_argument("--freeze-blocks", type=int, default=5, help="stem + this many first blocks stay frozen")
    ap.add_argument("--p-catalog", type=float, default=0.5)
    ap.add_argument("--p-crop", type=float, default=0.35)
    # One thread: on a shared 2-core machine, 2 OpenMP threads stall at every barrier when the
    # other core is busy (measured 4-7x slower under load); one thread degrades gracefully.
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=0, help="train on the first N images only (smoke test)")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--init", type=Path, default=None, help="start from this run's weights, fresh schedule")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    images, labels = load_fmnist("train")
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]

    model = EmbedNet(IMAGE_SIZE).to(memory_format=torch.channels_last)
    loss_fn = CosFace(model.head.out_features, 10)
    bb = model.backbone
    # Early high-resolution layers learn generic edges; freezing them cuts backward cost a lot.
    frozen = [bb._conv_stem, bb._bn0, *bb._blocks[: args.freeze_blocks]]
    for mod in frozen:
        for p in mod.parameters():
            p.requires_grad_(False)
    backbone_params = [p for p in bb.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        [
            {"params": backbone_params, "lr": args.lr_backbone, "base": args.lr_backbone},
            {"params": [*model.head.parameters(), *loss_fn.parameters()], "lr": args.lr_head, "base": args.lr_head},
        ],
        weight_decay=1e-4,
    )

    ds = RenderedFMNIST(images, labels, IMAGE_SIZE, args.p_catalog, args.p_crop)
    gen = torch.Generator().manual_seed(args.seed)
    loader = DataLoader(
        ds,
        batch_size=args.batch,
        shuffle=True,
        drop_last=True,
        num_workers=1,
        worker_init_fn=worker_init,
        persistent_workers=True,
        prefetch_factor=4,
        generator=gen,
    )
    steps_per_epoch = len(loader)
    total_steps = steps_per_epoch * args.epochs
    warmup = min(150, total_steps // 10)
    step, epoch0, spent = 0, 0, 0.0
    ckpt_path = args.out / "last.pt"
    prior: dict[str, Any] = {"images": 0, "seconds": 0.0, "stages": []}
    if args.resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(ck["model"])
        loss_fn.load_state_dict(ck["loss"])
        opt.load_state_dict(ck["opt"])
        step, epoch0, spent = ck["step"], ck["epoch"], ck["seconds"]
        prior = ck.get("prior", prior)
        print(f"resumed at epoch {epoch0} step {step}", flush=True)
    # A further stage (--init) starts a new LR schedule but keeps the running totals and history for the card.
    if args.init is not None:
        ck = torch.load(args.init, weights_only=False)
        model.load_state_dict(ck["model"])
        loss_fn.load_state_dict(ck["loss"])
        before = ck.get("prior", {"images": 0, "seconds": 0.0})
        prior = {
            "images": before["images"] + ck["step"] * ck["args"]["batch"],
            "seconds": before["seconds"] + ck["seconds"],
            "stages": stages(ck),
        }
        print(f"initialised from {args.init}: {prior}", flush=True)

    def save(epoch: int, seconds: float, name: str = "last.pt") -> None:
        torch.save(
            {
                "model": model.state_dict(),
                "loss": loss_fn.state_dict(),
                "opt": opt.state_dict(),
                "step": step,
                "epoch": epoch,
                "seconds": seconds,
                "prior": prior,
                "args": vars(args) | {"out": str(args.out)},
            },
            args.out / (name + ".tmp"),
        )
        (args.out / (name + ".tmp")).replace(args.out / name)

    start = time.time() - spent
    budget = args.budget_min * 60.0
    last_save = time.time()
    done = False
    for epoch in range(epoch0, args.epochs):
        model.train()
        for mod in frozen:
            mod.eval()  # frozen BN keeps its ImageNet statistics
        t0, seen, run_loss, run_acc = time.time(), 0, 0.0, 0.0
        for x, y in loader:
            progress = max(step / total_steps, (time.time() - start) / budget)
            if progress >= 1.0:
                done = True
                break
            warm = min(1.0, (step + 1) / max(1, warmup))
            for g in opt.param_groups:
                g["lr"] = g["base"] * warm * 0.5 * (1.0 + math.cos(math.pi * progress))
            x = x.float().contiguous(memory_format=torch.channels_last)
            emb = model(x)
            loss = loss_fn(emb, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            seen += len(y)
            run_loss += loss.item() * len(y)
            run_acc += float((loss_fn.logits(emb.detach()).argmax(1) == y).float().sum())
            if step % 50 == 0:
                print(
                    json.dumps(
                        {
                            "epoch": epoch,
                            "step": step,
                            "loss": round(run_loss / seen, 4),
                            "acc": round(run_acc / seen, 4),
                            "img_s": round(seen / (time.time() - t0), 1),
                            "progress": round(progress, 3),
                            "lr_bb": opt.param_groups[0]["lr"],
                            "elapsed_min": round((time.time() - start) / 60, 1),
                        }
                    ),
                    flush=True,
                )
            if time.time() - last_save > 600:
                save(epoch, time.time() - start)
                last_save = time.time()
        save(epoch + 1, time.time() - start)
        print(f"epoch {epoch} done, {seen} images, {time.time() - t0:.0f}s", flush=True)
        if done:
            break
    seconds = time.time() - start
    save(args.epochs, seconds, "final.pt")
    print(json.dumps({"finished": True, "steps": step, "seconds": round(seconds, 1)}), flush=True)


if __name__ == "__main__":
    main()
