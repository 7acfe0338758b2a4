// facegate camera page: enroll and verify from the browser's camera (or an uploaded photo).
// Plain JavaScript, no build step. Talks to the same server's /v1 API with the API key typed
// above (kept in this browser's localStorage).
'use strict';

const $ = (id) => document.getElementById(id);
const video = $('video');
const overlay = $('overlay');
const KEY_STORAGE = 'facegate-api-key';
let apiKey = localStorage.getItem(KEY_STORAGE) || '';
let cameraOn = false;
let detecting = false;

$('api-key').value = apiKey;

async function api(method, path, body) {
  const headers = {};
  if (apiKey) headers['Authorization'] = 'Bearer ' + apiKey;
  const response = await fetch(path, { method, headers, body });
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  if (!response.ok) {
    const error = (data && data.error) || { code: 'http_' + response.status, message: response.statusText };
    if (error.code === 'unauthorized') $('key-status').textContent = 'Key needed';
    const failure = new Error(error.message);
    failure.code = error.code;
    throw failure;
  }
  return data;
}

function show(element, state, title, detail) {
  element.dataset.state = state;
  element.replaceChildren();
  const strong = document.createElement('strong');
  strong.textContent = title;
  element.append(strong);
  if (detail) element.append(document.createTextNode(detail));
}

async function startCamera() {
  if (cameraOn) return;
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    $('camera-status').textContent = 'No camera access here (the page needs https or localhost). Upload photos instead.';
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
    video.srcObject = stream;
    await video.play();
    cameraOn = true;
    $('camera-status').textContent = 'Camera on';
    $('camera-button').textContent = 'Camera on';
    $('camera-button').disabled = true;
    setInterval(detectLoop, 700);
  } catch (err) {
    $('camera-status').textContent = 'Camera unavailable: ' + err.message;
  }
}

function captureFrame() {
  return new Promise((resolve, reject) => {
    if (!cameraOn || !video.videoWidth) {
      reject(new Error('The camera is not on yet; start it, or upload a photo.'));
      return;
    }
    const canvas = document.createElement('canvas');
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext('2d').drawImage(video, 0, 0);
    canvas.toBlob((blob) => blob ? resolve(blob) : reject(new Error('Could not capture a frame.')), 'image/jpeg', 0.92);
  });
}

function drawFaces(result) {
  const context = overlay.getContext('2d');
  overlay.width = result.width;
  overlay.height = result.height;
  context.clearRect(0, 0, overlay.width, overlay.height);
  context.lineWidth = Math.max(2, result.width / 200);
  for (const face of result.faces) {
    const [x1, y1, x2, y2] = face.bbox;
    context.strokeStyle = '#35d46a';
    context.strokeRect(x1, y1, x2 - x1, y2 - y1);
    context.fillStyle = '#ffd23f';
    for (const [x, y] of face.landmarks) {
      context.beginPath();
      context.arc(x, y, context.lineWidth * 1.5, 0, 2 * Math.PI);
      context.fill();
    }
  }
}

async function detectLoop() {
  if (detecting || document.hidden) return;
  detecting = true;
  try {
    const form = new FormData();
    form.append('image', await captureFrame(), 'frame.jpg');
    drawFaces(await api('POST', '/v1/detect', form));
  } catch (_) {
    // The live box is a convenience; errors show on the buttons' results.
  } finally {
    detecting = false;
  }
}

async function refreshPeople() {
  const select = $('verify-person');
  const chosen = select.value;
  try {
    let after = null;
    const names = [];
    do {
      const query = after ? '?limit=1000&after=' + encodeURIComponent(after) : '?limit=1000';
      const page = await api('GET', '/v1/people' + query);
      names.push(...page.people.map((p) => p.name));
      after = page.next_after;
    } while (after);
    while (select.options.length > 1) select.remove(1);
    for (const name of names) select.add(new Option(name, name));
    select.value = names.includes(chosen) ? chosen : '';
    $('key-status').textContent = apiKey ? 'Key accepted' : '';
  } catch (_) { /* shown by api() */ }
}

