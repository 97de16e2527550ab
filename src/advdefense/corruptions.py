"""Natural corruptions: the 15 corruptions of CIFAR-10-C (Hendrycks & Dietterich, ICLR 2019) at their five
severities, generated here from the run's own test images.

**Why not `imagecorruptions` as it is.** The maintained-looking package (`imagecorruptions` 1.1.2, the last
release, 2020) implements ImageNet-C: its severities are those for 224-pixel images (Gaussian noise sigma 0.08-0.38
against CIFAR-10-C's 0.04-0.10, JPEG quality 25-7 against 80-40, Gaussian-blur sigma 1-6 ...): **every parameter of
all 15 corruptions differs** from the published CIFAR-10-C ones (`make_cifar_c.py` of hendrycks/robustness), so its
severity 1 on a 32-pixel image is far harsher than CIFAR-10-C's. Two of its 15 do not run at all with numpy 2 and
scikit-image >= 0.19 (`fog`: `np.float_`; `glass_blur`: `multichannel=`). So the definitions below are the
published CIFAR-10-C ones, with CIFAR-10-C's parameters (`PARAMETERS`, copied from `make_cifar_c.py`), and the
package supplies what cannot be re-derived: the six frost photographs and its numpy port of ImageMagick's motion
blur (the published script calls ImageMagick through Wand for motion blur and snow).

What differs from the published files, besides the random draws: motion blur and snow use that numpy port
instead of ImageMagick's own (same kernel, radius, sigma and angle); images are generated from this pipeline's
test images (a JPEG copy's differ from the official ones). Like the published files, results are truncated to
uint8 (`np.uint8`, not rounded).

Torch-free (numpy, scipy, scikit-image, OpenCV, Pillow).
"""

from __future__ import annotations

import functools
from io import BytesIO
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .plan.corruption_specs import CORRUPTIONS, IDENTITY, SEVERITIES
from .plan.seeds import keyed_seed

SIZE = 32  # the published parameters are for 32 x 32 images

# CIFAR-10-C's parameters per severity 1..5 (make_cifar_c.py, hendrycks/robustness)
PARAMETERS = {
    "gaussian_noise": [0.04, 0.06, 0.08, 0.09, 0.10],  # sigma
    "shot_noise": [500, 250, 100, 75, 50],  # photons per unit intensity
    "impulse_noise": [0.01, 0.02, 0.03, 0.05, 0.07],  # salt-and-pepper amount
    "defocus_blur": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],  # disk radius, alias blur
    "glass_blur": [
        (0.05, 1, 1),
        (0.25, 1, 1),
        (0.4, 1, 1),
        (0.25, 1, 2),
        (0.4, 1, 2),
    ],  # sigma, delta, passes
    "motion_blur": [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],  # radius, sigma
    "zoom_blur": [1.06, 1.11, 1.16, 1.21, 1.26],  # zoom factors 1, 1.01, ... below this
    "snow": [
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ],  # flake mean, sd, zoom, threshold, blur radius, blur sigma, image weight
    "frost": [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)],  # image weight, frost weight
    "fog": [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)],  # strength, wibble decay
    "brightness": [0.05, 0.1, 0.15, 0.2, 0.3],  # added to HSV value
    "contrast": [0.75, 0.5, 0.4, 0.3, 0.15],  # factor about the channel mean
    "elastic_transform": [
        (0, 0, 0.08),
        (0.05, 0.2, 0.07),
        (0.08, 0.06, 0.06),
        (0.1, 0.04, 0.05),
        (0.1, 0.03, 0.03),
    ],  # (alpha, sigma, affine) x image size
    "pixelate": [0.95, 0.9, 0.85, 0.75, 0.65],  # down-sampling factor
    "jpeg_compression": [80, 65, 58, 50, 40],  # JPEG quality
}
# the same corruptions' parameters in `imagecorruptions` 1.1.2 (ImageNet-C, for 224-pixel images), severity 1
# and 5 of the one-number ones: what "every parameter differs" means (config/README.md prints them side by side)
IMAGENET_C_EXAMPLES = {
    "gaussian_noise": (0.08, 0.38),
    "shot_noise": (60, 3),
    "impulse_noise": (0.03, 0.27),
    "brightness": (0.1, 0.5),
    "contrast": (0.4, 0.05),
    "pixelate": (0.6, 0.25),
    "jpeg_compression": (25, 7),
}


