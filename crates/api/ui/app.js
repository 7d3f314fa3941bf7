/**
 * MediaPro web UI: one page, plain JavaScript, no framework and no build step.
 *
 * How it is organised (top to bottom):
 *  - helpers    `$`, `h()` (element builder), `fmt` (bytes, speed, durations, times).
 *  - state      everything the page knows: API key, access level, the tasks shown, the
 *               list filter, the current route, the event stream's last id.
 *  - api()      every JSON request goes through it: adds `Authorization: Bearer <key>`,
 *               turns `{"error","code"}` bodies into an ApiError, opens the key prompt on 401.
 *  - events()   the live stream `GET /api/events`, read with fetch() + a ReadableStream
 *               (EventSource cannot send the key), parsed by SseParser, resumed with
 *               `Last-Event-ID` and a 1 s → 10 s backoff. Each `task` event goes to
 *               applyTask(), a `snapshot` event re-lists.
 *  - render     small functions that build DOM once and then update it in place:
 *               queue rows (createRow/updateRow), the task page, the analysis table,
 *               the processing fields.
 *  - actions    analyze, download, upload (XMLHttpRequest for upload progress), process,
 *               cancel, retry, result downloads (fetch + Blob when a key is needed).
 *  - start-up   wiring of handlers, hash routing (`#/`, `#/task/<id>`), first load.
 *
 * Data from the server is only ever put in the page with textContent / attributes,
 * never as HTML. The page runs under `Content-Security-Policy: default-src 'self'`:
 * no inline scripts or styles.
 */

// ---------------------------------------------------------------- helpers

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

/** Build an element: h('a', {href: '#/', class: 'x'}, 'text', childNode). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    el.setAttribute(name, value === true ? '' : String(value));
  }
  el.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Human formatting of numbers, durations and times. */
const fmt = {
  bytes(n) {
    if (n === null || n === undefined || !Number.isFinite(n)) return '';
    const units = ['B', 'KB', 'MB', 'GB', 'TB'];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) {
      n /= 1000;
      i += 1;
    }
    return `${i > 0 && n < 10 ? n.toFixed(1) : Math.round(n)} ${units[i]}`;
  },
  speed(bps) {
    return bps === null || bps === undefined ? '' : `${fmt.bytes(bps)}/s`;
  },
  /** 75 → "1:15", 3725 → "1:02:05". */
  duration(seconds) {
    if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '';
    const s = Math.max(0, Math.round(seconds));
    const hours = Math.floor(s / 3600);
    const minutes = Math.floor((s % 3600) / 60);
    const secs = String(s % 60).padStart(2, '0');
    return hours ? `${hours}:${String(minutes).padStart(2, '0')}:${secs}` : `${minutes}:${secs}`;
  },
  time(iso) {
    if (!iso) return '';
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
  },
  /** Time only for today, date and time otherwise. */
  shortTime(iso) {
    const d = new Date(iso);
    if (!iso || Number.isNaN(d.getTime())) return iso || '';
    if (d.toDateString() === new Date().toDateString()) return d.toLocaleTimeString();
    return d.toLocaleString([], { dateStyle: 'short', timeStyle: 'short' });
  },
  percent(p) {
    return `${Math.round(clampPercent(p))}%`;
  },
};

const clampPercent = (p) => Math.min(100, Math.max(0, Number(p) || 0));
const shortId = (id) => String(id).slice(0, 8);
const basename = (path) => String(path || '').split('/').pop();
const extension = (path) => (basename(path).match(/\.([a-z0-9]+)$/i)?.[1] || '').toLowerCase();

// ---------------------------------------------------------------- state

const KEY_STORAGE = 'mediapro.apiKey';
const PAGE_SIZE = 50;
/** With a key, results larger than this are not loaded into the page's player. */
const MAX_BLOB_BYTES = 200 * 1024 * 1024;
const RUNNING = ['pending', 'downloading', 'processing', 'expanding'];
const RETRYABLE = ['failed', 'cancelled'];
const AUDIO_EXT = ['m4a', 'mp3', 'opus', 'ogg', 'oga', 'aac', 'wav', 'flac'];
const VIDEO_EXT = ['mp4', 'webm', 'mkv', 'mov', 'm4v', 'ogv'];

const state = {
  key: localStorage.getItem(KEY_STORAGE) || '',
  /** "full" | "read" | "anonymous" (from GET /api/whoami). */
  access: 'full',
  /** The API answered 401: the key prompt is up until a key works. */
  needsKey: false,
  /** task_id → latest task JSON seen (list, events, task page). */
  tasks: new Map(),
  /** task_id → the row's elements (see createRow). */
  rows: new Map(),
  filter: { status: '', kind: '' },
  /** Cursor of the next (older) page of the list, or null at the end. */
  nextCursor: null,
  listGeneration: 0,
  route: { view: 'home', id: null },
  /** Last SSE id received, sent back as Last-Event-ID on reconnect. */
  lastEventId: null,
  streamGeneration: 0,
  streamAbort: null,
  /** The last successful upload: {input_file, size_bytes, ...}. */
  upload: null,
  /** `kind` of the last analyze answer ("video" or "playlist"). */
  analyzedKind: null,
  /** Object URL of the player's blob (key in use), revoked when leaving the page. */
  playerUrl: null,
};

const readOnly = () => state.access === 'read';

// ---------------------------------------------------------------- api()

/** An error answer of the API (`status` 0 = the server could not be reached). */
class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  /** The field a 400 message starts with ("url: scheme 'file' …" → "url"). */
  get field() {
    return /^([A-Za-z_][\w.[\]]*): /.exec(this.message)?.[1] || null;
  }
}

function authHeaders() {
  return state.key ? { Authorization: `Bearer ${state.key}` } : {};
}

async function readJson(res) {
  try {
    const text = await res.text();
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

/** An ApiError from a status and an (optional) `{"error","code"}` body; 401 opens the key prompt. */
function toApiError(status, body) {
  const err = new ApiError(
    status,
    body?.code || `http_${status}`,
    body?.error || `the server answered HTTP ${status}`,
  );
  if (status === 401) needKey();
  return err;
}

/** A JSON request to the API. Resolves to the parsed body; rejects with an ApiError. */
async function api(method, path, body) {
  const headers = { Accept: 'application/json', ...authHeaders() };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    });
  } catch {
    throw new ApiError(0, 'network', 'could not reach the server');
  }
  const data = await readJson(res);
  if (!res.ok) throw toApiError(res.status, data);
  return data;
}

