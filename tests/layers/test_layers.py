import pytest
import torch

import tcm
from tcm.layers import MTDM, TAM, TCM, TemporalAttention, temporal_shift
from tcm.layers.tam import attention_kernel_size
from tcm.ops import extension_available, use_backend


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
def test_tcm_is_x_plus_tam_of_mtdm_and_leaves_the_input(temporal_attention):
    torch.manual_seed(0)
    layer = TCM(in_channels=32, num_segments=4, temporal_attention=temporal_attention).eval()
    x = torch.randn(8, 32, 12, 12)
    before = x.clone()
    with torch.no_grad():
        out = layer(x)
        expected = x + layer.tam(layer.mtdm(x))
    assert torch.equal(x, before)
    assert torch.equal(out, expected)


def _tcm_step(dtype, backend):
    """Output, input gradient and parameter gradients of one TCM training step."""
    torch.manual_seed(0)
    layer = TCM(32, 8).to(dtype).train()
    x = torch.randn(32, 32, 8, 8, dtype=dtype, requires_grad=True)
    with use_backend(backend):
        out = layer(x)
        out.backward(torch.randn(out.shape, dtype=dtype))
    return [out.detach(), x.grad] + [p.grad for p in layer.parameters()]


def test_tcm_training_step_is_bit_identical_run_to_run():
    """Same seed, same input: the same output, input gradient and parameter gradients to the
    last bit (on the compiled kernels where they build)."""
    for first, second in zip(_tcm_step(torch.float32, "auto"), _tcm_step(torch.float32, "auto")):
        assert torch.equal(first, second)


def test_tcm_on_the_compiled_kernels_equals_plain_pytorch_in_float64():
    if not extension_available():
        pytest.skip("compiled kernels unavailable")
    compiled, plain = _tcm_step(torch.float64, "extension"), _tcm_step(torch.float64, "torch")
    for got, want in zip(compiled, plain, strict=True):
        torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("name", ["tcm_tsm_resnet10", "tcm_tsn_mobilenetv2"])
def test_torch_fx_traces_a_tcm_model_to_the_same_logits(name):
    """MTDM's fields are one call in the graph; the input checks stay in it."""
    options = {"widths": [8, 16, 32, 64], "stem_width": 8} if "resnet" in name else {}
    model = tcm.create_model(name, 3, 4, patch_size=5, **options).eval()
    traced = torch.fx.symbolic_trace(model)
    calls = [n.target.__name__ for n in traced.graph.nodes if n.op == "call_function"]
    assert calls.count("mtdm_fields") == 1 and "check_input" in calls
    clips = torch.randn(2, 4, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(traced(clips), model(clips))
    with pytest.raises(ValueError, match="multiple of num_segments=4"):
        traced(torch.randn(2, 3, 3, 64, 64))
