// The categories of an incident report as the appliance takes them (`patrol::CATEGORIES`, in
// the order the guard app offers them), with the words the guard app and the dashboard show.
export const INCIDENT_CATEGORIES = {
  intrusion: 'Intrusion',
  theft: 'Theft',
  damage: 'Damage',
  fire: 'Fire',
  medical: 'Medical',
  safety: 'Safety hazard',
  suspicious: 'Suspicious activity',
  other: 'Other',
};
