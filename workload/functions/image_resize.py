"""Benchmark function ``image-resize``: make thumbnails of a generated image and encode them as JPEG.

Parameters: ``width``/``height`` of the source (default 1024 x 768), ``sizes`` (list of [w, h];
default 640x480, 320x240, 128x96), ``quality`` (JPEG, default 85), ``seed`` (default 0). The source is
a Mandelbrot rendering with seeded noise, generated here. Dependency: ``Pillow`` (PyPI).
"""

import io
import random

from PIL import Image

DEFAULT_SIZES = [[640, 480], [320, 240], [128, 96]]


def _source(width, height, seed):
    rng = random.Random(seed)
    x0 = rng.uniform(-2.2, -1.6)
    y0 = rng.uniform(-1.3, -1.0)
    fractal = Image.effect_mandelbrot((width, height), (x0, y0, x0 + 2.8, y0 + 2.3), 100)
    noise = Image.effect_noise((width, height), 40)
    return Image.merge("RGB", (fractal, noise, Image.blend(fractal, noise, 0.5)))


def main(args):
    width = int(args.get("width", 1024))
    height = int(args.get("height", 768))
    if not (16 <= width <= 8192 and 16 <= height <= 8192):
        return {"error": f"width and height must be in [16, 8192], got {width} x {height}"}
    sizes = args.get("sizes", DEFAULT_SIZES)
    quality = int(args.get("quality", 85))
    image = _source(width, height, int(args.get("seed", 0)))
    outputs = []
    for w, h in sizes:
        thumbnail = image.resize((int(w), int(h)), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        thumbnail.save(buffer, format="JPEG", quality=quality)
        outputs.append({"width": int(w), "height": int(h), "jpeg_bytes": buffer.tell()})
    return {"source": [width, height], "thumbnails": outputs}
