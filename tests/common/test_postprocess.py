"""Post-processing per task on real outputs (the trained layout detector) and on outputs laid out by hand."""

from __future__ import annotations

import base64
import io

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from common.errors import InvalidArgument, UnprocessableModel
from common.imaging import decode_image, geometry_of, image_size, preprocess
from common.model_io import DetectionSpec, Postprocessing, Preprocessing
from common.postprocess import OutputLayout, answers
from common.postprocess.agreement import agrees, detection_recovery, mask_agreement, tensor_agreement
from common.postprocess.answers import Answer, Detection, DetectionOptions, parse_detection_options
from common.postprocess.detection import class_aware_nms, detect
from common.postprocess.placement import place
from common.postprocess.segmentation import UNSEEN, decode_png
from tests.support import SAMPLES
from tools.assets import ensure

LAYOUT_SPEC = Preprocessing(
    resize_shorter_to=800,
    crop=[800, 608],
    mean=[0.485, 0.456, 0.406],
    std=[0.229, 0.224, 0.225],
    resize="stretch",
)
# What rapid-layout 1.2.1's own PP-PicoDet post-processing (PPPostProcess, score 0.3, IoU 0.5) answers for
# page.png: two "title" boxes, in the image's pixels.
RAPID_LAYOUT_PAGE = [("title", 0.63, [11, 13, 291, 34]), ("title", 0.56, [1, 49, 381, 137])]


@pytest.fixture(scope="module")
def layout_session() -> ort.InferenceSession:
    return ort.InferenceSession(str(ensure("layout_cdla")), providers=["CPUExecutionProvider"])


def _yolo_post(decoder: str = "yolov8", **limits: float) -> Postprocessing:
    return Postprocessing(task="detection", labels=["a", "b"], detection=DetectionSpec(decoder=decoder, **limits))


def _v8(rows: list[list[float]]) -> np.ndarray:
    """A [1, 4 + C, A] YOLOv8 output from rows of (cx, cy, w, h, class scores ...)."""
    return np.asarray(rows, dtype=np.float32).T[None]


def test_picodet_layout_detector_matches_the_packages_own_postprocessing(layout_session: ort.InferenceSession) -> None:
    image = decode_image((SAMPLES / "page.png").read_bytes())
    outputs = layout_session.run(None, {"image": preprocess(image, LAYOUT_SPEC)})
    names = [o.name for o in layout_session.get_outputs()]
    labels = layout_session.get_modelmeta().custom_metadata_map["character"].split("\n")
    post = Postprocessing(
        task="detection", labels=labels, detection=DetectionSpec(decoder="picodet", score_threshold=0.3)
    )
    (found,) = answers(outputs, post, OutputLayout(names, (800, 608)))
    placed = place(found, geometry_of(image.size, LAYOUT_SPEC), labels)
    got = [(d.label, round(d.score, 2), [round(v) for v in d.box]) for d in placed.detections]
    assert got == RAPID_LAYOUT_PAGE


def test_yolov8_nms_within_a_class_only() -> None:
    rows = [
        [50, 50, 20, 20, 0.9, 0.0],
        [52, 50, 20, 20, 0.8, 0.0],  # the same object, class a: suppressed
        [52, 50, 20, 20, 0.0, 0.7],  # the same place, class b: kept
        [10, 10, 4, 4, 0.3, 0.0],  # below the threshold
    ]
    (boxes,) = detect([_v8(rows)], ["out"], _yolo_post().detection, ["a", "b"], (100, 100), DetectionOptions())  # type: ignore[arg-type]
    assert [(d.label, d.score) for d in boxes] == [("a", 0.9), ("b", 0.7)]
    assert boxes[0].box == [40.0, 40.0, 60.0, 60.0]


