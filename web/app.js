// app.js - Quarry's web app: sign in with an API key, ask questions with
// the answer streamed token by token (optionally kept to the documents a
// filter allows), upload documents and watch their
// jobs, list, search and delete the tenant's documents. Plain DOM, no framework; text from the server only ever goes in
// through textContent.
import {
  session, getMe, getJob, sendFeedback, streamQuery, uploadFile, listDocuments, deleteDocument,
} from './api.js';
import { readEvents } from './sse.js';
import { composeFilter, describeFilter } from './filter.js';

// What the built-in (extractive) answerer says when the passages hold no
// answer (services/llm-gateway/gen_extractive.c, NO_ANSWER).
const NO_ANSWER = 'The provided documents do not contain an answer';
// What the gateway says when no passage matches at all, so nothing is
// generated (services/gateway/pipeline.c, no_match_answer): an empty
// tenant, or a filter no document passes.
const NO_MATCH = 'No indexed passage matches this query.';
const POLL_MS = 800;
// Words too common to be worth marking in a passage.
const STOPWORDS = new Set(('the and are was were does did which what who whom whose when where why how ' +
  'for with that this these those from into about have has had not but you your our its they them')
  .split(' '));

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== false && v !== undefined) e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c) e.append(c);
  return e;
}

// ---- views -------------------------------------------------------------
function show(view) {
  const signedIn = view !== 'signin';
  $('nav').hidden = !signedIn;
  $('view-signin').hidden = signedIn;
  $('view-ask').hidden = view !== 'ask';
  $('view-docs').hidden = view !== 'docs';
  for (const [tab, v] of [['tab-ask', 'ask'], ['tab-docs', 'docs']]) {
    if (view === v) $(tab).setAttribute('aria-current', 'page');
    else $(tab).removeAttribute('aria-current');
  }
  const focus = { signin: 'apikey', ask: 'question', docs: 'files' }[view];
  if (focus) $(focus).focus();
  if (view === 'docs') loadDocs(docs.cursors[docs.page]);
}

// Who is signed in (GET /v1/me), shown in the header; its roles decide
// whether documents can be deleted here (the server decides anyway).
let me = null;

function setMe(m) {
  me = m;
  $('whoami').textContent = m
    ? (m.key_name || m.key_id) + ' · ' + m.tenant_id + ' (' + m.roles.join(', ') + ')'
    : '';
}

const canDelete = () => !!me && (me.roles.includes('writer') || me.roles.includes('admin'));

function signOut(message) {
  session.key = '';
  setMe(null);
  $('apikey').value = '';
  $('doc-rows').replaceChildren();
  docs.cursors = [''];
  docs.page = 0;
  // What this key saw is not for whoever signs in next in this tab.
  $('conversation').replaceChildren();
  $('uploads').replaceChildren();
  $('signin-error').textContent = message || '';
  show('signin');
}

// A 401 anywhere means the key no longer works: back to sign-in.
function handleAuth(err) {
  if (err && err.status === 401) {
    signOut('Your API key was not accepted: ' + err.message);
    return true;
  }
  return false;
}

$('signin-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const key = $('apikey').value.trim();
  const error = $('signin-error');
  error.textContent = '';
  if (!key) {
    error.textContent = 'Enter an API key.';
    return;
  }
  const button = e.submitter || $('signin-form').querySelector('button');
  button.disabled = true;
  try {
    setMe(await getMe(key));
    session.key = key;
    $('apikey').value = '';
    show('ask');
  } catch (err) {
    error.textContent = err.status === 401
      ? 'That API key was not accepted (' + err.message + ').'
      : 'Cannot sign in: ' + err.message;
    $('apikey').focus();
  } finally {
    button.disabled = false;
  }
});
$('signout').addEventListener('click', () => signOut());
$('tab-ask').addEventListener('click', () => show('ask'));
$('tab-docs').addEventListener('click', () => show('docs'));

