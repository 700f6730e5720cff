"""SAM preprocessing (resize, normalise, pad) and postprocessing of mask logits."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import random_rgb

from odssam.errors import OdsSamError
from odssam.models.sam import build_sam
from odssam.models.transforms import (
    PIXEL_MEAN,
    PIXEL_STD,
    longest_side_size,
    postprocess_logits,
    resize_longest_side,
    sam_preprocess,
)

MEAN = torch.tensor(PIXEL_MEAN).view(3, 1, 1)
STD = torch.tensor(PIXEL_STD).view(3, 1, 1)


def test_longest_side_size_keeps_the_aspect():
    assert longest_side_size(480, 640, 1024) == (768, 1024)
    assert longest_side_size(640, 480, 1024) == (1024, 768)
    assert longest_side_size(1000, 1000, 256) == (256, 256)
    assert longest_side_size(300, 7, 64) == (64, 1)  # 1.49 rounds down, as in SAM


def test_resize_longest_side_on_a_batch():
    images = torch.rand(2, 3, 30, 60) * 255
    resized = resize_longest_side(images, 128)
    assert resized.shape == (2, 3, 64, 128) and resized.dtype == torch.float32
    assert torch.equal(resize_longest_side(images, 60), images)


def test_images_of_different_sizes_are_resized_normalised_and_zero_padded(rng):
    colours = [(10, 200, 30), (255, 0, 128)]
    images = [np.full((50, 100, 3), colours[0], np.uint8), np.full((120, 40, 3), colours[1], np.uint8)]
    x, input_sizes, original_sizes = sam_preprocess(images, image_size=64)

    assert x.shape == (2, 3, 64, 64) and x.dtype == torch.float32
    assert input_sizes == [(32, 64), (64, 21)]
    assert original_sizes == [(50, 100), (120, 40)]
    for index, ((height, width), colour) in enumerate(zip(input_sizes, colours)):
        expected = (torch.tensor(colour, dtype=torch.float32).view(3, 1, 1) - MEAN) / STD
        content = x[index, :, :height, :width]
        torch.testing.assert_close(content, expected.expand_as(content), rtol=0, atol=1e-4)
        assert torch.count_nonzero(x[index, :, height:, :]) == 0
        assert torch.count_nonzero(x[index, :, :, width:]) == 0


def test_array_list_and_tensor_inputs_agree(rng):
    arrays = [random_rgb(rng, 40, 70) for _ in range(2)]
    from_arrays, sizes, originals = sam_preprocess(arrays, image_size=128)
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    from_uint8, tensor_sizes, tensor_originals = sam_preprocess(batch, image_size=128)
    from_float, _, _ = sam_preprocess(batch.float(), image_size=128)
    single, _, _ = sam_preprocess(arrays[0], image_size=128)
    from_tensor_list, list_sizes, list_originals = sam_preprocess(
        [torch.from_numpy(a) for a in arrays], image_size=128
    )

    assert list_sizes == sizes and list_originals == originals
    torch.testing.assert_close(from_tensor_list, from_arrays)
    assert sizes == tensor_sizes == [(73, 128)] * 2 and originals == tensor_originals == [(40, 70)] * 2
    torch.testing.assert_close(from_arrays, from_uint8)
    torch.testing.assert_close(from_uint8, from_float)
    torch.testing.assert_close(single, from_arrays[:1])


def test_square_input_equals_segment_anything_preprocess(rng):
    sam = build_sam("vit_micro", image_size=64)
    image = random_rgb(rng, 64, 64)
    x, _, _ = sam_preprocess([image], image_size=64)
    expected = sam.preprocess(torch.from_numpy(image).permute(2, 0, 1).float())
    torch.testing.assert_close(x[0], expected)


def test_padding_after_normalisation_equals_segment_anything(rng):
    sam = build_sam("vit_micro", image_size=64)
    image = torch.from_numpy(rng.integers(0, 256, (1, 3, 24, 48), dtype=np.uint8))
    x, (size,), _ = sam_preprocess(image, image_size=64)
    expected = sam.preprocess(resize_longest_side(image, 64)[0])
    assert size == (32, 64)
    torch.testing.assert_close(x[0], expected)


def test_mask_round_trip_through_pre_and_postprocessing():
    image_size = 256
    mask = torch.zeros(90, 150)
    mask[20:70, 30:110] = 1.0
    resized = resize_longest_side(mask[None, None], image_size)
    height, width = resized.shape[-2:]
    padded = F.pad(resized, (0, image_size - width, 0, image_size - height))
    low_res = F.interpolate(padded, size=(image_size // 4, image_size // 4), mode="bilinear", antialias=True)

    (restored,) = postprocess_logits(low_res, [(height, width)], [(90, 150)], image_size)
    assert restored.shape == (1, 90, 150)
    disagreement = (restored[0] > 0.5) != (mask > 0.5)
    edge = F.max_pool2d(mask[None, None], 5, stride=1, padding=2)[0, 0] != -F.max_pool2d(
        -mask[None, None], 5, stride=1, padding=2
    )[0, 0]
    assert disagreement.sum() <= 0.01 * mask.numel()
    assert not (disagreement & ~edge).any()  # errors only within two pixels of the boundary


def test_postprocess_returns_one_map_per_image_at_its_original_size():
    logits = torch.randn(2, 3, 16, 16)
    outputs = postprocess_logits(logits, [(64, 32), (40, 64)], [(200, 100), (40, 64)], image_size=64)
    assert [tuple(o.shape) for o in outputs] == [(3, 200, 100), (3, 40, 64)]
    upsampled = F.interpolate(logits[1:], size=(64, 64), mode="bilinear", align_corners=False)
    torch.testing.assert_close(outputs[1], upsampled[0, :, :40, :64])


@pytest.mark.parametrize(
    "bad",
    [
        [np.zeros((10, 10), np.uint8)],
        [np.zeros((10, 10, 4), np.uint8)],
        [np.zeros((10, 10, 3), np.float32)],
        [np.zeros((0, 10, 3), np.uint8)],
        [],
        torch.zeros(3, 10, 10),
        torch.zeros(1, 1, 10, 10),
        [torch.zeros(10, 10, 3)],
        [torch.zeros(10, 10, 4, dtype=torch.uint8)],
    ],
)
def test_bad_images_are_rejected(bad):
    with pytest.raises(OdsSamError):
        sam_preprocess(bad, image_size=64)


def test_postprocess_rejects_mismatched_sizes():
    with pytest.raises(OdsSamError, match="2 logit maps"):
        postprocess_logits(torch.zeros(2, 1, 16, 16), [(64, 64)], [(64, 64)], image_size=64)
