"""Images in, as TorchServe 0.12's vision handlers read them, with Pillow and torch only.

Called by the standard vision handlers on worker threads, once per request before it joins a batch.
Reproduces torchvision's Resize(int) (PIL bilinear), CenterCrop, ToTensor and Normalize step for
step, because torchvision cannot be installed beside the server's torch. Unlike TorchServe, which
opens any format Pillow knows with no pixel limit, it refuses input that could hurt the server:
formats outside a short list (no EPS/Ghostscript), images over the pixel limit (checked from the
header, before decoding), resizes that would grow past it, truncated data, and non-RGB modes
(TorchServe fails on those inside Normalize or the model; here the client is told why).
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ...errors import ModelFleetError, bad_input

FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP", "PPM")
"""Image formats opened; Pillow's others (EPS runs Ghostscript, rare formats carry rarer decoder bugs) are refused."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
"""torchvision's ImageNet statistics, TorchServe's Normalize constants for classification and segmentation."""

RESIZE_SHORT_SIDE = 256
CROP_SIZE = 224
"""TorchServe's Resize(256) + CenterCrop(224) for image_classifier and image_segmenter."""


def image_entry(request: Mapping[str, bytes]) -> bytes:
    """The image's bytes: `data`, else `body` (TorchServe's `row.get("data") or row.get("body")`)."""
    value = request.get("data") or request.get("body")
    if not value:
        raise bad_input("no image: send the image's bytes (or their base64 text) in the input entry 'data' or 'body'")
    return value


def open_rgb(data: bytes, *, max_pixels: int, handler: str, short_side: int | None = None) -> Image.Image:
    """Decode raw image bytes, or their base64 text, into a loaded RGB image within the pixel limit.

    With `short_side`, the Resize(short_side) that follows must stay within the limit too: checked
    here from the header, before the image is decoded.
    """
    image = _open(data, max_pixels=max_pixels)
    if image is None:
        decoded = _base64(data)
        if decoded is not None:
            image = _open(decoded, max_pixels=max_pixels)
    if image is None:
        raise bad_input(
            f"the input is not an image in a supported format ({', '.join(FORMATS)}), raw or base64-encoded"
        )
    if image.mode != "RGB":
        raise bad_input(
            f"the image has mode {image.mode} ({_MODE_NAMES.get(image.mode, 'not RGB')}); the {handler} handler "
            "takes RGB images, as TorchServe's does (it fails on other modes): convert it to RGB first"
        )
    if short_side is not None:
        resized_size(image.size, short_side, max_pixels=max_pixels)
    try:
        image.load()
    except ModelFleetError:
        raise
    except Exception as exc:  # Pillow raises OSError, SyntaxError, struct.error... for broken data
        raise bad_input(f"the image data is truncated or corrupt ({type(exc).__name__}: {_clip(exc)})") from None
    return image


def _open(data: bytes, *, max_pixels: int) -> Image.Image | None:
    """The opened (header-only) image, None when Pillow does not recognise it, BAD_INPUT when too big."""
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        return None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own global check fired first (over about 89 megapixels): report ours.
        raise bad_input(f"the image has more pixels than the limit of {max_pixels} (--max-image-pixels)") from None
    except Exception as exc:  # a header Pillow recognised but cannot parse
        raise bad_input(f"the image header is corrupt ({type(exc).__name__}: {_clip(exc)})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise bad_input(
            f"the image is {width} x {height} = {width * height} pixels, over the limit of {max_pixels} "
            "(--max-image-pixels)"
        )
    return image


def _base64(data: bytes) -> bytes | None:
    """Base64 text decoded as TorchServe does (b64decode, non-alphabet bytes skipped); None if it is not."""
    try:
        decoded = base64.b64decode(data)
    except (binascii.Error, ValueError):
        return None
    return decoded or None


def resize_short_side(image: Image.Image, size: int, *, max_pixels: int) -> Image.Image:
    """torchvision's Resize(size): the shorter side to `size`, the longer one scaled and truncated, PIL bilinear."""
    new_size = resized_size(image.size, size, max_pixels=max_pixels)
    if new_size == image.size:
        return image
    return image.resize(new_size, Image.Resampling.BILINEAR)


def resized_size(original: tuple[int, int], size: int, *, max_pixels: int) -> tuple[int, int]:
    """(width, height) after Resize(size) (torchvision's arithmetic), refused beyond the pixel limit."""
    width, height = original
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size * long / short)
    new_width, new_height = (size, new_long) if width <= height else (new_long, size)
    if new_width * new_height > max_pixels:
        # A 1 x 50,000,000 strip is within the limit, but Resize(256) would make it 256 x 12,800,000,000.
        raise bad_input(
            f"the image is {width} x {height}: resized to {new_width} x {new_height} it would be over the limit "
            f"of {max_pixels} pixels (--max-image-pixels); send an image with a less extreme aspect ratio"
        )
    return new_width, new_height


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """torchvision's CenterCrop(size) for images at least `size` on each side (true after Resize(>= size))."""
    width, height = image.size
    if width < size or height < size:
        raise ValueError(f"center_crop needs at least {size} x {size}, got {width} x {height}")
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def to_tensor(image: Image.Image) -> torch.Tensor:
    """torchvision's ToTensor for an RGB image: CHW float32 in [0, 1] (uint8 / 255)."""
    pixels = torch.from_numpy(np.array(image, np.uint8, copy=True))
    pixels = pixels.view(image.size[1], image.size[0], 3).permute((2, 0, 1)).contiguous()
    return pixels.to(dtype=torch.float32).div(255)


def normalize(tensor: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """torchvision's Normalize: (x - mean) / std per channel, in the same two float32 steps."""
    mean_t = torch.as_tensor(mean, dtype=tensor.dtype).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=tensor.dtype).view(-1, 1, 1)
    return tensor.clone().sub_(mean_t).div_(std_t)


def imagenet_crop(image: Image.Image, *, max_pixels: int) -> torch.Tensor:
    """Resize(256), CenterCrop(224), ToTensor, Normalize(ImageNet): TorchServe's classifier/segmenter input."""
    resized = resize_short_side(image, RESIZE_SHORT_SIDE, max_pixels=max_pixels)
    return normalize(to_tensor(center_crop(resized, CROP_SIZE)), IMAGENET_MEAN, IMAGENET_STD)


_MODE_NAMES = {
    "L": "grayscale",
    "LA": "grayscale with alpha",
    "RGBA": "RGB with alpha",
    "CMYK": "CMYK",
    "P": "palette",
    "1": "black and white",
    "YCbCr": "YCbCr",
    "I": "32-bit integer",
    "I;16": "16-bit grayscale",
    "F": "32-bit float",
}


def _clip(exc: BaseException, limit: int = 200) -> str:
    text = str(exc)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def imagenet_sample(request: Mapping[str, bytes], *, max_pixels: int, handler: str) -> torch.Tensor:
    """One request's image as TorchServe's vision handlers prepare it: RGB, resized, centre-cropped, normalised."""
    image = open_rgb(image_entry(request), max_pixels=max_pixels, handler=handler, short_side=RESIZE_SHORT_SIDE)
    return imagenet_crop(image, max_pixels=max_pixels)
