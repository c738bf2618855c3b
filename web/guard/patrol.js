// Patrols in the guard app, on the server's tours and scans (src/patrol/):
//
// - The tour card: each of the guard's tours with its round open or next, the checkpoints
//   scanned and the one to scan next (GET /api/v1/tours/current).
// - Scanning: the camera reads a checkpoint's QR code — with the browser's BarcodeDetector where
//   it reads QR codes, else with the bundled jsQR (/guard/vendor/jsqr/) — and, where the phone
//   has Web NFC, a tag written with the same code is read while the scanner is open.
// - Offline: every scan is queued on the phone (localStorage) with the time it was made and a
//   random key, and sent when the appliance answers; a resend after a lost answer is recorded
//   once (the server keys scans by that key), so nothing is lost and nothing counts twice.
import { rest } from '/guard/rest.js';

const $ = (selector) => document.querySelector(selector);

const QUEUE_KEY = 'lookout.guard.scans';
const CODE_PREFIX = 'LKCP1.';
// Scans kept while offline: a night's tours many times over. The oldest go first.
const MAX_QUEUED = 500;
// How often the camera's picture is read, and how wide it is read (px).
const SCAN_EVERY_MS = 150;
const SCAN_WIDTH = 640;
// The tours are read again this often, and a queue that could not be sent is retried.
const REFRESH_MS = 30000;
const RETRY_MS = 5000;
// Refusals no resend can change: the scan is dropped from the queue and the refusal shown.
const REFUSED_FOR_GOOD = [400, 403, 404, 413];

const utc = (ms) => new Date(ms).toISOString().slice(11, 16);

function randomKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return `scan-${[...bytes].map((b) => b.toString(16).padStart(2, '0')).join('')}`;
}

/** Loads a classic script once (jsQR is a UMD bundle that sets `window.jsQR`). */
function loadScript(src) {
  return new Promise((resolve, reject) => {
    const script = document.createElement('script');
    script.src = src;
    script.onload = resolve;
    script.onerror = () => reject(new Error(`${src} did not load`));
    document.head.append(script);
  });
}

/** A function that reads a QR code in the video's current picture (or null), and its name. */
async function qrReader(canvas) {
  if ('BarcodeDetector' in window) {
    try {
      // eslint-disable-next-line no-undef
      if ((await BarcodeDetector.getSupportedFormats()).includes('qr_code')) {
        // eslint-disable-next-line no-undef
        const detector = new BarcodeDetector({ formats: ['qr_code'] });
        return { name: 'BarcodeDetector', read: async (video) => (await detector.detect(video))[0]?.rawValue ?? null };
      }
    } catch {
      // Present but unusable: jsQR reads instead.
    }
  }
  if (!window.jsQR) await loadScript('/guard/vendor/jsqr/jsQR.js');
  const context = canvas.getContext('2d', { willReadFrequently: true });
  return {
    name: 'jsQR',
    read: async (video) => {
      canvas.width = Math.min(SCAN_WIDTH, video.videoWidth);
      canvas.height = Math.round((video.videoHeight / video.videoWidth) * canvas.width);
      context.drawImage(video, 0, 0, canvas.width, canvas.height);
      const image = context.getImageData(0, 0, canvas.width, canvas.height);
      return window.jsQR(image.data, image.width, image.height, { inversionAttempts: 'attemptBoth' })?.data ?? null;
    },
  };
}

/** The scans waiting to be sent, kept on the phone for one guard. */
class ScanQueue {
  constructor(owner) {
    this.owner = owner;
    let kept = null;
    try {
      kept = JSON.parse(localStorage.getItem(QUEUE_KEY) ?? 'null');
    } catch {
      // Unreadable: dropped rather than blocking the app.
    }
    this.scans = kept?.owner === owner ? kept.scans ?? [] : [];
  }

  save() {
    try {
      localStorage.setItem(QUEUE_KEY, JSON.stringify({ owner: this.owner, scans: this.scans }));
    } catch {
      // Storage full: what is in memory still goes out.
    }
  }

