"""`facefit.io.image`: modes, orientation, and one-line errors for bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

from facefit.io.image import ImageError, list_images, load_image

RNG = np.random.default_rng(0)


def _rgb(h: int = 24, w: int = 32) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _assert_one_line(err: pytest.ExceptionInfo[ImageError], path: Path, words: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: ")
    assert words in msg
    assert err.value.path == path


def test_exif_rotated_jpeg_loads_upright(tmp_path: Path) -> None:
    # A landscape sensor image tagged "rotate 90° CW to display" (orientation 6).
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20] = (255, 0, 0)  # left half red → after rotation the top half is red
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6
    p = tmp_path / "rot.jpg"
    im.save(p, exif=exif, quality=95)
    out = load_image(p)
    assert out.shape == (40, 20, 3) and out.dtype == np.uint8
    assert out[:20, :, 0].mean() > 200 and out[20:, :, 0].mean() < 50


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_pillow(tmp_path: Path, orientation: int) -> None:
    a = _rgb(6, 9)
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = orientation
    p = tmp_path / "o.png"
    im.save(p, exif=exif)
    ref = ImageOps.exif_transpose(Image.open(p))
    np.testing.assert_array_equal(load_image(p), np.asarray(ref.convert("RGB")))


def test_greyscale_and_bilevel(tmp_path: Path) -> None:
    g = RNG.integers(0, 256, (10, 12), dtype=np.uint8)
    Image.fromarray(g).save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    assert out.shape == (10, 12, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], g)
    Image.fromarray(g > 128).convert("1").save(tmp_path / "b.png")
    out = load_image(tmp_path / "b.png")
    assert set(np.unique(out)) <= {0, 255} and out.shape == (10, 12, 3)


def test_rgba_and_la_composited_over_white(tmp_path: Path) -> None:
    a = np.zeros((4, 4, 4), np.uint8)
    a[..., 0] = 200
    a[:2, :, 3] = 255  # top opaque red, bottom transparent
    Image.fromarray(a, "RGBA").save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    np.testing.assert_array_equal(out[0, 0], (200, 0, 0))
    np.testing.assert_array_equal(out[3, 3], (255, 255, 255))
    la = Image.fromarray(np.stack([np.full((4, 4), 10, np.uint8),
                                   np.full((4, 4), 0, np.uint8)], -1), "LA")
    la.save(tmp_path / "la.png")
    np.testing.assert_array_equal(load_image(tmp_path / "la.png"), 255)


def test_palette_with_and_without_transparency(tmp_path: Path) -> None:
    a = _rgb(8, 8)
    p = Image.fromarray(a).quantize(16)
    p.save(tmp_path / "p.png")
    out = load_image(tmp_path / "p.png")
    np.testing.assert_array_equal(out, np.asarray(p.convert("RGB")))
    p.info["transparency"] = 0
    p.save(tmp_path / "pt.png", transparency=0)
    out = load_image(tmp_path / "pt.png")
    idx = np.asarray(p)
    assert (out[idx == 0] == 255).all()
    assert out.shape == (8, 8, 3)


def test_16bit_greyscale_png_scaled(tmp_path: Path) -> None:
    g = np.array([[0, 257, 1000, 65535]], np.uint16)
    Image.fromarray(g).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    out = load_image(tmp_path / "g16.png")
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 4, 255])


def test_16bit_colour_png_scaled(tmp_path: Path) -> None:
    import cv2

    rgb = np.zeros((2, 3, 3), np.uint16)
    rgb[0, 0] = (65535, 300, 32896)
    rgb[1, 2] = (128, 65535, 1000)  # 128/257 rounds to 0 (Pillow's high byte also 0)
    cv2.imwrite(str(tmp_path / "c48.png"), rgb[..., ::-1])
    out = load_image(tmp_path / "c48.png")
    np.testing.assert_array_equal(out, np.rint(rgb / 257.0).astype(np.uint8))
    rgba = np.zeros((1, 2, 4), np.uint16)
    rgba[0, 0] = (65535, 0, 0, 65535)
    rgba[0, 1] = (65535, 0, 0, 0)
    cv2.imwrite(str(tmp_path / "c64.png"), rgba[..., [2, 1, 0, 3]])
    out = load_image(tmp_path / "c64.png")
    np.testing.assert_array_equal(out[0], [(255, 0, 0), (255, 255, 255)])


def test_cmyk_jpeg(tmp_path: Path) -> None:
    Image.new("CMYK", (8, 6), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    out = load_image(tmp_path / "c.jpg")
    assert out.shape == (6, 8, 3)
    assert out[..., 0].mean() > 200 and out[..., 1:].mean() < 60


def test_large_image_beyond_pillow_default_limit(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import facefit.io.image as mod

    Image.fromarray(_rgb(40, 50)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow would refuse 2000 px
    assert load_image(tmp_path / "big.png").shape == (40, 50, 3)
    assert Image.MAX_IMAGE_PIXELS == 100  # restored
    monkeypatch.setattr(mod, "MAX_PIXELS", 1000)
    with pytest.raises(ImageError) as err:
        load_image(tmp_path / "big.png")
    _assert_one_line(err, tmp_path / "big.png", "image too large")


def png_of_one_colour(path: Path, w: int, h: int, rgb: tuple[int, int, int]) -> int:
    """A valid 8-bit RGB PNG of ``w`` x ``h`` pixels of one colour, written without ever
    holding the pixels: one deflate block of 100 rows, repeated after full flushes (a
    decompression bomb: 20000x15000 is 0.9 MB). Returns the file size."""
    import struct
    import zlib

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    rows = 100
    assert h % rows == 0
    block = (b"\0" + bytes(rgb) * w) * rows
    c = zlib.compressobj(9)
    first = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)  # no reference to earlier data
    end = c.flush()[:-4]
    adler = 1
    for _ in range(h // rows):
        adler = zlib.adler32(block, adler)
    idat = first + again * (h // rows - 1) + end + struct.pack(">I", adler)
    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    path.write_bytes(data)
    return len(data)


def test_one_colour_png_writer_is_a_valid_png(tmp_path: Path) -> None:
    png_of_one_colour(tmp_path / "c.png", 300, 200, (200, 150, 120))
    out = load_image(tmp_path / "c.png")
    assert out.shape == (200, 300, 3)
    assert (out == np.array([200, 150, 120], np.uint8)).all()


def test_pixel_limit_argument_environment_default(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import facefit.io.image as mod

    p = tmp_path / "c.png"
    png_of_one_colour(p, 400, 300, (10, 20, 30))  # 0.12 MP
    monkeypatch.delenv(mod.MAX_PIXELS_ENV, raising=False)
    assert mod.pixel_limit() == mod.MAX_PIXELS == 100_000_000
    with pytest.raises(ImageError) as err:
        load_image(p, max_pixels=100_000)
    _assert_one_line(err, p, "image too large (400×300 = 0.1 MP; the limit is 0.1 MP")
    assert "--max-pixels" in str(err.value)
    monkeypatch.setenv(mod.MAX_PIXELS_ENV, "1e5")  # what --max-pixels sets
    with pytest.raises(ImageError, match="image too large"):
        load_image(p)
    assert load_image(p, max_pixels=120_000).shape == (300, 400, 3)  # argument wins
    monkeypatch.setenv(mod.MAX_PIXELS_ENV, "120000")
    assert load_image(p).shape == (300, 400, 3)


def test_decompression_bomb_refused_from_the_header(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A 0.9 MB PNG of 300 megapixels is refused before any pixel is decoded."""
    import time

    monkeypatch.delenv("FACEFIT_MAX_PIXELS", raising=False)
    p = tmp_path / "bomb.png"
    assert png_of_one_colour(p, 20000, 15000, (200, 150, 120)) < 1_000_000
    decoded = []
    real = Image._getdecoder
    monkeypatch.setattr(Image, "_getdecoder", lambda *a: decoded.append(1) or real(*a))
    t0 = time.perf_counter()
    with pytest.raises(ImageError) as err:
        load_image(p)
    assert time.perf_counter() - t0 < 2.0 and not decoded
    _assert_one_line(err, p, "image too large (20000×15000 = 300 MP; the limit is 100 MP")


