"""Seeds for the http_request target: one request per route and body kind around a photo.

The first byte selects the route (low 3 bits) and the content type (bits 3-4: JSON,
multipart, octet-stream, none), as fuzz_targets/http_request.rs reads it.
Usage: python3 seeds.py PHOTO OUT_DIR
"""
import base64
import json
import pathlib
import sys

photo = pathlib.Path(sys.argv[1]).read_bytes()
out = pathlib.Path(sys.argv[2])
b64 = base64.b64encode(photo).decode()
JSON, MULTIPART = 0, 1 << 3


def multipart(fields):
    body = b""
    for name, value, filename in fields:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += b"--fuzzboundary\r\nContent-Disposition: " + disposition.encode() + b"\r\n\r\n" + value + b"\r\n"
    return body + b"--fuzzboundary--\r\n"


seeds = {
    "verify_json": bytes([0 | JSON]) + json.dumps({"person": "alice", "image": b64}).encode(),
    "identify_json": bytes([1 | JSON]) + json.dumps({"image": b64, "top": 3}).encode(),
    "detect_json": bytes([2 | JSON]) + json.dumps({"image": "data:image/jpeg;base64," + b64}).encode(),
    "create_json": bytes([3 | JSON]) + json.dumps({"name": "alice", "images": [b64]}).encode(),
    "create_multipart": bytes([3 | MULTIPART]) + multipart([("name", b"bob", None), ("image", photo, "f.jpg")]),
    "faces_multipart": bytes([4 | MULTIPART]) + multipart([("largest", b"true", None), ("image", photo, "f.jpg")]),
}
for name, data in seeds.items():
    (out / name).write_bytes(data)