def check_names(names, key: str = "corruptions.names") -> list[str]:
    """The configured corruption names, each one of CORRUPTIONS (or `identity`); else a ConfigError naming it."""
    known = (*CORRUPTIONS, IDENTITY)
    for name in names:
        if name not in known:
            raise ConfigError(f"{key}: unknown corruption {name!r} (known: {', '.join(known)})")
    return list(names)


# ----------------------------------------------------------------------------- helpers
def _gaussian(x: np.ndarray, sigma: float) -> np.ndarray:
    from skimage.filters import gaussian

    return gaussian(x, sigma=sigma, channel_axis=-1 if x.ndim == 3 else None)


def _disk(radius: float, alias_blur: float) -> np.ndarray:
    """The anti-aliased disk kernel of defocus blur (make_cifar_c.py's `disk`)."""
    import cv2

    span = np.arange(-8, 9) if radius <= 8 else np.arange(-radius, radius + 1)
    ksize = (3, 3) if radius <= 8 else (5, 5)
    xx, yy = np.meshgrid(span, span)
    disk = np.array(xx**2 + yy**2 <= radius**2, dtype=np.float32)
    disk /= disk.sum()
    return cv2.GaussianBlur(disk, ksize=ksize, sigmaX=alias_blur)


def _clipped_zoom(img: np.ndarray, factor: float) -> np.ndarray:
    """The centre of `img` zoomed by `factor` and cropped back to its size (make_cifar_c.py's `clipped_zoom`)."""
    from scipy.ndimage import zoom

    h = img.shape[0]
    ch = int(np.ceil(h / factor))
    top = (h - ch) // 2
    out = zoom(img[top : top + ch, top : top + ch], (factor, factor, 1), order=1)
    trim = (out.shape[0] - h) // 2
    return out[trim : trim + h, trim : trim + h]


def _plasma_fractal(rng: np.random.Generator, mapsize: int = SIZE, wibbledecay: float = 3) -> np.ndarray:
    """A diamond-square height map in [0, 1], side `mapsize` (a power of two): fog's texture (make_cifar_c.py)."""
    maparray = np.zeros((mapsize, mapsize), dtype=np.float64)
    stepsize, wibble = mapsize, 100.0

    def wibbled_mean(array):
        return array / 4 + wibble * rng.uniform(-wibble, wibble, array.shape)

    while stepsize >= 2:
        half = stepsize // 2
        corners = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        square = corners + np.roll(corners, shift=-1, axis=0)
        square += np.roll(square, shift=-1, axis=1)
        maparray[half:mapsize:stepsize, half:mapsize:stepsize] = wibbled_mean(square)
        centres = maparray[half:mapsize:stepsize, half:mapsize:stepsize]
        corners = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        left = centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1)
        maparray[0:mapsize:stepsize, half:mapsize:stepsize] = wibbled_mean(left)
        top = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0)
        maparray[half:mapsize:stepsize, 0:mapsize:stepsize] = wibbled_mean(top)
        stepsize //= 2
        wibble /= wibbledecay
    maparray -= maparray.min()
    return maparray / maparray.max()


