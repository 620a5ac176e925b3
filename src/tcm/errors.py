"""Errors of the user's input and environment that ``tcm`` reports in one line.

Library code raises these (or :class:`ValueError` / :class:`FileNotFoundError`, for the same
kind of problem) with a message that names the file or key at fault and the problem; the
command line prints the message alone and exits with status 2. Anything else is a bug and
keeps its traceback.

- :class:`TcmError`: the base class.
- :class:`WorkDirError`: a run folder that cannot be used (in use by another run, holding
  another run, not a folder).
- :class:`OutputError`: an output path that would overwrite something the user has (a
  checkpoint, a folder, their own list files).
- :class:`DataError`: data that cannot serve the run (every sample unreadable, a DataLoader
  worker killed by the system).
- :class:`ConfigError`: an invalid configuration (unknown key, wrong type, missing or
  inconsistent value), also a :class:`ValueError`.
- :class:`NonFiniteLossError`: training diverged (the loss or the gradient norm is NaN or
  infinite), also a :class:`RuntimeError`.
- :class:`ImportNotAllowedError`: a checkpoint asks to import a module the caller did not
  allow (:mod:`tcm.models.from_checkpoint`), also a :class:`ValueError`.

The data package's :class:`~tcm.data.bad_video.BadVideoError` is one too (and a
:class:`ValueError`).
"""

from __future__ import annotations


class TcmError(Exception):
    """A problem with the user's input or environment, reported in one line."""


class WorkDirError(TcmError, ValueError):
    """A run folder that cannot be used: in use, holding another run, or not a folder."""


class OutputError(TcmError, ValueError):
    """An output path that would overwrite what the user has, or that cannot be written."""


class DataError(TcmError, ValueError):
    """Data that cannot serve the run: no readable sample, a data worker that died."""


class ConfigError(TcmError, ValueError):
    """An invalid configuration: unknown key, wrong type, missing or inconsistent value."""


class NonFiniteLossError(TcmError, RuntimeError):
    """The loss (or the gradient norm) became NaN or infinite; the run stopped without writing
    a checkpoint."""


class ImportNotAllowedError(TcmError, ValueError):
    """A checkpoint names code to import (a user's backbone module) that the caller did not
    allow; nothing was imported."""
