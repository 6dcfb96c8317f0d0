"""Read photos into (H, W, 3) uint8 RGB arrays, with one-line errors for bad files.

`load_image` fully decodes the file (truncated data is an error, never grey padding), turns
it upright from its EXIF orientation, and converts every common mode to 8-bit RGB:

* greyscale (``L``, ``1``, 16-bit ``I;16``/``I``) is repeated over the three channels;
* 16-bit samples are scaled to 8 bits by ``round(v / 257)`` (65535 → 255). Pillow reads
  48/64-bit colour PNGs as 8-bit by dropping the low byte, so those are decoded with OpenCV;
* transparent images (``RGBA``, ``LA``, ``P`` with transparency) are composited over white,
  so that transparent backgrounds look like a plain studio backdrop rather than black;
* ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` are converted with Pillow;
* multi-frame files (GIF, TIFF) give their first frame.

Every file is decoded once. Decompression bombs (a small file that decodes to a huge image,
e.g. a 1 MB PNG of 300 megapixels of one colour) are refused from the header, before
decoding: images over the pixel limit (`pixel_limit`: the ``max_pixels`` argument, else the
``FACEFIT_MAX_PIXELS`` environment variable that ``--max-pixels`` sets, else `MAX_PIXELS`,
100 MP, e.g. 12000×8000) raise `ImageError` ``image too large``. Pillow's own bomb check is
replaced by this limit; its limits on compressed text chunks stay.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

MAX_PIXELS = 100_000_000
MAX_PIXELS_ENV = "FACEFIT_MAX_PIXELS"
IMAGE_SUFFIXES = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp",
    ".gif", ".ppm", ".pgm", ".pbm", ".pnm", ".tga",
})
# Magic numbers of formats we read: a file that starts like one but fails is corrupt, not
# "not an image".
_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00",
          b"MM\x00*", b"RIFF")
_ORIENTATION_TAG = 0x0112
_EXIF_IFD = 0x8769
_FOCAL_35MM_TAG = 0xA405  # FocalLengthIn35mmFilm
FULL_FRAME_DIAGONAL_MM = 43.267
"""Diagonal of a 36 x 24 mm frame: a 35 mm-equivalent focal length is one whose field of view
over that diagonal is the photo's over its own diagonal."""
_OPEN_LOCK = threading.Lock()


def pixel_limit(max_pixels: int | None = None) -> int:
    """The largest image (or video frame) decoded, in pixels: ``max_pixels`` if given, else
    ``$FACEFIT_MAX_PIXELS`` (set by ``--max-pixels``), else `MAX_PIXELS`."""
    if max_pixels is not None:
        return int(max_pixels)
    env = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if env:
        try:
            return int(float(env))
        except ValueError:
            raise ValueError(f"{MAX_PIXELS_ENV}={env!r} is not a number of pixels") from None
    return MAX_PIXELS


def megapixels(n: int) -> str:
    """``n`` pixels for a message: ``"300 MP"``, ``"1.2 MP"``, ``"6144 pixels"``."""
    if n >= 10_000_000:
        return f"{n / 1e6:.0f} MP"
    return f"{n / 1e6:.1f} MP" if n >= 100_000 else f"{n} pixels"


def too_large(width: int, height: int, limit: int, what: str = "image") -> str | None:
    """The one-line problem when ``width`` x ``height`` exceeds ``limit`` pixels, else None."""
    if width * height <= limit:
        return None
    return (f"{what} too large ({width}×{height} = {megapixels(width * height)}; the limit "
            f"is {megapixels(limit)}: raise it with --max-pixels)")