def _motion_blur(x: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """ImageMagick's motion blur (what the published script calls through Wand), as `imagecorruptions` ports it
    to numpy: a one-sided Gaussian kernel of `radius`, `sigma` along `angle` degrees."""
    import warnings

    with (
        warnings.catch_warnings()
    ):  # imagecorruptions 1.1.2 imports pkg_resources and scipy paths, deprecated
        warnings.simplefilter("ignore")
        from imagecorruptions.corruptions import _motion_blur as port

    return port(x, radius=radius, sigma=sigma, angle=angle)


def _frost_pictures() -> list[Path]:
    """The six frost photographs of CIFAR-10-C, as `imagecorruptions` ships them."""
    import importlib.util

    spec = importlib.util.find_spec("imagecorruptions")
    if spec is None or spec.origin is None:
        raise ConfigError(
            "corruptions.names: frost needs the frost pictures of the imagecorruptions package "
            "(pip install -e '.[corruptions]')"
        )
    folder = Path(spec.origin).parent / "frost"
    return [
        folder / n
        for n in ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")
    ]


# ----------------------------------------------------------------------------- the corruptions
# each: (HxWx3 uint8 image, parameters of one severity, generator) -> HxWx3 float in [0, 255]
def gaussian_noise(x, c, rng):
    x = x / 255.0
    return np.clip(x + rng.normal(size=x.shape, scale=c), 0, 1) * 255


def shot_noise(x, c, rng):
    x = x / 255.0
    return np.clip(rng.poisson(x * c) / c, 0, 1) * 255


def impulse_noise(x, c, rng):
    from skimage.util import random_noise

    out = random_noise(x / 255.0, mode="s&p", amount=c, rng=int(rng.integers(2**31)))
    return np.clip(out, 0, 1) * 255


def defocus_blur(x, c, rng):
    import cv2

    x = x / 255.0  # float64, as the published script filters it
    kernel = _disk(radius=c[0], alias_blur=c[1])
    out = np.stack([cv2.filter2D(x[:, :, d], -1, kernel) for d in range(3)], axis=-1)
    return np.clip(out, 0, 1) * 255


def glass_blur(x, c, rng):
    sigma, delta, passes = c
    x = np.uint8(_gaussian(x / 255.0, sigma) * 255)
    for _ in range(passes):  # locally "shuffle" pixels
        for h in range(SIZE - delta, delta, -1):
            for w in range(SIZE - delta, delta, -1):
                dx, dy = rng.integers(-delta, delta, size=2)
                hp, wp = h + dy, w + dx
                # as the published script writes it: with numpy views this copies the neighbour's pixel onto
                # (h, w) and leaves the neighbour as it was, a smear rather than a swap; kept, so that the images
                # are CIFAR-10-C's
                x[h, w], x[hp, wp] = x[hp, wp], x[h, w]
    return np.clip(_gaussian(x / 255.0, sigma), 0, 1) * 255


def motion_blur(x, c, rng):
    out = _motion_blur(np.asarray(x, dtype=np.float32), c[0], c[1], rng.uniform(-45, 45))
    return np.clip(out, 0, 255)


def zoom_blur(x, c, rng):
    x = (x / 255.0).astype(np.float32)
    factors = np.arange(1, c, 0.01)
    out = np.zeros_like(x)
    for factor in factors:
        out += _clipped_zoom(x, factor)
    return np.clip((x + out) / (len(factors) + 1), 0, 1) * 255


def snow(x, c, rng):
    import cv2

    x = (x / 255.0).astype(np.float32)
    layer = rng.normal(size=x.shape[:2], loc=c[0], scale=c[1])
    layer = _clipped_zoom(layer[..., None], c[2])
    layer[layer < c[3]] = 0
    layer = np.uint8(np.clip(layer.squeeze(), 0, 1) * 255).astype(
        np.float32
    )  # the published 8-bit PNG round trip
    layer = np.clip(_motion_blur(layer, c[4], c[5], rng.uniform(-135, -45)), 0, 255)
    layer = (np.uint8(layer) / 255.0)[..., None]
    gray = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).reshape(SIZE, SIZE, 1)
    x = c[6] * x + (1 - c[6]) * np.maximum(x, gray * 1.5 + 0.5)
    return np.clip(x + layer + np.rot90(layer, k=2), 0, 1) * 255


@functools.cache
def _frost_picture(i: int) -> np.ndarray:
    """Frost photograph `i` at the published scale (a fifth), BGR: read once per process."""
    import cv2

    picture = cv2.imread(str(_frost_pictures()[i]))
    if picture is None:
        raise ConfigError(f"corruptions.names: frost: cannot read {_frost_pictures()[i]}")
    return cv2.resize(picture, (0, 0), fx=0.2, fy=0.2)


def frost(x, c, rng):
    picture = _frost_picture(int(rng.integers(5)))  # the published script draws from the first 5 of the 6
    top, left = rng.integers(0, picture.shape[0] - SIZE), rng.integers(0, picture.shape[1] - SIZE)
    picture = picture[top : top + SIZE, left : left + SIZE][..., [2, 1, 0]]
    return np.clip(c[0] * np.asarray(x, dtype=np.float64) + c[1] * picture, 0, 255)


def fog(x, c, rng):
    x = x / 255.0
    max_val = x.max()
    x = x + c[0] * _plasma_fractal(rng, wibbledecay=c[1])[:SIZE, :SIZE][..., None]
    return np.clip(x * max_val / (max_val + c[0]), 0, 1) * 255


def brightness(x, c, rng):
    from skimage.color import hsv2rgb, rgb2hsv

    hsv = rgb2hsv(x / 255.0)
    hsv[:, :, 2] = np.clip(hsv[:, :, 2] + c, 0, 1)
    return np.clip(hsv2rgb(hsv), 0, 1) * 255


def contrast(x, c, rng):
    x = x / 255.0
    means = x.mean(axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1) * 255


