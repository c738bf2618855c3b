// The guard app's REST calls to this appliance: JSON with the session's bearer token, answered
// as { status, body } (body null when the answer is not JSON). No answer at all (no network)
// throws, so a caller can keep what it sends for later.
export async function rest(token, method, path, body) {
  const response = await fetch(path, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const answer = await response.json().catch(() => null);
  return { status: response.status, body: answer };
}