/** One readable line for any error. */
function errorText(err) {
  if (!(err instanceof ApiError)) return String(err?.message || err);
  switch (err.status) {
    case 0:
      return 'Network error: could not reach the server.';
    case 401:
      return 'An API key is required: enter it above.';
    case 403:
      return `Not allowed (forbidden): ${err.message}`;
    case 503:
    case 507:
      return `${err.message} (try again shortly)`;
    default:
      return err.message;
  }
}

/** Show an error (or a plain message) in a `role=alert` element, marking the control invalid. */
function showError(target, err, control) {
  const el = typeof target === 'string' ? $(target) : target;
  el.textContent = typeof err === 'string' ? err : errorText(err);
  el.title = el.textContent;
  if (control) control.setAttribute('aria-invalid', 'true');
}

function clearError(target, control) {
  const el = typeof target === 'string' ? $(target) : target;
  el.textContent = '';
  el.removeAttribute('title');
  if (control) control.removeAttribute('aria-invalid');
}

// ---------------------------------------------------------------- API key and access

function needKey() {
  if (state.needsKey) return;
  state.needsKey = true;
  stopEvents();
  setConn('offline', 'Not connected');
  $('#home-view').hidden = true;
  $('#task-view').hidden = true;
  $('#key-view').hidden = false;
  if (state.key) showError('#key-error', 'The saved API key was not accepted (401). Enter another one.');
  $('#key-input').focus();
}

/** Ask the API what this key may do; a missing /api/whoami means full access. */
async function loadAccess() {
  let access = 'full';
  try {
    access = (await api('GET', '/api/whoami'))?.access || 'full';
  } catch (err) {
    if (err.status !== 404 && err.status !== 405) throw err;
  }
  setAccess(access);
}

function setAccess(access) {
  state.access = access;
  document.body.dataset.access = access;
  for (const el of $$('.write')) el.hidden = readOnly();
  $('#access-badge').hidden = !readOnly();
  $('#key-change').hidden = !state.key;
  // Rows and the task page show or drop their action buttons.
  for (const [id, row] of state.rows) updateRow(row, state.tasks.get(id));
  if (state.route.view === 'task') {
    const task = state.tasks.get(state.route.id);
    if (task) renderTaskPage(task);
  }
}

async function submitKey(event) {
  event.preventDefault();
  const input = $('#key-input');
  const key = input.value.trim();
  if (!key) {
    showError('#key-error', 'Enter an API key.', input);
    return;
  }
  clearError('#key-error', input);
  $('#key-submit').disabled = true;
  const previous = { key: state.key, needsKey: state.needsKey };
  state.key = key;
  state.needsKey = true; // a 401 below must not re-run needKey()
  try {
    await loadAccess();
  } catch (err) {
    state.key = previous.key;
    state.needsKey = previous.needsKey;
    showError('#key-error', err.status === 401 ? 'That key was not accepted (401).' : errorText(err), input);
    return;
  } finally {
    $('#key-submit').disabled = false;
  }
  localStorage.setItem(KEY_STORAGE, key);
  input.value = '';
  state.needsKey = false;
  $('#key-view').hidden = true;
  setAccess(state.access);
  state.lastEventId = null;
  route();
  refreshList();
  events();
}

function forgetKey() {
  localStorage.removeItem(KEY_STORAGE);
  state.key = '';
  $('#key-input').value = '';
  clearError('#key-error');
  location.reload();
}

/** The header's "API key" button: show the prompt to change or forget the key. */
function toggleKeyView() {
  const view = $('#key-view');
  view.hidden = !view.hidden;
  if (!view.hidden) $('#key-input').focus();
}

// ---------------------------------------------------------------- events()

/**
 * Incremental parser of the text/event-stream format. push() takes decoded text (any
 * chunking) and returns the events completed by it: {id, event, data, hasData}.
 */
class SseParser {
  constructor() {
    this.buffer = '';
    this.resetEvent();
  }

  resetEvent() {
    this.data = [];
    this.event = '';
    this.id = null;
  }

  push(text) {
    this.buffer += text;
    const lines = this.buffer.split('\n');
    this.buffer = lines.pop(); // an incomplete last line waits for the next chunk
    const out = [];
    for (const raw of lines) {
      const event = this.line(raw.endsWith('\r') ? raw.slice(0, -1) : raw);
      if (event) out.push(event);
    }
    return out;
  }

  /** One line; a blank line completes the event being built. */
  line(line) {
    if (line === '') {
      const done = this.data.length > 0 || this.id !== null;
      const event = {
        id: this.id,
        event: this.event || 'message',
        data: this.data.join('\n'),
        hasData: this.data.length > 0,
      };
      this.resetEvent();
      return done ? event : null;
    }
    if (line.startsWith(':')) return null; // a comment, e.g. ": keep-alive"
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.data.push(value);
    else if (field === 'event') this.event = value;
    else if (field === 'id' && !value.includes('\0')) this.id = value;
    return null;
  }
}

/** Reconnect when nothing (not even a keep-alive, every 15 s) arrived for this long. */
const STREAM_SILENCE_MS = 45000;

/**
 * Keep the event stream open for as long as the page lives. Calling it again (new key)
 * or stopEvents() ends the previous loop.
 */
async function events() {
  stopEvents();
  const generation = ++state.streamGeneration;
  let delay = 1000;
  while (generation === state.streamGeneration) {
    const abort = new AbortController();
    state.streamAbort = abort;
    let silence;
    const arm = () => {
      clearTimeout(silence);
      silence = setTimeout(() => abort.abort(), STREAM_SILENCE_MS);
    };
    try {
      arm();
      const headers = { Accept: 'text/event-stream', ...authHeaders() };
      if (state.lastEventId !== null) headers['Last-Event-ID'] = state.lastEventId;
      const res = await fetch('/api/events', { headers, signal: abort.signal, cache: 'no-store' });
      if (res.status === 401) {
        toApiError(401, null); // opens the key prompt and stops this loop
        return;
      }
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      setConn('live', 'Live');
      delay = 1000;
      // Without a resume point, events between the last list and now are unknown.
      if (state.lastEventId === null) refreshList();
      await readStream(res.body, generation, arm);
    } catch {
      // network error, abort or bad status: reconnect below
    } finally {
      clearTimeout(silence);
    }
    if (generation !== state.streamGeneration) return;
    setConn('reconnecting', `Reconnecting in ${delay / 1000} s…`);
    await sleep(delay);
    delay = Math.min(delay * 2, 10000);
  }
}

