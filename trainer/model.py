"""Pre-activation ResNet for 32x32 images (He et al. 2016, "Identity Mappings in Deep Residual Networks")."""

from __future__ import annotations

import torch
from torch import nn

from trainer.config import block_kind
from trainer.errors import UserError

STAGE_WIDTHS = (16, 32, 64)  # channels entering each stage's residual branch


class PreActBasicBlock(nn.Module):
    """BN-ReLU-conv3x3 twice; used for depths 6n+2 (20, 56, 110)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut = _projection(in_planes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(x))
        # The projection shortcut sees the pre-activated input, as in the paper's reference code.
        identity = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + identity


class PreActBottleneck(nn.Module):
    """BN-ReLU-conv1x1, BN-ReLU-conv3x3, BN-ReLU-conv1x1 (x4 width); used for depths 9n+2 (164, 1001)."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.shortcut = _projection(in_planes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(x))
        identity = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        out = self.conv3(torch.relu(self.bn3(out)))
        return out + identity


def _projection(in_planes: int, out_planes: int, stride: int) -> nn.Conv2d | None:
    if stride == 1 and in_planes == out_planes:
        return None
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class PreActResNet(nn.Module):
    """conv3x3(16) -> three stages of n blocks (stride 1, 2, 2) -> BN-ReLU -> global avg pool -> linear."""

    def __init__(self, depth: int = 164, num_classes: int = 10) -> None:
        super().__init__()
        kind = block_kind(depth)
        if kind is None:
            raise UserError(f"depth {depth} is neither 6n+2 nor 9n+2 (e.g. 20, 56, 164)")
        block: type[PreActBasicBlock] | type[PreActBottleneck]
        if kind == "basic":
            block, blocks_per_stage = PreActBasicBlock, (depth - 2) // 6
        else:
            block, blocks_per_stage = PreActBottleneck, (depth - 2) // 9
        self.depth = depth
        self.conv1 = nn.Conv2d(3, STAGE_WIDTHS[0], 3, padding=1, bias=False)
        stages = []
        in_planes = STAGE_WIDTHS[0]
        for index, planes in enumerate(STAGE_WIDTHS):
            layers = []
            for position in range(blocks_per_stage):
                stride = 2 if index > 0 and position == 0 else 1
                layers.append(block(in_planes, planes, stride))
                in_planes = planes * block.expansion
            stages.append(nn.Sequential(*layers))
        self.stage1, self.stage2, self.stage3 = stages
        self.bn = nn.BatchNorm2d(in_planes)
        self.fc = nn.Linear(in_planes, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.stage3(self.stage2(self.stage1(out)))
        out = torch.relu(self.bn(out))
        out = torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1)
        return self.fc(out)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