def elastic_transform(x, c, rng):
    import cv2
    from scipy.ndimage import map_coordinates

    alpha, sigma, affine = (SIZE * v for v in c)
    image = np.asarray(x, dtype=np.float32) / 255.0
    shape = image.shape
    centre = np.float32(shape[:2]) // 2
    square = min(shape[:2]) // 3
    pts1 = np.float32([centre + square, [centre[0] + square, centre[1] - square], centre - square])
    pts2 = pts1 + rng.uniform(-affine, affine, size=pts1.shape).astype(np.float32)
    image = cv2.warpAffine(
        image, cv2.getAffineTransform(pts1, pts2), shape[:2][::-1], borderMode=cv2.BORDER_REFLECT_101
    )

    def displacement():
        field = rng.uniform(-1, 1, size=shape[:2])
        if sigma > 0:
            from skimage.filters import gaussian

            field = gaussian(field, sigma, mode="reflect", truncate=3)
        return (field * alpha).astype(np.float32)[..., None]

    dx, dy = displacement(), displacement()
    xs, ys, zs = np.meshgrid(np.arange(shape[1]), np.arange(shape[0]), np.arange(shape[2]))
    indices = np.reshape(ys + dy, (-1, 1)), np.reshape(xs + dx, (-1, 1)), np.reshape(zs, (-1, 1))
    out = map_coordinates(image, indices, order=1, mode="reflect").reshape(shape)
    return np.clip(out, 0, 1) * 255


def pixelate(x, c, rng):
    from PIL import Image

    small = int(SIZE * c)
    image = Image.fromarray(x).resize((small, small), Image.BOX).resize((SIZE, SIZE), Image.BOX)
    return np.asarray(image, dtype=np.float64)


def jpeg_compression(x, c, rng):
    from PIL import Image

    buffer = BytesIO()
    Image.fromarray(x).save(buffer, "JPEG", quality=c)
    return np.asarray(Image.open(buffer), dtype=np.float64)


def identity(x, c, rng):
    return np.asarray(x, dtype=np.float64)


FUNCTIONS = {name: globals()[name] for name in (*CORRUPTIONS, IDENTITY)}


# ----------------------------------------------------------------------------- a batch
def corruption_seed(seed: int, name: str, severity: int) -> int:
    """The seed of one (corruption, severity) of a run: the same images get the same draws on every rerun."""
    return keyed_seed(seed, f"{name}/{severity}")


# the corruptions that need what `imagecorruptions` supplies (its motion-blur port, the frost pictures)
NEEDS_PACKAGE = {"motion_blur", "snow", "frost"}


def check_libraries(names) -> None:
    """The libraries the corruptions `names` use are installed, else a ConfigError naming the missing one and
    the extra that installs it (checked where the corruptions are made, not where the DAG is built: with
    `--sdm conda` only the job's environment has them)."""
    import importlib.util

    wanted = {"scipy": "scipy", "skimage": "scikit-image", "cv2": "opencv-python", "PIL": "Pillow"}
    if NEEDS_PACKAGE & set(names):
        wanted["imagecorruptions"] = "imagecorruptions"
    missing = [package for module, package in wanted.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise ConfigError(
            f"corruptions.names: {', '.join(names)} need {', '.join(missing)}, not installed "
            "(pip install -e '.[corruptions]', or envs/pipeline.yaml)"
        )


def corrupt_images(images: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """`images` (N x 3 x 32 x 32 uint8, the dataset's layout) with corruption `name` at `severity` (1..5),
    N x 3 x 32 x 32 uint8 (truncated, like the published files)."""
    check_names([name])
    check_libraries([name])
    if severity not in SEVERITIES:
        raise ConfigError(f"corruptions.severities: {severity!r} is not a severity (1 to 5)")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (3, SIZE, SIZE):
        raise ValueError(f"expected N x 3 x {SIZE} x {SIZE} uint8 images, got {images.shape} {images.dtype}")
    function = FUNCTIONS[name]
    c = None if name == IDENTITY else PARAMETERS[name][severity - 1]
    rng = np.random.default_rng(corruption_seed(seed, name, severity))
    out = np.empty_like(images)
    for i, image in enumerate(images.transpose(0, 2, 3, 1)):
        corrupted = function(np.ascontiguousarray(image), c, rng)
        out[i] = np.uint8(np.clip(corrupted, 0, 255)).transpose(2, 0, 1)
    return out
