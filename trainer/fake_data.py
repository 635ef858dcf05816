"""A small learnable stand-in for CIFAR-10: `python -m trainer.fake_data OUT_DIR --train N --test M`.

Each class has its own hue and its own stripe orientation, blurred by per-image jitter and noise, so a
small network learns it in a few epochs on a CPU while random crops and flips keep the class visible.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from trainer.data import CLASSES, ImageSet, write_batches

NUM_CLASSES = len(CLASSES)


def generate(n_train: int, n_test: int, *, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """Seeded (train, test) ImageSets with balanced, learnable classes."""
    rng = np.random.default_rng(seed)
    return _images(n_train, rng), _images(n_test, rng)


def _images(n: int, rng: np.random.Generator) -> ImageSet:
    labels = np.arange(n, dtype=np.int64) % NUM_CLASSES
    rng.shuffle(labels)
    hues = labels / NUM_CLASSES + rng.normal(0, 0.03, n)  # class colour, jittered per image
    angles = labels * np.pi / NUM_CLASSES + rng.normal(0, 0.1, n)  # class stripe orientation
    ys, xs = np.mgrid[0:32, 0:32].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, n)
    along = np.cos(angles)[:, None, None] * xs + np.sin(angles)[:, None, None] * ys
    stripes = 0.5 + 0.5 * np.sin(along * (2 * np.pi / 6) + phase[:, None, None])  # period 6 pixels
    base = _hue_to_rgb(hues)  # (n, 3) in [0, 1]
    brightness = rng.uniform(0.6, 1.0, n)[:, None, None, None]
    images = brightness * (0.55 * base[:, None, None, :] + 0.45 * stripes[..., None])
    images += rng.normal(0, 0.08, images.shape)
    return ImageSet((np.clip(images, 0, 1) * 255).astype(np.uint8), labels)


def _hue_to_rgb(hue: np.ndarray) -> np.ndarray:
    """Fully saturated colours on the hue circle, hue in turns."""
    h = (hue % 1.0)[:, None] * 6.0
    offsets = np.array([5.0, 3.0, 1.0])  # standard HSV -> RGB with s = v = 1
    k = (offsets + h) % 6.0
    return 1.0 - np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.fake_data", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="directory that receives cifar-10-batches-py/")
    parser.add_argument("--train", type=int, default=1000, help="training images (default 1000)")
    parser.add_argument("--test", type=int, default=200, help="test images (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="the generator's seed (default 0)")
    parser.add_argument("--force", action="store_true", help="replace a cifar-10-batches-py already there")
    args = parser.parse_args(argv)
    if (args.out_dir / "cifar-10-batches-py").is_dir() and not args.force:
        print(
            f"error: {args.out_dir}/cifar-10-batches-py exists (real CIFAR-10?); pick another folder "
            "or pass --force to replace it",
            file=sys.stderr,
        )
        return 2
    if args.train < 5 or args.test < 1:
        print("error: --train must be at least 5 (one per batch file) and --test at least 1", file=sys.stderr)
        return 2
    train, test = generate(args.train, args.test, seed=args.seed)
    batches_dir = write_batches(args.out_dir, train, test)
    print(f"wrote {args.train} training and {args.test} test images to {batches_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
