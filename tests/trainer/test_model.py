from __future__ import annotations

import pytest
import torch

from trainer.errors import UserError
from trainer.model import PreActBasicBlock, PreActBottleneck, PreActResNet, count_parameters
from trainer.summary import model_summary

SEED_PARAMETERS_164 = 1_711_322  # the original project's torchsummary figure for PreAct ResNet-164


def test_depth_164_parameter_count_within_one_percent_of_the_seed_figure() -> None:
    model = PreActResNet(164)
    count = count_parameters(model)
    assert abs(count - SEED_PARAMETERS_164) / SEED_PARAMETERS_164 < 0.01, count
    # 164 = 9 * 18 + 2: eighteen bottleneck blocks in each of three stages
    blocks = [m for m in model.modules() if isinstance(m, PreActBottleneck)]
    assert len(blocks) == 54
    assert model.fc.in_features == 256


@pytest.mark.parametrize(
    ("depth", "block", "blocks", "parameters"),
    [
        (20, PreActBasicBlock, 9, 272_282),  # the paper's ResNet-20 size, 0.27M
        (56, PreActBasicBlock, 27, 855_578),
        (11, PreActBottleneck, 3, 126_746),
    ],
)
def test_small_depths_build_the_right_blocks_and_run(
    depth: int, block: type, blocks: int, parameters: int
) -> None:
    model = PreActResNet(depth)
    assert sum(isinstance(m, block) for m in model.modules()) == blocks
    assert count_parameters(model) == parameters
    logits = model(torch.randn(4, 3, 32, 32))
    assert logits.shape == (4, 10)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("depth", [0, 7, 15, 21, 165])
def test_depths_that_fit_no_block_rule_are_refused(depth: int) -> None:
    with pytest.raises(UserError, match=f"depth {depth}"):
        PreActResNet(depth)


def test_summary_lists_layers_and_the_total() -> None:
    text = model_summary(20)
    assert "Total parameters: 272,282" in text
    assert "stage3.2.conv2" in text and "[1, 64, 8, 8]" in text  # last stage at 8x8 after two stride-2 stages
    assert "fc" in text and "[1, 10]" in text