// ---- passages ----------------------------------------------------------
// Appends text to parent with the query's words marked.
function highlight(parent, text, query) {
  const words = [...new Set(query.toLowerCase().match(/[\p{L}\p{N}]{3,}/gu) || [])]
    .filter((w) => !STOPWORDS.has(w));
  if (!words.length) {
    parent.textContent = text;
    return;
  }
  const escaped = words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  // Words of the query where a word of the passage starts ("bulb" in "bulbs").
  const re = new RegExp('((?<![\\p{L}\\p{N}])(?:' + escaped.join('|') + '))', 'giu');
  for (const [i, part] of text.split(re).entries()) {
    if (!part) continue;
    parent.append(i % 2 ? el('mark', { text: part }) : document.createTextNode(part));
  }
}

function openPassage(p, query) {
  $('passage-title').textContent = '[' + p.n + '] ' + (p.title || 'Untitled document');
  const meta = [];
  if (p.page > 0) meta.push('page ' + p.page);
  meta.push('document ' + p.document_id);
  $('passage-meta').textContent = meta.join(' · ');
  const snippet = $('passage-snippet');
  snippet.replaceChildren();
  highlight(snippet, p.snippet || '', query);
  $('passage').showModal();
  $('passage-close').focus();
}

// ---- asking --------------------------------------------------------------
// Renders answer text into node, [n] markers becoming buttons that open
// passage n.
function renderAnswer(node, text, turn) {
  node.replaceChildren();
  for (const [i, part] of text.split(/\[(\d+)\]/).entries()) {
    if (i % 2 === 0) {
      if (part) node.append(document.createTextNode(part));
      continue;
    }
    const p = turn.passages.get(Number(part));
    if (!p) {
      node.append(document.createTextNode('[' + part + ']'));
      continue;
    }
    node.append(el('button', {
      type: 'button', class: 'cite', text: '[' + part + ']',
      'aria-label': 'Source ' + part + ': ' + (p.title || 'untitled'),
      onclick: () => openPassage(p, turn.query),
    }));
  }
}

// "provider / model", with "(fallback)" when the built-in answerer stood in.
function answeredBy(gen) {
  const who = gen.model ? gen.provider + ' / ' + gen.model : gen.provider;
  return who + (gen.fallback ? ' (fallback)' : '');
}

function timingsTable(timings, firstTokenMs, generation) {
  const rows = Object.entries(timings || {}).map(([k, v]) =>
    el('tr', {}, el('th', { scope: 'row', text: k }), el('td', { text: v + ' ms' })));
  if (firstTokenMs !== null)
    rows.push(el('tr', {}, el('th', { scope: 'row', text: 'first token (browser)' }),
      el('td', { text: Math.round(firstTokenMs) + ' ms' })));
  if (generation && generation.provider)
    rows.push(el('tr', {}, el('th', { scope: 'row', text: 'answered by' }),
      el('td', { class: 'answered-by', text: answeredBy(generation) })));
  return el('table', { class: 'timings' },
    el('caption', { class: 'sr-only', text: 'Time per stage' }),
    el('tbody', {}, ...rows));
}

