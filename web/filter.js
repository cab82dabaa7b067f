// filter.js - the ask view's filter control composed into the "filter" of
// POST /v1/query (docs/retrieval.md, Filters). Only the JSON is built
// here; what it means is the gateway's rule, and its 400 names any
// problem (a metadata key it does not take, a date it cannot read).

// The content types the type select offers, with their names.
export const TYPE_NAMES = {
  'text/plain': 'Text', 'text/markdown': 'Markdown', 'text/html': 'HTML',
  'application/pdf': 'PDF',
  'application/vnd.openxmlformats-officedocument.wordprocessingml.document': 'DOCX',
};

// The day after day ("2024-01-31" -> "2024-02-01"), so that "created
// until" includes the whole of its day; day itself when it is not a date
// (the gateway then says so).
export function nextDay(day) {
  const d = new Date(day + 'T00:00:00Z');
  if (Number.isNaN(d.getTime())) return day;
  d.setUTCDate(d.getUTCDate() + 1);
  return d.toISOString().slice(0, 10);
}

// The filter for the control's state {type, from, to, meta: [{key, value}]}:
// type -> content_type eq; from / to (YYYY-MM-DD, both days included) ->
// one created_at condition with gte / lt; each metadata row with a key or a
// value -> meta.<key> eq value (a string). One condition is the filter,
// several are joined with "and"; null when nothing is chosen.
export function composeFilter({ type = '', from = '', to = '', meta = [] } = {}) {
  const clauses = [];
  if (type) clauses.push({ field: 'content_type', eq: type });
  if (from || to) {
    const c = { field: 'created_at' };
    if (from) c.gte = from;
    if (to) c.lt = nextDay(to);
    clauses.push(c);
  }
  for (const row of meta) {
    const key = row.key.trim();
    const value = row.value.trim();
    if (key || value) clauses.push({ field: 'meta.' + key, eq: value });
  }
  if (clauses.length === 0) return null;
  return clauses.length === 1 ? clauses[0] : { and: clauses };
}

// A short text of the same state for people ("Markdown · team = legal ·
// from 2024-01-01"), '' when nothing is chosen.
export function describeFilter({ type = '', from = '', to = '', meta = [] } = {}) {
  const parts = [];
  if (type) parts.push(TYPE_NAMES[type] || type);
  if (from && to) parts.push(from + ' to ' + to);
  else if (from) parts.push('from ' + from);
  else if (to) parts.push('until ' + to);
  for (const row of meta) {
    if (row.key.trim() || row.value.trim()) parts.push(row.key.trim() + ' = ' + row.value.trim());
  }
  return parts.join(' · ');
}
