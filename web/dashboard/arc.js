// The alarm receiving centres' lines for the operations panel: each receiver configured under
// [[arc.receivers]] and whether it answers (GET /api/v1/arc/status), so that a supervisor sees
// at once that alarms no longer reach the ARC. Nothing when none is configured.

/** Rows `[label, text, down]` of the receivers, from `call` (the dashboard's fetch of JSON). */
export async function arcRows(call) {
  let s;
  try {
    s = await call('/api/v1/arc/status');
  } catch (e) {
    return [['ARC', e.message, true]];
  }
  return (s.receivers || []).map((r) => {
    const paths = r.paths.map((p) => `${p.role} ${p.state}`).join(', ');
    const waiting = r.pending ? `, ${r.pending} waiting` : '';
    const dead = r.dead_letters ? `, ${r.dead_letters} refused` : '';
    const down = !r.up && r.paths.some((p) => p.state !== 'unknown');
    return [`ARC ${r.name}`, `${down ? 'DOWN' : r.up ? 'up' : '–'} (${paths}${waiting}${dead})`, down];
  });
}
