// Model calls per agent: calls, tokens, mean latency (of calls that were made: cache hits
// cost no time) and cache hits. Redrawn at most a few times a second.

export class ModelsView {
  constructor(tbody, store) { this.tbody = tbody; this.store = store; this.seen = -1; }

  render() {
    let total = 0;
    for (const m of this.store.models.values()) total += m.calls;
    if (total === this.seen) return;
    this.seen = total;
    const tbody = this.tbody;
    while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
    if (!total) {
      const tr = tbody.insertRow(); const td = tr.insertCell(); td.colSpan = 6;
      td.className = 'hint'; td.textContent = 'no model calls in this run (yet)';
      return;
    }
    for (const [agent, m] of [...this.store.models.entries()].sort()) {
      const tr = tbody.insertRow();
      const cells = [agent, m.calls, m.tin.toLocaleString(), m.tout.toLocaleString(),
        m.timed ? (m.lat / m.timed).toFixed(0) + ' ms' : '–', `${m.hits} (${Math.round(100 * m.hits / m.calls)}%)`];
      for (const c of cells) tr.insertCell().textContent = c;
    }
  }
}
