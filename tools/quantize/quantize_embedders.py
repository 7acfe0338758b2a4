#!/usr/bin/env python3
"""Measures whether int8 embedders are worth shipping: quantizes facegate's two default
embedders (MobileFaceNet, dlib's ResNet) with ONNX Runtime's static quantization (QDQ, int8
weights per channel, uint8 activations: the form that uses AVX-512 VNNI) and writes a copy of
a facegate home whose built models are the quantized ones, for `facegate eval pairs` and
`facegate bench` to compare with the original.

    python tools/quantize/quantize_embedders.py FACEGATE_HOME CALIBRATION_DIR OUT_HOME [ARTIFACT...]

ARTIFACT: quantize only these built models (default: both), e.g. dlib-resnet-v1-0.3.0-r1.onnx.

CALIBRATION_DIR: face photos (LFW-style, the face centred in a 250 x 250 image); the central
crop stands in for the aligned face, which is enough to set activation ranges. Nothing here
is used by facegate itself: a quantized model ships only as a pinned, golden-tested artifact
with LFW accuracy within 0.1 point of the float one (docs/PERFORMANCE.md, "int8").

Needs: onnx, onnxruntime (the pinned version), numpy, pillow; see tools/quantize/README.md.
"""
import hashlib
import json
import os
import shutil
import sys

import numpy as np
from PIL import Image
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                      quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

MODELS = {
    # artifact: (input name, size, layout, preprocess)
    "mobilefacenet-3.0.4-r1.onnx": ("img_inputs", 112, "nhwc",
                                    lambda a: (a - 127.5) / 128.0),
    "dlib-resnet-v1-0.3.0-r1.onnx": ("chip", 150, "nchw",
                                     lambda a: (a - np.array([122.782, 117.001, 104.298])) / 256.0),
}
CALIBRATION_PHOTOS = 300


def photos(root, limit):
    """The first photo of evenly spaced people: many faces, one per person."""
    people = sorted(p for p in os.listdir(root) if os.path.isdir(os.path.join(root, p)))
    found = []
    for person in people[::max(1, len(people) // limit)]:
        folder = os.path.join(root, person)
        files = sorted(f for f in os.listdir(folder) if f.lower().endswith((".jpg", ".png")))
        if files:
            found.append(os.path.join(folder, files[0]))
    return found[:limit]


class Faces(CalibrationDataReader):
    def __init__(self, paths, name, size, layout, preprocess):
        self.items = iter(paths)
        self.name, self.size, self.layout, self.preprocess = name, size, layout, preprocess

    def get_next(self):
        path = next(self.items, None)
        if path is None:
            return None
        image = Image.open(path).convert("RGB")
        w, h = image.size
        side = int(min(w, h) * 0.5)
        left, top = (w - side) // 2, (h - side) // 2 + int(side * 0.06)
        crop = image.crop((left, top, left + side, top + side)).resize((self.size, self.size),
                                                                       Image.BILINEAR)
        a = self.preprocess(np.asarray(crop, dtype=np.float32)).astype(np.float32)
        if self.layout == "nchw":
            a = a.transpose(2, 0, 1)
        return {self.name: a[None]}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    home, calibration, out_home = sys.argv[1:4]
    only = sys.argv[4:] or list(MODELS)
    unknown = [a for a in only if a not in MODELS]
    if unknown:
        sys.exit(f"unknown artifacts {unknown}; known: {list(MODELS)}")
    if os.path.exists(out_home):
        shutil.rmtree(out_home)
    # The downloaded packages are shared (links); the built models and manifest are copied.
    os.makedirs(os.path.join(out_home, "models"))
    for entry in os.listdir(os.path.join(home, "models")):
        source = os.path.abspath(os.path.join(home, "models", entry))
        target = os.path.join(out_home, "models", entry)
        if entry in ("built", "manifest.json"):
            (shutil.copytree if os.path.isdir(source) else shutil.copy)(source, target)
        else:
            os.symlink(source, target)
    paths = photos(calibration, CALIBRATION_PHOTOS)
    manifest_path = os.path.join(out_home, "models", "manifest.json")
    manifest = json.load(open(manifest_path))
    for artifact in only:
        name, size, layout, preprocess = MODELS[artifact]
        source = os.path.join(home, "models", "built", artifact)
        target = os.path.join(out_home, "models", "built", artifact)
        prepared = target + ".prep.onnx"
        quant_pre_process(source, prepared, skip_symbolic_shape=True)
        quantize_static(prepared, target, Faces(paths, name, size, layout, preprocess),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        os.remove(prepared)
        digest = sha256(target)
        # The store checks built artifacts against its manifest: record the new file.
        for key, entry in manifest["entries"].items():
            if key.endswith(artifact):
                entry["sha256"] = digest
                entry["bytes"] = os.path.getsize(target)
        print(json.dumps({"artifact": artifact, "float_bytes": os.path.getsize(source),
                          "int8_bytes": os.path.getsize(target),
                          "calibration_photos": len(paths)}), flush=True)
    json.dump(manifest, open(manifest_path, "w"), indent=2)


if __name__ == "__main__":
    main()