function feedbackBox(turn) {
  const status = el('p', { class: 'help', role: 'status' });
  const comment = el('textarea', { rows: 2, maxlength: 2000, id: 'comment-' + turn.id });
  const form = el('form', { class: 'comment', hidden: true },
    el('label', { for: comment.id, text: 'Comment (optional)' }), comment,
    el('button', { type: 'submit', class: 'primary', text: 'Send feedback' }));
  let rating = 0;
  const thumbs = [[1, 'up', 'Helpful'], [-1, 'down', 'Not helpful']].map(([r, dir, label]) =>
    el('button', {
      type: 'button', class: 'thumb ' + dir, 'aria-pressed': 'false', 'aria-label': label,
      title: label,
      onclick: (e) => {
        rating = r;
        for (const t of thumbs) t.setAttribute('aria-pressed', String(t === e.currentTarget));
        form.hidden = false;
        comment.focus();
      },
    }, el('img', { src: '/app/thumb.svg', alt: '', width: 20, height: 20 })));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const fb = { query_id: turn.queryId, rating };
    if (comment.value.trim()) fb.comment = comment.value.trim();
    const chunks = turn.citations.map((c) => c.chunk_id).filter(Boolean);
    if (chunks.length) fb.chunk_ids = chunks;
    status.textContent = 'Sending…';
    try {
      const r = await sendFeedback(fb);
      status.textContent = 'Thanks: feedback recorded (' + r.feedback_id + ').';
      form.hidden = true;
      for (const t of thumbs) t.disabled = true;
    } catch (err) {
      if (!handleAuth(err)) status.textContent = 'Feedback not sent: ' + err.message;
    }
  });
  return el('div', { class: 'feedback' },
    el('span', { class: 'help', text: 'Was this useful?' }), ...thumbs, form, status);
}

// ---- the filter control of the ask view -----------------------------------
// Its state composes into POST /v1/query's "filter" (filter.js); nothing is
// checked here beyond that: the gateway's 400 names what it refuses.

function filterState() {
  return {
    type: $('ask-type').value,
    from: $('ask-from').value,
    to: $('ask-to').value,
    meta: [...$('ask-meta').children].map((li) => ({
      key: li.querySelector('.meta-key').value, value: li.querySelector('.meta-value').value,
    })),
  };
}

function updateFilterSummary() {
  $('ask-filter-summary').textContent = describeFilter(filterState());
}

// Labels say which row they belong to ("Key of condition 2"), so each row
// reads on its own with a screen reader; renumbered when a row goes.
function numberMetaRows() {
  [...$('ask-meta').children].forEach((li, i) => {
    const n = String(i + 1);
    for (const part of ['key', 'value']) {
      const input = li.querySelector('.meta-' + part);
      input.id = 'ask-meta-' + part + '-' + n;
      const label = li.querySelector('label.' + part);
      label.htmlFor = input.id;
      label.lastChild.textContent = ' of condition ' + n;
    }
    li.querySelector('button').setAttribute('aria-label', 'Remove condition ' + n);
  });
}

function addMetaRow() {
  const label = (part, text) => el('label', { class: part }, text,
    el('span', { class: 'sr-only' }));
  const key = el('input', { class: 'meta-key', type: 'text', autocomplete: 'off',
    spellcheck: 'false', maxlength: '128', placeholder: 'team' });
  const value = el('input', { class: 'meta-value', type: 'text', autocomplete: 'off',
    maxlength: '1024', placeholder: 'finance' });
  const li = el('li', {},
    el('div', {}, label('key', 'Key'), key),
    el('span', { class: 'eq', 'aria-hidden': 'true', text: '=' }),
    el('div', {}, label('value', 'Value'), value),
    el('button', { type: 'button', class: 'small', text: 'Remove' }));
  li.querySelector('button').addEventListener('click', () => {
    li.remove();
    numberMetaRows();
    updateFilterSummary();
    $('ask-meta-add').focus();
  });
  $('ask-meta').append(li);
  numberMetaRows();
  key.focus();
}

$('ask-meta-add').addEventListener('click', addMetaRow);
$('ask-filter').addEventListener('input', updateFilterSummary);
$('ask-filter').addEventListener('change', updateFilterSummary);
$('ask-filter-clear').addEventListener('click', () => {
  $('ask-type').value = '';
  $('ask-from').value = '';
  $('ask-to').value = '';
  $('ask-meta').replaceChildren();
  updateFilterSummary();
  $('ask-type').focus();
});

let turns = 0;