class ImageError(ValueError):
    """An input image that cannot be used; ``str(err)`` is one line ``"PATH: problem"``."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def load_image(path: str | os.PathLike[str], max_pixels: int | None = None) -> np.ndarray:
    """Read ``path`` as an upright (H, W, 3) uint8 RGB array; raises `ImageError`.

    ``max_pixels``: refuse larger images from their header, before decoding (default:
    `pixel_limit`)."""
    p = Path(path)
    head = _check_file(p)
    limit = pixel_limit(max_pixels)
    try:
        with _open(p) as im:
            w, h = im.size
            problem = too_large(w, h, limit)
            if problem:
                raise ImageError(p, problem)
            if w == 0 or h == 0:
                raise ImageError(p, f"image has no pixels ({w}×{h})")
            fmt = im.format
            # (Pillow's getexif decodes a whole PNG to look for a late eXIf chunk: for PNGs
            # the orientation comes from the chunk walk of `_verify` instead)
            orientation = 1 if fmt == "PNG" else im.getexif().get(_ORIENTATION_TAG, 1)
            png16 = fmt == "PNG" and im.mode in ("RGB", "RGBA") and _png_bit_depth(head) == 16
            if not png16:
                im.load()
                rgb = _to_rgb(im)
        if fmt == "PNG":
            orientation = _verify(p)  # CRCs and end marker (catches a cut-off file), EXIF
        if png16:
            rgb = _png16_rgb(p)  # decoded once, by OpenCV (Pillow would drop the low byte)
    except ImageError:
        raise
    except UnidentifiedImageError:
        if any(head.startswith(m) for m in _MAGIC):
            raise ImageError(p, "truncated or corrupt image data") from None
        raise ImageError(p, "not an image file (unrecognised format)") from None
    except Image.DecompressionBombError as exc:  # pragma: no cover - limit raised in _open
        raise ImageError(p, f"image too large ({exc})") from None
    except PermissionError:
        raise ImageError(p, "cannot read file (permission denied)") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageError(p, f"truncated or corrupt image data ({detail})") from None
    except MemoryError:
        raise ImageError(p, "not enough memory to decode the image") from None
    if orientation in range(2, 9):
        rgb = _apply_orientation(rgb, orientation)
    return np.ascontiguousarray(rgb)


def exif_focal_px(image: str | os.PathLike[str] | Image.Image) -> float | None:
    """A photo's focal length in pixels from its EXIF 35 mm-equivalent focal length
    (``FocalLengthIn35mmFilm``, which phones and most cameras write): ``f35 /
    FULL_FRAME_DIAGONAL_MM`` times the image diagonal in pixels. None when the tag is absent
    or 0, for PNG files (camera EXIF is a JPEG/TIFF/WebP/HEIF matter, and Pillow would
    decode a whole PNG to look for it) and for files that cannot be read. A photo cropped
    or resized after it was taken keeps a tag that no longer fits it."""
    try:
        if isinstance(image, Image.Image):
            return _focal_from(image)
        with _open(Path(image)) as im:
            return None if im.format == "PNG" else _focal_from(im)
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError):
        return None


def _focal_from(im: Image.Image) -> float | None:
    f35 = im.getexif().get_ifd(_EXIF_IFD).get(_FOCAL_35MM_TAG)
    try:
        f35 = float(f35)
    except (TypeError, ValueError):
        return None
    if not 0 < f35 < 10_000:
        return None
    w, h = im.size
    return f35 / FULL_FRAME_DIAGONAL_MM * float(np.hypot(w, h))


ImageInput = str | os.PathLike | Image.Image | np.ndarray
"""What `to_rgb` (and `facefit.Reconstructor.reconstruct`) accept as an image."""


def to_rgb(image: ImageInput, max_pixels: int | None = None) -> np.ndarray:
    """An upright (H, W, 3) uint8 RGB array of ``image``, by the rules of `load_image`
    (what ``facefit reconstruct`` does with a file).

    ``image`` is a path (`load_image`), a PIL image (EXIF orientation applied, any mode; as
    Pillow decoded it: Pillow reads 48/64-bit colour PNGs as 8-bit by dropping bits) or
    an array: (H, W) greyscale, (H, W, 1), (H, W, 2) grey + alpha, (H, W, 3) RGB or
    (H, W, 4) RGBA (channels in RGB order); uint8, uint16 (scaled by ``round(v / 257)``),
    bool, or float (in [0, 1], or [0, 255] when larger values occur). Alpha is composited
    over white. An (H, W, 3) uint8 array is returned as it is (no copy when contiguous).

    Raises:
        ImageError: a path that cannot be read (``"PATH: problem"``).
        ValueError: an array of another shape or dtype, or an empty one.
    """
    if isinstance(image, (str, os.PathLike)):
        return load_image(image, max_pixels)
    if isinstance(image, Image.Image):
        w, h = image.size
        problem = too_large(w, h, pixel_limit(max_pixels)) or (
            None if w and h else f"image has no pixels ({w}×{h})")
        if problem:
            raise ValueError(f"PIL image: {problem}")
        orientation = image.getexif().get(_ORIENTATION_TAG, 1)
        rgb = _to_rgb(image)
        if orientation in range(2, 9):
            rgb = _apply_orientation(rgb, orientation)
        return np.ascontiguousarray(rgb)
    a = np.asarray(image)
    what = f"image array of shape {a.shape} and dtype {a.dtype}"
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"{what}: expected (H, W), (H, W, 1), (H, W, 2), (H, W, 3) or "
                         "(H, W, 4)")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{what}: image has no pixels")
    if a.dtype == np.uint8 and a.shape[2] == 3:
        return np.ascontiguousarray(a)
    if a.dtype == np.uint8:
        v = a.astype(np.float32)
    elif a.dtype == np.uint16:
        v = a.astype(np.float32) * (255.0 / 65535.0)  # round(v / 257) after rounding
    elif a.dtype == np.bool_:
        v = a.astype(np.float32) * 255.0
    elif np.issubdtype(a.dtype, np.floating):
        v = np.nan_to_num(a.astype(np.float32))
        if v.size and v.max() <= 1.0:
            v = v * 255.0
    else:
        raise ValueError(f"{what}: use uint8, uint16, bool or float samples")
    colour = v[..., :3] if v.shape[2] >= 3 else np.repeat(v[..., :1], 3, axis=2)
    if v.shape[2] in (2, 4):  # composited over white, as for files
        return _over_white(colour, v[..., -1:] * (1.0 / 255.0))
    return _round_u8(colour)


def list_images(paths: Iterable[str | os.PathLike[str]], recursive: bool = False) -> list[Path]:
    """Expand directories in ``paths`` into their image files (sorted, by suffix).

    Explicitly named files are kept whatever their suffix (and even if missing), so that
    `load_image` reports them clearly. Hidden files in directories are skipped; duplicates
    are listed once.
    """
    out: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = p.rglob("*") if recursive else p.iterdir()
            items = sorted(
                f for f in found
                if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")
                and f.is_file()
            )
        else:
            items = [p]
        for f in items:
            if f not in seen:
                seen.add(f)
                out.append(f)
    return out


def _check_file(p: Path) -> bytes:
    """Return the first bytes of ``p``, or raise `ImageError` for a non-readable file."""
    try:
        if p.is_dir():
            raise ImageError(p, "is a directory")
        if not p.exists():
            raise ImageError(p, "file not found")
        if not p.is_file():
            raise ImageError(p, "not a regular file")
        if p.stat().st_size == 0:
            raise ImageError(p, "file is empty")
        with open(p, "rb") as fh:
            return fh.read(32)
    except PermissionError:
        raise ImageError(p, "cannot read file (permission denied)") from None
    except ImageError:
        raise
    except OSError as exc:
        raise ImageError(p, f"cannot read file ({exc.strerror or exc})") from None


def _open(p: Path) -> Image.Image:
    """`Image.open` with Pillow's decompression-bomb limit lifted; `MAX_PIXELS` applies."""
    with _OPEN_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(p)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _verify(p: Path) -> int:
    """Check a PNG's chunk CRCs and its end marker (`load` ignores a cut-off tail), without
    decoding; returns the EXIF orientation from an eXIf chunk anywhere in the file (1)."""
    assert not ImageFile.LOAD_TRUNCATED_IMAGES, "facefit needs LOAD_TRUNCATED_IMAGES False"
    with _open(p) as im:
        im.verify()
        raw = im.info.get("exif") or _late_png_exif(p)
    if not raw:
        return 1
    exif = Image.Exif()
    exif.load(raw)
    return int(exif.get(_ORIENTATION_TAG, 1))