async function readStream(body, generation, onChunk) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  const parser = new SseParser();
  for (;;) {
    const { value, done } = await reader.read();
    if (done || generation !== state.streamGeneration) return;
    onChunk();
    for (const event of parser.push(value)) handleEvent(event);
  }
}

function handleEvent(event) {
  if (event.id !== null) state.lastEventId = event.id;
  if (!event.hasData) return;
  if (event.event === 'snapshot') {
    refreshList();
    if (state.route.view === 'task') loadTask(state.route.id);
  } else if (event.event === 'task') {
    try {
      applyTask(JSON.parse(event.data));
    } catch (err) {
      console.warn('bad task event', err);
    }
  }
}

function stopEvents() {
  state.streamGeneration += 1;
  state.streamAbort?.abort();
}

function setConn(kind, text) {
  const el = $('#conn');
  el.dataset.state = kind;
  el.textContent = text;
}

// ---------------------------------------------------------------- the task list

const STATUS_LABEL = {
  pending: 'Pending',
  downloading: 'Downloading',
  processing: 'Processing',
  expanding: 'Expanding',
  completed: 'Completed',
  failed: 'Failed',
  cancelled: 'Cancelled',
};

function matchesFilter(task) {
  const { status, kind } = state.filter;
  return (!status || status.split(',').includes(task.status)) && (!kind || task.kind === kind);
}

function listUrl(cursor) {
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (state.filter.status) params.set('status', state.filter.status);
  if (state.filter.kind) params.set('kind', state.filter.kind);
  if (cursor) params.set('cursor', cursor);
  return `/api/tasks?${params}`;
}

/** Newest first: a negative number when `a` was created after `b`. */
function byNewest(a, b) {
  const diff = Date.parse(b.created_at) - Date.parse(a.created_at);
  if (diff) return diff;
  return a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : 0;
}

/** Fetch the first page again (filter change, snapshot, reconnect) and reconcile the rows. */
async function refreshList() {
  const generation = ++state.listGeneration;
  try {
    const page = await api('GET', listUrl(null));
    if (generation !== state.listGeneration) return;
    clearError('#list-error');
    showPage(page.tasks || [], true);
    state.nextCursor = page.next_cursor || null;
  } catch (err) {
    if (generation === state.listGeneration && err.status !== 401) showError('#list-error', err);
  }
  updateListFooter();
}

async function loadOlder() {
  const button = $('#older');
  button.disabled = true;
  try {
    const page = await api('GET', listUrl(state.nextCursor));
    clearError('#list-error');
    showPage(page.tasks || [], false);
    state.nextCursor = page.next_cursor || null;
  } catch (err) {
    showError('#list-error', err);
  } finally {
    button.disabled = false;
  }
  updateListFooter();
}

/**
 * Put a page of tasks in the list, in order, reusing existing rows. `replace`: rows not
 * in the page are dropped (a re-list); otherwise the page is appended (older tasks).
 */
function showPage(tasks, replace) {
  const list = $('#tasks');
  const keep = new Set();
  let previous = replace ? null : list.lastElementChild;
  for (const task of tasks) {
    state.tasks.set(task.task_id, task);
    keep.add(task.task_id);
    const row = rowFor(task);
    const wanted = previous ? previous.nextElementSibling : list.firstElementChild;
    if (wanted !== row.li) list.insertBefore(row.li, wanted);
    previous = row.li;
  }
  if (replace) {
    for (const id of [...state.rows.keys()]) if (!keep.has(id)) removeRow(id);
  }
}

/** A task from an event or an action: update its row, add it, or drop it (filter). */
function applyTask(task) {
  if (!task || !task.task_id) return;
  state.tasks.set(task.task_id, task);
  if (matchesFilter(task)) {
    const existing = state.rows.get(task.task_id);
    if (existing) updateRow(existing, task);
    else insertSorted(task);
  } else {
    removeRow(task.task_id);
  }
  if (state.route.view === 'task' && state.route.id === task.task_id) renderTaskPage(task);
  updateListFooter();
}

/** A new row at its place by creation time (new tasks land at the top). */
function insertSorted(task) {
  const list = $('#tasks');
  for (const li of list.children) {
    const other = state.tasks.get(li.dataset.taskId);
    if (other && byNewest(task, other) <= 0) {
      list.insertBefore(rowFor(task).li, li);
      return;
    }
  }
  // Older than every row: it belongs to a page not loaded yet, unless there is none.
  if (!state.nextCursor) list.append(rowFor(task).li);
}

function removeRow(id) {
  state.rows.get(id)?.li.remove();
  state.rows.delete(id);
}

function updateListFooter() {
  $('#tasks-empty').hidden = state.rows.size > 0;
  $('#older').hidden = !state.nextCursor;
}

function rowFor(task) {
  let row = state.rows.get(task.task_id);
  if (!row) {
    row = createRow(task);
    state.rows.set(task.task_id, row);
  }
  updateRow(row, task);
  return row;
}

/** The elements of one queue row, built once; updateRow() fills them. */
function createRow(task) {
  const part = (tag, cls, attrs = {}) => h(tag, { class: cls, ...attrs });
  const row = {
    li: h('li', { class: 'task', 'data-task-id': task.task_id }),
    kind: part('span', 'kind'),
    link: part('a', 'task-link', { href: `#/task/${encodeURIComponent(task.task_id)}` }),
    status: part('span', 'status'),
    created: part('time', 'created'),
    source: part('p', 'source'),
    children: part('p', 'children'),
    progress: part('progress', 'progress', { max: 100, value: 0 }),
    pct: part('span', 'pct'),
    phase: part('span', 'phase'),
    speed: part('span', 'speed'),
    eta: part('span', 'eta'),
    error: part('p', 'task-error'),
    chain: part('p', 'chain'),
    actions: part('div', 'actions'),
  };
  row.li.append(
    h('div', { class: 'line1' }, row.kind, row.link, row.status, row.created),
    row.source,
    row.children,
    h('div', { class: 'line2' }, row.progress, row.pct, row.phase, row.speed, row.eta),
    row.error,
    row.chain,
    row.actions,
  );
  return row;
}

