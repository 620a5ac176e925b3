import pytest
import torch

from tcm.layers import MTDM, TAM, TCM, TemporalAttention, temporal_shift
from tcm.layers.tam import attention_kernel_size


@pytest.mark.parametrize("channels, size", [(3, 5), (40, 7), (256, 4)])
def test_tcm_any_channel_count_and_size(channels, size):
    layer = TCM(channels, num_segments=4, patch_size=5)
    x = torch.randn(8, channels, size, size + 1)
    out = layer(x)
    assert out.shape == x.shape
    out.sum().backward()
    assert all(p.grad is not None for p in layer.parameters())


def test_mtdm_and_tam_alone():
    fields = MTDM(32, num_segments=3, patch_size=3)(torch.randn(6, 32, 6, 6))
    assert fields.shape == (6, 6, 6, 6)
    u, v = fields[:, [0, 1, 3, 4]].amin(), fields[:, [0, 1, 3, 4]].amax()
    assert u >= -1 and v <= 1
    assert TAM(48, num_segments=3)(fields).shape == (6, 48, 6, 6)


def test_mtdm_fields_follow_a_translation():
    # Frame t is frame 0 shifted right by t pixels: fast u = +1 px, slow u = t px.
    torch.manual_seed(0)
    base = torch.randn(1, 8, 20, 40)
    frames = torch.cat([torch.roll(base, shifts=t, dims=3) for t in range(4)])
    mtdm = MTDM(8, num_segments=4, patch_size=9).eval()
    with torch.no_grad():
        # Channels relu(x) and relu(-x): every pixel keeps a non-zero descriptor.
        signed = torch.cat([torch.eye(8), -torch.eye(8), torch.zeros(48, 8)])
        mtdm.chnl_reduction[0].weight.copy_(signed[:, :, None, None] * 3)
        fields = mtdm(frames)[:, :, 5:-5, 12:-12]  # away from borders
    radius = 4
    fast_u = fields[:, 0] * radius
    slow_u = fields[:, 3] * radius
    torch.testing.assert_close(fast_u, torch.ones_like(fast_u), atol=0.05, rtol=0)
    for t in range(3):
        expected = torch.full_like(slow_u[t], float(t + 1))
        torch.testing.assert_close(slow_u[t], expected, atol=0.05, rtol=0)
    torch.testing.assert_close(fields[:, 1], torch.zeros_like(fields[:, 1]), atol=0.02, rtol=0)


def test_temporal_shift_moves_the_specified_channels():
    x = torch.arange(2 * 3 * 16, dtype=torch.float32).view(6, 16, 1, 1)  # N=2, T=3, C=16
    out = temporal_shift(x, num_segments=3).view(2, 3, 16)
    clips = x.view(2, 3, 16)
    torch.testing.assert_close(out[:, :2, :2], clips[:, 1:, :2])
    assert (out[:, 2, :2] == 0).all()
    torch.testing.assert_close(out[:, 1:, 2:4], clips[:, :2, 2:4])
    assert (out[:, 0, 2:4] == 0).all()
    torch.testing.assert_close(out[:, :, 4:], clips[:, :, 4:])


@pytest.mark.parametrize("frames, size", [(2, 1), (4, 3), (8, 3), (16, 5), (32, 5)])
def test_attention_kernel_size(frames, size):
    assert attention_kernel_size(frames) == size
    assert TemporalAttention(frames).conv.kernel_size == (size,)


def test_tcm_rejects_wrong_input():
    layer = TCM(16, num_segments=4)
    with pytest.raises(ValueError, match="multiple of num_segments=4"):
        layer(torch.randn(6, 16, 5, 5))
    with pytest.raises(ValueError, match=r"\(N\*T, 16, H, W\)"):
        layer(torch.randn(8, 15, 5, 5))
    with pytest.raises(ValueError, match="at least 2 frames"):
        MTDM(16, num_segments=1)


@pytest.mark.parametrize("tempos", [("fast",), ("slow",), ("slow", "fast")])
def test_mtdm_keeps_the_chosen_tempos(tempos):
    torch.manual_seed(0)
    both = MTDM(32, num_segments=4, reduced_channels=16, patch_size=5).eval()
    some = MTDM(32, num_segments=4, reduced_channels=16, patch_size=5, tempos=tempos).eval()
    some.load_state_dict(both.state_dict())
    x = torch.randn(8, 32, 6, 6)
    channels = {"fast": [0, 1, 2], "slow": [3, 4, 5]}
    expected = both(x)[:, [c for tempo in tempos for c in channels[tempo]]]
    assert some.out_channels == 3 * len(tempos)
    torch.testing.assert_close(some(x), expected)


def test_tcm_ablation_options():
    x = torch.randn(8, 16, 6, 6)
    fast_only = TCM(16, num_segments=4, patch_size=5, tempos=("fast",))
    assert fast_only(x).shape == x.shape
    assert fast_only.tam.conv1[0].in_channels == 3
    plain = TCM(16, num_segments=4, patch_size=5, temporal_attention=False)
    assert isinstance(plain.tam.ETA, torch.nn.Identity)
    assert plain(x).shape == x.shape
    with pytest.raises(ValueError, match="tempos"):
        MTDM(16, num_segments=4, tempos=("fast", "medium"))


