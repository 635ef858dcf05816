"""A plain PyTorch training script that sweep can run as a study, knowing sweep only by its contract.

It reads its hyperparameters from the command line, keeps its checkpoint in $SWEEP_RUN_DIR (the same
folder on every restart of a trial), resumes from it, and appends one JSON line per epoch to
$SWEEP_RUN_DIR/metrics.jsonl. Run by hand it uses ./run instead:

    python train.py --lr 0.1 --hidden 32 --epochs 5
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from torch import nn


def data(seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Two interleaved spirals, 2,000 points: small enough for a CPU, hard enough to separate the runs."""
    generator = torch.Generator().manual_seed(seed)
    n = 1000
    angle = torch.rand(n, generator=generator) * 3 * torch.pi
    noise = lambda: torch.randn(n, generator=generator) * 0.3  # noqa: E731
    one = torch.stack([angle.cos() * angle + noise(), angle.sin() * angle + noise()], dim=1)
    two = -one + torch.randn(n, 2, generator=generator) * 0.3
    x = torch.cat([one, two]) / 10
    y = torch.cat([torch.zeros(n), torch.ones(n)]).long()
    order = torch.randperm(2 * n, generator=generator)
    x, y = x[order], y[order]
    return x[:1600], y[:1600], x[1600:], y[1600:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    run_dir = Path(os.environ.get("SWEEP_RUN_DIR", "run"))
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(1)

    x_train, y_train, x_val, y_val = data()
    model = nn.Sequential(nn.Linear(2, args.hidden), nn.ReLU(), nn.Linear(args.hidden, args.hidden),
                          nn.ReLU(), nn.Linear(args.hidden, 2))  # fmt: skip
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    checkpoint = run_dir / "checkpoint.pt"
    start = 0
    if checkpoint.exists():  # a requeued or resumed trial: carry on where the last epoch ended
        state = torch.load(checkpoint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["epoch"]

    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(start + 1, args.epochs + 1):
        began = time.perf_counter()
        model.train()
        for batch in torch.randperm(len(x_train)).split(64):
            optimizer.zero_grad()
            loss = loss_fn(model(x_train[batch]), y_train[batch])
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            train_out, val_out = model(x_train), model(x_val)
        line = {
            "epoch": epoch,
            "train_loss": loss_fn(train_out, y_train).item(),
            "train_acc": (train_out.argmax(1) == y_train).float().mean().item(),
            "val_loss": loss_fn(val_out, y_val).item(),
            "val_acc": (val_out.argmax(1) == y_val).float().mean().item(),
            "epoch_seconds": time.perf_counter() - began,
        }
        tmp = checkpoint.with_suffix(".tmp")  # write, then rename: a kill never leaves half a checkpoint
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch}, tmp)
        os.replace(tmp, checkpoint)
        with open(run_dir / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(line) + "\n")
        print(f"epoch {epoch}: val_acc {line['val_acc']:.3f}", flush=True)


if __name__ == "__main__":
    main()