/** Fill a row from a task, touching only what changed visually (no re-creation). */
function updateRow(row, task) {
  if (!task) return;
  const running = RUNNING.includes(task.status) && task.status !== 'pending';
  row.li.dataset.status = task.status;
  row.kind.textContent = task.kind;
  row.link.textContent = shortId(task.task_id);
  row.link.setAttribute('aria-label', `${task.kind} task ${task.task_id}`);
  setStatusBadge(row.status, task.status);
  row.created.dateTime = task.created_at || '';
  row.created.textContent = fmt.shortTime(task.created_at);
  row.created.title = fmt.time(task.created_at);
  const source = sourceOf(task);
  row.source.textContent = source;
  row.source.title = source;
  row.children.textContent = childrenText(task);
  setProgress(row.progress, task);
  row.pct.textContent = fmt.percent(task.progress);
  row.phase.textContent = phaseLabel(task);
  row.phase.dataset.phase = task.phase || '';
  row.speed.textContent = running ? fmt.speed(task.speed_bps) : '';
  row.eta.textContent = running && task.eta_seconds !== null && task.eta_seconds !== undefined
    ? `ETA ${fmt.duration(task.eta_seconds)}` : '';
  setTaskError(row.error, task);
  renderChain(row.chain, task);
  renderActions(row.actions, task);
}

function setStatusBadge(el, status) {
  el.textContent = STATUS_LABEL[status] || status;
  el.dataset.status = status;
}

function setProgress(progress, task) {
  const pct = clampPercent(task.progress);
  progress.value = pct;
  progress.textContent = fmt.percent(pct);
  progress.setAttribute('aria-label', `Progress ${fmt.percent(pct)}`);
}

function phaseLabel(task) {
  return task.phase ? task.phase.replace(/_/g, ' ') : '';
}

/**
 * A collection's entries: how many are final of how many, the counts by status,
 * and the expansion's note ("cut at 500 of 10000 entries …"); '' for other kinds.
 */
function childrenText(task) {
  if (task.kind !== 'playlist') return '';
  const x = task.expansion;
  if (!x) return RUNNING.includes(task.status) ? 'Listing the entries…' : '';
  const counts = task.children || {};
  const total = Object.values(counts).reduce((a, b) => a + b, 0) || x.children;
  const done = Object.entries(counts)
    .filter(([status]) => !RUNNING.includes(status))
    .reduce((n, [, count]) => n + count, 0);
  const by = Object.entries(counts).map(([status, n]) => `${n} ${(STATUS_LABEL[status] || status).toLowerCase()}`);
  return [`Entries: ${done} of ${total} done`, by.join(', '), x.note || ''].filter(Boolean).join(' · ');
}

/** What the task works on: the URL, or the input file's name. */
function sourceOf(task) {
  return task.url || basename(task.input_file) || '';
}

function setTaskError(el, task) {
  const text = task.error
    ? `${task.status === 'failed' ? 'Error' : 'Last error'}: ${task.error}` : '';
  el.textContent = text;
  el.title = text;
  el.hidden = !text;
}

/** Links between a download and the processing task it leads to (and back). */
function renderChain(el, task) {
  const signature = `${task.parent_task_id || ''}>${task.next_task_id || ''}`;
  if (el.dataset.signature === signature) return;
  el.dataset.signature = signature;
  el.replaceChildren();
  if (task.parent_task_id) {
    el.append('From ', taskLink(task.parent_task_id, `task ${shortId(task.parent_task_id)}`), ' ');
  }
  if (task.next_task_id) {
    el.append('Then ', taskLink(task.next_task_id, `processing task ${shortId(task.next_task_id)}`));
  }
  el.hidden = !el.childNodes.length;
}

function taskLink(id, text) {
  return h('a', { href: `#/task/${encodeURIComponent(id)}` }, text);
}

/**
 * Cancel / Retry / Download result for a task's status and the access level. The
 * buttons are rebuilt only when the set changes, so a live update keeps focus.
 */
function renderActions(el, task) {
  const wanted = [];
  if (!readOnly() && RUNNING.includes(task.status)) wanted.push('cancel');
  if (!readOnly() && RETRYABLE.includes(task.status)) wanted.push('retry');
  if (task.status === 'completed') wanted.push('result');
  const signature = wanted.join(',');
  if (el.dataset.signature === signature) return;
  el.dataset.signature = signature;
  const id = task.task_id;
  const buttons = wanted.map((what) => {
    if (what === 'result') return resultLink(task, null, 'Download result');
    const label = what === 'cancel' ? 'Cancel' : 'Retry';
    return h('button', {
      type: 'button',
      class: `${what} secondary`,
      'data-id': id,
      'aria-label': `${label} task ${shortId(id)}`,
    }, label);
  });
  el.replaceChildren(...buttons, h('span', { class: 'action-error error', role: 'alert' }));
  el.hidden = !buttons.length;
}

// ---------------------------------------------------------------- results (download, player)

function resultUrl(taskId, fileIndex) {
  const base = `/api/download-result/${encodeURIComponent(taskId)}`;
  return fileIndex === null || fileIndex === undefined ? base : `${base}?file=${fileIndex}`;
}

/** An `a.result` link. Without a key it is a plain download; with one, onResultClick fetches it. */
function resultLink(task, fileIndex, text) {
  const file = fileIndex === null ? mediaFile(task) : task.downloaded_files?.[fileIndex];
  return h('a', {
    class: 'result',
    href: resultUrl(task.task_id, fileIndex),
    download: basename(file) || true,
    'data-name': basename(file) || 'result',
  }, text);
}

/** The file name of a Content-Disposition header, if any. */
function filenameFrom(res) {
  const header = res.headers.get('content-disposition') || '';
  const star = /filename\*=(?:UTF-8|utf-8)''([^;]+)/.exec(header);
  if (star) {
    try {
      return decodeURIComponent(star[1]);
    } catch {
      // fall through to the plain name
    }
  }
  return /filename="?([^";]+)"?/.exec(header)?.[1] || null;
}

/** With a key, a link cannot send it: fetch the file and save it from a Blob. */
async function onResultClick(event, link) {
  if (!state.key) return; // a plain link does the job
  event.preventDefault();
  const errorEl = link.parentElement.querySelector('.action-error');
  if (errorEl) clearError(errorEl);
  link.setAttribute('aria-busy', 'true');
  try {
    const res = await fetch(link.href, { headers: authHeaders() });
    if (!res.ok) throw toApiError(res.status, await readJson(res));
    const url = URL.createObjectURL(await res.blob());
    const save = h('a', { href: url, download: filenameFrom(res) || link.dataset.name, hidden: true });
    document.body.append(save);
    save.click();
    save.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  } catch (err) {
    if (errorEl) showError(errorEl, err);
    else alert(errorText(err));
  } finally {
    link.removeAttribute('aria-busy');
  }
}

