#!/usr/bin/python3
"""Writes the image fixtures of tests/unit/test_image.c into this directory.

usage: /usr/bin/python3 tests/unit/data/img/make_fixtures.py

PNG files are written by the small encoder below (zlib + struct), so every
colour type, bit depth, filter type and Adam7 interlacing is covered on
purpose; each is also opened with Pillow as a validity check. Next to each
PNG, NAME.pgm / NAME.ppm holds the pixels image.c must decode it to (8-bit,
alpha dropped, 16-bit scaled by round(v / 257)), which for 8-bit images is
checked against Pillow's own decoding.

JPEG files are written by Pillow (system libjpeg-turbo); their .pgm/.ppm is
Pillow's decoding, which image.c must reproduce exactly (same library,
same default islow IDCT and fancy upsampling).

pre_*.npy are the reference model inputs: Pillow convert + resize(BILINEAR)
then torchvision ToTensor + Normalize, all in float32 as PyTorch computes.
Needs python3-pil, python3-numpy, python3-torch, python3-torchvision.
"""
import os
import struct
import zlib

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
FMNIST = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
FM_MEAN, FM_STD = 0.2860, 0.3530
IMNET_MEAN, IMNET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

# ---------------------------------------------------------------- PNG writer

ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4),
         (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]  # x0, y0, dx, dy


