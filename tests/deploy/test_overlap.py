"""Decoding in a background thread while the model runs (``LongVideoPredictor(overlap=...)``)
gives the same windows and probabilities as decoding in turn, and a run stopped early ends
its thread."""

from __future__ import annotations

import threading

import numpy as np

from tcm.deploy import LongVideoPredictor, Predictor
from video_files import write_moving_square


def test_overlap_gives_the_same_timeline(checkpoint_path, tmp_path):
    video = write_moving_square(tmp_path / "square.mp4", num_frames=60)
    predictor = Predictor(checkpoint_path)
    runs = {
        overlap: LongVideoPredictor(predictor, "16f", "4f", batch_size=3, overlap=overlap).run(
            video
        )
        for overlap in (False, True)
    }
    assert len(runs[True].windows) == len(runs[False].windows) == 12
    assert [w.start for w in runs[True].windows] == [w.start for w in runs[False].windows]
    np.testing.assert_allclose(runs[True].probabilities(), runs[False].probabilities(), atol=1e-6)
    before = threading.active_count()
    with LongVideoPredictor(predictor, "16f", "4f", batch_size=1).open(video) as run:
        next(iter(run))
    assert threading.active_count() <= before
