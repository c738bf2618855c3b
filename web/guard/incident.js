// The guard app's incident report: a category, what happened, optionally the guard's open
// alarm, and photos from the camera. Each photo is made smaller on the phone (a canvas, at
// most MAX_SIDE pixels on its long side, JPEG) before it is sent: a phone camera's 4–12 MB
// picture becomes a few hundred kB, within the appliance's byte budgets and quick on a weak
// network. The report is filed first (POST, with a key made when the form opens, so sending
// again after a lost answer files it once), then each photo is sent on its own (PUT by number,
// so a photo sent again replaces itself). A refusal shows the appliance's own words, which
// name the budget.

import { INCIDENT_CATEGORIES as LABELS } from '/incident-categories.js';

const $ = (selector) => document.querySelector(selector);
const MAX_SIDE = 1600;
const QUALITY = 0.8;
// The appliance's own limit is patrol.max_photos_per_incident; this keeps the form short.
const MAX_PHOTOS = 8;

/** A key for one report: 8–64 of A-Z a-z 0-9 - _ (what the appliance takes). */
function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return `inc-${[...bytes].map((b) => b.toString(16).padStart(2, '0')).join('')}`;
}

/** `file` decoded, upright: an ImageBitmap, or where that cannot be made (older Safari) an
 * <img>, which applies the picture's EXIF orientation itself. */
async function decoded(file) {
  try {
    return await createImageBitmap(file, { imageOrientation: 'from-image' });
  } catch {
    const url = URL.createObjectURL(file);
    try {
      const img = new Image();
      img.src = url;
      await img.decode();
      return img;
    } finally {
      URL.revokeObjectURL(url);
    }
  }
}

/** `file` (a camera picture) as a JPEG of at most MAX_SIDE px on its long side. */
async function resized(file) {
  let image;
  try {
    image = await decoded(file);
  } catch {
    throw new Error('this picture could not be read');
  }
  const width = image.naturalWidth ?? image.width;
  const height = image.naturalHeight ?? image.height;
  const scale = Math.min(1, MAX_SIDE / Math.max(width, height));
  const canvas = document.createElement('canvas');
  canvas.width = Math.max(1, Math.round(width * scale));
  canvas.height = Math.max(1, Math.round(height * scale));
  canvas.getContext('2d').drawImage(image, 0, 0, canvas.width, canvas.height);
  image.close?.();
  return new Promise((resolve, reject) => {
    canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error('this picture could not be read'))), 'image/jpeg', QUALITY);
  });
}

/**
 * Wires the "Report incident" form. `token()`: the session token; `openAlert()`: the guard's
 * alarm now open (`{id, type}`) or null.
 */
export function startIncidents({ token, openAlert }) {
  const dialog = $('#incident-dialog');
  const form = $('#incident-form');
  const category = $('#incident-category');
  const photosInput = $('#incident-photos');
  const thumbs = $('#incident-thumbs');
  const error = $('#incident-error');
  const status = $('#incident-status');
  const send = $('#incident-send');
  category.replaceChildren(
    ...Object.entries(LABELS).map(([value, label]) => new Option(label, value)),
  );
  // The report being written: its key, photos (resized blobs) and, once filed, its id and the
  // photos already sent (a second Send after a refusal sends only the rest).
  let draft = null;

  function fresh() {
    for (const p of draft?.photos ?? []) URL.revokeObjectURL(p.url);
    draft = { key: newKey(), photos: [], id: null, sent: new Set() };
    form.reset();
    thumbs.replaceChildren();
    showError(null);
  }

  function showError(message) {
    error.hidden = !message;
    error.textContent = message ?? '';
  }

  function renderThumbs() {
    thumbs.replaceChildren(
      ...draft.photos.map((p, i) => {
        const img = document.createElement('img');
        img.src = p.url;
        img.alt = `Photo ${i + 1}`;
        const remove = document.createElement('button');
        remove.type = 'button';
        remove.className = 'link';
        remove.textContent = 'Remove';
        remove.setAttribute('aria-label', `Remove photo ${i + 1}`);
        // Once the report is filed, its photos are numbered: none is taken out any more.
        remove.hidden = draft.id !== null;
        remove.addEventListener('click', () => {
          URL.revokeObjectURL(p.url);
          draft.photos.splice(i, 1);
          renderThumbs();
        });
        const li = document.createElement('li');
        li.append(img, remove);
        return li;
      }),
    );
    photosInput.disabled = draft.id !== null || draft.photos.length >= MAX_PHOTOS;
  }

  async function call(method, path, body, type) {
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: { authorization: `Bearer ${token()}`, ...(type ? { 'content-type': type } : {}) },
        body,
      });
    } catch {
      // No answer at all (no network, the appliance out of reach): a resend is safe.
      throw new Error('No connection to the appliance: press Send report again when back online (nothing is filed twice)');
    }
    const answer = await response.json().catch(() => null);
    if (!response.ok) throw new Error(answer?.error?.message ?? `HTTP ${response.status}`);
    return answer;
  }

  $('#incident-open').addEventListener('click', () => {
    if (!draft || draft.id !== null) fresh();
    const alert = openAlert();
    $('#incident-alert-row').hidden = !alert;
    $('#incident-alert-type').textContent = alert ? alert.type : '';
    status.textContent = '';
    dialog.hidden = false;
    category.focus();
  });
  $('#incident-cancel').addEventListener('click', () => {
    dialog.hidden = true;
  });

  photosInput.addEventListener('change', async () => {
    const files = [...photosInput.files].slice(0, MAX_PHOTOS - draft.photos.length);
    photosInput.value = '';
    showError(null);
    for (const file of files) {
      try {
        const blob = await resized(file);
        draft.photos.push({ blob, url: URL.createObjectURL(blob) });
      } catch (e) {
        showError(`${file.name}: ${e.message}`);
      }
    }
    renderThumbs();
  });

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    showError(null);
    send.disabled = true;
    try {
      if (draft.id === null) {
        status.textContent = 'Sending the report…';
        const alert = $('#incident-link').checked ? openAlert() : null;
        const filed = await call(
          'POST',
          '/api/v1/incidents',
          JSON.stringify({
            category: category.value,
            text: $('#incident-text').value,
            key: draft.key,
            ...(alert ? { alert: alert.id } : {}),
          }),
          'application/json',
        );
        draft.id = filed.id;
        renderThumbs();
      }
      for (const [i, photo] of draft.photos.entries()) {
        if (draft.sent.has(i)) continue;
        status.textContent = `Sending photo ${i + 1} of ${draft.photos.length}…`;
        try {
          await call('PUT', `/api/v1/incidents/${encodeURIComponent(draft.id)}/photos/${i + 1}`, photo.blob, 'image/jpeg');
        } catch (e) {
          throw new Error(`Photo ${i + 1} was not accepted: ${e.message}`);
        }
        draft.sent.add(i);
      }
      const n = draft.photos.length;
      status.textContent = `Report sent${n ? ` with ${n} photo${n === 1 ? '' : 's'}` : ''}.`;
      $('#incident-sent').textContent = status.textContent;
      dialog.hidden = true;
      fresh();
    } catch (e) {
      // The report (and the photos sent) stay: Send again sends what is left.
      status.textContent = '';
      const sent = draft.sent.size;
      const filed = draft.id === null ? '' : `. The report was sent${sent ? ` with ${sent} photo${sent === 1 ? '' : 's'}` : ''}.`;
      showError(`${e.message}${filed}`);
    } finally {
      send.disabled = false;
    }
  });
  fresh();
}
