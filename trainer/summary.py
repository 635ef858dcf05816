"""A torchsummary-style layer table of the model: `python -m trainer --print-model --depth 164`."""

from __future__ import annotations

import torch
from torch import nn

from trainer.model import PreActResNet, count_parameters


def model_summary(depth: int) -> str:
    """One row per leaf layer (name, type, output shape, parameters) on a 1x3x32x32 input, then totals."""
    model = PreActResNet(depth)
    rows: list[tuple[str, str, str, int]] = []
    hooks = []
    for name, module in model.named_modules():
        if not list(module.children()):
            hooks.append(module.register_forward_hook(_recorder(rows, name)))
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, 32, 32))
    for hook in hooks:
        hook.remove()
    widths = (max(len(row[0]) for row in rows), 12, 18)
    lines = [f"{'Layer':<{widths[0]}}  {'Type':<{widths[1]}}  {'Output shape':<{widths[2]}}  {'Params':>9}"]
    lines.append("-" * len(lines[0]))
    lines += [f"{n:<{widths[0]}}  {t:<{widths[1]}}  {s:<{widths[2]}}  {p:>9,}" for n, t, s, p in rows]
    lines.append("-" * len(lines[0]))
    blocks = sum(1 for m in model.modules() if m.__class__.__name__.startswith("PreAct") and m is not model)
    lines.append(f"PreAct ResNet-{depth}: {blocks} residual blocks")
    lines.append(f"Total parameters: {count_parameters(model):,}")
    return "\n".join(lines)


def _recorder(rows: list[tuple[str, str, str, int]], name: str):  # noqa: ANN202 - a forward hook
    def hook(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        params = sum(p.numel() for p in module.parameters(recurse=False))
        rows.append((name, type(module).__name__, str(list(output.shape)), params))

    return hook