def test_request_options_override_the_splits_defaults() -> None:
    rows = [[50, 50, 20, 20, 0.9, 0.0], [52, 50, 20, 20, 0.8, 0.0], [10, 10, 4, 4, 0.3, 0.0]]
    spec = _yolo_post().detection
    assert spec is not None
    loose = detect(
        [_v8(rows)], ["out"], spec, None, (100, 100), DetectionOptions(score_threshold=0.2, iou_threshold=0.9)
    )
    assert len(loose[0]) == 3
    capped = detect(
        [_v8(rows)], ["out"], spec, None, (100, 100), DetectionOptions(score_threshold=0.2, max_detections=1)
    )
    assert [d.score for d in capped[0]] == [0.9]


def test_yolov5_scores_are_objectness_times_class() -> None:
    output = np.asarray([[[50, 50, 10, 10, 0.5, 0.9, 0.1], [20, 20, 10, 10, 0.9, 0.2, 0.8]]], dtype=np.float32)
    spec = DetectionSpec(decoder="yolov5", score_threshold=0.4)
    (boxes,) = detect([output], ["out"], spec, ["a", "b"], (100, 100), DetectionOptions())
    assert [(d.label, round(d.score, 2)) for d in boxes] == [("b", 0.72), ("a", 0.45)]


def test_graph_boxes_are_read_by_name() -> None:
    outputs = [
        np.asarray([[1, 2, 3, 4], [5, 6, 7, 8]], dtype=np.float32),
        np.asarray([0.9, 0.2], dtype=np.float32),
        np.asarray([3, 1], dtype=np.int64),
    ]
    spec = DetectionSpec(decoder="boxes")
    (boxes,) = detect(outputs, ["boxes", "scores", "labels"], spec, ["bg", "x", "y", "z"], (10, 10), DetectionOptions())
    assert [(d.label, d.class_id, d.box) for d in boxes] == [("z", 3, [1.0, 2.0, 3.0, 4.0])]


def test_a_layout_that_does_not_fit_is_refused_in_words() -> None:
    with pytest.raises(UnprocessableModel, match="4 box values"):
        detect(
            [np.zeros((1, 3, 50), np.float32)],
            ["out"],
            DetectionSpec(decoder="yolov8"),
            None,
            (9, 9),
            DetectionOptions(),
        )


def test_class_aware_nms_keeps_best_first() -> None:
    boxes = np.asarray([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], dtype=np.float32)
    kept = class_aware_nms(boxes, np.asarray([0.9, 0.8, 0.7]), np.zeros(3, dtype=np.int64), 0.5)
    assert kept.tolist() == [0, 2]


def test_letterbox_places_the_image_and_maps_boxes_back() -> None:
    spec = Preprocessing(
        resize_shorter_to=64, crop=[64, 64], mean=[0, 0, 0], std=[1, 1, 1], resize="letterbox", pad_value=114
    )
    image = Image.new("RGB", (200, 100), (255, 0, 0))
    batch = preprocess(image, spec)
    # 200x100 fits as 64x32, centred: 16 rows of padding above and below.
    assert np.allclose(batch[0, :, :16, :], 114 / 255) and np.allclose(batch[0, :, 16:48, :][0], 1.0)
    geometry = geometry_of(image.size, spec)
    found = Answer(task="detection", detections=[Detection(box=[0, 16, 64, 48], score=1, label="a", class_id=0)])
    assert place(found, geometry, None).detections[0].box == [0.0, 0.0, 200.0, 100.0]


def test_bgr_models_get_their_channels_reversed() -> None:
    spec = Preprocessing(resize_shorter_to=4, crop=[4, 4], mean=[0, 0, 0], std=[1, 1, 1], channel_order="BGR")
    batch = preprocess(Image.new("RGB", (4, 4), (255, 0, 0)), spec)
    assert batch[0, 2].min() == 1.0 and batch[0, 0].max() == 0.0


def test_image_size_reads_the_header_and_exif_rotation() -> None:
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated a quarter turn
    Image.new("RGB", (40, 20)).save(buffer, format="JPEG", exif=exif)
    assert image_size(buffer.getvalue()) == (20, 40)
    assert decode_image(buffer.getvalue()).size == (20, 40)