/** The path of a task's main result: the processed output or the downloaded media file. */
function mediaFile(task) {
  return task.output_file || task.downloaded_files?.[0] || null;
}

function isAudio(task, file) {
  return AUDIO_EXT.includes(extension(file)) || task.operations?.audio_only === true;
}

// ---------------------------------------------------------------- task actions

async function cancelTask(button) {
  await taskAction(button, 'DELETE', `/api/tasks/${encodeURIComponent(button.dataset.id)}`);
}

async function retryTask(button) {
  await taskAction(button, 'POST', `/api/tasks/${encodeURIComponent(button.dataset.id)}/retry`);
}

/** Cancel or retry: the answer is the task; an error shows beside the button. */
async function taskAction(button, method, path) {
  const errorEl = button.parentElement.querySelector('.action-error');
  clearError(errorEl);
  button.disabled = true;
  try {
    const task = await api(method, path);
    if (task?.task_id) applyTask(task);
  } catch (err) {
    showError(errorEl, err);
  } finally {
    button.disabled = false;
  }
}

/** After a submission: show the task at once (events will keep it current). */
async function fetchAndApply(taskId) {
  try {
    applyTask(await api('GET', `/api/tasks/${encodeURIComponent(taskId)}`));
  } catch {
    // the event stream will bring it
  }
}

// ---------------------------------------------------------------- task page

/** Rows of the task page: [field, label, value(task) → string | Node]. */
const TASK_FIELDS = [
  ['task_id', 'Task id', (t) => t.task_id],
  ['kind', 'Kind', (t) => t.kind],
  ['status', 'Status', (t) => STATUS_LABEL[t.status] || t.status],
  ['progress', 'Progress', (t) => fmt.percent(t.progress)],
  ['phase', 'Phase', (t) => phaseLabel(t) || '—'],
  ['speed_bps', 'Speed', (t) => fmt.speed(t.speed_bps) || '—'],
  ['eta_seconds', 'ETA', (t) => fmt.duration(t.eta_seconds) || '—'],
  ['bytes', 'Downloaded', (t) => bytesDone(t)],
  ['created_at', 'Created', (t) => fmt.time(t.created_at) || '—'],
  ['started_at', 'Started', (t) => fmt.time(t.started_at) || '—'],
  ['completed_at', 'Finished', (t) => fmt.time(t.completed_at) || '—'],
  ['url', 'URL', (t) => externalLink(t.url)],
  ['playlist_items', 'Playlist items', (t) => t.playlist_items || '—'],
  ['children', 'Entries', (t) => childrenText(t) || '—'],
  ['format_id', 'Format', (t) => t.format_id || (t.kind === 'process' ? '—' : 'default')],
  ['include_subtitles', 'Subtitles', (t) => (t.include_subtitles ? (t.subtitle_langs || []).join(', ') : 'no')],
  ['input_file', 'Input file', (t) => t.input_file || '—'],
  ['operations', 'Operations', (t) => (t.operations ? JSON.stringify(t.operations) : '—')],
  ['output_file', 'Output file', (t) => t.output_file || '—'],
  ['error', 'Error', (t) => t.error || '—'],
  ['attempts', 'Attempts', (t) => String(t.attempts ?? '—')],
  ['worker', 'Worker', (t) => t.worker || '—'],
  ['parent_task_id', 'Parent task', (t) => (t.parent_task_id ? taskLink(t.parent_task_id, t.parent_task_id) : '—')],
  ['next_task_id', 'Next task', (t) => (t.next_task_id ? taskLink(t.next_task_id, t.next_task_id) : '—')],
];

function bytesDone(task) {
  if (!task.downloaded_bytes && !task.total_bytes) return '—';
  const done = fmt.bytes(task.downloaded_bytes || 0);
  return task.total_bytes ? `${done} of ${fmt.bytes(task.total_bytes)}` : done;
}

