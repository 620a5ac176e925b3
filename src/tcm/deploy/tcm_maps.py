"""What TCM computes on one clip, recorded by forward hooks: :func:`collect_tcm_maps`.

The model runs once on the clip; hooks on the TCM layer of a stage record

- MTDM's output ``(T, 6, h, w)``: ``[u_fast, v_fast, conf_fast, u_slow, v_slow, conf_slow]``,
  the displacement from frame ``t`` to ``t+1`` (fast) and from frame ``0`` to ``t+1`` (slow)
  at feature resolution, ``u`` (right) and ``v`` (down) in ``[-1, 1]`` units of the
  correlation radius ``d`` (``patch_size // 2`` feature cells). One cell is ``stride =
  input_size / h`` input pixels, so a displacement in input pixels is ``u * d * stride``. The
  last frame's fields repeat the previous frame's (MTDM has ``T - 1`` pairs).
- TAM's temporal attention ``(T, C)``: ``sigmoid(conv1d(mean over H, W))``, read with
  :meth:`~tcm.layers.tam.TemporalAttention.weights` from its input, the output of
  ``tam.conv4``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tcm.models.plugin import tcm_layers

FIELD_NAMES = ("u_fast", "v_fast", "conf_fast", "u_slow", "v_slow", "conf_slow")


@dataclass
class TCMMaps:
    """What one TCM layer computed for one clip.

    Attributes:
        stage: the backbone stage the layer follows (``"layer2"``).
        fields: MTDM's output for the clip, ``(T, 6, h, w)``, channels :data:`FIELD_NAMES`.
        attention: TAM's temporal attention ``(T, C)``, in ``(0, 1)``.
        radius: correlation radius ``d`` in feature cells (``u = 1`` means ``d`` cells).
        stride: input pixels per feature cell (``input_size / h``).
        logits: the model's output ``(K,)``.
    """

    stage: str
    fields: torch.Tensor
    attention: torch.Tensor
    radius: int
    stride: float
    logits: torch.Tensor

    def displacement_pixels(self, tempo: str) -> torch.Tensor:
        """``(T, 2, h, w)`` displacement ``(dx, dy)`` in input pixels, ``tempo`` ``"fast"`` or
        ``"slow"``."""
        offset = {"fast": 0, "slow": 3}[tempo]
        return self.fields[:, offset : offset + 2] * (self.radius * self.stride)

    def confidence(self, tempo: str) -> torch.Tensor:
        """``(T, h, w)`` confidence (max correlation, in ``[0, 1]``)."""
        return self.fields[:, {"fast": 2, "slow": 5}[tempo]]


def tcm_stages(model: torch.nn.Module) -> list[str]:
    """Names of the layers of ``model``'s backbone that a TCM layer follows."""
    backbone = getattr(model, "backbone", None)
    return list(tcm_layers(backbone)) if backbone is not None else []


@torch.no_grad()
def collect_tcm_maps(model: torch.nn.Module, clip: torch.Tensor, stage: str | None = None):
    """Run ``model`` on one prepared clip and record a TCM layer's fields and attention.

    Args:
        model: a :class:`~tcm.models.VideoRecognizer` with TCM, in eval mode.
        clip: normalised ``(V*T, 3, S, S)``; only the first view's maps are kept.
        stage: which TCM layer (default: the first).

    Returns:
        :class:`TCMMaps`.
    """
    stages = tcm_stages(model)
    if not stages:
        raise ValueError("the model has no TCM layer: nothing to visualise")
    stage = stage or stages[0]
    if stage not in stages:
        raise ValueError(f"no TCM layer after {stage!r}; the model has them after {stages}")
    layer = tcm_layers(model.backbone)[stage]
    eta = layer.tam.ETA
    frames = layer.num_segments
    record: dict[str, torch.Tensor] = {}

    def keep_fields(_module, _inputs, output):
        record["fields"] = output[:frames].detach().float().cpu()  # (T, 6, h, w)

    def keep_attention(_module, _inputs, features):  # TAM's features, the attention's input
        first_clip = features[:frames]  # (T, C, h, w)
        record["attention"] = eta.weights(first_clip)[0].detach().float().cpu()  # (T, C)

    handles = [
        layer.mtdm.register_forward_hook(keep_fields),
        layer.tam.conv4.register_forward_hook(keep_attention),
    ]
    try:
        device = next(model.parameters()).device
        logits = model(clip[None].to(device))[0].float().cpu()
    finally:
        for handle in handles:
            handle.remove()
    fields = record["fields"]
    return TCMMaps(
        stage=stage,
        fields=fields,
        attention=record["attention"],
        radius=layer.mtdm.patch_size // 2,
        stride=clip.shape[-1] / fields.shape[-1],
        logits=logits,
    )
