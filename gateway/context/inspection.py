"""Probe inspection: how many faces a probe holds and where it was taken, seen by the gateway.

The vendor is not asked: a crowd photo must be refused before it is searched, compared or
enrolled, so the gateway decodes every image of a request itself, whatever its role (probe,
a verification's target, an enrolment image), and counts its faces
(`gateway.context.face_detection`: libfacedetection's CNN by default, dlib's HOG where that
does not install). It also reads the EXIF GPS position, if any, and takes the image's
perceptual identity (`gateway.context.identity`) from the pixels it decoded.

Probes are untrusted bytes, so decoding is guarded in this order:

1. the adapter has already capped the encoded size (`max_image_bytes`);
2. only JPEG and PNG are opened, and `Image.open` reads the header only;
3. the declared width x height is checked against `max_pixels` before a single pixel is
   decoded, so a decompression bomb (a few KB of PNG declaring 20,000 x 20,000) stops there;
4. pixels are decoded to 8-bit grey, the only thing the detectors need (a third of RGB),
   and at no more than the detector scans (libjpeg decodes at 1/2, 1/4 or 1/8 scale for
   less); a truncated or corrupt file fails here.

A probe that fails any of these is refused (`InvalidImage`, `PayloadTooLarge`), and so is an
EXIF GPS block that cannot be a position: a location the gateway cannot read cannot be
checked against protected places, and refusing is the fail-closed answer.

Detection runs in worker threads of the inspector's own, off the event loop: both detectors
release the GIL while they scan. Nothing here logs or keeps pixels.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import ExifTags, Image, ImageOps

from gateway.context.face_detection import FaceCounter, GreyImage, face_counter, scan_size
from gateway.context.identity import perceptual_identity
from gateway.errors import InvalidImage, MalformedRequest, PayloadTooLarge

ACCEPTED_FORMATS = ("JPEG", "PNG")  # what Rekognition reads; rarer decoders stay out of reach

# 25 megapixels decode to 25 MB of grey; far beyond any camera a probe comes from.
DEFAULT_MAX_PIXELS = 25_000_000

LOCATION_HEADER = "x-facegate-location"


@dataclass(frozen=True)
class Location:
    lat: float
    lon: float
    source: str  # "exif" | "header"

    def as_policy(self) -> dict[str, float]:
        return {"lat": self.lat, "lon": self.lon}


@dataclass(frozen=True)
class ImageFindings:
    """What one image holds: a face count and, when its EXIF says, where it was taken.

    `digest` is the SHA-256 of its bytes (the audit log's key for it), `identity` the
    perceptual identity of its pixels (`gateway.context.identity`), the same for the same
    picture however it is encoded.
    """

    faces: int
    width: int
    height: int
    location: Location | None = None
    digest: str = ""
    identity: str = ""


@dataclass(frozen=True)
class ProbeInspection:
    """What the policy learns about a request's probes.

    `faces_in_probe` is the most faces any one image holds (None when nothing was inspected).
    `locations` lists every position stated for the probes: EXIF positions first, then the
    X-Facegate-Location header; the policy checks each of them.
    """

    faces_in_probe: int | None = None
    locations: tuple[Location, ...] = ()
    images: tuple[ImageFindings, ...] = field(default_factory=tuple)


def parse_location_header(value: str) -> Location:
    """`X-Facegate-Location: <lat>,<lon>` in decimal degrees (WGS 84)."""
    parts = [p.strip() for p in value.split(",")]
    try:
        if len(parts) != 2:
            raise ValueError
        lat, lon = float(parts[0]), float(parts[1])
    except ValueError as exc:
        raise MalformedRequest(
            "X-Facegate-Location must be '<latitude>,<longitude>' in decimal degrees"
        ) from exc
    return Location(*_checked_position(lat, lon, "X-Facegate-Location"), source="header")


def _checked_position(lat: float, lon: float, where: str) -> tuple[float, float]:
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise MalformedRequest(f"{where} holds a position that is not a number")
    if not -90 <= lat <= 90:
        raise MalformedRequest(f"{where} latitude {lat} is outside -90..90")
    if not -180 <= lon <= 180:
        raise MalformedRequest(f"{where} longitude {lon} is outside -180..180")
    return lat, lon


def _degrees(value: Any, ref: Any, positive: str, negative: str, what: str) -> float:
    """EXIF degrees/minutes/seconds (three rationals) and a hemisphere letter, in degrees."""
    where = f"the image's EXIF GPS {what}"
    if isinstance(ref, bytes):
        ref = ref.decode("ascii", "replace")
    ref = ref.strip("\x00 ").upper() if isinstance(ref, str) else ref
    if ref not in (positive, negative):
        raise MalformedRequest(f"{where} has no valid hemisphere ({positive} or {negative})")
    try:
        d, m, s = (float(part) for part in value)
    except (TypeError, ValueError, ZeroDivisionError) as exc:
        raise MalformedRequest(f"{where} is not three numbers (degrees, minutes, seconds)") from exc
    if not all(math.isfinite(x) and x >= 0 for x in (d, m, s)) or m >= 60 or s >= 60:
        raise MalformedRequest(f"{where} is not a valid degrees/minutes/seconds value")
    degrees = d + m / 60 + s / 3600
    return -degrees if ref == negative else degrees


_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON = 1, 2, 3, 4


def exif_location(image: Image.Image) -> Location | None:
    """The EXIF GPS position, None when the image states none; MalformedRequest for nonsense."""
    try:
        gps: Mapping[int, Any] = image.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    except Exception as exc:  # Pillow raises assorted errors on a corrupt EXIF block
        raise MalformedRequest("the image's EXIF block cannot be read") from exc
    if not gps or not ({_GPS_LAT, _GPS_LON} & set(gps)):
        return None  # no position (a GPS block may hold only a time or an altitude)
    if _GPS_LAT not in gps or _GPS_LON not in gps:
        raise MalformedRequest("the image's EXIF GPS block has a latitude or longitude alone")
    lat = _degrees(gps[_GPS_LAT], gps.get(_GPS_LAT_REF), "N", "S", "latitude")
    lon = _degrees(gps[_GPS_LON], gps.get(_GPS_LON_REF), "E", "W", "longitude")
    lat, lon = _checked_position(lat, lon, "the image's EXIF GPS position")
    return Location(lat, lon, source="exif")


@dataclass(frozen=True)
class DecodedProbe:
    grey: GreyImage  # (height, width), upright; scaled as asked
    width: int  # the image's own size, as stored (before EXIF orientation)
    height: int
    location: Location | None


def decode_probe(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    scan_pixels: int | None = None,
    decode_size: Callable[[int, int], tuple[int, int]] | None = None,
) -> DecodedProbe:
    """Decode JPEG or PNG bytes to upright 8-bit grey, refusing bombs and broken files.

    With `scan_pixels`, a larger image comes back scaled down to fit it, keeping its shape;
    with `decode_size`, at the size it gives for the image's own width and height.
    """
    try:
        with warnings.catch_warnings():
            # Pillow warns (and past twice its own limit, raises) on open; our cap decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(
            f"the image declares more pixels than the {max_pixels} facegate decodes at most"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImage("the image is not a JPEG or PNG image") from exc

    with image:
        width, height = image.size
        # Only the header has been read: a decompression bomb stops here.
        if width * height > max_pixels:
            raise PayloadTooLarge(
                f"the image is {width}x{height} pixels; facegate decodes at most"
                f" {max_pixels} pixels"
            )
        location = exif_location(image)
        target = (
            decode_size(width, height) if decode_size else scan_size(width, height, scan_pixels)
        )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                if image.format == "JPEG":
                    # libjpeg then decodes the luma plane alone, never building colour
                    # (1920x1080: 5.3 -> 2.9 ms), at the smallest of 1, 1/2, 1/4 and 1/8
                    # scale that still covers the target.
                    image.draft("L", target)
                grey_image = image.convert("L")
                if grey_image.size != target:
                    grey_image = grey_image.resize(target, Image.Resampling.BILINEAR)
                grey = np.asarray(ImageOps.exif_transpose(grey_image), dtype=np.uint8)
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise InvalidImage("the image data is corrupt or truncated") from exc
    return DecodedProbe(grey=grey, width=width, height=height, location=location)


class ProbeInspector:
    """Inspects the probe images of a request in worker threads of its own."""

    def __init__(
        self,
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        workers: int = 2,
        counter: FaceCounter | None = None,
    ) -> None:
        self._max_pixels = max_pixels
        self._counter = counter or face_counter()
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="facegate-probe"
        )

    def inspect_image(self, data: bytes) -> ImageFindings:
        """Decode and count faces, in the calling thread. Raises RequestError subclasses."""
        decoded = decode_probe(
            data, max_pixels=self._max_pixels, decode_size=self._counter.decode_size
        )
        return ImageFindings(
            faces=self._counter.count(decoded.grey),
            width=decoded.width,
            height=decoded.height,
            location=decoded.location,
            digest="sha256:" + hashlib.sha256(data).hexdigest(),
            identity=perceptual_identity(decoded.grey),
        )

    async def inspect(self, images: Sequence[bytes], headers: Mapping[str, str]) -> ProbeInspection:
        """Every probe image of one request, and the location header. Raises RequestError."""
        header = headers.get(LOCATION_HEADER, "").strip()
        stated = parse_location_header(header) if header else None
        loop = asyncio.get_running_loop()
        findings = await asyncio.gather(
            *(loop.run_in_executor(self._executor, self.inspect_image, data) for data in images)
        )
        locations = [f.location for f in findings if f.location is not None]
        if stated is not None:
            locations.append(stated)
        return ProbeInspection(
            faces_in_probe=max((f.faces for f in findings), default=None),
            locations=tuple(locations),
            images=tuple(findings),
        )

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
