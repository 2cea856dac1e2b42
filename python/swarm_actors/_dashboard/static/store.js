// The page's copy of the run: rows in journal order, the agents, the causal edges between
// them and the model-call figures, all updated incrementally as batches arrive.
// Edges come only from links the events carry: the journal sequence of an event's cause
// (c), those of the events a decision cites (m), and, on a cause stored after its effect,
// the effects that named it (e: [sequence, kind]). The server resolves ids to sequences.

const SIGNAL_STATE = {
  started: 'running', activated: 'running', restarted: 'restarted',
  stopped: 'stopped', passivated: 'stopped', crashed: 'crashed',
  health_ok: 'running', health_degraded: 'degraded', health_failing: 'failing',
};

export class Store {
  constructor() {
    this.rows = [];
    this.agents = new Map();     // agent id -> {id, role, state, events, first}
    this.edges = new Map();      // "from\u0000to\u0000kind" -> {from, to, kind, count}
    this.models = new Map();     // agent id -> {calls, tin, tout, lat, hits}
    this.topology = 0;           // bumps when agents, states or edges change
    this.serverCount = 0;        // rows the server had at its last message
  }

  add(rows) {
    for (const row of rows) {
      // Rows come in journal order, each once (a reconnect resumes after the last one seen).
      if (this.rows.length && row.s <= this.rows[this.rows.length - 1].s) continue;
      this.rows.push(row);
      this._agent(row);
      if (row.c) this._link(row.c, row, 'cause');
      if (row.m) for (const seq of row.m) this._link(seq, row, 'cites');
      if (row.e) for (const [seq, kind] of row.e) {
        const effect = this.at(seq);
        if (effect) this._edge(row.a, effect.a, kind);
      }
      if (row.x) this._model(row);
    }
  }

  _agent(row) {
    let agent = this.agents.get(row.a);
    if (!agent) {
      agent = { id: row.a, role: row.r, state: 'seen', events: 0, first: row.s };
      this.agents.set(row.a, agent);
      this.topology++;
    }
    agent.events++;
    if (row.sig) {
      const state = SIGNAL_STATE[row.sig] ?? agent.state;  // health_unspecified: no change
      if (state !== agent.state) { agent.state = state; this.topology++; }
    }
  }

  _link(seq, row, kind) {
    const cause = this.at(seq);
    if (cause) this._edge(cause.a, row.a, kind);
  }

  // The row at journal sequence `seq`, or undefined.
  at(seq) {
    const i = this.indexAt(seq);
    return i >= 0 && this.rows[i].s === seq ? this.rows[i] : undefined;
  }

  _edge(from, to, kind) {
    if (from === to) return;  // an agent's own chain is not an edge between agents
    const key = from + '\u0000' + to + '\u0000' + kind;
    const edge = this.edges.get(key);
    if (edge) edge.count++;
    else { this.edges.set(key, { from, to, kind, count: 1 }); this.topology++; }
  }

  _model(row) {
    let m = this.models.get(row.a);
    if (!m) { m = { calls: 0, tin: 0, tout: 0, lat: 0, timed: 0, hits: 0 }; this.models.set(row.a, m); }
    const [tin, tout, lat, hit] = row.x;
    m.calls++; m.tin += tin; m.tout += tout; m.hits += hit;
    if (!hit) { m.lat += lat; m.timed++; }
  }

  // The index of the last row at or before journal sequence `seq` (-1: none).
  indexAt(seq) {
    let lo = 0, hi = this.rows.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (this.rows[mid].s <= seq) lo = mid + 1; else hi = mid; }
    return lo - 1;
  }
}
