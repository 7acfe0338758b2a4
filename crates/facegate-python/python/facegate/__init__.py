"""facegate: one-shot face verification on a Rust engine.

The same engine, thresholds and galleries as the ``facegate`` command line tool::

    import facegate

    engine = facegate.Engine()                      # models fetched and cached on first use
    result = engine.compare("a.jpg", "b.jpg")
    result.verified, result.distance, result.threshold, result.estimated_far

    gallery = facegate.Gallery("people.db", engine)  # SQLite file or postgres:// URL
    gallery.enroll("alice", "alice1.jpg", "alice2.jpg")
    gallery.verify("alice", frame, bgr=True)         # an OpenCV frame
    gallery.identify(pil_image).identity

Images are a path, encoded ``bytes`` (JPEG, PNG, WebP, BMP), a binary file object, a
``numpy`` array (H x W x 3 ``uint8``, RGB; ``bgr=True`` for OpenCV; H x W grayscale and
H x W x 4 RGBA are accepted as the CLI's decoder takes them) or a PIL image.

Errors are :class:`FacegateError` subclasses carrying ``.code``, the code the CLI's ``--json``
output and the HTTP API give for the same failure (``no_face``, ``unknown_person``, ...).
Calls release the GIL while they decode, detect, embed or use the gallery: an engine and a
gallery may be shared by threads.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Type, Union

import numpy as np

from . import _facegate

__version__: str = _facegate.__version__

__all__ = [
    "Engine",
    "Gallery",
    "Face",
    "Comparison",
    "Verification",
    "Candidate",
    "Identification",
    "Enrollment",
    "Person",
    "FacegateError",
    "ImageError",
    "FaceError",
    "GalleryError",
    "KeyProblemError",
    "ImageTooLargeError",
    "UnsupportedFormatError",
    "CorruptImageError",
    "UnreadableFileError",
    "ModelError",
    "NoFaceError",
    "SeveralFacesError",
    "FaceTooSmallError",
    "PoorQualityError",
    "NotLiveError",
    "FaceMismatchError",
    "UnknownPersonError",
    "EmptyGalleryError",
    "InvalidNameError",
    "PersonExistsError",
    "UnknownTemplateError",
    "InvalidEmbeddingError",
    "StorageFullError",
    "GalleryUnavailableError",
    "ModelMismatchError",
    "AddFacesForbiddenError",
    "KeyMissingError",
    "WrongKeyError",
    "NotEncryptedError",
    "InvalidKeyError",
    "AuditKeyMismatchError",
    "TemplateTamperedError",
    "NoHomeError",
    "ConfigError",
]


# ---------------------------------------------------------------------------------------------
# Errors


class FacegateError(Exception):
    """An error from facegate. ``code`` is the stable code the CLI's ``--json`` gives."""

    code: str = "error"

    def __init__(self, message: str, code: Optional[str] = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ImageError(FacegateError):
    """The image could not be used: too large, unknown format, damaged, unreadable."""


class FaceError(FacegateError):
    """The image was read, but its face cannot be used as asked."""


class GalleryError(FacegateError):
    """The gallery refused or could not do what was asked."""


class KeyProblemError(FacegateError):
    """A template or audit key is missing, wrong or unusable."""


class ImageTooLargeError(ImageError):
    code = "image_too_large"


class UnsupportedFormatError(ImageError, TypeError):
    code = "unsupported_format"


class CorruptImageError(ImageError, ValueError):
    code = "corrupt_image"


class UnreadableFileError(ImageError, OSError):
    code = "unreadable_file"


class ModelError(FacegateError):
    code = "model_error"


class NoFaceError(FaceError):
    code = "no_face"


class SeveralFacesError(FaceError):
    code = "several_faces"


class FaceTooSmallError(FaceError):
    code = "face_too_small"


class PoorQualityError(FaceError):
    code = "poor_quality"


class NotLiveError(FaceError):
    code = "not_live"


class FaceMismatchError(FaceError):
    code = "face_mismatch"


class UnknownPersonError(GalleryError, LookupError):
    code = "unknown_person"


class EmptyGalleryError(GalleryError):
    code = "empty_gallery"


class InvalidNameError(GalleryError, ValueError):
    code = "invalid_name"


class PersonExistsError(GalleryError):
    code = "person_exists"


class UnknownTemplateError(GalleryError, LookupError):
    code = "unknown_template"


class InvalidEmbeddingError(GalleryError):
    code = "invalid_embedding"


class StorageFullError(GalleryError):
    code = "storage_full"


class GalleryUnavailableError(GalleryError):
    code = "gallery_unavailable"


class ModelMismatchError(GalleryError):
    code = "model_mismatch"


class AddFacesForbiddenError(GalleryError):
    code = "add_faces_forbidden"


class KeyMissingError(KeyProblemError):
    code = "key_missing"


class WrongKeyError(KeyProblemError):
    code = "wrong_key"


class NotEncryptedError(KeyProblemError):
    code = "not_encrypted"


class InvalidKeyError(KeyProblemError):
    code = "invalid_key"


class AuditKeyMismatchError(KeyProblemError):
    code = "audit_key_mismatch"


class TemplateTamperedError(KeyProblemError):
    code = "template_tampered"


class NoHomeError(FacegateError):
    code = "no_home"


class ConfigError(FacegateError):
    code = "config_error"


def _all_subclasses(cls: Type[FacegateError]) -> List[Type[FacegateError]]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found


_BY_CODE: Dict[str, Type[FacegateError]] = {
    cls.code: cls for cls in _all_subclasses(FacegateError) if "code" in cls.__dict__
}


def _translate(err: BaseException) -> FacegateError:
    """The FacegateError subclass for an error from the native module."""
    code, message = err.args if len(err.args) == 2 else ("error", str(err))
    cls = _BY_CODE.get(code, FacegateError)
    return cls(message, code)


def _native(call: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return call(*args, **kwargs)
    except _facegate.NativeError as err:
        raise _translate(err) from None


# ---------------------------------------------------------------------------------------------
# Images

ImageLike = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, np.ndarray, Any]


def _image(image: ImageLike, bgr: bool = False) -> Tuple[Any, ...]:
    """One of the three forms the native module reads: a path, encoded bytes, or RGB pixels."""
    if isinstance(image, (str, os.PathLike)):
        return ("path", os.fspath(image))
    if isinstance(image, (bytes, bytearray, memoryview)):
        return ("encoded", bytes(image), "<bytes>")
    if isinstance(image, np.ndarray):
        return _pixels(image, bgr, "<array>")
    if _is_pil(image):
        return _pixels(np.asarray(image.convert("RGB")), False, "<PIL image>")
    read = getattr(image, "read", None)
    if callable(read):
        name = str(getattr(image, "name", "<file>"))
        try:
            data = read()
        except (OSError, ValueError) as err:
            raise UnreadableFileError(f"{name} could not be read: {err}") from None
        if not isinstance(data, (bytes, bytearray)):
            raise UnsupportedFormatError(
                f"{name} gave {type(data).__name__}, not bytes: open image files in binary mode ('rb')"
            )
        return ("encoded", bytes(data), name)
    raise UnsupportedFormatError(
        f"an image must be a path, bytes, a binary file, a numpy array or a PIL image, not {type(image).__name__}"
    )


def _is_pil(image: Any) -> bool:
    return type(image).__module__.startswith("PIL.") and hasattr(image, "convert")


def _pixels(array: np.ndarray, bgr: bool, name: str) -> Tuple[Any, ...]:
    if array.dtype != np.uint8:
        hint = (
            " (floats in [0, 1]: (array * 255).round().clip(0, 255).astype(np.uint8))"
            if np.issubdtype(array.dtype, np.floating)
            else ""
        )
        raise UnsupportedFormatError(
            f"{name}: pixels must be uint8, not {array.dtype}{hint}"
        )
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif array.ndim == 3 and array.shape[2] == 4:
        # Transparency flattened onto white, as the CLI's decoder does.
        alpha = array[:, :, 3:4].astype(np.float32) / 255.0
        colour = array[:, :, 2::-1] if bgr else array[:, :, :3]
        array = (colour * alpha + 255.0 * (1.0 - alpha)).round().astype(np.uint8)
        bgr = False
    elif not (array.ndim == 3 and array.shape[2] == 3):
        raise UnsupportedFormatError(
            f"{name}: expected an H x W x 3 image (or H x W grayscale, H x W x 4 RGBA), got shape {array.shape}"
        )
    height, width = array.shape[:2]
    if height == 0 or width == 0:
        raise CorruptImageError(f"{name}: the image is empty ({width}x{height})")
    if bgr:
        array = array[:, :, ::-1]
    pixels = np.ascontiguousarray(array).tobytes()
    return ("rgb", pixels, int(width), int(height), f"{name} {width}x{height}")


# ---------------------------------------------------------------------------------------------
# Results


@dataclasses.dataclass(frozen=True)
class Face:
    """A detected face: its box ``(x1, y1, x2, y2)``, detector score, five landmarks (eyes,
    nose, mouth corners, image-left first) and quality figures (inter-eye pixels, sharpness,
    brightness, yaw/pitch/roll degrees, ...)."""

    box: Tuple[float, float, float, float]
    score: float
    landmarks: Tuple[Tuple[float, float], ...]
    quality: Optional[Dict[str, Any]] = None

    @staticmethod
    def _from(face: Dict[str, Any], quality: Optional[Dict[str, Any]] = None) -> "Face":
        return Face(
            box=tuple(float(v) for v in face["bbox"]),  # type: ignore[arg-type]
            score=float(face["score"]),
            landmarks=tuple((float(x), float(y)) for x, y in face["landmarks"]),
            quality=quality,
        )


def _far(value: Optional[Dict[str, Any]]) -> Optional[float]:
    return None if value is None else float(value["far"])


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Two images compared (the largest face of each)."""

    verified: bool
    distance: float
    threshold: float
    #: ``default`` (shipped calibration), ``calibrated`` (``facegate calibrate``) or ``flag``.
    threshold_source: str
    metric: str
    #: How often two different people come out this close (from calibration data).
    estimated_far: Optional[float]
    faces: Tuple[Face, Face]
    model: str
    raw: Dict[str, Any] = dataclasses.field(repr=False, compare=False)


@dataclasses.dataclass(frozen=True)
class Verification:
    """1:1: is the face the enrolled person?"""

    person: str
    verified: bool
    distance: float
    threshold: float
    threshold_source: str
    estimated_far: Optional[float]
    face: Face
    faces_found: int
    model: str
    raw: Dict[str, Any] = dataclasses.field(repr=False, compare=False)


@dataclasses.dataclass(frozen=True)
class Candidate:
    person: str
    distance: float
    is_match: bool
    estimated_far: Optional[float]


@dataclasses.dataclass(frozen=True)
class Identification:
    """1:N: who is it? ``identity`` is ``None`` for someone not enrolled."""

    identity: Optional[str]
    candidates: Tuple[Candidate, ...]
    #: The 1:N threshold: stricter for larger galleries (chosen for ``target_fpir``).
    threshold: float
    target_fpir: float
    face: Optional[Face]
    people_searched: int
    model: str
    raw: Dict[str, Any] = dataclasses.field(repr=False, compare=False)


@dataclasses.dataclass(frozen=True)
class Enrollment:
    person: str
    created_person: bool
    #: Ids of the new templates.
    added: Tuple[int, ...]
    #: Photos already enrolled for the person (skipped).
    already_enrolled: int
    faces: Tuple[Face, ...]
    model: str


@dataclasses.dataclass(frozen=True)
class Person:
    name: str
    templates: int
    created: str


# ---------------------------------------------------------------------------------------------
# Engine and gallery


def _onnxruntime_library() -> Optional[str]:
    """The installed ``onnxruntime`` wheel's shared library, when it is the pinned version (no
    second copy is fetched); ``None`` lets facegate fetch the pinned one as the CLI does."""
    try:
        spec = importlib.util.find_spec("onnxruntime")
        version = importlib.metadata.version("onnxruntime")
    except (ImportError, ValueError, importlib.metadata.PackageNotFoundError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    if version != _facegate.onnxruntime_version():
        return None
    package = Path(list(spec.submodule_search_locations)[0])
    member = _facegate.onnxruntime_library_member()  # onnxruntime/capi/libonnxruntime.so.X
    library = package.parent / member
    return str(library) if library.is_file() else None


class Engine:
    """The detector, the embedding model and the thresholds.

    ``model``: ``mobilefacenet+dlib`` (default), ``mobilefacenet``, ``dlib``, ``facenet``,
    ``fusion``, as the CLI's ``--model`` (``FACEGATE_MODEL`` honoured). ``home``: where models
    are cached and the default gallery lives (``FACEGATE_HOME``, else the platform's folders).
    ``threads``: inference threads (default: all cores).
    """

    def __init__(
        self,
        model: Optional[str] = None,
        home: Optional[Union[str, "os.PathLike[str]"]] = None,
        threads: Optional[int] = None,
    ) -> None:
        if threads is not None and (not isinstance(threads, int) or threads < 0):
            raise ValueError(f"threads must be a non-negative int, not {threads!r}")
        self._home = None if home is None else os.fspath(home)
        self._native: _facegate.NativeEngine = _native(
            _facegate.NativeEngine, model, self._home, threads, _onnxruntime_library()
        )

    @property
    def model(self) -> str:
        """The model id templates are stored under."""
        return self._native.model

    def detect(self, image: ImageLike, *, bgr: bool = False) -> List[Face]:
        """Every face, largest first, with quality figures."""
        doc = json.loads(_native(self._native.detect, _image(image, bgr)))
        return [Face._from(f, q) for f, q in zip(doc["faces"], doc["quality"])]

    def embed(self, image: ImageLike, *, bgr: bool = False) -> np.ndarray:
        """The largest face's embedding: float32, unit length."""
        data, _face = _native(self._native.embed, _image(image, bgr))
        return np.frombuffer(data, dtype="<f4").astype(np.float32)

    def embed_face(self, image: ImageLike, *, bgr: bool = False) -> Tuple[np.ndarray, Face]:
        """The largest face's embedding and the face it came from."""
        data, face = _native(self._native.embed, _image(image, bgr))
        doc = json.loads(face)
        embedding = np.frombuffer(data, dtype="<f4").astype(np.float32)
        return embedding, Face._from(doc["face"], doc["quality"])

    def compare(
        self, a: ImageLike, b: ImageLike, *, bgr: bool = False
    ) -> Comparison:
        """Whether the largest faces of two images are the same person."""
        doc = json.loads(_native(self._native.compare, _image(a, bgr), _image(b, bgr)))
        threshold = doc["threshold"]
        return Comparison(
            verified=bool(doc["accepted"]),
            distance=float(doc["distance"]),
            threshold=float(threshold["value"]),
            threshold_source=str(threshold["source"]),
            metric=str(threshold["metric"]),
            estimated_far=_far(doc.get("estimated_far")),
            faces=(
                Face._from(doc["face_a"], doc.get("quality_a")),
                Face._from(doc["face_b"], doc.get("quality_b")),
            ),
            model=str(doc["model"]),
            raw=doc,
        )

    def __repr__(self) -> str:
        return f"facegate.Engine(model={self.model!r})"


class Gallery:
    """Enrolled people: a SQLite file or a ``postgres://`` URL, the same galleries the CLI and
    the server use (``FACEGATE_GALLERY``, else ``<home>/gallery.db``).

    ``engine``: the engine to embed with (default: one for the gallery's own model).
    ``key_file``: the template key of an encrypted gallery (``FACEGATE_KEY_FILE`` or
    ``FACEGATE_KEY`` otherwise). Writes are audited in the gallery's log, sealed with the same
    audit key as the CLI's (``FACEGATE_AUDIT_KEY_FILE``, else ``audit.key`` in the home's data
    folder).
    """

    def __init__(
        self,
        path_or_url: Optional[Union[str, "os.PathLike[str]"]] = None,
        engine: Optional[Engine] = None,
        key_file: Optional[Union[str, "os.PathLike[str]"]] = None,
        home: Optional[Union[str, "os.PathLike[str]"]] = None,
    ) -> None:
        location = None if path_or_url is None else os.fspath(path_or_url)
        if engine is None:
            home_path = None if home is None else os.fspath(home)
            model = _native(_facegate.NativeGallery.model_of, location, home_path)
            engine = Engine(model=model, home=home)
        self.engine = engine
        self._native: _facegate.NativeGallery = _native(
            _facegate.NativeGallery,
            engine._native,
            location,
            None if key_file is None else os.fspath(key_file),
        )

    @property
    def location(self) -> str:
        return self._native.location

    def enroll(
        self, name: str, *images: ImageLike, largest: bool = False, bgr: bool = False
    ) -> Enrollment:
        """Enrolls ``name`` from one or more photos (each must show exactly one face, or with
        ``largest=True`` its largest). All photos are checked before anything is stored."""
        if not images:
            raise TypeError("enroll needs at least one image")
        docs = json.loads(
            _native(
                self._native.enroll, name, [_image(i, bgr) for i in images], largest
            )
        )
        return Enrollment(
            person=str(docs["person"]),
            created_person=bool(docs["created_person"]),
            added=tuple(int(i) for i in docs["added"]),
            already_enrolled=len(docs["duplicates"]),
            faces=tuple(Face._from(f["face"], f["quality"]) for f in docs["faces"]),
            model=str(docs["model"]),
        )

    def verify(self, name: str, image: ImageLike, *, bgr: bool = False) -> Verification:
        """1:1: is the largest face in ``image`` the enrolled ``name``?"""
        doc = json.loads(_native(self._native.verify, name, _image(image, bgr)))
        threshold = doc["threshold"]
        return Verification(
            person=str(doc["person"]),
            verified=bool(doc["accepted"]),
            distance=float(doc["distance"]),
            threshold=float(threshold["value"]),
            threshold_source=str(threshold["source"]),
            estimated_far=_far(doc.get("estimated_far")),
            face=Face._from(doc["face"], doc.get("quality")),
            faces_found=int(doc["faces_found"]),
            model=str(doc["model"]),
            raw=doc,
        )

    def identify(
        self, image: ImageLike, top: int = 1, *, bgr: bool = False
    ) -> Identification:
        """1:N: who in the gallery is the largest face in ``image``? The ``top`` closest people
        are ranked in ``candidates``."""
        if not isinstance(top, int) or top < 1:
            raise ValueError(f"top must be a positive int, not {top!r}")
        doc = json.loads(_native(self._native.identify, _image(image, bgr), top))
        faces = doc.get("faces") or []
        first = faces[0] if faces else None
        candidates = tuple(
            Candidate(
                person=str(c["person"]),
                distance=float(c["distance"]),
                is_match=bool(c["is_match"]),
                estimated_far=_far(c.get("estimated_far")),
            )
            for c in (first["candidates"] if first else [])
        )
        return Identification(
            identity=doc.get("identity"),
            candidates=candidates,
            threshold=float(doc["threshold"]["value"]),
            target_fpir=float(doc["target_fpir"]),
            face=Face._from(first["face"], first.get("quality")) if first else None,
            people_searched=int(doc["people_searched"]),
            model=str(doc["model"]),
            raw=doc,
        )

    def people(self) -> List[Person]:
        """Everyone enrolled, with their number of templates."""
        return [
            Person(name=p["name"], templates=int(p["template_count"]), created=p["created"])
            for p in json.loads(_native(self._native.people))
        ]

    def forget(self, name: str) -> int:
        """Erases ``name`` and every template of theirs; how many templates were erased."""
        return int(_native(self._native.forget, name))

    def __contains__(self, name: object) -> bool:
        return any(p.name == name for p in self.people())

    def __repr__(self) -> str:
        return f"facegate.Gallery({self.location!r}, model={self.engine.model!r})"
