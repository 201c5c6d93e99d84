import torch

from focus.layers.gates import PooledGate


def test_pooled_gate_hand_computed():
    """Weights set by hand: fc1 sums the 2C channels into each of C, fc2 sums C; avg and max paths add."""
    gate = PooledGate(2)
    with torch.no_grad():
        gate.fc1.weight.fill_(1.0)
        gate.fc2.weight.fill_(0.5)
    z = torch.zeros(1, 4, 2, 2)
    z[0, :, 0, 0] = torch.tensor([4.0, 0.0, -8.0, 8.0])  # channel means 1, 0, -2, 2; maxes 4, 0, 0, 8
    # avg: relu(1+0-2+2)=1 per hidden channel -> 0.5*2 = 1; max: relu(4+0+0+8)=12 -> 12
    expected = torch.sigmoid(torch.tensor(1.0 + 12.0))
    assert torch.allclose(gate(z).flatten(), expected.reshape(1), atol=1e-6)
    assert [k for k in gate.state_dict()] == ["fc1.weight", "fc2.weight"]
