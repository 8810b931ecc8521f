// The dashboard's model: tasks, agents and queue samples, updated from frames. Updates only mark what
// changed (`dirty`); the view renders once per animation frame, so thousands of events per second cost one
// render per frame, not one per event.

export const TERMINAL = new Set(["done", "dead", "cancelled"]);
/** Events kept per task for the task view (older ones are dropped; the text of token events is kept whole). */
export const MAX_EVENTS = 2000;
/** Queue samples kept: one per stats reply (every 2 s), ten minutes' worth. */
export const MAX_SAMPLES = 300;

/** The text of a streamed `token` event (handlers name the field text, delta or content). */
export function tokenText(data) {
  for (const key of ["text", "delta", "content", "token"]) {
    if (typeof data[key] === "string") return data[key];
  }
  return "";
}

export class Store {
  constructor() {
    this.tasks = new Map();
    this.agents = new Map();
    this.samples = [];
    this.stats = null;
    this.handlers = new Set();
    this.dirty = new Set();
    this.seq = 0; // order of last change, for "recently active first"
  }

  touch(what) {
    this.dirty.add(what);
  }

  task(id) {
    let t = this.tasks.get(id);
    if (!t) {
      t = {
        id, state: "queued", handler: null, agent: null, parent: null, children: new Set(),
        events: [], logged: 0, eventCount: 0, text: "", cursor: null, result: undefined, error: null,
        question: null, attempt: null, duration: null, changed: 0, subscribed: false,
      };
      this.tasks.set(id, t);
    }
    return t;
  }

  _changed(t) {
    t.changed = ++this.seq;
    this.touch("tasks");
    this.touch(`task:${t.id}`);
  }

  setHandler(t, handler) {
    if (handler && t.handler !== handler) {
      t.handler = handler;
      if (!this.handlers.has(handler)) {
        this.handlers.add(handler);
        this.touch("handlers");
      }
    }
  }

  /** An `event` frame of a subscription; returns child ids it announced (spawned). */
  onEvent(frame) {
    const t = this.task(frame.task_id);
    const data = frame.data || {};
    t.cursor = frame.event_id;
    t.eventCount += 1;
    if (data.type === "token") {
      t.text += tokenText(data);
    } else {
      t.events.push({ id: frame.event_id, data });
      t.logged += 1;
      if (t.events.length > MAX_EVENTS) t.events.splice(0, t.events.length - MAX_EVENTS);
    }
    let spawned = [];
    switch (data.type) {
      case "started":
        if (!TERMINAL.has(t.state)) t.state = "running";
        t.question = null;
        if (data.agent) this.agentBusy(data.agent, t.id);
        t.agent = data.agent || t.agent;
        t.attempt = data.attempt ?? t.attempt;
        break;
      case "parked":
        if (!TERMINAL.has(t.state)) t.state = "parked";
        this.agentIdle(t.agent);
        break;
      case "input_required":
        if (!TERMINAL.has(t.state)) t.state = "input";
        t.question = data.question ?? data;
        this.agentIdle(t.agent);
        break;
      case "spawned":
        spawned = Array.isArray(data.children) ? data.children : [];
        for (const child of spawned) {
          const c = this.task(child);
          c.parent = t.id;
          this.setHandler(c, data.handler);
          t.children.add(child);
          this._changed(c);
        }
        break;
      case "dead_lettered":
        t.state = "dead";
        t.error = data.error ?? t.error;
        this.agentIdle(t.agent);
        break;
      case "cancelled":
        t.state = "cancelled";
        this.agentIdle(t.agent);
        break;
      case "result":
        t.state = "done";
        this.agentIdle(t.agent);
        break;
      default:
        if (t.state === "queued") t.state = "running";
    }
    this._changed(t);
    return spawned;
  }

  /** A `result` frame: the task's outcome (the subscription ends with it). */
  onResult(frame) {
    const t = this.task(frame.task_id);
    t.state = frame.status;
    t.result = frame.result;
    t.error = frame.error;
    t.agent = frame.agent_id || t.agent;
    t.attempt = frame.attempt ?? t.attempt;
    t.duration = frame.duration_seconds;
    t.subscribed = false;
    t.question = null;
    this.agentIdle(t.agent);
    this._changed(t);
  }