async function ask(query) {
  const turn = {
    id: ++turns, query, passages: new Map(), citations: [], text: '', queryId: '', tokens: 0,
  };
  const answer = el('div', { class: 'answer-text' });
  const state = el('p', { class: 'state', role: 'status', text: 'Searching your documents…' });
  const article = el('article', { class: 'answer streaming', 'aria-busy': 'true' }, state, answer);
  const fstate = filterState();
  const filter = composeFilter(fstate);
  const li = el('li', { class: 'turn' },
    el('p', { class: 'question' }, el('span', { class: 'sr-only', text: 'You asked: ' }), query,
      filter && el('span', { class: 'filtered', text: 'Filter: ' + describeFilter(fstate) })),
    article);
  $('conversation').append(li);
  li.scrollIntoView({ block: 'end' });

  const t0 = performance.now();
  let firstToken = null;
  let done = null;
  try {
    const res = await streamQuery(query, undefined, filter);
    await readEvents(res.body, (name, data) => {
      if (name === 'retrieval') {
        turn.queryId = data.query_id;
        article.dataset.queryId = data.query_id;
        for (const p of data.passages || []) turn.passages.set(p.n, p);
        state.textContent = 'Writing the answer from ' + turn.passages.size + ' passages…';
      } else if (name === 'token') {
        if (firstToken === null) firstToken = performance.now() - t0;
        turn.text += data.text;
        article.dataset.tokens = String(++turn.tokens);
        renderAnswer(answer, turn.text, turn);
      } else if (name === 'citation') {
        turn.citations.push(data);
        turn.passages.set(data.n, { ...turn.passages.get(data.n), ...data });
      } else if (name === 'done') {
        done = data;
      } else if (name === 'error') {
        throw Object.assign(new Error(data.error ? data.error.message : 'query failed'),
          { status: 0 });
      }
    });
    if (!done) throw new Error('the answer stream ended early');
  } catch (err) {
    article.classList.remove('streaming');
    article.classList.add('failed');
    article.removeAttribute('aria-busy');
    state.setAttribute('role', 'alert');
    state.textContent = 'No answer: ' + err.message;
    handleAuth(err);
    return;
  }

  turn.queryId = done.query_id || turn.queryId;
  turn.text = done.answer;
  if (done.citations) {
    turn.citations = done.citations;
    for (const c of done.citations) turn.passages.set(c.n, { ...turn.passages.get(c.n), ...c });
  }
  renderAnswer(answer, turn.text, turn);
  article.classList.remove('streaming');
  article.removeAttribute('aria-busy');
  const unknown = turn.text.startsWith(NO_ANSWER) || turn.text.startsWith(NO_MATCH) ||
    turn.text.trim() === '';
  if (unknown) {
    article.classList.add('unknown');
    state.textContent = 'Not found in your documents';
  } else {
    state.textContent = 'Answer';
    state.classList.add('sr-only');
  }
  if (done.degraded && done.degraded.length)
    article.append(el('p', { class: 'help', text: 'Degraded: ' + done.degraded.join(', ') }));
  if (turn.citations.length) {
    article.append(el('ol', { class: 'sources', 'aria-label': 'Sources' },
      ...turn.citations.map((c) => el('li', {}, el('button', {
        type: 'button', class: 'source', text: '[' + c.n + '] ' + (c.title || 'Untitled') +
          (c.page > 0 ? ', page ' + c.page : ''),
        onclick: () => openPassage(turn.passages.get(c.n), query),
      })))));
  }
  const details = el('details', { class: 'timings-box' }, el('summary', { text: 'Timings' }),
    timingsTable(done.timings_ms, firstToken, done.generation));
  article.append(feedbackBox(turn), details);
}

$('ask-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const q = $('question').value.trim();
  if (!q) return;
  $('question').value = '';
  // The open filter panel would cover the answer; its summary line still
  // says what the filter is.
  $('ask-filter').open = false;
  $('ask-button').disabled = true;
  try {
    await ask(q);
  } finally {
    $('ask-button').disabled = false;
    $('question').focus();
  }
});
$('question').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    $('ask-form').requestSubmit();
  }
});

