"""Building blocks: temporal shift, MTDM, TAM and the TCM plug-in."""

from tcm.layers.mtdm import MTDM
from tcm.layers.tam import TAM, TemporalAttention
from tcm.layers.temporal_correlation import TCM
from tcm.layers.temporal_shift import TemporalShift, temporal_shift

__all__ = ["MTDM", "TAM", "TCM", "TemporalAttention", "TemporalShift", "temporal_shift"]