  /** A task's state as the swarm feed reports it (no events: those come with a subscription). */
  onTaskState(u) {
    const t = this.task(u.task_id);
    // A result seen on a task's own subscription stays: the feed and the subscription are two streams.
    if (!(TERMINAL.has(t.state) && !TERMINAL.has(u.state))) t.state = u.state;
    if (u.agent) t.agent = u.agent;
    if (u.attempt != null) t.attempt = u.attempt;
    if (u.parent) {
      t.parent = u.parent;
      this.task(u.parent).children.add(t.id);
    }
    this.setHandler(t, u.handler);
    if (u.error) t.error = u.error;
    this._changed(t);
  }

  agentBusy(agent, taskId) {
    const a = this.agent(agent);
    a.seen = Date.now();
    if (!a.fromFeed) a.task = taskId;
    this.touch("agents");
  }

  agentIdle(agent) {
    if (!agent || !this.agents.has(agent)) return;
    this.agents.get(agent).seen = Date.now();
    this.touch("agents");
  }

  /**
   * Without the swarm feed an agent's status is derived from the tasks followed here: busy with the tasks
   * whose latest attempt runs on it (events of different tasks arrive in no particular order, so the
   * tasks' states decide, not the order of the frames).
   */
  agentView(a, running) {
    if (a.fromFeed) return { status: a.status, tasks: a.task ? [a.task] : [] };
    const tasks = running.get(a.id) || [];
    return { status: tasks.length ? "busy" : "idle", tasks };
  }

  /** agent id -> ids of the running tasks whose latest attempt is on it (one pass over the tasks). */
  runningByAgent() {
    const out = new Map();
    for (const t of this.tasks.values()) {
      if (t.state !== "running" || !t.agent) continue;
      if (!out.has(t.agent)) out.set(t.agent, []);
      out.get(t.agent).push(t.id);
    }
    return out;
  }

  agent(id) {
    let a = this.agents.get(id);
    if (!a) {
      a = { id, status: "alive", task: null, seen: Date.now(), restarts: 0 };
      this.agents.set(id, a);
    }
    return a;
  }

  /** An agent status update of the swarm feed. */
  onAgent(u) {
    const a = this.agent(u.agent_id);
    // An agent that announces itself again after it was seen is a restart (a SIGKILLed one writes no "gone").
    if (u.status === "alive" && a.fromFeed) a.restarts += 1;
    a.fromFeed = true;
    a.status = u.status;
    a.task = u.status === "busy" ? (u.task_id ?? a.task) : null;
    a.seen = Date.now();
    this.touch("agents");
  }

  onStats(stats) {
    this.stats = stats;
    this.samples.push({ t: Date.now() / 1000, done: stats.done, dead: stats.dead_lettered });
    if (this.samples.length > MAX_SAMPLES) this.samples.shift();
    this.touch("stats");
  }

  /** Tasks finished and dead-lettered per second over the last `seconds` (null until two samples span it). */
  rates(seconds) {
    const s = this.samples;
    if (s.length < 2) return null;
    const last = s[s.length - 1];
    let first = s[0];
    for (const x of s) {
      if (last.t - x.t <= seconds) {
        first = x;
        break;
      }
    }
    const dt = last.t - first.t;
    if (dt <= 0) return null;
    // Counts may drop when the backend trims old results: never show a negative rate.
    const done = Math.max(0, last.done - first.done);
    const dead = Math.max(0, last.dead - first.dead);
    return { done: done / dt, dead: dead / dt, failure: done + dead ? dead / (done + dead) : 0 };
  }

  /** Tasks matching the filters, most recently changed first. */
  filtered({ state, handler, text }) {
    const out = [];
    const needle = text.trim().toLowerCase();
    for (const t of this.tasks.values()) {
      if (state && t.state !== state) continue;
      if (handler && t.handler !== handler) continue;
      if (needle && !t.id.toLowerCase().includes(needle)) continue;
      out.push(t);
    }
    out.sort((a, b) => b.changed - a.changed);
    return out;
  }
}