def chunk(kind, data):
    c = struct.pack(">I", len(data)) + kind + data
    return c + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def filter_rows(rows, bpp, first_filter):
    """Filters raw scanlines, cycling through filter types 0..4."""
    out = bytearray()
    prev = bytes(len(rows[0])) if rows else b""
    for i, row in enumerate(rows):
        ft = (first_filter + i) % 5
        f = bytearray()
        for j, x in enumerate(row):
            a = row[j - bpp] if j >= bpp else 0
            b = prev[j]
            c = prev[j - bpp] if j >= bpp else 0
            pred = [0, a, b, (a + b) // 2, paeth(a, b, c)][ft]
            f.append((x - pred) & 0xff)
        out.append(ft)
        out += f
        prev = row
    return bytes(out)


def pack_row(samples, depth):
    """Packs a list of sample values of the given bit depth into bytes."""
    if depth == 16:
        return b"".join(struct.pack(">H", v) for v in samples)
    if depth == 8:
        return bytes(samples)
    out, acc, n = bytearray(), 0, 0
    for v in samples:
        acc = (acc << depth) | v
        n += depth
        if n == 8:
            out.append(acc)
            acc, n = 0, 0
    if n:
        out.append(acc << (8 - n))
    return bytes(out)


def png_bytes(samples, ctype, depth, interlace=False, plte=None, trns=None):
    """samples: array [H, W, spp] of ints. Returns the PNG file bytes."""
    h, w, spp = samples.shape
    bpp = max(1, spp * depth // 8)

    def scan(img):
        rows = [pack_row([int(v) for v in img[y].reshape(-1)], depth)
                for y in range(img.shape[0])]
        return rows

    raw = b""
    if interlace:
        for p, (x0, y0, dx, dy) in enumerate(ADAM7):
            sub = samples[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                raw += filter_rows(scan(sub), bpp, p)
    else:
        raw = filter_rows(scan(samples), bpp, 0)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 1 if interlace else 0)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
    out += chunk(b"tEXt", b"Comment\x00dicefleet test fixture")
    if plte is not None:
        out += chunk(b"PLTE", bytes(np.asarray(plte, dtype=np.uint8).reshape(-1)))
    if trns is not None:
        out += chunk(b"tRNS", trns)
    z = zlib.compress(raw, 9)
    out += chunk(b"IDAT", z[:len(z) // 2]) + chunk(b"IDAT", z[len(z) // 2:])
    return out + chunk(b"IEND", b"")


def write_pnm(name, pix):
    """pix: uint8 [H, W] or [H, W, 3]."""
    pix = np.ascontiguousarray(pix, dtype=np.uint8)
    if pix.ndim == 2:
        hdr = b"P5\n%d %d\n255\n" % (pix.shape[1], pix.shape[0])
    else:
        hdr = b"P6\n%d %d\n255\n" % (pix.shape[1], pix.shape[0])
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(hdr + pix.tobytes())


def save(name, data):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)


def pattern(h, w, spp, maxv, seed):
    y, x = np.mgrid[0:h, 0:w]
    planes = [((x * (7 + 5 * c) + y * (13 + 3 * c) + seed * (c + 1)) * 2654435761 >> 7)
              % (maxv + 1) for c in range(spp)]
    return np.stack(planes, axis=-1).astype(np.int64)


def scale16(v):
    return ((v * 255 + 32767) // 65535).astype(np.uint8)  # = round(v / 257)


def png_fixture(name, samples, ctype, depth, expected, interlace=False,
                plte=None, trns=None, pil_check=True):
    data = png_bytes(samples, ctype, depth, interlace, plte, trns)
    save(name + ".png", data)
    write_pnm(name + (".pgm" if expected.ndim == 2 else ".ppm"), expected)
    im = Image.open(os.path.join(HERE, name + ".png"))
    im.load()
    if pil_check:
        mode = "L" if expected.ndim == 2 else "RGB"
        got = np.asarray(im.convert(mode))
        assert np.array_equal(got, expected), name


def make_pngs():
    h, w = 7, 13  # not multiples of 8: some Adam7 passes are empty
    g8 = pattern(h, w, 1, 255, 1)
    png_fixture("gray8", g8, 0, 8, g8[..., 0].astype(np.uint8))
    png_fixture("gray8_adam7", g8, 0, 8, g8[..., 0].astype(np.uint8), interlace=True)
    for d in (1, 2, 4):
        g = pattern(h, w, 1, (1 << d) - 1, d)
        exp = (g[..., 0] * (255 // ((1 << d) - 1))).astype(np.uint8)
        png_fixture("gray%d" % d, g, 0, d, exp)
    g16 = pattern(h, w, 1, 65535, 3)
    png_fixture("gray16", g16, 0, 16, scale16(g16[..., 0]), pil_check=False)
    png_fixture("gray16_adam7", g16, 0, 16, scale16(g16[..., 0]), interlace=True,
                pil_check=False)
    png_fixture("gray8_trns", g8, 0, 8, g8[..., 0].astype(np.uint8),
                trns=struct.pack(">H", int(g8[0, 0, 0])))
    ga = pattern(h, w, 2, 255, 4)
    png_fixture("gray_alpha8", ga, 4, 8, ga[..., 0].astype(np.uint8))
    ga16 = pattern(h, w, 2, 65535, 5)
    png_fixture("gray_alpha16", ga16, 4, 16, scale16(ga16[..., 0]), pil_check=False)
    rgb = pattern(h, w, 3, 255, 6)
    png_fixture("rgb8", rgb, 2, 8, rgb.astype(np.uint8))
    png_fixture("rgb8_adam7", rgb, 2, 8, rgb.astype(np.uint8), interlace=True)
    rgb16 = pattern(h, w, 3, 65535, 7)
    png_fixture("rgb16", rgb16, 2, 16, scale16(rgb16), pil_check=False)
    rgba = pattern(h, w, 4, 255, 8)
    png_fixture("rgba8", rgba, 6, 8, rgba[..., :3].astype(np.uint8))
    png_fixture("rgba8_adam7", rgba, 6, 8, rgba[..., :3].astype(np.uint8), interlace=True)
    rgba16 = pattern(h, w, 4, 65535, 9)
    png_fixture("rgba16", rgba16, 6, 16, scale16(rgba16[..., :3]), pil_check=False)
    pal = pattern(16, 1, 3, 255, 10).reshape(16, 3)
    idx = pattern(h, w, 1, 15, 11)
    png_fixture("palette4", idx, 3, 4, pal[idx[..., 0]].astype(np.uint8), plte=pal)
    png_fixture("palette8_trns", idx, 3, 8, pal[idx[..., 0]].astype(np.uint8),
                plte=pal, trns=bytes(range(0, 160, 10)))
    png_fixture("palette2_adam7", idx % 4, 3, 2, pal[idx[..., 0] % 4].astype(np.uint8),
                interlace=True, plte=pal[:4])

    # Pillow cross-checks of the 16-bit encodings (Pillow keeps high bytes).
    im = Image.open(os.path.join(HERE, "gray16.png"))
    assert np.array_equal(np.asarray(im).astype(np.int64), g16[..., 0])
    im = Image.open(os.path.join(HERE, "rgb16.png")).convert("RGB")
    assert np.array_equal(np.asarray(im), (rgb16 >> 8).astype(np.uint8))


# -------------------------------------------------------------------- JPEG

def make_jpegs():
    y, x = np.mgrid[0:30, 0:40]
    rgb = np.stack([x * 6, y * 8, (x + y) * 3 % 256], axis=-1).astype(np.uint8)
    rgb[10:20, 15:25] = [200, 40, 90]
    jobs = [
        ("rgb_q90", Image.fromarray(rgb), dict(quality=90)),
        ("rgb_444", Image.fromarray(rgb), dict(quality=95, subsampling=0)),
        ("rgb_progressive", Image.fromarray(rgb), dict(quality=85, progressive=True)),
        ("gray_q90", Image.fromarray(rgb).convert("L"), dict(quality=90)),
    ]
    for name, im, kw in jobs:
        path = os.path.join(HERE, name + ".jpg")
        im.save(path, "JPEG", **kw)
        dec = Image.open(path)
        dec.load()
        pix = np.asarray(dec)
        write_pnm(name + (".pgm" if pix.ndim == 2 else ".ppm"), pix)
    Image.fromarray(rgb).convert("CMYK").save(os.path.join(HERE, "cmyk.jpg"), "JPEG")


# ------------------------------------------------------- preprocessing refs

def fmnist_first_image():
    import gzip
    with gzip.open(FMNIST, "rb") as f:
        data = f.read(16 + 28 * 28)
    assert struct.unpack(">IIII", data[:16]) == (0x803, 10000, 28, 28)
    return np.frombuffer(data[16:], dtype=np.uint8).reshape(28, 28)


def ref(pil, mode, size, mean, std):
    """What torchvision feeds the model: convert, resize, tensor, normalize."""
    im = pil.convert(mode)
    if im.size != (size[1], size[0]):
        im = im.resize((size[1], size[0]), Image.BILINEAR)
    t = T.Normalize(mean, std)(T.ToTensor()(im))
    return t.unsqueeze(0).numpy().astype(np.float32)


def make_refs():
    fm = fmnist_first_image()
    Image.fromarray(fm).save(os.path.join(HERE, "fmnist_t10k_0.png"))
    # The training script's own preprocessing (models/train.py preprocess_u8).
    x = torch.from_numpy(fm.copy()).float().div_(255.0).sub_(FM_MEAN).div_(FM_STD)
    np.save(os.path.join(HERE, "pre_fmnist_t10k_0.npy"), x[None, None].numpy())
    assert np.array_equal(x[None, None].numpy(),
                          ref(Image.fromarray(fm), "L", (28, 28), [FM_MEAN], [FM_STD]))
    lut = torch.arange(256, dtype=torch.uint8).float().div_(255.0).sub_(FM_MEAN).div_(FM_STD)
    np.save(os.path.join(HERE, "pre_fmnist_lut.npy"), lut.numpy())

    y, x = np.mgrid[0:37, 0:45]
    photo = np.stack([(x * 5 + y * 2) % 256, (y * 7) % 256, ((x - y) * 11) % 256],
                     axis=-1).astype(np.uint8)
    photo[5:30:4, :] = 255
    Image.fromarray(photo).save(os.path.join(HERE, "photo_45x37.png"))
    y, x = np.mgrid[0:20, 0:100]
    wide = np.stack([x * 3 % 256, y * 12 % 256, (x + y) * 5 % 256], axis=-1)
    Image.fromarray(wide.astype(np.uint8)).save(os.path.join(HERE, "wide_100x20.png"))
    pil = lambda n: Image.open(os.path.join(HERE, n))
    refs = [
        ("pre_photo_gray28.npy", "photo_45x37.png", "L", (28, 28), [FM_MEAN], [FM_STD]),
        ("pre_photo_rgb24x32.npy", "photo_45x37.png", "RGB", (24, 32), IMNET_MEAN, IMNET_STD),
        ("pre_wide_gray28.npy", "wide_100x20.png", "L", (28, 28), [FM_MEAN], [FM_STD]),
        ("pre_gray8_gray28.npy", "gray8.png", "L", (28, 28), [FM_MEAN], [FM_STD]),
        ("pre_gray8_rgb9x5.npy", "gray8.png", "RGB", (9, 5), IMNET_MEAN, IMNET_STD),
        ("pre_palette4_gray4x20.npy", "palette4.png", "L", (4, 20), [0.5], [0.25]),
        ("pre_rgb_q90_gray28.npy", "rgb_q90.jpg", "L", (28, 28), [FM_MEAN], [FM_STD]),
    ]
    for out, src, mode, size, mean, std in refs:
        np.save(os.path.join(HERE, out), ref(pil(src), mode, size, mean, std))


def main():
    make_pngs()
    make_jpegs()
    make_refs()
    print("fixtures written to", HERE)


if __name__ == "__main__":
    main()
