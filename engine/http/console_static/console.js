"use strict";
// The IPTO review console: a client of the engine's JSON API, the same routes `ipto review`
// uses (GET /v1/admin/staged-objects, …/preview, POST …/approve, …/reject,
// …/approve/batch, GET /v1/jobs/{id}). No framework and no build step.
//
// Safety: every string that comes from the API (file names, tenant names, extracted text,
// error messages) goes into the page through textContent or createTextNode, never as
// markup. The page's Content-Security-Policy backs this up: scripts from this origin only,
// nothing inline, and Trusted Types with no policy, so innerHTML cannot even be assigned.
//
// Authentication: the HttpOnly session cookie travels by itself; every state change also
// sends the session's CSRF token (X-CSRF-Token) and an Idempotency-Key.

const QUEUE = "/v1/admin/staged-objects";
const PAGE_SIZE = 50;
const POLL_MS = 5000;       // how often the end of the queue is asked for new arrivals
const JOB_POLL_MS = 1000;   // how often a started job is followed
const JOB_FOLLOW_MS = 120000;

const state = {
  csrf: null,
  rows: [],                 // the objects shown, in queue order (oldest upload first)
  byId: new Map(),          // object_id → its <tr>
  current: -1,              // index of the current row
  selected: new Set(),      // object ids ticked for bulk approval
  nextCursor: null,
  hasMore: false,
  pollCursor: null,
  query: new URLSearchParams(),
  skewMs: 0,                // server clock minus ours, from the envelopes' timestamps
  generation: 0,            // bumped on every reload: late answers of an older list are dropped
  previewToken: 0,
};

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, error) {
    super(error && error.message ? error.message : `HTTP ${status}`);
    this.status = status;
    this.code = error && error.code ? error.code : "http_error";
    this.details = error ? error.details : null;
  }
}

function randomKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function api(method, path, body) {
  const headers = {"Accept": "application/json"};
  if (method !== "GET") {
    headers["X-CSRF-Token"] = state.csrf || "";
    headers["Idempotency-Key"] = randomKey();
    if (body !== undefined) headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, {
    method, headers, credentials: "same-origin", cache: "no-store",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const payload = await response.json().catch(() => null);
  if (payload && payload.timestamp) state.skewMs = Date.parse(payload.timestamp) - Date.now();
  if (response.status === 401) {
    location.replace("/console");  // the session ended: back to the login page
    throw new ApiError(401, payload && payload.error);
  }
  if (!response.ok) throw new ApiError(response.status, payload && payload.error);
  return payload.data;
}

// -- small DOM helpers (text only) ---------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function serverNow() {
  return Date.now() + state.skewMs;
}

function duration(ms) {
  const minutes = Math.max(0, Math.floor(ms / 60000));
  const days = Math.floor(minutes / 1440);
  const hours = Math.floor((minutes % 1440) / 60);
  const mins = minutes % 60;
  if (days > 0) return `${days} d ${hours} h`;
  if (hours > 0) return `${hours} h ${mins} min`;
  return `${mins} min`;
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

function age(instant) {
  if (!instant) return "—";
  const ms = serverNow() - Date.parse(instant);
  return ms < 60000 ? "just now" : `${duration(ms)} ago`;
}

function timeLeft(obj) {
  if (obj.review_state === "under_review") return {text: "claimed: waits", cls: "muted"};
  if (!obj.review_expires_at) return {text: "—", cls: "muted"};
  const left = Date.parse(obj.review_expires_at) - serverNow();
  if (left <= 0) return {text: "expiring", cls: "urgent"};
  return {text: duration(left), cls: left < 6 * 3600 * 1000 ? "urgent" : left < 24 * 3600 * 1000 ? "soon" : ""};
}

// -- the list -------------------------------------------------------------------------------
function filtersFromForm() {
  const q = new URLSearchParams({order: "oldest", limit: String(PAGE_SIZE)});
  const put = (name, value) => { if (value && value.trim()) q.set(name, value.trim()); };
  put("review_state", $("f-state").value);
  put("tenant_id", $("f-tenant").value);
  put("dataset_id", $("f-dataset").value);
  put("modality", $("f-modality").value);
  const age = Number($("f-age").value || 0);
  if (age > 0) q.set("uploaded_to", new Date(serverNow() - age * 1000).toISOString());
  if (age < 0) q.set("uploaded_from", new Date(serverNow() + age * 1000).toISOString());
  return q;
}

function stateBadge(obj) {
  return el("span", {class: `badge ${obj.review_state}`}, obj.review_state.replace("_", " "));
}

function renderRow(obj) {
  const left = timeLeft(obj);
  const tick = el("input", {type: "checkbox", class: "pick", "aria-label": `select ${obj.original_filename}`});
  tick.checked = state.selected.has(obj.object_id);
  tick.disabled = !["staged", "under_review"].includes(obj.review_state);
  tick.addEventListener("click", (event) => { event.stopPropagation(); toggleSelected(obj.object_id, tick.checked); });
  const tenant = el("button", {type: "button", class: "link chip", title: `only ${obj.tenant_id}`}, obj.tenant_name || obj.tenant_id);
  tenant.addEventListener("click", (event) => { event.stopPropagation(); $("f-tenant").value = obj.tenant_id; reload(); });
  const dataset = el("button", {type: "button", class: "link chip", title: `only ${obj.dataset_id}`}, obj.dataset_name || obj.dataset_id);
  dataset.addEventListener("click", (event) => { event.stopPropagation(); $("f-dataset").value = obj.dataset_id; reload(); });
  const row = el("tr", {dataset: {objectId: obj.object_id}, "aria-selected": "false"},
    el("td", {}, tick),
    el("td", {class: "file"}, el("span", {class: "name"}, obj.original_filename), el("small", {}, obj.object_id)),
    el("td", {}, tenant, el("span", {class: "sep"}, " · "), dataset),
    el("td", {}, obj.modality || "other", el("small", {}, obj.mime_type)),
    el("td", {class: "num"}, bytes(obj.size_bytes)),
    el("td", {title: obj.uploaded_at || ""}, age(obj.uploaded_at)),
    el("td", {class: `left ${left.cls}`}, left.text),
    el("td", {class: "state"}, stateBadge(obj)),
  );
  row.addEventListener("click", () => setCurrent(state.rows.findIndex((o) => o.object_id === obj.object_id)));
  return row;
}

function replaceRow(obj) {
  const index = state.rows.findIndex((o) => o.object_id === obj.object_id);
  if (index < 0) return;
  state.rows[index] = obj;
  const old = state.byId.get(obj.object_id);
  const row = renderRow(obj);
  if (index === state.current) { row.classList.add("current"); row.setAttribute("aria-selected", "true"); }
  old.replaceWith(row);
  state.byId.set(obj.object_id, row);
}

function append(objects) {
  const body = $("rows");
  let added = 0;
  for (const obj of objects) {
    if (state.byId.has(obj.object_id)) continue;
    const row = renderRow(obj);
    state.rows.push(obj);
    state.byId.set(obj.object_id, row);
    body.append(row);
    added += 1;
  }
  $("empty").hidden = state.rows.length > 0;
  $("more").hidden = !state.hasMore;
  $("count").textContent = `${state.rows.length} shown${state.hasMore ? ", more below" : ""}`;
  return added;
}

async function loadPage(cursor) {
  const generation = state.generation;
  const q = new URLSearchParams(state.query);
  if (cursor) q.set("cursor", cursor);
  const page = await api("GET", `${QUEUE}?${q}`);
  if (generation !== state.generation) return;  // the filters changed meanwhile
  state.nextCursor = page.next_cursor;
  state.hasMore = page.has_more;
  if (page.poll_cursor) state.pollCursor = page.poll_cursor;
  append(page.objects);
  if (state.current < 0 && state.rows.length > 0) setCurrent(0);
}

async function reload() {
  state.generation += 1;
  state.query = filtersFromForm();
  state.rows = [];
  state.byId.clear();
  state.selected.clear();
  state.current = -1;
  state.nextCursor = null;
  state.hasMore = false;
  state.pollCursor = null;
  $("rows").replaceChildren();
  $("select-all").checked = false;
  updateBulk();
  showDetail(null);
  try {
    await loadPage(null);
  } catch (exc) {
    flash(`Could not load the queue: ${exc.message}`, "error");
  }
}

// New arrivals join the end of the queue (oldest upload first); once the whole list is
// loaded, the position after its last object is asked for whatever arrived since.
async function pollArrivals() {
  if (state.hasMore || document.hidden) return;
  const generation = state.generation;
  const q = new URLSearchParams(state.query);
  if (state.pollCursor) q.set("cursor", state.pollCursor);
  try {
    const page = await api("GET", `${QUEUE}?${q}`);
    if (generation !== state.generation) return;
    if (page.poll_cursor) state.pollCursor = page.poll_cursor;
    state.hasMore = page.has_more;
    state.nextCursor = page.next_cursor;
    const added = append(page.objects);
    if (added > 0) $("arrivals").textContent = `${added} new object${added === 1 ? "" : "s"} arrived`;
    if (state.current < 0 && state.rows.length > 0) setCurrent(0);
  } catch (exc) {
    if (exc.status !== 401) $("arrivals").textContent = `(could not check for new objects: ${exc.message})`;
  }
}

function refreshTimes() {
  for (const obj of state.rows) {
    const cell = state.byId.get(obj.object_id).querySelector("td.left");
    const left = timeLeft(obj);
    cell.textContent = left.text;
    cell.className = `left ${left.cls}`;
  }
}

// -- the current object ----------------------------------------------------------------------
function setCurrent(index) {
  if (index < 0 || index >= state.rows.length) return;
  const previous = state.rows[state.current];
  if (previous) {
    const row = state.byId.get(previous.object_id);
    row.classList.remove("current");
    row.setAttribute("aria-selected", "false");
  }
  state.current = index;
  const row = state.byId.get(state.rows[index].object_id);
  row.classList.add("current");
  row.setAttribute("aria-selected", "true");
  row.scrollIntoView({block: "nearest"});
  showDetail(state.rows[index]);
}

async function move(step) {
  const target = state.current + step;
  if (target >= state.rows.length && state.hasMore) await loadMore();
  setCurrent(Math.min(Math.max(target, 0), state.rows.length - 1));
}

async function loadMore() {
  if (!state.hasMore || !state.nextCursor) return;
  try {
    await loadPage(state.nextCursor);
  } catch (exc) {
    flash(`Could not load more: ${exc.message}`, "error");
  }
}

function metaRow(list, term, value) {
  list.append(el("dt", {}, term), el("dd", {}, value === null || value === undefined || value === "" ? "—" : value));
}

async function showDetail(obj) {
  $("detail").hidden = !obj;
  $("detail-empty").hidden = Boolean(obj);
  if (!obj) return;
  $("d-name").textContent = obj.original_filename;
  const meta = $("d-meta");
  meta.replaceChildren();
  metaRow(meta, "Object", obj.object_id);
  metaRow(meta, "Tenant", `${obj.tenant_name || ""} (${obj.tenant_id})`);
  metaRow(meta, "Dataset", `${obj.dataset_name || ""} (${obj.dataset_id})`);
  metaRow(meta, "Declared type", obj.mime_type);
  metaRow(meta, "Size", `${bytes(obj.size_bytes)} (${obj.size_bytes} bytes)`);
  metaRow(meta, "SHA-256", obj.checksum_sha256);
  metaRow(meta, "Uploaded", obj.uploaded_at);
  metaRow(meta, "Review", obj.review_reason ? `${obj.review_state}: ${obj.review_reason}` : obj.review_state);
  metaRow(meta, "Expires", obj.review_expires_at ? `${obj.review_expires_at} (in ${timeLeft(obj).text})` : null);
  const open = ["staged", "under_review"].includes(obj.review_state);
  $("approve").disabled = !open;
  $("reject").disabled = !open;
  $("reason").disabled = !open;

  const token = ++state.previewToken;
  const problem = $("p-problem");
  const summary = $("p-summary");
  const image = $("p-image");
  const text = $("p-text");
  problem.hidden = true;
  image.hidden = true;
  image.removeAttribute("src");
  text.hidden = true;
  text.textContent = "";
  summary.textContent = "Loading the preview…";
  let preview;
  try {
    preview = await api("GET", `${QUEUE}/${encodeURIComponent(obj.object_id)}/preview`);
  } catch (exc) {
    if (token === state.previewToken) summary.textContent = `No preview: ${exc.message}`;
    return;
  }
  if (token !== state.previewToken) return;  // another object was picked meanwhile
  if (preview.problem) {
    problem.textContent = preview.problem;
    problem.hidden = false;
  }
  const detected = preview.detected_type ? `the bytes are ${preview.detected_type}` : "";
  if (preview.kind === "image") {
    summary.textContent = `Image, ${preview.width} × ${preview.height} pixels; ${detected}`;
    image.alt = `preview of ${obj.original_filename}`;
    image.src = preview.image_url;
    image.hidden = false;
  } else if (preview.kind === "pdf") {
    summary.textContent = `PDF, ${preview.page_count === null ? "?" : preview.page_count} page${preview.page_count === 1 ? "" : "s"}; extracted text${preview.truncated ? " (first part)" : ""}:`;
    text.textContent = preview.text || "";
    text.hidden = !preview.text;
  } else if (preview.kind === "text" || preview.kind === "document") {
    summary.textContent = `${preview.kind === "text" ? "Text, shown as written" : "Extracted text"}${preview.truncated ? " (first part)" : ""}:`;
    text.textContent = preview.text || "";
    text.hidden = false;
  } else {
    summary.textContent = preview.problem ? "Nothing to show." : `No preview for this type; ${detected}`;
  }
}

// -- decisions -------------------------------------------------------------------------------
function flash(message, kind) {
  const box = $("decision");
  box.replaceChildren(el("span", {}, message));
  box.className = `decision ${kind || ""}`;
}

function describeJob(job) {
  return `job ${job.job_id}: ${job.status}${job.stage ? ` (${job.stage})` : ""}${job.error ? ` — ${job.error}` : ""}`;
}

async function followJob(obj, jobId, line) {
  const until = Date.now() + JOB_FOLLOW_MS;
  while (Date.now() < until) {
    let job;
    try {
      job = await api("GET", `/v1/jobs/${encodeURIComponent(jobId)}`);
    } catch (exc) {
      line.textContent = `job ${jobId}: ${exc.message}`;
      return;
    }
    line.textContent = describeJob(job);
    line.dataset.jobStatus = job.status;
    if (job.status === "succeeded" || job.status === "failed") return;
    await new Promise((resolve) => setTimeout(resolve, JOB_POLL_MS));
  }
}

function decided(obj, changes) {
  const updated = {...obj, ...changes, review_expires_at: null};
  replaceRow(updated);
  state.selected.delete(obj.object_id);
  updateBulk();
  return updated;
}

async function approveCurrent() {
  const obj = state.rows[state.current];
  if (!obj || $("approve").disabled) return;
  flash(`Approving ${obj.original_filename}…`);
  try {
    const result = await api("POST", `${QUEUE}/${encodeURIComponent(obj.object_id)}/approve`);
    decided(obj, {review_state: result.review_state, latest_job_id: result.job_id});
    const line = el("span", {class: "job", dataset: {jobId: result.job_id}}, `job ${result.job_id}: queued`);
    $("decision").replaceChildren(el("strong", {}, `Approved ${obj.original_filename}. `), line);
    $("decision").className = "decision ok";
    followJob(obj, result.job_id, line);
    await move(1);
  } catch (exc) {
    flash(`Could not approve ${obj.original_filename}: ${exc.message} (${exc.code})`, "error");
  }
}

function startReject() {
  const obj = state.rows[state.current];
  if (!obj || $("reason").disabled) return;
  $("reason").focus();
  flash("Type the reason, then Enter to reject (Esc cancels).");
}

async function rejectCurrent() {
  const obj = state.rows[state.current];
  if (!obj || $("reject").disabled) return;
  const reason = $("reason").value.trim();
  try {
    const result = await api("POST", `${QUEUE}/${encodeURIComponent(obj.object_id)}/reject`, reason ? {reason} : {});
    decided(obj, {review_state: result.review_state, review_reason: result.reason});
    $("reason").value = "";
    $("reason").blur();
    flash(`Rejected ${obj.original_filename}${result.reason ? `: ${result.reason}` : ""}. Its bytes are purged.`, "ok");
    await move(1);
  } catch (exc) {
    flash(`Could not reject ${obj.original_filename}: ${exc.message} (${exc.code})`, "error");
  }
}

function toggleSelected(objectId, on) {
  if (on) state.selected.add(objectId); else state.selected.delete(objectId);
  const tick = state.byId.get(objectId).querySelector("input.pick");
  tick.checked = state.selected.has(objectId);
  updateBulk();
}

function updateBulk() {
  const button = $("bulk-approve");
  button.textContent = `Approve selected (${state.selected.size})`;
  button.disabled = state.selected.size === 0;
}

async function approveSelected() {
  const ids = [...state.selected];
  if (ids.length === 0) return;
  flash(`Approving ${ids.length} object${ids.length === 1 ? "" : "s"}…`);
  let approved = 0;
  const failures = [];
  for (let i = 0; i < ids.length; i += 100) {  // the API takes up to 100 ids a call
    const chunk = ids.slice(i, i + 100);
    let answer;
    try {
      answer = await api("POST", `${QUEUE}/approve/batch`, {object_ids: chunk});
    } catch (exc) {
      failures.push(`${chunk.length} objects: ${exc.message}`);
      continue;
    }
    for (const item of answer.results) {
      const obj = state.rows.find((o) => o.object_id === item.object_id);
      if (item.ok) {
        approved += 1;
        if (obj) decided(obj, {review_state: item.data.review_state, latest_job_id: item.data.job_id});
      } else {
        failures.push(`${obj ? obj.original_filename : item.object_id}: ${item.error.message}`);
      }
    }
  }
  const box = $("decision");
  box.replaceChildren(el("strong", {}, `Approved ${approved} of ${ids.length}; each started its processing job.`));
  for (const failure of failures) box.append(el("div", {class: "error"}, failure));
  box.className = `decision ${failures.length ? "error" : "ok"}`;
  const obj = state.rows[state.current];
  if (obj) showDetail(obj);
}

// -- keyboard --------------------------------------------------------------------------------
function onKey(event) {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target;
  if (target === $("reason")) {
    if (event.key === "Enter") { event.preventDefault(); rejectCurrent(); }
    if (event.key === "Escape") { event.preventDefault(); target.value = ""; target.blur(); flash("Rejection cancelled."); }
    return;
  }
  if (target instanceof HTMLInputElement || target instanceof HTMLSelectElement || target instanceof HTMLTextAreaElement) return;
  if ($("help").open) return;
  const actions = {
    j: () => move(1),
    k: () => move(-1),
    a: approveCurrent,
    r: startReject,
    x: () => { const obj = state.rows[state.current]; if (obj) toggleSelected(obj.object_id, !state.selected.has(obj.object_id)); },
    A: approveSelected,
    "?": () => $("help").showModal(),
  };
  const action = actions[event.key];
  if (action) {
    event.preventDefault();
    action();
  }
}

// -- start -----------------------------------------------------------------------------------
async function start() {
  let session;
  try {
    session = await api("GET", "/console/session");
  } catch (exc) {
    if (exc.status !== 401) flash(`Could not open the console: ${exc.message}`, "error");
    return;
  }
  state.csrf = session.csrf_token;
  $("who").textContent = session.user.email;
  $("filters").addEventListener("submit", (event) => { event.preventDefault(); reload(); });
  for (const id of ["f-state", "f-modality", "f-age"]) $(id).addEventListener("change", reload);
  $("clear").addEventListener("click", () => { $("filters").reset(); reload(); });
  $("more").addEventListener("click", loadMore);
  $("approve").addEventListener("click", approveCurrent);
  $("reject").addEventListener("click", () => ($("reason").value.trim() ? rejectCurrent() : startReject()));
  $("bulk-approve").addEventListener("click", approveSelected);
  $("select-all").addEventListener("change", (event) => {
    for (const obj of state.rows) {
      if (["staged", "under_review"].includes(obj.review_state)) toggleSelected(obj.object_id, event.target.checked);
    }
  });
  $("help-button").addEventListener("click", () => $("help").showModal());
  $("logout").addEventListener("click", async () => {
    try { await api("POST", "/console/logout"); } finally { location.replace("/console"); }
  });
  document.addEventListener("keydown", onKey);
  setInterval(pollArrivals, POLL_MS);
  setInterval(refreshTimes, 30000);
  await reload();
}

start();