async function photoFrom(fileInput) {
  const file = fileInput.files && fileInput.files[0];
  fileInput.value = '';
  return file || captureFrame();
}

async function enroll(photo) {
  const result = $('enroll-result');
  const name = $('enroll-name').value.trim();
  if (!name) { show(result, 'error', 'Type a name first.'); return; }
  show(result, 'busy', 'Enrolling…');
  try {
    const image = await photo;
    const form = new FormData();
    form.append('name', name);
    form.append('image', image, image.name || 'camera.jpg');
    let outcome;
    try {
      outcome = await api('POST', '/v1/people', form);
    } catch (err) {
      if (err.code !== 'person_exists') throw err;
      const more = new FormData();
      more.append('image', image, image.name || 'camera.jpg');
      outcome = await api('POST', '/v1/people/' + encodeURIComponent(name) + '/faces', more);
    }
    const count = outcome.person.templates.length;
    const note = outcome.duplicates.length ? ' (this exact photo was already enrolled)' : '';
    show(result, 'enrolled', 'Enrolled ' + outcome.person.name, count + ' face template(s) stored' + note);
    await refreshPeople();
  } catch (err) {
    show(result, 'error', 'Not enrolled', err.message);
  }
}

// The server reports passive liveness only when it runs with --liveness: an experimental
// score of single photos, measured not to work (use Check liveness for the real check); a
// separate verdict, never part of the distance.
function livenessText(liveness) {
  if (!liveness) return '';
  return '; experimental passive liveness ' + (liveness.live ? 'live' : 'NOT LIVE') + ' (score ' + liveness.score.toFixed(2) + ')';
}

async function verify(photo) {
  const result = $('verify-result');
  const person = $('verify-person').value;
  show(result, 'busy', 'Checking…');
  try {
    const image = await photo;
    const form = new FormData();
    form.append('image', image, image.name || 'camera.jpg');
    if (person) {
      form.append('person', person);
      const v = await api('POST', '/v1/verify', form);
      // Keys of the verify role get the decision without the distance.
      const measured = v.distance == null ? '' :
        'distance ' + v.distance.toFixed(3) + (v.is_match ? ' ≤ ' : ' > ');
      const detail = measured + 'threshold ' + v.threshold.value.toFixed(3) + ' (' + v.model + ')' +
        livenessText(v.liveness);
      if (v.is_match && !v.accepted) {
        show(result, 'no-match', 'Match, but not live: ' + person, detail);
      } else {
        show(result, v.is_match ? 'match' : 'no-match', v.is_match ? 'Match: ' + person : 'No match: not ' + person, detail);
      }
    } else {
      const r = await api('POST', '/v1/identify', form);
      const best = r.candidates[0];
      const detail = best ? 'closest: ' + best.person + ', distance ' + best.distance.toFixed(3) +
        ', threshold ' + r.threshold.value.toFixed(3) : 'nobody is enrolled';
      show(result, r.identity ? 'identified' : 'unknown', r.identity ? 'This is ' + r.identity : 'Unknown person', detail + livenessText(r.liveness));
    }
  } catch (err) {
    show(result, 'error', 'Could not verify', err.message);
  }
}

// Liveness by challenge: the server asks for head movements and a blink in a random order; frames go to
// it in small batches (with the camera's times) until it decides. Directions are as seen in the
// picture above (which is not mirrored): "left" means the face in the picture turns left.
const ARROWS = { left: '←', right: '→', up: '↑', down: '↓', blink: '◡ ◡' };
const PROMPTS = {
  left: 'Turn your head so the face in the picture looks left, then back',
  right: 'Turn your head so the face in the picture looks right, then back',
  up: 'Look up, then back',
  down: 'Look down, then back',
  blink: 'Blink both eyes once, looking at the camera',
};
// Blinks last a few tenths of a second: 10 frames a second sees one in two or three frames.
const CHALLENGE_FPS = 10;
let challengeRunning = false;