  push(scan) {
    this.scans.push(scan);
    if (this.scans.length > MAX_QUEUED) this.scans.shift();
    this.save();
  }

  drop(scan) {
    this.scans = this.scans.filter((s) => s.key !== scan.key);
    this.save();
  }
}

export function startPatrol({ client, token, owner, fix }) {
  const queue = new ScanQueue(owner);
  let tours = [];
  let sending = false;
  let stopped = false;
  let retry = null;
  // The checkpoints the phone knows by id, for names in what it shows.
  const names = new Map();

  const api = (method, path, body) => rest(token(), method, path, body);

  function showResult(text, state) {
    const p = $('#scan-result');
    p.textContent = text;
    p.dataset.state = state;
    p.hidden = false;
  }

  function render() {
    $('#patrol').hidden = tours.length === 0 && queue.scans.length === 0;
    const waiting = new Set(queue.scans.map((s) => s.checkpoint).filter(Boolean));
    $('#tours').replaceChildren(...tours.map((t) => {
      const li = document.createElement('li');
      li.dataset.tour = t.tour.id;
      const head = document.createElement('strong');
      head.textContent = t.tour.name;
      const when = document.createElement('span');
      when.className = 'muted';
      const done = t.stops.filter((s) => s.scanned).length;
      when.textContent = ` · ${t.open ? 'round open until' : 'next round'} ${t.open ? utc(t.round.window_end) : utc(t.round.round_start)} UTC · ${done}/${t.stops.length}`;
      const stops = document.createElement('ol');
      stops.className = 'stops';
      for (const s of t.stops) {
        const item = document.createElement('li');
        item.dataset.id = s.id;
        item.dataset.state = s.scanned ? 'scanned' : waiting.has(s.id) ? 'queued' : s.id === t.next ? 'next' : 'todo';
        item.textContent = `${s.name}${item.dataset.state === 'queued' ? ' (waiting to send)' : ''}`;
        if (s.id === t.next && s.instructions) {
          const hint = document.createElement('small');
          hint.textContent = s.instructions;
          item.append(document.createElement('br'), hint);
        }
        stops.append(item);
      }
      li.append(head, when, stops);
      return li;
    }));
    const n = queue.scans.length;
    $('#scan-queue').textContent = n ? `${n} scan${n === 1 ? '' : 's'} waiting for the connection.` : '';
    $('#scan-queue').dataset.size = String(n);
  }

  async function refresh() {
    if (stopped) return;
    try {
      const { status, body } = await api('GET', '/api/v1/tours/current');
      if (status === 200 && Array.isArray(body)) {
        tours = body;
        for (const t of tours) for (const s of t.stops) names.set(s.id, s.name);
      }
    } catch {
      // Offline: the tours last read stay shown.
    }
    render();
  }

  /** Sends the queue in order; stops at the first scan that could not go (offline, busy). */
  async function flush() {
    if (sending || stopped) return;
    sending = true;
    let sent = false;
    try {
      while (queue.scans.length) {
        const scan = queue.scans[0];
        const { checkpoint, ...body } = scan;
        let answer;
        try {
          answer = await api('POST', '/api/v1/patrols/scans', body);
        } catch {
          if ($('#scan-result').dataset.state === 'queued') {
            showResult(`${names.get(checkpoint) ?? 'Checkpoint'} read and kept on this phone: it is sent when the connection returns.`, 'queued');
          }
          break;
        }
        if (answer.status === 200 || answer.status === 201) {
          queue.drop(scan);
          sent = true;
          const s = answer.body;
          const name = names.get(s.checkpoint) ?? 'Checkpoint';
          const flags = [
            s.far ? `${Math.round(s.distance_m)} m from where it should be` : '',
            s.out_of_order ? 'out of order' : '',
            s.late_arrival ? 'arrived after its round ended' : '',
          ].filter(Boolean);
          showResult(`${name} scanned at ${new Date(s.scanned_at).toLocaleTimeString()}${flags.length ? ` — flagged: ${flags.join(', ')}` : ''}.`, flags.length ? 'flagged' : 'ok');
        } else if (REFUSED_FOR_GOOD.includes(answer.status)) {
          queue.drop(scan);
          showResult(`Scan refused: ${answer.body?.error?.message ?? `HTTP ${answer.status}`}`, 'refused');
        } else {
          // Busy, over the day's budget, or the store briefly away: kept, and tried again.
          if (answer.status === 429) showResult(`Not recorded yet: ${answer.body?.error?.message ?? 'too many scans'}`, 'refused');
          break;
        }
      }
    } finally {
      sending = false;
    }
    render();
    if (sent) refresh();
    clearTimeout(retry);
    if (queue.scans.length && !stopped) retry = setTimeout(flush, RETRY_MS);
  }

  /** A code read from a QR code or a tag: queued with the time and place, then sent. */
  function scanned(code, via) {
    const [, , id] = code.split('.');
    const scan = { code, key: randomKey(), scanned_at: Date.now(), via, checkpoint: id };
    const at = fix();
    if (at) Object.assign(scan, { lat: at.lat, lon: at.lon, accuracy: at.accuracy });
    queue.push(scan);
    navigator.vibrate?.(100);
    showResult(`${names.get(id) ?? 'Checkpoint'} read — sending…`, 'queued');
    render();
    flush();
  }

  // ---- The scanner ----
  let stream = null;
  let timer = null;
  let nfc = null;

  async function openScanner() {
    $('#scanner').hidden = false;
    $('#scanner-status').textContent = 'Point the camera at the checkpoint’s QR code.';
    if ('NDEFReader' in window) {
      try {
        nfc = new AbortController();
        // eslint-disable-next-line no-undef
        const reader = new NDEFReader();
        reader.addEventListener('reading', ({ message }) => {
          for (const record of message.records) {
            if (record.recordType !== 'text') continue;
            const text = new TextDecoder(record.encoding ?? 'utf-8').decode(record.data);
            if (text.startsWith(CODE_PREFIX)) {
              closeScanner();
              scanned(text, 'nfc');
              return;
            }
          }
        });
        await reader.scan({ signal: nfc.signal });
        $('#scanner-status').textContent += ' Or hold the phone to its NFC tag.';
      } catch {
        // No NFC permission or no NFC: the camera still reads codes.
      }
    }
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' }, audio: false });
    } catch (e) {
      $('#scanner-status').textContent = `Camera unavailable: ${e.message}`;
      return;
    }
    const video = $('#scan-video');
    video.srcObject = stream;
    await video.play().catch(() => {});
    const reader = await qrReader($('#scan-canvas'));
    $('#scanner').dataset.reader = reader.name;
    let busy = false;
    timer = setInterval(async () => {
      if (busy || !video.videoWidth) return;
      busy = true;
      try {
        const code = await reader.read(video);
        if (code?.startsWith(CODE_PREFIX)) {
          closeScanner();
          scanned(code, 'qr');
        } else if (code) {
          $('#scanner-status').textContent = 'That QR code is not a Lookout checkpoint.';
        }
      } catch {
        // An unreadable picture: the next one is read.
      } finally {
        busy = false;
      }
    }, SCAN_EVERY_MS);
  }

  function closeScanner() {
    clearInterval(timer);
    timer = null;
    for (const track of stream?.getTracks() ?? []) track.stop();
    stream = null;
    $('#scan-video').srcObject = null;
    nfc?.abort();
    nfc = null;
    $('#scanner').hidden = true;
  }

  $('#scan-open').addEventListener('click', () => openScanner());
  $('#scanner-close').addEventListener('click', () => closeScanner());
  window.addEventListener('online', () => flush());
  render();
  refresh();
  flush();
  const refreshTimer = setInterval(refresh, REFRESH_MS);

  return {
    /** The connection to the appliance is back: what waits goes now. */
    connected() {
      flush();
      refresh();
    },
    stop() {
      stopped = true;
      clearInterval(refreshTimer);
      clearTimeout(retry);
      closeScanner();
    },
  };
}