def _late_png_exif(p: Path) -> bytes | None:
    """The payload of an eXIf chunk after the image data (walks chunk headers only)."""
    with open(p, "rb") as fh:
        fh.seek(8)
        while True:
            head = fh.read(8)
            if len(head) < 8 or head[4:] == b"IEND":
                return None
            length = int.from_bytes(head[:4], "big")
            if head[4:] == b"eXIf":
                return fh.read(length)
            fh.seek(length + 4, os.SEEK_CUR)


def _png_bit_depth(head: bytes) -> int:
    """Bit depth from a PNG's IHDR chunk (byte 24), 0 if not a PNG header."""
    return head[24] if len(head) > 24 and head.startswith(_MAGIC[0]) else 0


def _png16_rgb(p: Path) -> np.ndarray:
    """Decode a 48/64-bit colour PNG with OpenCV, scale to 8 bits, composite alpha."""
    import cv2

    data = np.fromfile(p, dtype=np.uint8)
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise OSError("OpenCV could not decode the 16-bit PNG")
    arr = arr.astype(np.float32) * (1.0 / 257.0)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[2] == 1:
        return _round_u8(np.repeat(arr, 3, axis=2))
    rgb = arr[..., 2::-1]
    if arr.shape[2] == 4:
        a = arr[..., 3:4] * (1.0 / 255.0)
        rgb = rgb * a + 255.0 * (1.0 - a)
    return _round_u8(rgb)


def _to_rgb(im: Image.Image) -> np.ndarray:
    """Any Pillow mode → (H, W, 3) uint8 RGB; alpha is composited over white."""
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(im).astype(np.float32)
        if mode == "I" and a.size and a.max() > 65535:
            a = a * (65535.0 / a.max())
        g = _round_u8(np.clip(a, 0, 65535) * (1.0 / 257.0))
        return np.repeat(g[..., None], 3, axis=2)
    if mode == "F":
        a = np.asarray(im, dtype=np.float32)
        scale = 255.0 if a.size and np.nanmax(a) <= 1.0 else 1.0
        g = _round_u8(np.nan_to_num(a) * scale)
        return np.repeat(g[..., None], 3, axis=2)
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "PA":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32)
        return _over_white(rgba[..., :3], rgba[..., 3:4] * (1.0 / 255.0))
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8)


def _over_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: ``rgb`` (float, 0-255) composited over white with ``alpha`` (H, W, 1)
    in [0, 1]."""
    return _round_u8(rgb * alpha + 255.0 * (1.0 - alpha))


def _round_u8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _apply_orientation(rgb: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (2..8) to an array, as `ImageOps.exif_transpose` would."""
    if orientation == 2:
        return rgb[:, ::-1]
    if orientation == 3:
        return rgb[::-1, ::-1]
    if orientation == 4:
        return rgb[::-1]
    if orientation == 5:
        return rgb.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(rgb, k=-1)
    if orientation == 7:
        return rgb[::-1, ::-1].transpose(1, 0, 2)  # transverse
    if orientation == 8:
        return np.rot90(rgb, k=1)
    return rgb
