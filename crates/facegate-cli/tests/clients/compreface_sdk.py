"""Drives facegate's CompreFace-compatible API with CompreFace's own clients, unchanged:

1. the official Python SDK (compreface-sdk 0.6.0): subjects add / list / rename / delete,
   examples add (from a path and from bytes) / list / verify / delete, recognize, detect and
   verification, with the options a user of the SDK sets (sent as `?&limit=0&status=True...`);
2. the requests Double Take makes (api/src/util/detectors/compreface.js): train with one image
   per call (`POST /faces?subject=`), recognize with `det_prob_threshold=0.8`, remove with
   `DELETE /faces?subject=`, and its reading of the answer (code 28 = no face; similarity x 100
   against its default match of 60).

Usage: compreface_sdk.py BASE_URL RECOGNITION_KEY DETECTION_KEY VERIFICATION_KEY
                         ENROLL_PHOTO ENROLL_PHOTO_2 PROBE_PHOTO OTHER_PERSON_PHOTO
                         TWO_FACES_PHOTO NO_FACE_PHOTO
Prints one JSON document with what each call answered; the Rust test judges it.
"""

import json
import sys
from urllib.parse import urlsplit

import requests
from compreface import CompreFace

(base, recognition_key, detection_key, verification_key, enroll, enroll_2, probe, other,
 two_faces, no_face) = sys.argv[1:11]
url = urlsplit(base)

# What a user of the SDK writes: the server, the port, default options for every call.
compre_face = CompreFace(
    f"{url.scheme}://{url.hostname}",
    str(url.port),
    {"limit": 0, "det_prob_threshold": 0.8, "prediction_count": 1,
     "face_plugins": "landmarks", "status": True},
)
recognition = compre_face.init_face_recognition(recognition_key)
subjects = recognition.get_subjects()
faces = recognition.get_face_collection()

answers = {}
answers["subject_add"] = subjects.add("ben")
answers["face_add"] = faces.add(image_path=enroll, subject="ben")
with open(other, "rb") as photo:
    answers["face_add_bytes"] = faces.add(image_path=photo.read(), subject="elton")
answers["subjects"] = subjects.list()
answers["faces"] = faces.list()
answers["recognize"] = recognition.recognize(image_path=probe)
answers["recognize_no_face"] = recognition.recognize(image_path=no_face)
answers["verify"] = faces.verify(image_path=probe, image_id=answers["face_add"]["image_id"])
answers["update"] = subjects.update("ben", "Ben Affleck")
answers["subjects_renamed"] = subjects.list()
answers["detect"] = compre_face.init_face_detection(detection_key).detect(image_path=two_faces)
answers["verification"] = compre_face.init_face_verification(verification_key).verify(
    source_image_path=enroll, target_image_path=probe)
answers["delete_face"] = faces.delete(answers["face_add_bytes"]["image_id"])
answers["delete_all_faces"] = faces.delete_all("Ben Affleck")
answers["faces_after"] = faces.list()
answers["subject_delete"] = subjects.delete("Ben Affleck")
answers["subjects_delete_all"] = subjects.delete_all()
answers["subjects_after"] = subjects.list()

# Double Take, request for request.
api = f"{base}/api/v1/recognition"
headers = {"x-api-key": recognition_key}


def train(name, path):
    with open(path, "rb") as photo:
        response = requests.post(f"{api}/faces", params={"subject": name},
                                 files={"file": photo}, headers=headers, timeout=120)
    return response.status_code


def recognize(path):
    with open(path, "rb") as photo:
        response = requests.post(f"{api}/recognize", params={"det_prob_threshold": 0.8},
                                 files={"file": photo}, headers=headers, timeout=120)
    data = response.json()
    if data.get("code") == 28:
        return []
    out = []
    for obj in data["result"]:
        face = obj["subjects"][0] if obj["subjects"] else None
        confidence = round(face["similarity"] * 100, 2) if face else 0
        out.append({"name": face["subject"].lower() if face and confidence >= 40 else "unknown",
                    "confidence": confidence, "match": confidence >= 60})
    return out


double_take = {
    "train": [train("ben", enroll), train("ben", enroll_2)],
    "recognize": recognize(probe),
    "recognize_other": recognize(other),
    "recognize_no_face": recognize(no_face),
}
removed = requests.delete(f"{api}/faces", params={"subject": "ben"}, headers=headers, timeout=60)
double_take["remove"] = {"status": removed.status_code, "body": removed.json()}
answers["double_take"] = double_take

print(json.dumps(answers))
