"""The Pascal VOC colour map, used for every dataset so masks look the same everywhere."""
import numpy as np


def voc_palette(num_colors: int = 256) -> np.ndarray:
    """(num_colors, 3) uint8 colours of the VOC bit-interleaving scheme; index 255 is (224, 224, 192)."""
    palette = np.zeros((num_colors, 3), dtype=np.uint8)
    for index in range(num_colors):
        value, r, g, b = index, 0, 0, 0
        for bit in range(8):
            r |= ((value >> 0) & 1) << (7 - bit)
            g |= ((value >> 1) & 1) << (7 - bit)
            b |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        palette[index] = (r, g, b)
    return palette


def flat_palette() -> list[int]:
    """The palette as the flat list PIL's `Image.putpalette` expects."""
    return voc_palette().flatten().tolist()


def colorize(mask: np.ndarray) -> np.ndarray:
    """HxW class indices -> HxWx3 RGB in the VOC colours."""
    return voc_palette()[mask]
