// The dashboard page: wires the connection to the store and renders the store once per animation frame.
// Which actions it offers depends on the frames the coordinator understands (listed in the page's
// `agentswarm-frames` meta tag by the server): cancel, answer and retry appear where the server has them,
// and the swarm-wide feed replaces per-task following when the server offers it.

import { Connection, apiUrl } from "./connection.js";
import { Store, TERMINAL } from "./store.js";

const TOKEN_KEY = "agentswarm.token";
const WATCH_KEY = "agentswarm.watched";
const STATS_EVERY_MS = 2000;
const LIST_ROWS = 200;
const LIST_EVERY_MS = 250;
const EVENT_NODES = 500;
/** Most tasks followed one by one without the swarm feed (children of big trees beyond it are listed, not followed). */
const MAX_FOLLOWED = 2000;

const frames = new Set((document.querySelector('meta[name="agentswarm-frames"]')?.content || "").split(/\s+/));
const swarmFeed = frames.has("subscribe_swarm");
const $ = (id) => document.getElementById(id);
const store = new Store();
let conn = null;
let openId = null;
let rendered = { id: null, events: 0, text: 0 };
let lastList = 0;
let statsTimer = null;
const pendingSubmits = new Map(); // local key -> submit frame, resent after a reconnect (ids make it idempotent)

// --- login ---------------------------------------------------------------------------------------------

function showLogin(message) {
  $("main").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("token").focus();
}

$("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const token = $("token").value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token").value = "";
  connect(token);
});

$("logout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  conn?.stop();
  conn = null;
  setStatus("idle", "not connected");
  showLogin("");
});

function setStatus(state, text) {
  const el = $("conn");
  el.dataset.state = state;
  el.textContent = text;
}

function connect(token) {
  conn?.stop();
  $("login").hidden = true;
  $("main").hidden = false;
  $("logout").hidden = false;
  conn = new Connection({
    url: apiUrl(window.location),
    token,
    onStatus: setStatus,
    onLive,
    onFrame,
    onRefused(code, why) {
      sessionStorage.removeItem(TOKEN_KEY);
      clearInterval(statsTimer);
      const text =
        code === "auth_timeout"
          ? `The coordinator closed the connection before the token was checked (${why}). Try again.`
          : `The coordinator refused this token (${why}). Check the API token and try again.`;
      showLogin(text);
    },
  });
  conn.start();
}

// --- frames --------------------------------------------------------------------------------------------

function onLive() {
  requestStats();
  clearInterval(statsTimer);
  statsTimer = setInterval(requestStats, STATS_EVERY_MS);
  if (swarmFeed) conn.send({ type: "subscribe_swarm", after: store.swarmCursor ?? null });
  // Resume every subscription exactly after the last event this page processed.
  for (const t of store.tasks.values()) {
    if (t.subscribed) subscribe(t, true);
  }
  for (const frame of pendingSubmits.values()) sendSubmit(frame);
  schedule();
}

function requestStats() {
  conn?.send({ type: "stats" });
}

function onFrame(f) {
  switch (f.type) {
    case "event": {
      const children = store.onEvent(f);
      // The trees of the tasks submitted or opened here are followed (their handlers and children show).
      for (const c of children) follow(c);
      break;
    }
    case "result":
      store.onResult(f);
      break;
    case "stats":
      store.onStats(f.stats);
      break;
    case "swarm":
      onSwarm(f);
      break;
    case "error":
      if (f.task_id && f.code === "not_found") {
        const t = store.tasks.get(f.task_id);
        if (t) {
          t.subscribed = false;
          t.state = t.state === "queued" ? "unknown" : t.state;
          store.touch(`task:${t.id}`);
          store.touch("tasks");
        }
        if (f.task_id === openId) $("task-message").textContent = f.message;
      }
      break;
  }
  schedule();
}

/** One entry of the swarm feed: `data.kind` is "task" (a state change) or "agent" (a status change). */
function onSwarm(f) {
  store.swarmCursor = f.event_id;
  const d = f.data || {};
  if (d.kind === "task" && d.task_id) store.onTaskState(d);
  else if (d.kind === "agent" && d.agent) store.onAgent({ ...d, agent_id: d.agent });
}

