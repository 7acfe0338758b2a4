"""Drives facegate's DeepStack-compatible API the way DeepStack's clients do: plain `requests`,
multipart uploads under `image` (one per call, as Double Take trains), the key as the form field
`api_key`, the routes with and without DeepStack's trailing slash.

Usage: deepstack_requests.py BASE_URL API_KEY ENROLL_PHOTO PROBE_PHOTO OTHER_PERSON_PHOTO
Prints one JSON document with what each call answered; the Rust test judges it.
"""

import json
import sys

import requests

base, key, enroll, probe, other = sys.argv[1:6]


def post(route, data=None, files=None):
    data = dict(data or {})
    data["api_key"] = key
    response = requests.post(base + route, data=data, files=files, timeout=120)
    return {"status": response.status_code, "body": response.json()}


def image(path, field="image"):
    return {field: open(path, "rb").read()}


answers = {
    "register": post("/v1/vision/face/register", {"userid": "ben"}, image(enroll)),
    "list": post("/v1/vision/face/list"),
    "recognize": post("/v1/vision/face/recognize", {"min_confidence": "0.67"}, image(probe)),
    "recognize_other": post("/v1/vision/face/recognize", None, image(other)),
    "detect": post("/v1/vision/face/", None, image(probe)),
    "match": post(
        "/v1/vision/face/match",
        None,
        {"image1": open(enroll, "rb").read(), "image2": open(probe, "rb").read()},
    ),
    "delete": post("/v1/vision/face/delete", {"userid": "ben"}),
    "list_after": post("/v1/vision/face/list/"),
}
answers["wrong_key"] = {
    "status": (r := requests.post(base + "/v1/vision/face/list", data={"api_key": "nope"}, timeout=60)).status_code,
    "body": r.json(),
}
print(json.dumps(answers))
