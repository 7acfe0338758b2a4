"""Shared helpers for the peer pipelines: photo lists, timing, JSON output."""
import json
import os
import statistics
import sys
import time

EXTENSIONS = (".jpg", ".jpeg", ".png")


def photos_by_person(root):
    """[(person, [paths])] for root/<person>/<photos>, sorted."""
    people = []
    for person in sorted(os.listdir(root)):
        folder = os.path.join(root, person)
        if not os.path.isdir(folder):
            continue
        files = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                       if f.lower().endswith(EXTENSIONS))
        if files:
            people.append((person, files))
    return people


def median_ms(samples):
    return statistics.median(samples) * 1000.0 if samples else None


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def synthetic_unit_vectors(n, dim, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, dim), dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def emit(doc):
    print(json.dumps(doc), flush=True)


def main(commands):
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(commands)} ...")
    commands[sys.argv[1]](*sys.argv[2:])