function subscribe(t, resume) {
  t.subscribed = true;
  conn?.send({ type: "subscribe", task_id: t.id, after: resume ? t.cursor : null });
}

/** Follow a task's events (without the swarm feed every listed task is followed this way). */
function follow(id) {
  const t = store.task(id);
  if (t.subscribed || TERMINAL.has(t.state)) return;
  if (followedCount() >= MAX_FOLLOWED && id !== openId) return;
  subscribe(t, t.cursor !== null);
  store.touch("tasks");
}

function followedCount() {
  let n = 0;
  for (const t of store.tasks.values()) if (t.subscribed) n += 1;
  return n;
}

function remember(ids) {
  const kept = JSON.parse(sessionStorage.getItem(WATCH_KEY) || "[]");
  const all = [...new Set([...kept, ...ids])].slice(-500);
  sessionStorage.setItem(WATCH_KEY, JSON.stringify(all));
}

// --- submit --------------------------------------------------------------------------------------------

function newId() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

$("submit-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const msg = $("submit-message");
  let parsed;
  try {
    parsed = JSON.parse($("submit-json").value);
  } catch (e) {
    msg.textContent = `Not valid JSON: ${e.message}`;
    return;
  }
  const specs = Array.isArray(parsed) ? parsed : [parsed];
  if (!specs.length || specs.some((s) => !s || typeof s !== "object" || Array.isArray(s) || !("payload" in s))) {
    msg.textContent = 'Each task is an object with a "payload" (and optionally a "task_id").';
    return;
  }
  // Ids are chosen here, before the first attempt, so a submit resent after a reconnect is not doubled.
  const tasks = specs.map((s) => ({ task_id: s.task_id || newId(), payload: s.payload }));
  const frame = { type: "submit", tasks };
  const key = newId();
  pendingSubmits.set(key, frame);
  frame.key = key;
  msg.textContent = conn?.live ? "submitting ..." : "not connected: will submit after reconnecting";
  sendSubmit(frame);
});

function sendSubmit(frame) {
  const { key, ...wire } = frame;
  conn?.send(wire, (reply) => {
    const msg = $("submit-message");
    if (reply.type === "submitted") {
      pendingSubmits.delete(key);
      msg.textContent = `submitted ${reply.task_ids.length} task(s): ${reply.task_ids.slice(0, 5).join(", ")}${reply.task_ids.length > 5 ? ", ..." : ""}`;
      remember(reply.task_ids.slice(0, 100));
      for (const id of reply.task_ids) follow(id);
      if (reply.task_ids.length === 1) openTask(reply.task_ids[0]);
    } else if (reply.code !== "disconnected") {
      pendingSubmits.delete(key);
      msg.textContent = `refused: ${reply.message}`;
    }
    schedule();
  });
}

// --- task view and actions -----------------------------------------------------------------------------

$("open-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const id = $("open-id").value.trim();
  if (!id) return;
  remember([id]);
  openTask(id);
});

function openTask(id) {
  openId = id;
  rendered = { id: null, events: 0, text: 0 };
  $("task-message").textContent = "";
  const t = store.task(id);
  // The view needs the task's events: follow it unless they are all here already.
  if (!t.subscribed && !(TERMINAL.has(t.state) && t.result !== undefined)) subscribe(t, t.cursor !== null);
  store.touch(`task:${id}`);
  store.touch("tasks");
  $("task-view").hidden = false;
  schedule();
  requestAnimationFrame(() => $("task-title").focus());
}

$("task-close").addEventListener("click", () => {
  openId = null;
  $("task-view").hidden = true;
  store.touch("tasks");
  schedule();
});

function act(frame, what) {
  const msg = $("task-message");
  const sent = conn?.send(frame, (reply) => {
    msg.textContent = reply.type === "error" ? `${what} refused: ${reply.message}` : `${what}: ${describeReply(reply)}`;
  });
  msg.textContent = sent ? `${what} ...` : "not connected; try again once the page is live";
}