@pytest.mark.parametrize("temporal_attention", [True, False])
def test_tcm_inference_without_autograd_matches_and_leaves_the_input(temporal_attention):
    """Without autograd TCM writes its sum over TAM's features and folds its batch norms;
    the result is the one autograd sees, and the input is untouched."""
    torch.manual_seed(0)
    layer = TCM(in_channels=32, num_segments=4, temporal_attention=temporal_attention)
    for module in layer.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    layer.eval()
    x = torch.randn(8, 32, 12, 12)
    before = x.clone()
    with torch.no_grad():
        fast = layer(x)
    assert torch.equal(x, before)
    tracked = layer(x.clone().requires_grad_())
    torch.testing.assert_close(fast, tracked.detach(), atol=1e-6, rtol=1e-6)
    with torch.no_grad():  # the attention and the sum as separate steps
        expected = x + layer.tam(layer.mtdm(x))
    torch.testing.assert_close(fast, expected, atol=1e-5, rtol=1e-5)


def _tam_step(tam, x, grad):
    """TAM's output, its input's gradient and every parameter's gradient for one backward."""
    x = x.detach().clone().requires_grad_()
    tam.zero_grad(set_to_none=True)
    out = tam(x)
    out.backward(grad)
    return out.detach(), x.grad, [p.grad.clone() for p in tam.parameters()]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels, size", [(32, 8), (48, 11)])
def test_tam_channels_last_narrow_part_matches_the_plain_layout(monkeypatch, channels, size, dtype):
    """On the CPU TAM's narrow convolutions run channels-last, their batch norms and ReLUs
    fused where the kernels load; outputs equal the plain layout's eager modules up to
    rounding, and come back in the plain layout. Gradients are compared in float64: in
    float32 a ReLU input within rounding of zero can land on the other side of it in one
    layout (one of 124k at 48 channels, 11x11, on an AVX2 processor), and its gradient then
    flows or stops there, which changes the input's gradient by up to 0.05."""
    import tcm.layers.tam as tam_module

    torch.manual_seed(0)
    tam = TAM(channels, 8).to(dtype).train()
    x = torch.randn(16, 6, size, size, dtype=dtype)
    grad = torch.randn(16, channels, size, size, dtype=dtype)
    fast = _tam_step(tam, x, grad)
    monkeypatch.setattr(tam_module, "channels_last_helps", lambda _: False)
    plain = _tam_step(tam, x, grad)
    assert fast[0].is_contiguous() and fast[1].is_contiguous()
    if dtype == torch.float32:
        torch.testing.assert_close(fast[0], plain[0], atol=1e-5, rtol=1e-4)
        return
    torch.testing.assert_close(fast[0], plain[0], atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(fast[1], plain[1], atol=1e-10, rtol=1e-10)
    # Parameter gradients sum over the batch's 16 x H x W positions, in another order.
    for got, want in zip(fast[2], plain[2], strict=True):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)


def test_tcm_training_step_is_bit_identical_run_to_run():
    """Same seed, same input: the same output, input gradient and parameter gradients to the
    last bit (the compiled kernels where they build, TAM's channels-last convolutions)."""

    def step():
        torch.manual_seed(0)
        layer = TCM(32, 8).train()
        x = torch.randn(32, 32, 8, 8, requires_grad=True)
        out = layer(x)
        out.backward(torch.randn(out.shape))
        return [out.detach(), x.grad] + [p.grad for p in layer.parameters()]

    for first, second in zip(step(), step(), strict=True):
        assert torch.equal(first, second)


def _pairs_by_slices(clips, tempos):
    """MTDM's frame pairs as slices, an expand and a cat (autograd's own backward)."""
    frames = clips.shape[1]
    shared = 1 if "fast" in tempos else 0
    firsts, seconds = [], []
    if "fast" in tempos:
        firsts.append(clips[:, :-1])
        seconds.append(clips[:, 1:])
    if "slow" in tempos:
        firsts.append(clips[:, :1].expand(-1, frames - 1 - shared, -1, -1, -1))
        seconds.append(clips[:, 1 + shared :])
    return torch.cat(firsts, 1), torch.cat(seconds, 1)


@pytest.mark.parametrize("tempos", [("fast", "slow"), ("slow", "fast"), ("fast",), ("slow",)])
@pytest.mark.parametrize("frames", [2, 3, 8])
def test_frame_pairs_gradient_is_autograds_to_the_bit(monkeypatch, tempos, frames):
    """MTDM gathers its frame pairs with one op whose backward adds the pieces' gradients in
    autograd's order: output and input gradient equal those of slices and a cat bit for bit."""
    import tcm.layers.mtdm as mtdm_module

    x = torch.randn(3 * frames, 16, 6, 6)
    results = []
    for by_slices in (False, True):
        if by_slices:
            monkeypatch.setattr(
                mtdm_module._FramePairs, "apply", lambda clips, *_: _pairs_by_slices(clips, tempos)
            )
        torch.manual_seed(0)
        layer = MTDM(16, frames, tempos=tempos).train()
        leaf = x.clone().requires_grad_()
        out = layer(leaf)
        grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        out.backward(grad)
        results.append((out.detach(), leaf.grad))
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])
