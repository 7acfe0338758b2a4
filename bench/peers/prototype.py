"""The original prototype's pipeline, as a user of it runs it: MTCNN from the `mtcnn` package
finds the face, its box is cut out and resized to 160x160, standardised per image (mean/std),
embedded by the Keras FaceNet (facenet_keras.h5), and stored as one numpy file per user;
verification is the Euclidean distance to the stored embeddings.

  prototype.py enroll   MODEL_H5 PHOTOS_DIR OUT_DIR
  prototype.py verify   MODEL_H5 OUT_DIR NAME PHOTO
  prototype.py warm     MODEL_H5 PHOTOS_DIR COUNT
  prototype.py identify TEMPLATES QUERIES
"""
import os
import sys
import time

T0 = time.perf_counter()
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools", "golden"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from common import emit, main, median_ms, photos_by_person, synthetic_unit_vectors, timed  # noqa: E402


def load_models(model_h5):
    import tensorflow as tf  # noqa: F401
    from mtcnn.mtcnn import MTCNN
    # facenet_keras.h5 stores its residual-scaling Lambda as Python 3.6 bytecode, which
    # today's Python cannot load; the golden-fixture tool rebuilds the same model from the
    # file's config and weights (and checks every weight).
    from gen_facenet import build_model
    work = os.path.join(os.environ.get("BENCH_WORK", "/tmp"), "prototype-model-config")
    os.makedirs(work, exist_ok=True)
    model, _ = build_model(model_h5, work)
    return MTCNN(), model


def face_input(detector, path):
    pixels = np.asarray(Image.open(path).convert("RGB"))
    faces = detector.detect_faces(pixels)
    if not faces:
        return None
    x, y, w, h = max(faces, key=lambda f: f["box"][2] * f["box"][3])["box"]
    x, y = abs(x), abs(y)
    face = Image.fromarray(pixels[y:y + h, x:x + w]).resize((160, 160))
    arr = np.asarray(face).astype("float32")
    return (arr - arr.mean()) / arr.std()


def embed(model, face):
    return model.predict(face[None], verbose=0)[0]


def enroll(model_h5, photos_dir, out_dir):
    detector, model = load_models(model_h5)
    loaded = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    count = faces = 0
    for person, files in photos_by_person(photos_dir):
        embeddings = []
        for path in files:
            count += 1
            face = face_input(detector, path)
            if face is not None:
                embeddings.append(embed(model, face))
        if embeddings:
            faces += len(embeddings)
            np.save(os.path.join(out_dir, person + ".npy"), np.stack(embeddings))
    done = time.perf_counter()
    emit({"photos": count, "faces": faces, "load_s": loaded - T0,
          "processing_s": done - loaded, "photos_per_s": count / (done - loaded)})


def verify(model_h5, out_dir, name, photo):
    detector, model = load_models(model_h5)
    known = np.load(os.path.join(out_dir, name + ".npy"))
    face = face_input(detector, photo)
    distance = float(np.min(np.linalg.norm(known - embed(model, face), axis=1)))
    emit({"person": name, "distance": distance, "is_match": distance < 10.0})


def warm(model_h5, photos_dir, count):
    detector, model = load_models(model_h5)
    paths = [p for _, files in photos_by_person(photos_dir) for p in files][: int(count) + 3]
    end_to_end, bare = [], []
    for i, path in enumerate(paths):
        face, detect_s = timed(face_input, detector, path)
        if face is None:
            continue
        _, embed_s = timed(embed, model, face)
        if i >= 3:  # warm-up
            end_to_end.append(detect_s + embed_s)
            bare.append(embed_s)
    emit({"verify_end_to_end_ms": median_ms(end_to_end), "bare_embed_ms": median_ms(bare),
          "samples": len(end_to_end)})


def identify(templates, queries):
    # The prototype's store: one embedding per user, compared one by one.
    n, q = int(templates), int(queries)
    vectors = synthetic_unit_vectors(n, 128)
    db = {f"user{i}": vectors[i] for i in range(n)}
    probes = synthetic_unit_vectors(q, 128, seed=1)
    samples = []
    for probe in probes:
        start = time.perf_counter()
        best = min(db.items(), key=lambda item: np.linalg.norm(item[1] - probe))
        samples.append(time.perf_counter() - start)
    emit({"templates": n, "identify_ms": median_ms(samples), "best": best[0]})


if __name__ == "__main__":
    main({"enroll": enroll, "verify": verify, "warm": warm, "identify": identify})
