// What the dashboard and the guard app share about signing in: reading a token's claims (to
// know who is signed in and until when; the server checks the signature) and exchanging a
// one-time `#link=` for a session token. Where the session is kept is each app's choice.

export function claims(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const binary = atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), '='));
    // The payload is UTF-8 (a guard's name may be José).
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0))));
  } catch {
    return null;
  }
}

/**
 * Exchanges the page's `#link=` (removed from the address bar first, so it is never
 * bookmarked or shared) for a session token: `{ token }`, `{ error }`, or `null` without a link.
 */
export async function exchangeLink() {
  const match = location.hash.match(/link=([^&]+)/);
  if (!match) return null;
  history.replaceState(null, '', location.pathname + location.search);
  let token;
  try {
    token = decodeURIComponent(match[1]);
  } catch {
    return { error: 'This sign-in link is damaged: ask for a new one.' };
  }
  let response;
  try {
    response = await fetch('/api/v1/auth/link', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token }),
    });
  } catch {
    return { error: 'The appliance cannot be reached: open the link again when on the site network.' };
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    return { error: `This sign-in link cannot be used: ${body?.error?.message ?? response.status}.` };
  }
  return { token: body.token };
}
