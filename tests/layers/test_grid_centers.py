"""`grid_centers`: the reference points shared by the adapter and the pixel decoder."""
import torch

from focus.layers import grid_centers


def test_grid_centers_hand_computed():
    ref = grid_centers([(2, 4), (1, 1)])
    xs = torch.tensor([0.125, 0.375, 0.625, 0.875])
    expected = torch.cat([
        torch.stack([xs.repeat(2), torch.tensor([0.25] * 4 + [0.75] * 4)], -1),
        torch.tensor([[0.5, 0.5]]),
    ])
    assert ref.shape == (9, 2) and ref.dtype == torch.float32
    torch.testing.assert_close(ref, expected, rtol=0, atol=1e-7)


def test_grid_centers_accept_tensor_shapes():
    shapes = torch.tensor([[3, 5], [2, 2]])
    torch.testing.assert_close(grid_centers(shapes), grid_centers([(3, 5), (2, 2)]))
