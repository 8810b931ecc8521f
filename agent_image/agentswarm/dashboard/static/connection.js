// One websocket to the coordinator that came with this page: first-frame auth (browsers cannot set an
// Authorization header on a websocket), reconnect with exponential backoff and jitter like the reference
// client (0.2 s doubling to 10 s, reset after each successful handshake), and refs to match replies.

const MIN_DELAY = 0.2;
const MAX_DELAY = 10;

/** The API's URL relative to this page: same host and path prefix, wss when the page came over https. */
export function apiUrl(location) {
  const url = new URL("ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.search = "";
  url.hash = "";
  return url.href;
}

export class Connection {
  /**
   * @param {{url: string, token: string, onFrame: (f: object) => void, onLive: (welcome: object) => void,
   *          onStatus: (state: string, text: string) => void}} opts
   */
  constructor(opts) {
    this.opts = opts;
    this.ws = null;
    this.live = false;
    this.stopped = false;
    this.attempt = 0;
    this.timer = null;
    this.refSeq = 0;
    this.replies = new Map(); // ref -> callback(frame)
  }

  start() {
    this.stopped = false;
    this._open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, "bye");
  }

  /** Send a frame if the connection is authenticated; false otherwise (the caller decides to queue). */
  send(frame, onReply) {
    if (!this.live || this.ws.readyState !== WebSocket.OPEN) return false;
    if (onReply) {
      frame = { ...frame, ref: `r${++this.refSeq}` };
      this.replies.set(frame.ref, onReply);
    }
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  _open() {
    this.opts.onStatus("connecting", this.attempt ? `reconnecting (attempt ${this.attempt})` : "connecting");
    const ws = new WebSocket(this.opts.url);
    this.ws = ws;
    let refused = null;
    ws.onopen = () => ws.send(JSON.stringify({ type: "auth", token: this.opts.token }));
    ws.onmessage = (msg) => {
      let frame;
      try {
        frame = JSON.parse(msg.data);
      } catch {
        return;
      }
      if (!this.live) {
        if (frame.type === "welcome") {
          this.live = true;
          this.attempt = 0;
          this.opts.onStatus("live", `live, connection ${frame.connection_id}`);
          this.opts.onLive(frame);
        } else if (frame.type === "error" && (frame.code === "unauthenticated" || frame.code === "auth_timeout")) {
          refused = frame;
        }
        return;
      }
      if (frame.ref && this.replies.has(frame.ref)) {
        const reply = this.replies.get(frame.ref);
        this.replies.delete(frame.ref);
        reply(frame);
      }
      this.opts.onFrame(frame);
    };
    ws.onclose = (ev) => {
      const wasLive = this.live;
      this.live = false;
      // Replies that will never come: tell their callers (they resend after the reconnect if they want).
      for (const reply of this.replies.values()) reply({ type: "error", code: "disconnected", message: "connection lost" });
      this.replies.clear();
      if (this.stopped || ws !== this.ws) return;
      if (refused || ev.code === 1008) {
        const why = refused ? refused.message : ev.reason || "authentication failed";
        this.opts.onStatus("refused", `refused: ${why}`);
        this.opts.onRefused?.(refused ? refused.code : "unauthenticated", why);
        return;
      }
      const delay = Math.min(MAX_DELAY, MIN_DELAY * 2 ** this.attempt) * (0.5 + Math.random() / 2);
      this.attempt += 1;
      const reason = ev.code === 1012 ? "coordinator restarting" : wasLive ? "connection lost" : "coordinator unreachable";
      this.opts.onStatus("reconnecting", `${reason}; reconnecting in ${delay.toFixed(1)} s (attempt ${this.attempt})`);
      this.timer = setTimeout(() => this._open(), delay * 1000);
    };
  }
}
