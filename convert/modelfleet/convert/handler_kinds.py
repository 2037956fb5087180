"""TorchServe's standard handler names, what input each feeds its model, and advice for custom handlers.

Used by examples.py (the example input a kind implies) and the report (what happens to the handler).
Pure data and text: no torch, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

IMAGE_CLASSIFIER = "image_classifier"
IMAGE_SEGMENTER = "image_segmenter"
OBJECT_DETECTOR = "object_detector"
TEXT_CLASSIFIER = "text_classifier"
STANDARD = frozenset({IMAGE_CLASSIFIER, IMAGE_SEGMENTER, OBJECT_DETECTOR, TEXT_CLASSIFIER})
"""Handler names ModelFleet builds in under TorchServe's names; a converted archive keeps them."""


@dataclass(frozen=True)
class KindInput:
    """What a standard handler passes to its model: a batch of samples, or one bag of token ids + offsets."""

    layout: str
    """"batch": one float tensor [N, *sample]; "bag": token ids [L] (int64) and offsets [1] (text_classifier)."""
    sample_shape: tuple[int, ...] = ()
    any_image_size: bool = False
    """Height and width vary too (object_detector has no resize): exported as dynamic, verified on another size."""


KIND_INPUTS = {
    # TorchServe's vision transforms end in a 224x224 crop (classifier, segmenter); the detector
    # takes any size, and 224x224 keeps the conversion quick.
    IMAGE_CLASSIFIER: KindInput("batch", (3, 224, 224)),
    IMAGE_SEGMENTER: KindInput("batch", (3, 224, 224)),
    OBJECT_DETECTOR: KindInput("batch", (3, 224, 224), any_image_size=True),
    # text_classifier calls model(token_ids, offsets=[0]) on one text: no batch dimension.
    TEXT_CLASSIFIER: KindInput("bag"),
}


def is_standard(handler: str) -> bool:
    return handler in STANDARD


def custom_handler_advice(handler: str, written: str) -> str:
    """Plain words for a person whose archive brings its own handler code, which ModelFleet never runs."""
    module = handler.split(":", 1)[0].removesuffix(".py") or "handler"
    return (
        f"The archive's handler {handler!r} is custom code. ModelFleet never runs code from an archive, so "
        f"it was not carried over; the converted archive names handler {written!r}. If its preprocess or "
        "postprocess does more than tensors in, tensors out, rewrite it as a trusted handler module: a "
        f"Python module (e.g. {module}_modelfleet.py) installed in the server image that defines "
        "preprocess(inputs: Mapping[str, bytes]) -> torch.Tensor and/or postprocess(output: torch.Tensor) "
        "-> bytes (and SAMPLE_NDIM), with no model loading (the server loads the converted model); start the "
        f"server with --trusted-handlers {module}_modelfleet and register with handler '{module}_modelfleet' "
        "(or convert again with --handler NAME). See docs/convert.md."
    )
