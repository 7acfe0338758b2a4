"""face_recognition (dlib) used the way its README shows: load_image_file, face_locations (HOG),
face_encodings, face_distance.

  face_recognition_peer.py enroll   PHOTOS_DIR OUT_DIR
  face_recognition_peer.py verify   OUT_DIR NAME PHOTO
  face_recognition_peer.py warm     PHOTOS_DIR COUNT
  face_recognition_peer.py identify TEMPLATES QUERIES
  face_recognition_peer.py video    FRAMES_DIR WORKERS
"""
import os
import sys
import time

T0 = time.perf_counter()
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from common import emit, main, median_ms, photos_by_person, synthetic_unit_vectors, timed  # noqa: E402


def encode(fr, path):
    image = fr.load_image_file(path)
    locations = fr.face_locations(image)
    if not locations:
        return None
    largest = max(locations, key=lambda l: (l[2] - l[0]) * (l[1] - l[3]))
    return fr.face_encodings(image, known_face_locations=[largest])[0]


def enroll(photos_dir, out_dir):
    import face_recognition as fr
    loaded = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    count = faces = 0
    for person, files in photos_by_person(photos_dir):
        encodings = []
        for path in files:
            count += 1
            e = encode(fr, path)
            if e is not None:
                encodings.append(e)
        if encodings:
            faces += len(encodings)
            np.save(os.path.join(out_dir, person + ".npy"), np.stack(encodings))
    done = time.perf_counter()
    emit({"photos": count, "faces": faces, "load_s": loaded - T0,
          "processing_s": done - loaded, "photos_per_s": count / (done - loaded)})


def verify(out_dir, name, photo):
    import face_recognition as fr
    known = np.load(os.path.join(out_dir, name + ".npy"))
    distance = float(np.min(fr.face_distance(known, encode(fr, photo))))
    emit({"person": name, "distance": distance, "is_match": distance <= 0.6})


def warm(photos_dir, count):
    import face_recognition as fr
    paths = [p for _, files in photos_by_person(photos_dir) for p in files][: int(count) + 3]
    end_to_end, bare = [], []
    for i, path in enumerate(paths):
        start = time.perf_counter()
        image = fr.load_image_file(path)
        locations = fr.face_locations(image)
        if not locations:
            continue
        _, embed_s = timed(fr.face_encodings, image, locations[:1])
        total = time.perf_counter() - start
        if i >= 3:
            end_to_end.append(total)
            bare.append(embed_s)
    emit({"verify_end_to_end_ms": median_ms(end_to_end), "bare_embed_ms": median_ms(bare),
          "samples": len(end_to_end)})


def identify(templates, queries):
    import face_recognition as fr
    n, q = int(templates), int(queries)
    known = synthetic_unit_vectors(n, 128)
    probes = synthetic_unit_vectors(q, 128, seed=1)
    samples = []
    for probe in probes:
        start = time.perf_counter()
        best = int(np.argmin(fr.face_distance(known, probe)))
        samples.append(time.perf_counter() - start)
    emit({"templates": n, "identify_ms": median_ms(samples), "best": best})


def frame_faces(path):
    """Every face of one video frame, located and encoded, as face_recognition's README
    does for video: (faces found, encodings made)."""
    import face_recognition as fr
    image = fr.load_image_file(path)
    locations = fr.face_locations(image)
    return len(locations), len(fr.face_encodings(image, known_face_locations=locations))


def video(frames_dir, workers):
    """Every frame of a clip (PNG files, in order), WORKERS processes side by side (dlib's
    HOG detector uses one core: this gives it the cores facegate has)."""
    import multiprocessing
    import face_recognition  # noqa: F401  (loaded before timing, as in the other commands)
    paths = sorted(os.path.join(frames_dir, f) for f in os.listdir(frames_dir)
                   if f.endswith(".png"))
    with multiprocessing.get_context("fork").Pool(int(workers)) as pool:
        pool.map(frame_faces, paths[:2])  # warm each worker
        start = time.perf_counter()
        counts = pool.map(frame_faces, paths, chunksize=1)
        wall = time.perf_counter() - start
    emit({"frames": len(paths), "workers": int(workers), "wall_s": wall,
          "frames_per_s": len(paths) / wall, "faces": sum(c[0] for c in counts)})


if __name__ == "__main__":
    main({"enroll": enroll, "verify": verify, "warm": warm, "identify": identify,
          "video": video})
