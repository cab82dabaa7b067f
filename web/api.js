// api.js - the gateway's REST API as the app uses it. The API key lives in
// sessionStorage only: it goes with this tab and is never written to disk
// by the app.
const KEY = 'quarry.apiKey';

export const session = {
  get key() {
    return sessionStorage.getItem(KEY) || '';
  },
  set key(v) {
    if (v) sessionStorage.setItem(KEY, v);
    else sessionStorage.removeItem(KEY);
  },
};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function auth(key = session.key) {
  return { Authorization: 'Bearer ' + key };
}

// Turns a failed reply into an ApiError with the envelope's code and message.
async function failure(res) {
  let code = 'http_' + res.status;
  let message = res.statusText || 'request failed';
  try {
    const body = await res.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch {
    /* not JSON: keep the status line */
  }
  return new ApiError(res.status, code, message);
}

async function json(method, path, body, key) {
  const headers = auth(key);
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
  });
  if (!res.ok) throw await failure(res);
  return res.json();
}

// Who a key is (GET /v1/me): resolves to {tenant_id, key_id, key_name,
// roles} when the key is accepted, throws the refusal otherwise.
export const getMe = (key) => json('GET', '/v1/me', undefined, key);

// One page of the tenant's documents. params: {q, content_type, state,
// cursor, limit}; empty values are left out.
export function listDocuments(params) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) qs.set(k, String(v));
  const s = qs.toString();
  return json('GET', '/v1/documents' + (s ? '?' + s : ''));
}

export async function deleteDocument(id) {
  const res = await fetch('/v1/documents/' + encodeURIComponent(id), {
    method: 'DELETE',
    headers: auth(),
    cache: 'no-store',
  });
  if (!res.ok) throw await failure(res);
}

export const getJob = (id) => json('GET', '/v1/jobs/' + encodeURIComponent(id));

export const sendFeedback = (fb) => json('POST', '/v1/feedback', fb);

// POST /v1/query with stream:true and the metadata filter (null: none);
// resolves to the Response whose body is the event stream, or throws the
// error envelope of a refusal (a filter the gateway refuses is its 400).
export async function streamQuery(query, signal, filter = null) {
  const body = { query, stream: true };
  if (filter) body.filter = filter;
  const res = await fetch('/v1/query', {
    method: 'POST',
    headers: { ...auth(), 'Content-Type': 'application/json', Accept: 'text/event-stream' },
    body: JSON.stringify(body),
    signal,
    cache: 'no-store',
  });
  if (!res.ok) throw await failure(res);
  return res;
}

const TYPES = {
  txt: 'text/plain', text: 'text/plain', log: 'text/plain',
  md: 'text/markdown', markdown: 'text/markdown', mdown: 'text/markdown', mkd: 'text/markdown',
  html: 'text/html', htm: 'text/html', xhtml: 'application/xhtml+xml',
  pdf: 'application/pdf',
  docx: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
};

// Uploads one file as multipart/form-data with XMLHttpRequest (fetch has no
// upload progress). onProgress(fraction) as the body goes out. Resolves to
// the UploadResponse.
export function uploadFile(file, onProgress) {
  return new Promise((resolve, reject) => {
    const ext = (file.name.split('.').pop() || '').toLowerCase();
    // Browsers leave the type empty for some extensions (.md); name it, since
    // ingestion goes by the declared type.
    const blob = file.type ? file : new Blob([file], { type: TYPES[ext] || 'application/octet-stream' });
    const form = new FormData();
    form.append('file', blob, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/v1/documents');
    xhr.setRequestHeader('Authorization', 'Bearer ' + session.key);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) onProgress(e.loaded / e.total);
    };
    xhr.onload = () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        /* handled below */
      }
      if (xhr.status >= 200 && xhr.status < 300 && body) resolve(body);
      else {
        const e = body && body.error;
        reject(new ApiError(xhr.status, e ? e.code : 'http_' + xhr.status,
          e ? e.message : 'upload failed (HTTP ' + xhr.status + ')'));
      }
    };
    xhr.onerror = () => reject(new ApiError(0, 'network', 'network error during upload'));
    xhr.send(form);
  });
}