function showChallenge(state, step, steps, secondsLeft) {
  const box = $('challenge');
  box.dataset.state = 'running';
  $('challenge-progress').max = steps.length;
  if (state.state === 'step') {
    const asked = state.asked;
    $('challenge-arrow').textContent = ARROWS[asked] || '';
    $('challenge-prompt').textContent = 'Step ' + state.step + ' of ' + steps.length + ': ' + (PROMPTS[asked] || asked);
    $('challenge-progress').value = state.step - 1;
  } else if (state.state === 'ending') {
    $('challenge-arrow').textContent = '●';
    $('challenge-prompt').textContent = 'Look straight at the camera';
    $('challenge-progress').value = steps.length;
  } else {
    $('challenge-arrow').textContent = '●';
    $('challenge-prompt').textContent = 'Look straight at the camera';
  }
  box.dataset.step = step;
  $('challenge-time').textContent = secondsLeft > 0 ? Math.ceil(secondsLeft) + ' s left' : '';
}

async function challenge() {
  if (challengeRunning) return;
  const result = $('challenge-result');
  // With a person chosen the challenge verifies them; without, it identifies whoever answers.
  const person = $('verify-person').value;
  if (!cameraOn) { show(result, 'error', 'Start the camera first.'); return; }
  challengeRunning = true;
  $('challenge-button').disabled = true;
  show(result, 'busy', 'Liveness check' + (person ? ' for ' + person : '') + '…');
  const queue = [];
  let timer = null;
  try {
    const form = new FormData();
    if (person) form.append('person', person);
    const issued = await api('POST', '/v1/liveness/challenges', form);
    const started = performance.now();
    let state = { state: 'starting' };
    let phaseKey = 'starting';
    let phaseStarted = started;
    const tick = () => {
      const limit = state.state === 'step' ? issued.step_seconds : issued.settle_seconds;
      showChallenge(state, phaseKey, issued.steps, limit - (performance.now() - phaseStarted) / 1000);
    };
    tick();
    timer = setInterval(async () => {
      if (queue.length >= 20) return; // the server is behind: skip frames rather than queue them
      try {
        queue.push({ t: Math.round(performance.now() - started), blob: await captureFrame() });
      } catch (_) { /* camera hiccup: the next frame will do */ }
      tick();
    }, 1000 / CHALLENGE_FPS);
    while (state.passed == null) {
      await new Promise((resolve) => setTimeout(resolve, 400));
      if (!queue.length) continue;
      const batch = queue.splice(0, queue.length);
      const frames = new FormData();
      frames.append('nonce', issued.nonce);
      frames.append('times_ms', batch.map((f) => f.t).join(','));
      for (const f of batch) frames.append('images', f.blob, 'frame.jpg');
      state = await api('POST', '/v1/liveness/challenges/' + encodeURIComponent(issued.id) + '/frames', frames);
      const key = state.state + (state.step || '');
      if (key !== phaseKey) { phaseKey = key; phaseStarted = performance.now(); }
      tick();
      if ((performance.now() - started) / 1000 > issued.expires_in_seconds) break;
    }
    if (state.passed) {
      show(result, 'match', 'Live: ' + state.identity, 'followed ' + issued.steps.length + ' steps; identity checked ' + state.identity_checks + ' times');
    } else {
      show(result, 'no-match', 'Liveness check failed', state.reason || 'the challenge expired');
    }
  } catch (err) {
    show(result, 'error', 'Could not check liveness', err.message);
  } finally {
    clearInterval(timer);
    $('challenge').dataset.state = 'idle';
    $('challenge-button').disabled = false;
    challengeRunning = false;
  }
}

$('key-form').addEventListener('submit', (event) => {
  event.preventDefault();
  apiKey = $('api-key').value.trim();
  localStorage.setItem(KEY_STORAGE, apiKey);
  $('key-status').textContent = 'Checking…';
  refreshPeople();
});
$('camera-button').addEventListener('click', startCamera);
$('enroll-button').addEventListener('click', () => enroll(captureFrame()));
$('verify-button').addEventListener('click', () => verify(captureFrame()));
$('challenge-button').addEventListener('click', challenge);
$('enroll-file').addEventListener('change', () => enroll(photoFrom($('enroll-file'))));
$('verify-file').addEventListener('change', () => verify(photoFrom($('verify-file'))));

startCamera();
refreshPeople();