function describeReply(reply) {
  if (reply.type === "cancelled" && reply.outcomes) {
    return Object.entries(reply.outcomes).map(([id, outcome]) => `${id} ${outcome}`).join(", ");
  }
  if (reply.type === "answered") return `the task resumes with the answer to question ${reply.question}`;
  const { type, ref, ...rest } = reply;
  return `${type} ${JSON.stringify(rest)}`;
}

$("act-cancel").addEventListener("click", () => act({ type: "cancel", task_ids: [openId] }, "cancel"));
$("act-retry").addEventListener("click", () => act({ type: "retry", task_ids: [openId] }, "retry"));
$("answer-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  let input;
  try {
    input = JSON.parse($("answer-input").value);
  } catch (e) {
    $("task-message").textContent = `The answer is not valid JSON: ${e.message}`;
    return;
  }
  act({ type: "answer", task_id: openId, input }, "answer");
});

// --- filters -------------------------------------------------------------------------------------------

function refilter() {
  store.touch("tasks");
  lastList = 0;
  schedule();
}
for (const id of ["f-state", "f-handler", "f-text"]) {
  $(id).addEventListener("input", refilter);
  $(id).addEventListener("change", refilter);
}
$("filters").addEventListener("submit", (ev) => ev.preventDefault());

// On the section, not the tbody: the rows' tbody is replaced at each render.
document.querySelector("section.tasks").addEventListener("click", (ev) => {
  const button = ev.target.closest("button[data-task]");
  if (button) openTask(button.dataset.task);
});
$("task-children").addEventListener("click", (ev) => {
  const button = ev.target.closest("button[data-task]");
  if (button) openTask(button.dataset.task);
});

// --- rendering (batched: at most once per animation frame) ---------------------------------------------

let scheduled = false;
function schedule() {
  if (!scheduled) {
    scheduled = true;
    requestAnimationFrame(render);
  }
}

function render(now) {
  scheduled = false;
  const d = store.dirty;
  if (d.has("stats")) renderStats();
  if (d.has("handlers")) renderHandlers();
  if (d.has("agents") && !d.has("tasks")) renderAgents();
  if (d.has("tasks")) {
    if (now - lastList >= LIST_EVERY_MS) {
      lastList = now;
      renderTasks();
      renderAgents(); // statuses follow the tasks' states
      d.delete("tasks");
    } else {
      // Lists re-render a few times a second at most; the task view below stays per frame.
      scheduled = true;
      requestAnimationFrame(render);
    }
  }
  if (openId && d.has(`task:${openId}`)) renderTask();
  const keepTasks = d.has("tasks");
  d.clear();
  if (keepTasks) d.add("tasks");
}

const fmt = (n) => (n === null || n === undefined ? "-" : Number(n).toLocaleString());

function renderStats() {
  const s = store.stats;
  if (!s) return;
  $("s-queued").textContent = fmt(s.queued);
  $("s-running").textContent = fmt(s.pending);
  $("s-done").textContent = fmt(s.done);
  $("s-dead").textContent = fmt(s.dead_lettered);
  $("saturated").hidden = !s.saturated;
  const minute = store.rates(60);
  const five = store.rates(300);
  $("s-rate").textContent = minute ? `${minute.done.toFixed(1)}/s` : "-";
  $("s-fail").textContent = five ? `${(five.failure * 100).toFixed(1)}%` : "-";
  drawChart();
}