def test_segmentation_map_is_placed_on_the_image_with_unseen_borders() -> None:
    spec = Preprocessing(resize_shorter_to=4, crop=[4, 4], mean=[0, 0, 0], std=[1, 1, 1])  # centre crop
    scores = np.zeros((1, 3, 4, 4), dtype=np.float32)
    scores[0, 2, :, 2:] = 1.0  # right half: class 2
    post = Postprocessing(task="segmentation", labels=["bg", "x", "y"])
    (found,) = answers([scores], post, OutputLayout(["out"], (4, 4)))
    assert found.segmentation is not None and found.segmentation.width == 4
    placed = place(found, geometry_of((8, 4), spec), post.labels)  # an 8x4 image: 2 columns each side cropped
    assert placed.segmentation is not None
    ids = decode_png(placed.segmentation.png_base64)
    assert ids.shape == (4, 8)
    assert (ids[:, :2] == UNSEEN).all() and (ids[:, 6:] == UNSEEN).all()
    assert (ids[:, 2:4] == 0).all() and (ids[:, 4:6] == 2).all()
    shares = {c.label: c.share for c in placed.segmentation.classes}
    assert shares == {"(outside the model's view)": 0.5, "bg": 0.25, "y": 0.25}


def test_raw_tensors_follow_the_inference_protocols_layout() -> None:
    outputs = [np.asarray([[1.5, np.nan]], dtype=np.float32), np.asarray([[7]], dtype=np.int64)]
    (found,) = answers(outputs, Postprocessing(task="raw"), OutputLayout(["a", "b"], (1, 1)))
    assert [(t.name, t.shape, t.datatype, t.data) for t in found.tensors] == [
        ("a", [1, 2], "FP32", [1.5, None]),
        ("b", [1, 1], "INT64", [7]),
    ]
    assert Answer.model_validate_json(found.model_dump_json()).tensors[1].data == [7]


def test_agreement_per_task() -> None:
    ref = [Detection(box=[0, 0, 10, 10], score=0.9, label="a", class_id=0)]
    near = [Detection(box=[0, 0, 10, 11], score=0.8, label="a", class_id=0)]
    other_class = [Detection(box=[0, 0, 10, 10], score=0.8, label="b", class_id=1)]
    assert detection_recovery(ref, near)[0] == 1.0 and detection_recovery(ref, near)[1] == pytest.approx(10 / 11)
    assert detection_recovery(ref, other_class) == (0.0, 0.0)
    assert agrees(Answer(task="detection", detections=ref), Answer(task="detection", detections=near))
    assert not agrees(Answer(task="detection", detections=ref), Answer(task="detection", detections=[]))
    same, miou = mask_agreement(np.asarray([[0, 1], [1, 1]]), np.asarray([[0, 1], [1, 0]]))
    assert same == 0.75 and miou == pytest.approx((0.5 + 2 / 3) / 2)
    cosine, diff = tensor_agreement([np.asarray([1.0, 2.0])], [np.asarray([1.0, 2.5])])
    assert 0.99 < cosine < 1.0 and diff == 0.5


def test_detection_options_in_words() -> None:
    assert parse_detection_options({"score_threshold": "0.25", "max_detections": ""}) == DetectionOptions(
        score_threshold=0.25
    )
    with pytest.raises(InvalidArgument, match="score_threshold"):
        parse_detection_options({"score_threshold": "2"})
    with pytest.raises(InvalidArgument, match="max_detections"):
        parse_detection_options({"max_detections": "many"})


def test_segmentation_png_is_greyscale_class_ids() -> None:
    post = Postprocessing(task="segmentation")
    scores = np.zeros((1, 2, 3, 5), dtype=np.float32)
    scores[0, 1, 0, 0] = 1.0
    (found,) = answers([scores], post, OutputLayout(["out"], (3, 5)))
    assert found.segmentation is not None
    with Image.open(io.BytesIO(base64.b64decode(found.segmentation.png_base64))) as png:
        assert png.mode == "L" and png.size == (5, 3) and png.getpixel((0, 0)) == 1