@pytest.mark.parametrize("depth", [8, 16])
def test_png_decoded_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, depth: int) -> None:
    import cv2

    rgb = RNG.integers(0, 2**depth, (5, 7, 3)).astype(np.uint8 if depth == 8 else np.uint16)
    cv2.imwrite(str(tmp_path / "c.png"), rgb[..., ::-1])
    calls = {"pillow": 0, "opencv": 0}
    real_load, real_decode = Image._getdecoder, cv2.imdecode

    def pillow_load(*args):
        calls["pillow"] += 1
        return real_load(*args)

    def opencv_decode(*args):
        calls["opencv"] += 1
        return real_decode(*args)

    monkeypatch.setattr(Image, "_getdecoder", pillow_load)
    monkeypatch.setattr(cv2, "imdecode", opencv_decode)
    out = load_image(tmp_path / "c.png")
    want = rgb if depth == 8 else np.rint(rgb / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(out, want)
    assert calls == ({"pillow": 1, "opencv": 0} if depth == 8 else {"pillow": 0, "opencv": 1})


def test_png_orientation_from_a_late_exif_chunk(tmp_path: Path) -> None:
    """An eXIf chunk after the image data (allowed by the PNG spec) still turns the image."""
    import struct
    import zlib

    a = _rgb(4, 6)
    Image.fromarray(a).save(tmp_path / "o.png")
    data = (tmp_path / "o.png").read_bytes()
    exif = Image.Exif()
    exif[0x0112] = 6
    body = exif.tobytes()[6:] if exif.tobytes().startswith(b"Exif") else exif.tobytes()
    chunk = (struct.pack(">I", len(body)) + b"eXIf" + body
             + struct.pack(">I", zlib.crc32(b"eXIf" + body) & 0xFFFFFFFF))
    (tmp_path / "o.png").write_bytes(data[:-12] + chunk + data[-12:])  # before IEND
    np.testing.assert_array_equal(load_image(tmp_path / "o.png"), np.rot90(a, k=-1))


def test_truncated_16bit_png(tmp_path: Path) -> None:
    import cv2

    rgb = RNG.integers(0, 65536, (64, 64, 3)).astype(np.uint16)
    p = tmp_path / "c48.png"
    cv2.imwrite(str(p), rgb)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(ImageError) as err:
        load_image(p)
    _assert_one_line(err, p, "truncated or corrupt image data")


# ---- errors -------------------------------------------------------------------------------

def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "x.png"
    p.write_bytes(b"")
    with pytest.raises(ImageError) as err:
        load_image(p)
    _assert_one_line(err, p, "file is empty")


@pytest.mark.parametrize("fmt,suffix", [("JPEG", ".jpg"), ("PNG", ".png")])
@pytest.mark.parametrize("keep", [0.5, 0.9, 40])
def test_truncated_files(tmp_path: Path, fmt: str, suffix: str, keep: float) -> None:
    assert not ImageFile.LOAD_TRUNCATED_IMAGES
    p = tmp_path / f"t{suffix}"
    Image.fromarray(_rgb(64, 64)).save(p, fmt)
    data = p.read_bytes()
    n = int(len(data) * keep) if keep < 1 else int(keep)
    p.write_bytes(data[:n])
    with pytest.raises(ImageError) as err:
        load_image(p)
    _assert_one_line(err, p, "truncated or corrupt image data")


def test_png_missing_its_end(tmp_path: Path) -> None:
    p = tmp_path / "t.png"
    Image.fromarray(_rgb(64, 64)).save(p)
    p.write_bytes(p.read_bytes()[:-12])  # drop the IEND chunk only
    with pytest.raises(ImageError) as err:
        load_image(p)
    _assert_one_line(err, p, "truncated or corrupt image data")


def test_text_file_named_jpg(tmp_path: Path) -> None:
    p = tmp_path / "photo.jpg"
    p.write_text("this is not a photo\n")
    with pytest.raises(ImageError) as err:
        load_image(p)
    _assert_one_line(err, p, "not an image file (unrecognised format)")
    assert isinstance(err.value, ValueError)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as err:
        load_image(tmp_path)
    _assert_one_line(err, tmp_path, "is a directory")


def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope.jpg"
    with pytest.raises(ImageError) as err:
        load_image(p)
    _assert_one_line(err, p, "file not found")


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import facefit.io.image as mod

    p = tmp_path / "z.jpg"
    Image.fromarray(_rgb()).save(p)

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(mod, "open", denied, raising=False)  # works as root too
    with pytest.raises(ImageError) as err:
        load_image(p)
    _assert_one_line(err, p, "cannot read file (permission denied)")


def test_list_images(tmp_path: Path) -> None:
    for name in ("b.JPG", "a.png", "c.txt", ".hidden.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.jpeg").write_bytes(b"x")
    odd = tmp_path / "c.txt"
    assert list_images([tmp_path]) == [tmp_path / "a.png", tmp_path / "b.JPG"]
    assert list_images([tmp_path], recursive=True) == [
        tmp_path / "a.png", tmp_path / "b.JPG", tmp_path / "sub" / "d.jpeg"]
    # explicit files are kept whatever their suffix, missing ones too; no duplicates
    assert list_images([odd, tmp_path / "a.png", tmp_path, tmp_path / "gone.jpg"]) == [
        odd, tmp_path / "a.png", tmp_path / "b.JPG", tmp_path / "gone.jpg"]
    assert list_images([]) == []


def test_exif_focal_length_in_pixels(tmp_path: Path) -> None:
    """``FocalLengthIn35mmFilm`` to pixels by the diagonal (26 mm on a 400x300 photo: 26 /
    43.267 x 500 px); None without the tag, for 0, for PNGs and for unreadable files; a PIL
    image reads the same."""
    from facefit.io.image import exif_focal_px

    img = Image.fromarray(np.zeros((300, 400, 3), np.uint8))
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 26
    img.save(tmp_path / "f26.jpg", exif=exif)
    assert exif_focal_px(tmp_path / "f26.jpg") == pytest.approx(26 / 43.267 * 500.0)
    with Image.open(tmp_path / "f26.jpg") as im:
        assert exif_focal_px(im) == pytest.approx(300.46, abs=0.01)
    img.save(tmp_path / "none.jpg")
    assert exif_focal_px(tmp_path / "none.jpg") is None
    exif.get_ifd(0x8769)[0xA405] = 0
    img.save(tmp_path / "zero.jpg", exif=exif)
    assert exif_focal_px(tmp_path / "zero.jpg") is None
    img.save(tmp_path / "f.png")
    assert exif_focal_px(tmp_path / "f.png") is None
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8\xff not really")
    assert exif_focal_px(tmp_path / "junk.jpg") is None
    assert exif_focal_px(tmp_path / "missing.jpg") is None
