"""Input images for the first layer: .png (Pillow), .npy, .pt; returned as float64 CHW in [0, 1]."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..errors import UserError

MAX_IMAGE_FILE_BYTES = 16 * 2**20  # an input image is a few KB; bounds what a file makes the tool read
MAX_IMAGE_VALUES = 2**20  # values of one image, checked from the header before decoding


def _check_header_size(path: Path, shape, what: str) -> None:
    count = int(np.prod([int(v) for v in shape])) if len(shape) else 1
    if count > MAX_IMAGE_VALUES:
        raise UserError(f"{path}: {what} declares {count:,} values ({' x '.join(str(v) for v in shape)}), more than an "
                        f"input image can hold ({MAX_IMAGE_VALUES:,}); refused before decoding")


def _png(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:  # reads the header only
            _check_header_size(path, (img.size[1], img.size[0], len(img.getbands())), "the image header")
            if img.mode not in ("RGB",):
                raise UserError(f"{path}: image mode {img.mode}, expected an RGB image")
            arr = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError) as exc:
        raise UserError(f"{path}: not a readable image: {exc}") from None
    return arr.transpose(2, 0, 1).astype(np.float64) / 255.0


def _npy(path: Path) -> np.ndarray:
    try:
        with open(path, "rb") as fh:  # the header first: shape and dtype, before any data is read
            version = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, _ = read_header(fh)
        _check_header_size(path, shape, "the .npy header")
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise UserError(f"{path}: not a readable .npy array: {exc}") from None
    if arr.dtype == np.uint8:
        if arr.ndim == 3 and arr.shape[-1] == 3:
            arr = arr.transpose(2, 0, 1)
        return arr.astype(np.float64) / 255.0
    if arr.dtype.kind != "f":
        raise UserError(f"{path}: array dtype {arr.dtype}, expected float CHW in [0, 1] or uint8 HWC")
    return arr.astype(np.float64)


def _pt(path: Path) -> np.ndarray:
    import torch

    try:
        obj = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for corrupt files
        raise UserError(f"{path}: not a readable tensor file: {str(exc).splitlines()[0][:120]}") from None
    if not hasattr(obj, "detach"):
        raise UserError(f"{path}: expected a tensor, got {type(obj).__name__}")
    return obj.detach().cpu().double().numpy()


READERS = {".png": _png, ".npy": _npy, ".pt": _pt}


def load_image(path: str | Path, shape: tuple[int, ...]) -> np.ndarray:
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise UserError(f"{path}: unsupported image type {path.suffix!r} (use .png, .npy or .pt)")
    if not path.is_file():
        raise UserError(f"input image not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise UserError(f"{path}: the file is empty")
    if size > MAX_IMAGE_FILE_BYTES:
        raise UserError(f"{path}: {size:,} bytes, more than an input image needs ({MAX_IMAGE_FILE_BYTES:,}); refused")
    arr = reader(path)
    if arr.ndim == len(shape) + 1 and arr.shape[0] == 1:
        arr = arr[0]
    if tuple(arr.shape) != tuple(shape):
        raise UserError(f"{path}: shape {tuple(arr.shape)}, the model expects CHW {tuple(shape)}")
    if not np.all(np.isfinite(arr)):
        raise UserError(f"{path}: contains NaN or Inf")
    if arr.min() < 0.0 or arr.max() > 1.0:
        raise UserError(f"{path}: values span [{arr.min():g}, {arr.max():g}], expected pixels in [0, 1]")
    return arr


def demo_image(shape: tuple[int, ...]) -> np.ndarray:
    """A deterministic, smooth test pattern in [0, 1] (no data set needed)."""
    c, h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    planes = [0.5 + 0.5 * np.sin((xx * (k + 1) + yy * (c - k)) / 5.0) for k in range(c)]
    return np.round(np.stack(planes) * 255.0) / 255.0
