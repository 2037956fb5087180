"""Bad input never hurts the server: each bad request fails alone with INVALID_ARGUMENT and says why.

Images that are not images, truncated files, decompression bombs and huge dimensions (the pixel
limit, checked from the header), non-RGB modes, empty or non-UTF-8 text; pickled vocabularies are
refused at load with advice. The rest of the batch is answered and the model keeps serving.
"""

from __future__ import annotations

import base64
import io
import struct
import zlib
from typing import Any

import pytest
from PIL import Image

from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.settings import ModelSettings

from mf_standard_archives import as_json, image


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (a decompression bomb's shape) with one tiny IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def encoded(mode: str, size: tuple[int, int] = (64, 48), fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format=fmt)
    return buffer.getvalue()


def same(a: Any, b: Any) -> bool:
    """Equal answers up to float rounding (a forward pass over another batch size may round differently)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return isinstance(b, float) and abs(a - b) <= 1e-5
    return bool(a == b)


def refused(answer: Any, *words: str) -> str:
    assert isinstance(answer, ModelFleetError), answer
    assert (answer.kind, answer.reason) == (ErrorKind.INVALID_ARGUMENT, Reason.BAD_INPUT), answer
    for word in words:
        assert word in answer.message, answer.message
    return answer.message


BAD_IMAGES = {
    "not_an_image": (b"hello, I am text", ["not an image"]),
    "truncated_jpeg": (image("landscape.jpg")[:2000], ["truncated or corrupt"]),
    "decompression_bomb": (png_header_only(100_000, 100_000), ["pixels", "--max-image-pixels"]),
    "over_pillows_own_limit": (png_header_only(20_000, 20_000), ["pixels", "--max-image-pixels"]),
    "extreme_aspect_ratio": (png_header_only(20, 100_000), ["aspect ratio"]),  # 256 x 1,280,000 once resized
    "grayscale": (encoded("L"), ["mode L", "grayscale", "RGB"]),
    "rgba": (encoded("RGBA"), ["mode RGBA", "RGB"]),
    "cmyk_jpeg": (encoded("CMYK", fmt="JPEG"), ["mode CMYK"]),
    "palette_gif": (encoded("P", fmt="GIF"), ["mode P", "palette"]),
    "eps_is_not_opened": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", ["not an image"]),
    "empty": (b"", ["no image"]),
}


@pytest.mark.parametrize("handler,model", [("image_classifier", "classifier"), ("object_detector", "detector")])
def test_each_bad_image_fails_alone_and_the_batch_is_answered(handler: str, model: str, load_standard: Any) -> None:
    runner = load_standard(handler, model).make_runner("cpu")
    good = {"data": image("exact.png")}
    batch = [good]
    for data, _ in BAD_IMAGES.values():
        batch += [{"data": data}, good]
    answers = runner.run_batch(batch)
    expected = as_json(answers[0])
    for index, (name, (_, words)) in enumerate(BAD_IMAGES.items()):
        if name == "extreme_aspect_ratio" and handler == "object_detector":
            words = ["truncated"]  # no resize there: 2 megapixels are fine, but the header lies about the data
        refused(answers[2 * index + 1], *words)
        assert same(as_json(answers[2 * index + 2]), expected), name
    # and the model keeps serving afterwards
    assert same(as_json(runner.run_batch([good])[0]), expected)


def test_pixel_limit_is_a_setting(load_standard: Any) -> None:
    runner = load_standard(
        "image_classifier", "classifier", settings=ModelSettings(max_image_pixels=70_000)
    ).make_runner("cpu")
    small, large = runner.run_batch([{"data": image("exact.png")}, {"data": image("landscape.jpg")}])
    assert isinstance(small, bytes)
    refused(large, "320 x 240 = 76800 pixels", "limit of 70000")


def test_body_is_read_when_data_is_absent_and_base64_text_is_an_image(load_standard: Any) -> None:
    runner = load_standard("image_classifier", "classifier").make_runner("cpu")
    raw, body, text = runner.run_batch(
        [{"data": image("exact.png")}, {"body": image("exact.png")}, {"data": base64.b64encode(image("exact.png"))}]
    )
    assert isinstance(raw, bytes) and same(as_json(raw), as_json(body)) and same(as_json(raw), as_json(text))


def test_images_of_different_sizes_are_detected_in_separate_passes(load_standard: Any) -> None:
    """TorchServe's torch.stack fails on such a batch; each image is answered as if alone."""
    runner = load_standard("object_detector", "detector").make_runner("cpu")
    alone = [as_json(runner.run_batch([{"data": image(name)}])[0]) for name in ("landscape.jpg", "portrait.png")]
    together = runner.run_batch([{"data": image("landscape.jpg")}, {"data": image("portrait.png")}])
    assert same([as_json(answer) for answer in together], alone)


BAD_TEXTS = {
    "empty": (b"", ["no text"]),
    "only_punctuation": (b"!!! ... ???", ["no words"]),
    "only_markup": (b"<p></p>&amp;", ["no words"]),
    "not_utf8": (b"caf\xe9 \xff", ["not UTF-8"]),
}


def test_each_bad_text_fails_alone(load_standard: Any) -> None:
    runner = load_standard("text_classifier", "text").make_runner("cpu")
    good = {"data": b"The match ended in a draw"}
    batch = [good] + [{"data": data} for data, _ in BAD_TEXTS.values()] + [good]
    answers = runner.run_batch(batch)
    for answer, (_, words) in zip(answers[1:-1], BAD_TEXTS.values()):
        refused(answer, *words)
    assert same(as_json(answers[0]), as_json(answers[-1])) and len(as_json(answers[0])) == 4


def test_texts_of_a_batch_share_one_call_and_answer_as_if_alone(load_standard: Any) -> None:
    runner = load_standard("text_classifier", "text").make_runner("cpu")
    texts = [b"Markets fell sharply", b"The president will meet world leaders tomorrow.", b"frog"]
    alone = [as_json(runner.run_batch([{"data": text}])[0]) for text in texts]
    together = [as_json(answer) for answer in runner.run_batch([{"data": text} for text in texts])]
    assert same(together, alone)


def test_unknown_words_without_a_default_index_are_bad_input(load_standard: Any) -> None:
    vocab = b'{"stoi": {"markets": 0, "fell": 1, "markets fell": 2}, "default_index": null}'
    runner = load_standard("text_classifier", "text", files={"source_vocab.json": vocab}).make_runner("cpu")
    known, unknown = runner.run_batch([{"data": b"Markets fell"}, {"data": b"Markets rose"}])
    assert isinstance(known, bytes)
    refused(unknown, "'rose'", "vocabulary")


def test_a_pickled_vocabulary_is_refused_with_advice(load_standard: Any) -> None:
    with pytest.raises(ModelFleetError) as caught:
        load_standard("text_classifier", "text", files={"source_vocab.pt": b"\x80\x04pickle"})
    assert caught.value.reason is Reason.UNSUPPORTED_FORMAT
    assert "modelfleet-convert" in caught.value.message and "source_vocab.json" in caught.value.message


@pytest.mark.parametrize(
    "files,words",
    [
        ({"index_to_name.json": b"[1, 2]"}, ["index_to_name.json", "object"]),
        ({"index_to_name.json": b'{"0": 7}'}, ["index_to_name.json", "label of '0'"]),
        ({"index_to_name.json": b"{nope"}, ["index_to_name.json", "not JSON"]),
    ],
)
def test_a_broken_label_file_fails_the_load_not_each_request(
    files: dict[str, bytes], words: list[str], load_standard: Any
) -> None:
    with pytest.raises(ModelFleetError) as caught:
        load_standard("image_classifier", "classifier", files=files)
    for word in words:
        assert word in caught.value.message


def test_a_model_with_the_wrong_output_structure_is_an_internal_error_not_bad_input(load_standard: Any) -> None:
    runner = load_standard("image_segmenter", "classifier").make_runner("cpu")  # class scores, not {"out": ...}
    answer = runner.run_batch([{"data": image("exact.png")}])[0]
    assert isinstance(answer, ModelFleetError) and answer.kind is ErrorKind.INTERNAL
    assert "'out'" in answer.message