// ---- documents -----------------------------------------------------------
function setState(item, state, text) {
  item.li.dataset.state = state;
  item.state.textContent = text;
}

async function poll(item, jobId) {
  while (session.key && item.li.isConnected) {
    let job;
    try {
      job = await getJob(jobId);
    } catch (err) {
      if (handleAuth(err)) return;
      setState(item, 'failed', 'status unknown: ' + err.message);
      return;
    }
    if (job.status === 'done') {
      const n = job.chunk_count;
      setState(item, 'done', 'done: ' + n + (n === 1 ? ' passage' : ' passages') + ' indexed');
      return;
    }
    if (job.status === 'failed') {
      setState(item, 'failed', 'failed: ' + (job.error || 'no reason given'));
      return;
    }
    setState(item, job.status, job.status === 'running' ? 'processing…' : 'queued');
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

async function upload(file) {
  const name = el('span', { class: 'name', text: file.name });
  const bar = el('progress', { max: 100, value: 0, 'aria-label': 'Upload of ' + file.name });
  const state = el('span', { class: 'state', role: 'status', text: 'uploading' });
  const li = el('li', { 'data-state': 'uploading' }, name, bar, state);
  $('uploads').prepend(li);
  const item = { li, state };
  try {
    const r = await uploadFile(file, (f) => {
      bar.value = Math.round(f * 100);
      state.textContent = 'uploading ' + bar.value + '%';
    });
    bar.value = 100;
    if (r.unchanged || !r.job_id) {
      setState(item, 'done', 'unchanged: already indexed (version ' + r.version + ')');
      return;
    }
    setState(item, 'queued', 'queued');
    refreshDocs();
    await poll(item, r.job_id);
    refreshDocs();
  } catch (err) {
    if (!handleAuth(err)) setState(item, 'failed', 'failed: ' + err.message);
  }
}

function uploadAll(files) {
  for (const f of files) upload(f);
}

$('files').addEventListener('change', (e) => {
  uploadAll([...e.target.files]);
  e.target.value = '';
});
const zone = $('dropzone');
zone.addEventListener('dragover', (e) => {
  e.preventDefault();
  zone.classList.add('over');
});
zone.addEventListener('dragleave', () => zone.classList.remove('over'));
zone.addEventListener('drop', (e) => {
  e.preventDefault();
  zone.classList.remove('over');
  uploadAll([...e.dataTransfer.files]);
});
// Dropping a file elsewhere must not navigate away from the app.
window.addEventListener('dragover', (e) => e.preventDefault());
window.addEventListener('drop', (e) => e.preventDefault());

// ---- the document list ------------------------------------------------------
// Pages follow the server's cursors; cursors[i] starts page i, so Previous
// goes back without the server knowing about pages.
const docs = { cursors: [''], page: 0, next: null, busy: false };
const STATE_TEXT = { queued: 'queued', running: 'processing', done: 'done', failed: 'failed' };
const TYPE_TEXT = {
  'text/plain': 'Text', 'text/markdown': 'Markdown', 'text/html': 'HTML',
  'application/xhtml+xml': 'XHTML', 'application/pdf': 'PDF',
  'application/vnd.openxmlformats-officedocument.wordprocessingml.document': 'DOCX',
};

function filters() {
  return { q: $('doc-q').value.trim(), content_type: $('doc-type').value, state: $('doc-state').value };
}

function docRow(d) {
  const name = d.title || d.filename || d.id;
  const title = el('td', { class: 'title' }, el('span', { text: name }));
  if (d.filename && d.filename !== name) title.append(el('span', { class: 'help file', text: d.filename }));
  const type = (d.content_type || '').split(';')[0];
  const actions = el('td', { class: 'actions' });
  if (canDelete())
    actions.append(el('button', {
      type: 'button', class: 'danger small', text: 'Delete',
      'aria-label': 'Delete ' + name, onclick: () => confirmDelete(d, name),
    }));
  const created = d.created_at ? new Date(d.created_at) : null;
  return el('tr', { 'data-id': d.id, 'data-state': d.status },
    title,
    el('td', { 'data-label': 'Type', text: TYPE_TEXT[type] || type }),
    el('td', { 'data-label': 'State', class: 'state', text: STATE_TEXT[d.status] || d.status }),
    el('td', { 'data-label': 'Version', text: String(d.version) }),
    el('td', { 'data-label': 'Passages', text: String(d.chunk_count) }),
    el('td', { 'data-label': 'Created' },
      created ? el('time', { datetime: d.created_at, text: created.toLocaleString() }) : null),
    actions);
}

// Loads the page starting at cursor; note (what just happened) stays shown.
async function loadDocs(cursor, note = '') {
  if (!session.key || docs.busy) return;
  docs.busy = true;
  const status = $('doc-status');
  status.textContent = 'Loading…';
  try {
    const page = await listDocuments({ ...filters(), cursor, limit: 20 });
    $('doc-rows').replaceChildren(...page.documents.map(docRow));
    docs.next = page.next_cursor;
    const f = filters();
    const empty = page.documents.length ? ''
      : (f.q || f.content_type || f.state ? 'No documents match.' : 'No documents yet.');
    status.textContent = [note, empty].filter(Boolean).join(' ');
  } catch (err) {
    if (!handleAuth(err)) status.textContent = 'Cannot list documents: ' + err.message;
  } finally {
    docs.busy = false;
    $('doc-prev').disabled = docs.page === 0;
    $('doc-next').disabled = !docs.next;
    $('doc-page').textContent = 'Page ' + (docs.page + 1);
  }
}

// The first page again after an upload changed it (other pages keep still).
function refreshDocs() {
  if (docs.page === 0 && !$('view-docs').hidden) loadDocs('');
}

function firstPage() {
  docs.cursors = [''];
  docs.page = 0;
  loadDocs('');
}

$('doc-filter').addEventListener('submit', (e) => {
  e.preventDefault();
  firstPage();
});
$('doc-type').addEventListener('change', firstPage);
$('doc-state').addEventListener('change', firstPage);
$('doc-next').addEventListener('click', () => {
  if (!docs.next) return;
  docs.page += 1;
  docs.cursors[docs.page] = docs.next;
  loadDocs(docs.next);
});
$('doc-prev').addEventListener('click', () => {
  if (docs.page === 0) return;
  docs.page -= 1;
  loadDocs(docs.cursors[docs.page]);
});

// Asks in a modal dialog (Escape or Cancel keeps the document), then deletes.
function confirmDelete(d, name) {
  const dialog = $('confirm-delete');
  $('confirm-text').textContent = '“' + name + '” (version ' + d.version + ') will be deleted.';
  dialog.returnValue = '';
  dialog.addEventListener('close', async () => {
    if (dialog.returnValue !== 'delete') return;
    const status = $('doc-status');
    try {
      await deleteDocument(d.id);
      loadDocs(docs.cursors[docs.page], 'Deleted “' + name + '”.');
    } catch (err) {
      if (!handleAuth(err))
        status.textContent = err.status === 404
          ? '“' + name + '” was already deleted.'
          : 'Cannot delete “' + name + '”: ' + err.message;
    }
  }, { once: true });
  dialog.showModal();
  $('confirm-cancel').focus();
}

// A key kept in this tab from earlier: ask who it is again.
async function resume() {
  if (!session.key) {
    show('signin');
    return;
  }
  try {
    setMe(await getMe(session.key));
    show('ask');
  } catch (err) {
    if (err.status === 401) signOut('Your API key was not accepted: ' + err.message);
    else {
      show('ask');
      $('whoami').textContent = '';
    }
  }
}

resume();
