import numpy as np
import torch

from odssam.models.loss import DiceBCELoss, masks_to_targets, soft_dice_loss


def test_dice_loss_is_zero_for_confident_correct_logits_and_one_for_disjoint():
    target = torch.zeros(1, 1, 8, 8)
    target[..., 2:6, 2:6] = 1
    perfect = (target * 2 - 1) * 50
    assert soft_dice_loss(perfect, target).item() < 1e-3
    assert soft_dice_loss(-perfect, target).item() > 0.95


def test_dice_bce_weights_combine_the_two_terms():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 1, 8, 8), (torch.rand(2, 1, 8, 8) > 0.5).float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    dice = soft_dice_loss(logits, target)
    torch.testing.assert_close(DiceBCELoss(0.5, 0.5)(logits, target), 0.5 * dice + 0.5 * bce)
    torch.testing.assert_close(DiceBCELoss(0.0, 1.0)(logits, target), bce)


def test_targets_follow_the_image_resize_and_padding():
    # A 100x200 image becomes 128x256 inside the 256 square; at logit size 64: 32x64 then padding.
    mask = np.ones((100, 200), bool)
    targets = masks_to_targets([mask], [(128, 256)], image_size=256, logit_size=64)
    assert targets.shape == (1, 1, 64, 64)
    assert targets[0, 0, :32].all() and not targets[0, 0, 32:].any()
    half = np.zeros((100, 200), bool)
    half[:, :100] = True
    t = masks_to_targets([half], [(128, 256)], image_size=256, logit_size=64)[0, 0]
    assert t[:32, :32].all() and not t[:32, 32:].any()