/** http(s) URLs become links (opened without referrer); anything else stays text. */
function externalLink(url) {
  if (!url) return '—';
  if (!/^https?:\/\//i.test(url)) return url;
  return h('a', { href: url, rel: 'noreferrer noopener', target: '_blank' }, url);
}

async function showTaskPage(id) {
  $('#task-heading').textContent = `Task ${shortId(id)}`;
  clearError('#task-error');
  $('#task-fields').replaceChildren();
  $('#task-files').replaceChildren();
  $('#task-actions').replaceChildren();
  delete $('#task-actions').dataset.signature;
  delete $('#task-files').dataset.signature;
  const known = state.tasks.get(id);
  if (known) renderTaskPage(known);
  await loadTask(id);
}

async function loadTask(id) {
  try {
    const task = await api('GET', `/api/tasks/${encodeURIComponent(id)}`);
    if (state.route.view !== 'task' || state.route.id !== id) return;
    state.tasks.set(id, task);
    renderTaskPage(task);
  } catch (err) {
    if (err.status === 404) showError('#task-error', 'No such task (it may have expired and been deleted).');
    else showError('#task-error', err);
  }
}

function renderTaskPage(task) {
  const kind = task.kind ? task.kind[0].toUpperCase() + task.kind.slice(1) : 'Task';
  $('#task-heading').textContent = `${kind} task ${shortId(task.task_id)} — ${STATUS_LABEL[task.status] || task.status}`;
  const dl = $('#task-fields');
  for (const [field, label, value] of TASK_FIELDS) {
    let dd = dl.querySelector(`dd[data-field="${field}"]`);
    if (!dd) {
      dd = h('dd', { 'data-field': field });
      dl.append(h('dt', {}, label), dd);
    }
    const shown = value(task);
    const text = typeof shown === 'string' ? shown : shown.textContent;
    if (dd.dataset.text !== text) {
      dd.dataset.text = text;
      dd.replaceChildren(shown);
    }
  }
  renderActions($('#task-actions'), task);
  renderFiles(task);
  renderPlayer(task);
}

/** Each file of the task; result links once it has completed. */
function renderFiles(task) {
  const list = $('#task-files');
  const files = task.kind === 'process'
    ? [task.output_file].filter(Boolean)
    : task.downloaded_files || [];
  const signature = `${task.status}|${files.join('|')}`;
  if (list.dataset.signature === signature) return;
  list.dataset.signature = signature;
  const done = task.status === 'completed';
  const items = files.map((file, i) => {
    const index = task.kind === 'process' ? null : i;
    const name = basename(file);
    return h('li', {}, done ? resultLink(task, index, name) : name,
      h('span', { class: 'muted' }, ` ${file}`),
      h('span', { class: 'action-error error', role: 'alert' }));
  });
  list.replaceChildren(...(items.length ? items : [h('li', { class: 'muted' }, 'No files yet.')]));
}

/**
 * A <video>/<audio> player for a completed result. Without a key the element loads the
 * URL itself (with Range requests). With a key (which a media element cannot send), a
 * result under MAX_BLOB_BYTES is fetched into a Blob; a larger one gets a link instead.
 */
async function renderPlayer(task) {
  const box = $('#player-box');
  const file = mediaFile(task);
  const ext = extension(file);
  const playable = task.status === 'completed' && (AUDIO_EXT.includes(ext) || VIDEO_EXT.includes(ext));
  if (!playable || box.dataset.taskId === task.task_id) return;
  clearPlayer();
  box.dataset.taskId = task.task_id;
  const tag = isAudio(task, file) ? 'audio' : 'video';
  const player = h(tag, { id: 'player', controls: true, preload: 'metadata' });
  const heading = h('h3', {}, 'Player');
  const url = resultUrl(task.task_id, null);
  if (!state.key) {
    player.src = url;
    box.replaceChildren(heading, player);
    return;
  }
  const status = h('p', { class: 'muted', role: 'status' }, 'Loading the result…');
  box.replaceChildren(heading, status);
  const abort = new AbortController();
  try {
    const res = await fetch(url, { headers: authHeaders(), signal: abort.signal });
    if (!res.ok) throw toApiError(res.status, await readJson(res));
    const size = Number(res.headers.get('content-length'));
    if (!size || size > MAX_BLOB_BYTES) {
      abort.abort();
      status.replaceChildren('Too large to play in the page; ', resultLink(task, null, 'download it'), '.');
      return;
    }
    const blob = await res.blob();
    if (box.dataset.taskId !== task.task_id) return; // the user moved on
    state.playerUrl = URL.createObjectURL(blob);
    player.src = state.playerUrl;
    box.replaceChildren(heading, player);
  } catch (err) {
    if (box.dataset.taskId === task.task_id) status.replaceChildren(errorText(err));
    status.className = 'error';
  }
}

function clearPlayer() {
  const box = $('#player-box');
  box.replaceChildren();
  delete box.dataset.taskId;
  if (state.playerUrl) URL.revokeObjectURL(state.playerUrl);
  state.playerUrl = null;
}

// ---------------------------------------------------------------- processing fields

/**
 * The processing options, built twice: for uploads (ids as in the tests: #trim-start …)
 * and in the Add form's "Then process" (ids prefixed "dl-").
 */
function buildProcessFields(container, prefix) {
  const id = (name) => `${prefix}${name}`;
  const field = (name, label, attrs, hint) => h('div', { class: 'field' },
    h('label', { for: id(name) }, label),
    h('input', { id: id(name), name: `op-${name}`, ...attrs }),
    hint ? h('small', { class: 'muted' }, hint) : null);
  const formats = ['mp4', 'webm', 'mkv', 'mov', 'mp3', 'm4a', 'opus'];
  const check = (name, label) => h('div', { class: 'check' },
    h('input', { type: 'checkbox', id: id(name), name: `op-${name}`, 'data-op': name.replace('-', '_') }),
    h('label', { for: id(name) }, label));
  container.append(
    h('fieldset', {}, h('legend', {}, 'Trim'),
      field('trim-start', 'Start', { type: 'text', placeholder: '0 or 00:01:30', 'data-op': 'trim.start',
        inputmode: 'decimal', autocomplete: 'off' }),
      field('trim-duration', 'Duration', { type: 'text', placeholder: 'to the end', 'data-op': 'trim.duration',
        autocomplete: 'off' }, 'seconds or HH:MM:SS')),
    h('fieldset', {}, h('legend', {}, 'Resize'),
      field('resize-width', 'Width', { type: 'number', min: 16, max: 7680, step: 2, 'data-op': 'resize.width' }),
      field('resize-height', 'Height', { type: 'number', min: 16, max: 4320, step: 2, 'data-op': 'resize.height' },
        'even pixels; one side keeps the ratio')),
    h('fieldset', {}, h('legend', {}, 'Encoding'),
      field('quality', 'Quality (CRF)', { type: 'number', min: 0, max: 51, placeholder: '23', 'data-op': 'quality' },
        '0 best – 51 worst'),
      field('fps', 'Frame rate', { type: 'number', min: 1, max: 120, 'data-op': 'fps' }),
      h('div', { class: 'field' },
        h('label', { for: id('format') }, 'Format'),
        h('select', { id: id('format'), name: 'op-format', 'data-op': 'format' },
          h('option', { value: '' }, 'default (mp4)'),
          ...formats.map((f) => h('option', { value: f }, f))))),
    h('div', { class: 'checks' },
      check('audio-only', 'Audio only'),
      check('copy', 'Copy without re-encoding (trim only)')),
  );
}

/** "90" → 90, "1:30" / "00:01:30" stay strings (the API parses both). */
function timeValue(text) {
  return /^\d+(\.\d+)?$/.test(text) ? Number(text) : text;
}

/** The operations object from the fields with this prefix; empty fields are left out. */
function readOperations(prefix) {
  const value = (name) => $(`#${prefix}${name}`).value.trim();
  const checked = (name) => $(`#${prefix}${name}`).checked;
  const ops = {};
  const start = value('trim-start');
  const duration = value('trim-duration');
  if (start || duration) {
    ops.trim = { start: timeValue(start || '0') };
    if (duration) ops.trim.duration = timeValue(duration);
  }
  const width = value('resize-width');
  const height = value('resize-height');
  if (width || height) {
    ops.resize = {};
    if (width) ops.resize.width = Number(width);
    if (height) ops.resize.height = Number(height);
  }
  if (value('quality')) ops.quality = Number(value('quality'));
  if (value('fps')) ops.fps = Number(value('fps'));
  if (value('format')) ops.format = value('format');
  if (checked('audio-only')) ops.audio_only = true;
  if (checked('copy')) ops.copy = true;
  return ops;
}

/** Mark the processing field a 400 message names ("operations.trim.start: …"). */
function markProcessField(container, err) {
  for (const el of $$('[aria-invalid]', container)) el.removeAttribute('aria-invalid');
  const field = err?.field;
  if (!field) return;
  for (const el of $$('[data-op]', container)) {
    if (field === el.dataset.op || field.endsWith(`.${el.dataset.op}`)) el.setAttribute('aria-invalid', 'true');
  }
}

// ---------------------------------------------------------------- add from URL

/** Busy state of a submit button (disabled, with a changed label). */
function busy(button, on, label) {
  if (on) {
    button.dataset.label = button.textContent;
    button.textContent = label;
  } else if (button.dataset.label) {
    button.textContent = button.dataset.label;
  }
  button.disabled = on;
  button.setAttribute('aria-busy', String(on));
}

async function analyze(event) {
  event.preventDefault();
  const input = $('#url');
  const url = input.value.trim();
  clearError('#url-error', input);
  clearError('#download-error');
  if (!url) {
    showError('#url-error', 'url: enter the address of a video or page', input);
    return;
  }
  const button = $('#analyze');
  busy(button, true, 'Analyzing…');
  try {
    const info = await api('POST', '/api/analyze', { url });
    state.analyzedUrl = url;
    renderAnalysis(info);
  } catch (err) {
    $('#analysis').hidden = true;
    showError('#url-error', err, input);
  } finally {
    busy(button, false);
  }
}

function renderAnalysis(info) {
  const playlist = info.kind === 'playlist';
  state.analyzedKind = info.kind;
  $('#media-title').textContent = info.title || 'Untitled';
  const meta = [];
  if (info.duration !== null && info.duration !== undefined) meta.push(`Duration ${fmt.duration(info.duration)}`);
  if (playlist) {
    const count = info.entry_count ?? (info.entries || []).length;
    meta.push(`Playlist of ${count} entries${info.truncated ? ' (the site lists more: cut at the server\'s limit)' : ''}`);
  } else {
    meta.push(`${(info.formats || []).length} formats`);
  }
  const metaEl = $('#media-meta');
  metaEl.replaceChildren(meta.join(' · '));
  // External thumbnails cannot load under the page's CSP (img-src 'self'): link instead.
  if (info.thumbnail && /^https?:\/\//i.test(info.thumbnail)) {
    metaEl.append(' · ', h('a', { href: info.thumbnail, rel: 'noreferrer noopener', target: '_blank' }, 'thumbnail'));
  }
  renderFormats(info.formats || []);
  renderSubtitles(info.subtitles || []);
  // A playlist: its entries and the items to download; formats are each entry's own.
  $('#formats-wrap').hidden = playlist;
  $('#playlist-options').hidden = !playlist;
  $('#playlist-entries').replaceChildren(...(playlist ? info.entries || [] : []).map((e) =>
    h('li', { value: e.index }, e.title || e.url || `Entry ${e.index}`,
      e.duration ? h('span', { class: 'muted' }, ` ${fmt.duration(e.duration)}`) : null)));
  $('#analysis').hidden = false;
}

const CARRIES_LABEL = { 'video+audio': 'video + audio', video_only: 'video only', audio_only: 'audio only' };

function renderFormats(formats) {
  const rows = [formatRow(null, 0)].concat(formats.map((f, i) => formatRow(f, i + 1)));
  $('#formats tbody').replaceChildren(...rows);
}

/** One table row with its radio; `format` null is the "default (best)" choice. */
function formatRow(format, index) {
  const radioId = `fmt-${index}`;
  const radio = h('input', {
    type: 'radio', name: 'format', id: radioId, value: format ? format.format_id : '', checked: !format,
  });
  if (!format) {
    return h('tr', {}, h('td', {}, radio),
      h('td', { colspan: 6 }, h('label', { for: radioId }, 'Default'),
        h('span', { class: 'muted' }, ' best video + audio, chosen by yt-dlp')));
  }
  const resolution = format.width && format.height
    ? `${format.width}×${format.height}` : format.height ? `${format.height}p` : format.has_video ? '?' : 'audio';
  const codecs = [format.vcodec, format.acodec].filter((c) => c && c !== 'none').join(' / ');
  const size = format.filesize ? fmt.bytes(format.filesize)
    : format.filesize_approx ? `~${fmt.bytes(format.filesize_approx)}` : '—';
  const note = [format.format_note, format.ext].filter(Boolean).join(', ');
  return h('tr', {},
    h('td', {}, radio),
    h('td', {}, h('label', { for: radioId }, format.format_id), note ? h('small', { class: 'muted' }, ` ${note}`) : null),
    h('td', {}, resolution),
    h('td', {}, format.fps ? String(format.fps) : '—'),
    h('td', {}, codecs || '—'),
    h('td', {}, size),
    h('td', {}, CARRIES_LABEL[format.carries] || format.carries || '—'));
}

function renderSubtitles(langs) {
  const box = $('#subtitles');
  $('.checks', box).replaceChildren(...langs.map((lang, i) => h('div', { class: 'check' },
    h('input', { type: 'checkbox', name: 'sub', value: lang, id: `sub-${i}` }),
    h('label', { for: `sub-${i}` }, lang))));
  box.hidden = !langs.length;
}

async function download() {
  const input = $('#url');
  const url = input.value.trim();
  clearError('#url-error', input);
  clearError('#download-error');
  $('#download-done').replaceChildren();
  if (!url) {
    showError('#url-error', 'url: enter the address of a video or page', input);
    return;
  }
  const body = { url };
  if (!$('#analysis').hidden && state.analyzedKind === 'playlist') {
    const items = $('#playlist-items').value.trim();
    body.playlist = items ? { items } : {};
    if ($('#skip-archived').checked) body.skip_archived = true;
  } else if (!$('#analysis').hidden) {
    const format = $('input[name=format]:checked')?.value;
    if (format) body.format_id = format;
    const langs = $$('input[name=sub]:checked').map((el) => el.value);
    if (langs.length) {
      body.include_subtitles = true;
      body.subtitle_langs = langs;
    }
  }
  const fields = $('#dl-process-fields');
  if ($('#then-process').open) {
    const operations = readOperations('dl-');
    if (!Object.keys(operations).length) {
      showError('#download-error', 'process: choose at least one option, or close "Then process"');
      return;
    }
    body.process = { operations };
  }
  const button = $('#download');
  busy(button, true, 'Submitting…');
  try {
    const answer = await api('POST', '/api/download', body);
    markProcessField(fields, null);
    $('#download-done').replaceChildren('Queued: ', taskLink(answer.task_id, `task ${shortId(answer.task_id)}`));
    fetchAndApply(answer.task_id);
  } catch (err) {
    if (err.field === 'url') showError('#url-error', err, input);
    else showError('#download-error', err);
    markProcessField(fields, err);
  } finally {
    busy(button, false);
  }
}

/** Formats belong to the analyzed URL: editing the URL hides them. */
function onUrlInput() {
  if ($('#url').value.trim() !== state.analyzedUrl) $('#analysis').hidden = true;
}

// ---------------------------------------------------------------- upload and process

/** POST the raw file (XMLHttpRequest: it reports upload progress). */
function uploadFile(file) {
  if (!file) return;
  const bar = $('#upload-progress');
  const status = $('#upload-status');
  const input = $('#file');
  clearError('#upload-error', input);
  clearError('#process-error');
  $('#process-done').replaceChildren();
  state.upload = null;
  $('#process').disabled = true;
  bar.value = 0;
  status.textContent = `Uploading ${file.name}…`;

  const xhr = new XMLHttpRequest();
  xhr.open('POST', `/api/uploads?filename=${encodeURIComponent(file.name)}`);
  xhr.setRequestHeader('Accept', 'application/json');
  xhr.setRequestHeader('Content-Type', file.type || 'application/octet-stream');
  if (state.key) xhr.setRequestHeader('Authorization', `Bearer ${state.key}`);
  xhr.upload.onprogress = (e) => {
    if (!e.lengthComputable) return;
    bar.value = (e.loaded / e.total) * 100;
    status.textContent = `Uploading ${file.name}: ${fmt.bytes(e.loaded)} of ${fmt.bytes(e.total)}`;
  };
  xhr.onload = () => {
    let body = null;
    try {
      body = JSON.parse(xhr.responseText);
    } catch {
      // not JSON: reported by status below
    }
    if (xhr.status >= 200 && xhr.status < 300 && body?.input_file) uploaded(file, body);
    else uploadFailed(toApiError(xhr.status, body));
  };
  xhr.onerror = () => uploadFailed(new ApiError(0, 'network', 'could not reach the server'));
  xhr.onabort = () => uploadFailed('Upload aborted.');
  xhr.send(file);
}

function uploaded(file, info) {
  state.upload = info;
  $('#upload-progress').value = 100;
  const details = [fmt.bytes(info.size_bytes), info.container, fmt.duration(info.duration)].filter(Boolean);
  $('#upload-status').textContent = `Uploaded ${file.name} (${details.join(', ')}). Choose options, then Process.`;
  $('#process').disabled = false;
}

function uploadFailed(err) {
  $('#upload-status').textContent = '';
  $('#upload-progress').value = 0;
  showError('#upload-error', err, $('#file'));
}

async function processUpload(event) {
  event.preventDefault();
  const fields = $('#process-fields');
  clearError('#process-error');
  $('#process-done').replaceChildren();
  if (!state.upload) {
    showError('#process-error', 'input_file: upload a file first');
    return;
  }
  const operations = readOperations('');
  if (!Object.keys(operations).length) {
    showError('#process-error', 'operations: choose at least one option (trim, resize, quality, …)');
    return;
  }
  const button = $('#process');
  busy(button, true, 'Submitting…');
  try {
    const answer = await api('POST', '/api/process', { input_file: state.upload.input_file, operations });
    markProcessField(fields, null);
    $('#process-done').replaceChildren('Queued: ', taskLink(answer.task_id, `task ${shortId(answer.task_id)}`));
    fetchAndApply(answer.task_id);
  } catch (err) {
    showError('#process-error', err);
    markProcessField(fields, err);
  } finally {
    busy(button, false);
  }
}

function wireDropZone() {
  const zone = $('#drop');
  const input = $('#file');
  zone.addEventListener('dragover', (e) => {
    e.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    const files = e.dataTransfer?.files;
    if (!files?.length) return;
    input.files = files;
    uploadFile(files[0]);
  });
  input.addEventListener('change', () => uploadFile(input.files[0]));
}

// ---------------------------------------------------------------- routing and start-up

/** `#/task/<id>` shows one task; anything else the queue and the forms. */
function route() {
  if (state.needsKey) return;
  $('#key-view').hidden = true;
  const match = /^#\/task\/([^/?#]+)$/.exec(location.hash);
  clearPlayer();
  if (match) {
    const id = decodeURIComponent(match[1]);
    state.route = { view: 'task', id };
    $('#home-view').hidden = true;
    $('#task-view').hidden = false;
    $('#task-heading').focus();
    showTaskPage(id);
  } else {
    state.route = { view: 'home', id: null };
    $('#task-view').hidden = true;
    $('#home-view').hidden = false;
  }
}

function onFilterChange() {
  state.filter = { status: $('#filter-status').value, kind: $('#filter-kind').value };
  state.nextCursor = null;
  refreshList();
}

/** One click handler for the buttons and links that rows and the task page create. */
function onDocumentClick(event) {
  const target = event.target.closest('button.cancel, button.retry, a.result');
  if (!target) return;
  if (target.matches('button.cancel')) cancelTask(target);
  else if (target.matches('button.retry')) retryTask(target);
  else onResultClick(event, target);
}

function wire() {
  buildProcessFields($('#process-fields'), '');
  buildProcessFields($('#dl-process-fields'), 'dl-');
  $('#key-form').addEventListener('submit', submitKey);
  $('#key-forget').addEventListener('click', forgetKey);
  $('#key-change').addEventListener('click', toggleKeyView);
  $('#add-form').addEventListener('submit', analyze);
  $('#url').addEventListener('input', onUrlInput);
  $('#download').addEventListener('click', download);
  $('#process-form').addEventListener('submit', processUpload);
  $('#filter-status').addEventListener('change', onFilterChange);
  $('#filter-kind').addEventListener('change', onFilterChange);
  $('#older').addEventListener('click', loadOlder);
  document.addEventListener('click', onDocumentClick);
  window.addEventListener('hashchange', route);
  wireDropZone();
}

async function start() {
  wire();
  $('#key-change').hidden = !state.key;
  try {
    await loadAccess();
  } catch (err) {
    if (err.status === 401) return; // the key prompt is up; submitKey() continues
    showError('#list-error', err);
  }
  route();
  refreshList();
  events();
}

start();
