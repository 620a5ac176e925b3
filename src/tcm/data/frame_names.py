"""Names of the frame files in a frame folder: the default template, filling it in, checking it.

Light on purpose (the standard library only): configurations and the command line check frame
templates without loading a decoder.
"""

from __future__ import annotations

DEFAULT_FRAME_TEMPLATE = "img_{:05d}.jpg"
"""Frame file names in folders, ``{}``- or ``%``-style: TSN's extraction (``img_00001.jpg``)."""


def format_frame_name(template: str, index: int) -> str:
    """``template`` with the frame number: ``{}``-style (``img_{:05d}.jpg``) or ``%``-style."""
    if "{" in template:
        return template.format(index)
    return template % index


def check_frame_template(template: str, what: str = "frame template") -> str:
    """``template`` if it names each frame by its number (``img_{:05d}.jpg``, ``%05d.jpg``);
    otherwise a ``ValueError`` that says what is wrong.

    Example:
        >>> check_frame_template("img_{:05d}.jpg")
        'img_{:05d}.jpg'
        >>> check_frame_template("img.jpg")
        Traceback (most recent call last):
        ...
        ValueError: frame template 'img.jpg' has no place for the frame number; write it as img_{:05d}.jpg or img_%05d.jpg
    """
    hint = "write it as img_{:05d}.jpg or img_%05d.jpg"
    if "{" not in template and "%" not in template:
        raise ValueError(f"{what} {template!r} has no place for the frame number; {hint}")
    try:
        names = {format_frame_name(template, index) for index in (1, 2, 10)}
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as error:
        raise ValueError(
            f"{what} {template!r} is not a valid name template ({type(error).__name__}: "
            f"{error}); {hint}"
        ) from None
    if len(names) < 3:
        raise ValueError(f"{what} {template!r} has no place for the frame number; {hint}")
    if any("/" in name or "\\" in name for name in names):
        raise ValueError(f"{what} {template!r} must be a file name, not a path")
    return template
