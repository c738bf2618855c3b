// The guard app's service worker: keeps the app shell so the app opens without a network.
// The shell is fetched network-first (an upgraded appliance is seen at once) and falls back to
// the cache; the API, the WebSocket and anything not in the shell never go through the cache.
const CACHE = 'lookout-guard-v5';
const SHELL = [
  '/guard',
  '/guard/guard.js',
  '/guard/welfare.js',
  '/guard/patrol.js',
  '/guard/rest.js',
  '/guard/vendor/jsqr/jsQR.js',
  '/guard/incident.js',
  '/incident-categories.js',
  '/guard/guard.css',
  '/guard/icon.svg',
  '/guard/manifest.webmanifest',
  '/lookout-client.js',
  '/signin.js',
  '/vendor/msgpack/CachedKeyDecoder.mjs',
  '/vendor/msgpack/DecodeError.mjs',
  '/vendor/msgpack/Decoder.mjs',
  '/vendor/msgpack/Encoder.mjs',
  '/vendor/msgpack/ExtData.mjs',
  '/vendor/msgpack/ExtensionCodec.mjs',
  '/vendor/msgpack/context.mjs',
  '/vendor/msgpack/decode.mjs',
  '/vendor/msgpack/decodeAsync.mjs',
  '/vendor/msgpack/encode.mjs',
  '/vendor/msgpack/index.mjs',
  '/vendor/msgpack/timestamp.mjs',
  '/vendor/msgpack/utils/int.mjs',
  '/vendor/msgpack/utils/prettyByte.mjs',
  '/vendor/msgpack/utils/stream.mjs',
  '/vendor/msgpack/utils/typedArrays.mjs',
  '/vendor/msgpack/utils/utf8.mjs',
];

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== 'GET' || url.origin !== self.location.origin) return;
  if (!SHELL.includes(url.pathname)) return;
  const cached = () => caches.match(url.pathname);
  event.respondWith(
    fetch(event.request)
      .then(async (response) => {
        // Only the appliance's own, final answer is kept (never a portal's redirect); an error
        // while it restarts falls back to the kept copy.
        if (response.ok && !response.redirected && response.type === 'basic') {
          const copy = response.clone();
          event.waitUntil(caches.open(CACHE).then((cache) => cache.put(url.pathname, copy)));
          return response;
        }
        return (await cached()) ?? response;
      })
      .catch(async () => (await cached()) ?? Response.error()),
  );
});