function drawChart() {
  const canvas = $("chart");
  const ctx = canvas.getContext("2d");
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 900;
  const h = canvas.clientHeight || 140;
  if (canvas.width !== w * dpr) {
    canvas.width = w * dpr;
    canvas.height = h * dpr;
  }
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const css = getComputedStyle(document.documentElement);
  const s = store.samples;
  const points = [];
  for (let i = 1; i < s.length; i++) {
    const dt = s[i].t - s[i - 1].t;
    if (dt <= 0) continue;
    points.push({ t: s[i].t, done: Math.max(0, s[i].done - s[i - 1].done) / dt, dead: Math.max(0, s[i].dead - s[i - 1].dead) / dt });
  }
  ctx.strokeStyle = css.getPropertyValue("--line");
  ctx.beginPath();
  ctx.moveTo(0, h - 0.5);
  ctx.lineTo(w, h - 0.5);
  ctx.stroke();
  if (!points.length) return;
  const end = points[points.length - 1].t;
  const max = Math.max(1, ...points.map((p) => Math.max(p.done, p.dead)));
  ctx.fillStyle = css.getPropertyValue("--muted");
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillText(`${max.toFixed(1)}/s`, 4, 12);
  for (const [key, color] of [["done", "--ok"], ["dead", "--bad"]]) {
    ctx.strokeStyle = css.getPropertyValue(color);
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    points.forEach((p, i) => {
      const x = w - ((end - p.t) / 600) * w;
      const y = h - 2 - (p[key] / max) * (h - 18);
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }
}

function renderHandlers() {
  const select = $("f-handler");
  const chosen = select.value;
  const have = new Set([...select.options].map((o) => o.value));
  for (const h of [...store.handlers].sort()) {
    if (!have.has(h)) select.add(new Option(h, h));
  }
  select.value = chosen;
}

function stateBadge(state) {
  const span = document.createElement("span");
  span.className = `state ${state}`;
  span.textContent = state === "input" ? "input required" : state;
  return span;
}

function cell(row, content, className) {
  const td = row.insertCell();
  if (className) td.className = className;
  if (content instanceof Node) td.append(content);
  else td.textContent = content ?? "";
  return td;
}

function renderTasks() {
  const filters = { state: $("f-state").value, handler: $("f-handler").value, text: $("f-text").value };
  const list = store.filtered(filters);
  const body = document.createElement("tbody");
  body.id = "task-rows";
  for (const t of list.slice(0, LIST_ROWS)) {
    const row = body.insertRow();
    row.dataset.task = t.id;
    row.dataset.state = t.state;
    if (t.id === openId) row.className = "selected";
    const open = document.createElement("button");
    open.type = "button";
    open.className = "link";
    open.dataset.task = t.id;
    open.textContent = t.id;
    open.setAttribute("aria-label", `open task ${t.id}`);
    cell(row, open, "id");
    cell(row, stateBadge(t.state));
    cell(row, shortHandler(t.handler));
    cell(row, t.agent || "");
    cell(row, t.eventCount ? String(t.eventCount) : "");
  }
  $("task-rows").replaceWith(body);
  $("tasks-count").textContent = `(${store.tasks.size})`;
  $("tasks-more").textContent = list.length > LIST_ROWS ? `showing ${LIST_ROWS} of ${list.length} matching tasks, most recently active first` : list.length ? "" : "no task matches";
  $("feed-note").textContent = swarmFeed
    ? "Every task of the swarm, live (handlers and children show for the task trees opened here)."
    : "Tasks submitted or opened here and the tasks they spawn (this coordinator has no swarm-wide feed).";
}

function shortHandler(h) {
  return h ? h.replace(/^agentswarm\.handlers\./, "") : "";
}

function renderAgents() {
  const body = document.createElement("tbody");
  body.id = "agent-rows";
  const agents = [...store.agents.values()].sort((a, b) => a.id.localeCompare(b.id, undefined, { numeric: true }));
  const running = store.runningByAgent();
  for (const a of agents) {
    const view = store.agentView(a, running);
    const row = body.insertRow();
    cell(row, a.id, "id");
    const badge = stateBadge(view.status);
    if (a.restarts) badge.textContent += ` (${a.restarts} restart${a.restarts > 1 ? "s" : ""})`;
    cell(row, badge);
    const td = cell(row, "", "id");
    for (const id of view.tasks.slice(0, 3)) td.append(taskButton(id), " ");
    cell(row, new Date(a.seen).toLocaleTimeString());
  }
  $("agent-rows").replaceWith(body);
  $("agents-count").textContent = `(${store.agents.size})`;
  $("agents-note").textContent = swarmFeed ? "" : "Agents seen running the tasks listed here.";
}

function renderTask() {
  const t = store.task(openId);
  if (rendered.id !== t.id) {
    rendered = { id: t.id, events: 0, text: 0 };
    $("task-events").replaceChildren();
    $("task-text").textContent = "";
  }
  $("task-title").textContent = `Task ${t.id}`;
  const facts = [
    ["state", stateBadge(t.state)],
    ["handler", t.handler || "(the agents' default)"],
    ["agent", t.agent || "-"],
    ["attempt", t.attempt ?? "-"],
    ["parent", t.parent ? taskButton(t.parent) : "-"],
  ];
  if (t.duration != null) facts.push(["duration", `${t.duration.toFixed(2)} s`]);
  const dl = $("task-facts");
  dl.replaceChildren();
  for (const [k, v] of facts) {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    if (v instanceof Node) dd.append(v);
    else dd.textContent = String(v);
    dl.append(dt, dd);
  }
  const finished = TERMINAL.has(t.state);
  $("act-cancel").hidden = !frames.has("cancel") || finished;
  $("act-retry").hidden = !frames.has("retry") || t.state !== "dead";
  $("answer-form").hidden = !frames.has("answer") || t.state !== "input";
  if (t.state === "input") $("question").textContent = `The task asks: ${typeof t.question === "string" ? t.question : JSON.stringify(t.question)}`;

  const outcome = $("task-outcome");
  outcome.replaceChildren();
  if (finished) {
    const div = document.createElement("div");
    div.className = `outcome ${t.state}`;
    div.textContent = t.state === "done" ? `result: ${JSON.stringify(t.result, null, 2)}` : `${t.state}: ${t.error ?? ""}`;
    outcome.append(div);
  }

  const kids = $("task-children");
  if (kids.childElementCount !== t.children.size) {
    kids.replaceChildren(...[...t.children].map((c) => {
      const li = document.createElement("li");
      li.append(taskButton(c));
      return li;
    }));
  }
  for (const li of kids.querySelectorAll("button[data-task]")) {
    const c = store.tasks.get(li.dataset.task);
    li.title = c ? c.state : "";
    li.textContent = `${li.dataset.task} · ${c ? c.state : "?"}`;
  }
  $("children-count").textContent = t.children.size ? `(${t.children.size})` : "(none)";

  $("output-title").hidden = $("task-text").hidden = !t.text;
  if (t.text.length > rendered.text) {
    $("task-text").append(t.text.slice(rendered.text));
    rendered.text = t.text.length;
  }
  // Append only the events not rendered yet; keep the DOM list bounded.
  const list = $("task-events");
  const fresh = t.events.slice(Math.max(0, t.events.length - (t.logged - rendered.events)));
  if (fresh.length) {
    const frag = document.createDocumentFragment();
    for (const e of fresh.slice(-EVENT_NODES)) {
      const li = document.createElement("li");
      li.dataset.id = e.id;
      const { type, ...rest } = e.data;
      const tag = document.createElement("span");
      tag.className = "t";
      tag.textContent = type || "event";
      li.append(tag, JSON.stringify(rest));
      frag.append(li);
    }
    const stick = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
    list.append(frag);
    while (list.childElementCount > EVENT_NODES) list.firstElementChild.remove();
    if (stick) list.scrollTop = list.scrollHeight;
  }
  rendered.events = t.logged;
  $("events-count").textContent = `(${t.eventCount})`;
}

function taskButton(id) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "link";
  b.dataset.task = id;
  b.textContent = id;
  b.addEventListener("click", (ev) => {
    ev.stopPropagation();
    openTask(id);
  });
  return b;
}

// --- start ---------------------------------------------------------------------------------------------

for (const id of JSON.parse(sessionStorage.getItem(WATCH_KEY) || "[]")) follow(id);
const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) connect(saved);
else showLogin("");
