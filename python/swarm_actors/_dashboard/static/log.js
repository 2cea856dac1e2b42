// The event log, virtualized: a spacer as tall as every matching row, and only the rows in
// view (plus a margin) as elements, reused and moved with a transform on each scroll frame.
// 100,000 rows cost one array of indexes; a scroll frame touches about 60 elements.

const ROW = 20;          // px, as .log-row's height in style.css
const MARGIN = 3;        // rows drawn above and below the view (a wheel step is 3-5 rows)

// Columns are padded text in a monospace font: three text nodes a row (the kind is
// coloured), no grid to lay out. A scroll frame's cost is the text of the rows it rewrites.
const fit = (text, width) => (text.length > width ? '…' + text.slice(-(width - 1)) : text.padEnd(width));
export const HEADER = 'seq'.padEnd(8) + 'time'.padEnd(9) + 'role'.padEnd(11) + 'agent'.padEnd(17)
  + 'kind'.padEnd(14) + 'resource'.padEnd(19) + 'summary';

const fmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });

export class LogView {
  constructor(root, spacer, store, onSelect) {
    this.root = root; this.spacer = spacer; this.store = store; this.onSelect = onSelect;
    this.match = [];          // indexes into store.rows of the rows the filter keeps
    this.filter = null;       // null: keep all
    this.checked = 0;         // store rows filtered so far
    this.pool = [];
    // The rows in view live in one block moved by a single transform: a scroll frame moves
    // one element and rewrites the text of the rows that changed, nothing else.
    this.slots = 0;           // pool size: row i is drawn by pool[i % slots]
    this.selected = -1;       // journal sequence of the selected row
    this.follow = true;       // stay at the bottom as rows arrive
    this.dirty = true;
    this.lastRender = 0;      // ms spent in the last render (the benchmark reads it)
    root.addEventListener('scroll', () => {
      this.follow = root.scrollTop + root.clientHeight >= root.scrollHeight - ROW;
      this.dirty = true;
    }, { passive: true });
    root.addEventListener('click', (e) => {
      const el = e.target.closest('.log-row');
      if (el && el.dataset.seq) this.select(Number(el.dataset.seq));
    });
    root.addEventListener('keydown', (e) => this._key(e));
    // Full text on hover only: titles on every row of every frame would cost attribute writes.
    root.addEventListener('mouseover', (e) => {
      const el = e.target.closest('.log-row');
      const row = el && el.dataset.seq ? this.store.rows[this.store.indexAt(Number(el.dataset.seq))] : null;
      if (row && el._titled !== row.s) { el.title = `${row.a} · ${row.res ?? ''}\n${row.sum ?? ''}`; el._titled = row.s; }
    });
  }

  setFilter(f) {
    this.filter = f; this.match = []; this.checked = 0; this.dirty = true;
  }

  // Filter the rows that arrived since the last call (all of them after a filter change).
  _catchUp() {
    const rows = this.store.rows, f = this.filter, match = this.match;
    for (let i = this.checked; i < rows.length; i++) if (!f || f(rows[i])) match.push(i);
    const grew = rows.length !== this.checked;
    this.checked = rows.length;
    return grew;
  }

  select(seq) {
    this.selected = seq; this.dirty = true; this.onSelect(seq);
  }

  scrollToSeq(seq) {
    const idx = this.store.indexAt(seq);
    let lo = 0, hi = this.match.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (this.match[mid] < idx) lo = mid + 1; else hi = mid; }
    this.follow = false;
    this.root.scrollTop = Math.max(0, lo * ROW - this.root.clientHeight / 2);
    this.dirty = true;
  }

  _key(e) {
    if (e.key !== 'ArrowDown' && e.key !== 'ArrowUp') return;
    e.preventDefault();
    const idx = this.store.indexAt(this.selected);
    let pos = this.match.indexOf(idx) + (e.key === 'ArrowDown' ? 1 : -1);
    pos = Math.max(0, Math.min(this.match.length - 1, pos));
    if (this.match.length) { const row = this.store.rows[this.match[pos]]; this.select(row.s); this.scrollToSeq(row.s); }
  }

  render() {
    if (this._catchUp()) this.dirty = true;
    if (!this.dirty) return;
    const t0 = performance.now();
    this.dirty = false;
    const root = this.root, n = this.match.length;
    const height = n * ROW;
    if (this.spacer._h !== height) { this.spacer.style.height = height + 'px'; this.spacer._h = height; }
    if (this.follow) root.scrollTop = height;
    const view = root.clientHeight;
    const first = Math.max(0, Math.floor(root.scrollTop / ROW) - MARGIN);
    const last = Math.min(n, Math.ceil((root.scrollTop + view) / ROW) + MARGIN);
    const want = last - first;
    // Row i is drawn by pool[i % slots]: a scroll by k rows rewrites k rows, not all of them.
    if (this.pool.length < want) {
      while (this.pool.length < want) {
        const el = document.createElement('div');
        el.className = 'log-row';
        for (let c = 0; c < 3; c++) el.appendChild(document.createElement('span'));
        root.appendChild(el); this.pool.push(el);
      }
      for (const el of this.pool) el._pos = -1;
    }
    const slots = this.pool.length;
    const rows = this.store.rows;
    const drawn = new Uint8Array(slots);
    for (let i = first; i < last; i++) {
      const slot = i % slots, el = this.pool[slot];
      drawn[slot] = 1;
      const row = rows[this.match[i]];
      if (el._pos !== i) { el.style.transform = `translateY(${i * ROW}px)`; el._pos = i; }
      if (el.hidden) el.hidden = false;
      if (el._seq !== row.s) {
        el._seq = row.s; el.dataset.seq = row.s;
        const c = el.children;
        c[0].textContent = String(row.s).padEnd(8) + (row._time ??= fmt.format(row.t)).padEnd(9)
          + fit(row.r, 10) + ' ' + fit(row.a, 16) + ' ';
        c[1].textContent = row.k.padEnd(14); c[1].className = 'k-' + row.k;
        c[2].textContent = fit(row.res ?? '', 18) + ' ' + (row.sum ? row.sum.slice(0, 120) : '');
      }
      const selected = row.s === this.selected;
      if (el._selected !== selected) { el.classList.toggle('selected', selected); el._selected = selected; }
    }
    for (let slot = 0; slot < slots; slot++) {
      if (!drawn[slot] && !this.pool[slot].hidden) { this.pool[slot].hidden = true; this.pool[slot]._pos = -1; }
    }
    this.lastRender = performance.now() - t0;
  }
}

// A filter function from the form's values (null when every field is empty).
export function makeFilter(values) {
  const agent = values.agent.trim(), role = values.role.trim(), kind = values.kind;
  const res = values.resource.trim(), trace = values.trace.trim().toLowerCase();
  if (!agent && !role && !kind && !res && !trace) return null;
  return (row) => (!agent || row.a.includes(agent)) && (!role || row.r === role)
    && (!kind || row.k === kind) && (!res || (row.res ?? '').includes(res))
    && (!trace || (row.tr ?? '').startsWith(trace));
}
