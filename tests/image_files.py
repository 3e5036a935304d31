"""Image files as microscope software writes them, for the tests of image inputs.

Pillow reads 16-bit RGB TIFFs but cannot write them, so `write_rgb16_tiff` writes the baseline
TIFF itself: one uncompressed strip, 16 bits per sample, little-endian.
"""

from __future__ import annotations

import os
import struct

import numpy as np


def write_rgb16_tiff(path: str | os.PathLike, image: np.ndarray) -> None:
    """Writes ``image`` ``[H, W, 3] uint16`` as a 48-bit RGB TIFF."""
    image = np.ascontiguousarray(image, "<u2")
    height, width, _ = image.shape
    pixels = image.tobytes()
    tags = [  # (tag, type, count, value); type 3 = SHORT, 4 = LONG
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 3, None),  # BitsPerSample: 16, 16, 16 (stored after the directory)
        (259, 3, 1, 1),  # no compression
        (262, 3, 1, 2),  # RGB
        (273, 4, 1, None),  # StripOffsets: the pixels (after BitsPerSample)
        (277, 3, 1, 3),  # SamplesPerPixel
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, len(pixels)),  # StripByteCounts
        (284, 3, 1, 1),  # PlanarConfiguration: interleaved
    ]
    directory = 8
    bits = directory + 2 + 12 * len(tags) + 4
    data = bits + 6
    out = b"II*\x00" + struct.pack("<I", directory) + struct.pack("<H", len(tags))
    for tag, kind, count, value in tags:
        value = {258: bits, 273: data}.get(tag, value)
        packed = (
            struct.pack("<HH", value, 0) if kind == 3 and count == 1 else struct.pack("<I", value)
        )
        out += struct.pack("<HHI", tag, kind, count) + packed
    out += struct.pack("<I", 0) + struct.pack("<HHH", 16, 16, 16) + pixels
    with open(path, "wb") as f:
        f.write(out)
