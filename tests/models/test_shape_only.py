import torch

from odssam.models.od_ssm import scan_orders
from odssam.models.shape_only import holds_no_data, shape_only


class AutocastOff(torch.nn.Module):
    """Runs part of its forward outside autocast, as timm's EfficientViT attention does."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(8, 4)

    def forward(self, x):
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.linear(x.float())


def test_modules_that_disable_autocast_run_without_data():
    with shape_only():
        module = AutocastOff()
        out = module(torch.empty(1000, 8))
        assert holds_no_data(out) and holds_no_data(module.linear.weight)
    assert out.shape == (1000, 4)


def test_cached_scan_orders_stay_real_across_shape_only_runs():
    with shape_only():
        order, _ = scan_orders(5, 7, 4)
    assert not holds_no_data(order)
    assert torch.equal(order[0], torch.arange(35))
