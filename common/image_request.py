"""An image to classify, as the robot's and the splitter's ``POST /api/infer`` accept it.

Two ways in, both documented in the OpenAPI schema:

- the raw body with ``Content-Type: image/jpeg`` (or any ``image/*``, or ``application/octet-stream``) and the
  options as query parameters: what a camera process sends, with no multipart to build or parse;
- ``multipart/form-data`` with the file in the field ``image`` and the options as form fields (or query
  parameters): what browsers and ``curl -F image=@photo.jpg`` send.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from common.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from common.postprocess.answers import DETECTION_OPTIONS, DetectionOptions, parse_detection_options
from common.service_api import read_limited, read_upload

IMAGE_FIELD = "image"
# Room for the multipart boundaries, part headers and option fields around the image itself.
FORM_OVERHEAD_BYTES = 64 * 1024
RAW_IMAGE_TYPES = ("image/", "application/octet-stream")
# The options of both services' POST /api/infer (the splitter passes them on to the robot).
INFER_OPTIONS = {
    "mode": "split (default), all-robot or all-edge",
    "split_id": "a deployed split; the last deployed one when absent",
    **DETECTION_OPTIONS,
}
HOW_TO_SEND = (
    "send the image as the raw body with its type (curl --data-binary @photo.jpg -H 'Content-Type: image/jpeg') "
    "or as the multipart field 'image' (curl -F image=@photo.jpg)"
)


@dataclass(frozen=True)
class ImageRequest:
    image: bytes
    options: dict[str, str]

    def option(self, name: str, query_value: str | None) -> str | None:
        """A form field wins over the query parameter of the same name; empty means absent."""
        return self.options.get(name) or query_value or None

    def detection_options(self, query: dict[str, str | None]) -> DetectionOptions:
        """The detection options, each from the form or else from ``query`` (name -> query parameter)."""
        return parse_detection_options({name: self.option(name, value) for name, value in query.items()})


def image_request_body(options: dict[str, str]) -> dict[str, Any]:
    """``openapi_extra`` for a route reading its body with :func:`read_image_request`; ``options``: name -> help."""
    form_options = {name: {"type": "string", "description": text} for name, text in options.items()}
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "image/jpeg": binary,
                "image/png": binary,
                "image/webp": binary,
                "application/octet-stream": binary,
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": [IMAGE_FIELD],
                        "properties": {
                            IMAGE_FIELD: {"type": "string", "format": "binary", "description": "JPEG, PNG or WebP"},
                            **form_options,
                        },
                    }
                },
            },
        }
    }


async def read_image_request(request: Request, limit: int, option_names: tuple[str, ...]) -> ImageRequest:
    """The image, and the options that came as form fields (the route's query parameters give the others)."""
    options: dict[str, str] = {}
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        return await _read_form(request, limit, option_names, options)
    if content_type.startswith(RAW_IMAGE_TYPES):
        return ImageRequest(await read_limited(request, limit, IMAGE_FIELD), options)
    shown = content_type or "none"
    raise UnsupportedMediaType(f"the request's Content-Type is {shown}: {HOW_TO_SEND}")


async def _read_form(
    request: Request, limit: int, option_names: tuple[str, ...], options: dict[str, str]
) -> ImageRequest:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + FORM_OVERHEAD_BYTES:
        raise PayloadTooLarge(f"the form is {int(declared):,} bytes; this service accepts images of at most {limit:,}")
    try:
        form_context = request.form(max_files=1, max_fields=len(option_names) + 1)
        async with form_context as form:
            upload = form.get(IMAGE_FIELD)
            if not isinstance(upload, UploadFile):
                raise BadRequest(f"the form has no file field {IMAGE_FIELD!r}: {HOW_TO_SEND}")
            image = await read_upload(upload, limit, IMAGE_FIELD)
            for name in option_names:
                value = form.get(name)
                if isinstance(value, str):
                    options[name] = value
    except HTTPException as exc:  # Starlette's words for a form it cannot parse
        raise BadRequest(f"the multipart form cannot be read ({exc.detail}): {HOW_TO_SEND}") from exc
    return ImageRequest(image, options)
