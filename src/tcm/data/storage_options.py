"""How a data set's samples are stored and read, apart from what the model sees: frame folder
names, what to do with a sample that cannot be read, decoding threads, the per-item seed.

One :class:`StorageOptions` goes whole from the config (or a command's flags) to the dataset,
:func:`~tcm.data.build_dataset`, :func:`~tcm.engine.evaluate` and the checks of
``tcm check-data``. It belongs to a data set, not to a model: checkpoints do not record it
(their preprocessing is :class:`~tcm.data.Preprocessing`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from tcm.data.frame_names import DEFAULT_FRAME_TEMPLATE

BAD_SAMPLE_POLICIES = ("raise", "skip")


@dataclass(frozen=True)
class StorageOptions:
    """Where frames are and how reading them may fail.

    Attributes:
        frame_template: file names in frame folders (``img_{:05d}.jpg``).
        frame_start_index: the number of a folder's first frame (0 or 1).
        bad_sample_policy: a sample that cannot be read ``"raise"``s its error, or (``"skip"``)
            is replaced in training and left out in testing (see :mod:`tcm.data.datasets`).
        max_retries: replacements tried for one item under ``"skip"`` before giving up.
        decode_threads: decoders per video file, or threads per frame folder, working in
            parallel on one clip (0: one per core); see :class:`~tcm.data.VideoReader` and
            :class:`~tcm.data.FrameFolderReader`.
        seed: base seed of the per-item random generators (augmentation, replacements).

    Example:
        >>> StorageOptions(frame_template="{:05d}.jpg", bad_sample_policy="skip").replace(seed=3)
        StorageOptions(frame_template='{:05d}.jpg', frame_start_index=1, bad_sample_policy='skip', max_retries=10, decode_threads=1, seed=3)
    """

    frame_template: str = DEFAULT_FRAME_TEMPLATE
    frame_start_index: int = 1
    bad_sample_policy: str = "raise"
    max_retries: int = 10
    decode_threads: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.bad_sample_policy not in BAD_SAMPLE_POLICIES:
            raise ValueError(
                f"bad_sample_policy must be one of {BAD_SAMPLE_POLICIES}, "
                f"got {self.bad_sample_policy!r}"
            )

    def replace(self, **changes: Any) -> StorageOptions:
        """A copy with ``changes`` (e.g. another seed)."""
        return dataclasses.replace(self, **changes)


DEFAULT_STORAGE = StorageOptions()
"""The defaults: ``img_{:05d}.jpg`` from 1, errors raised, one decoding thread, seed 0."""
