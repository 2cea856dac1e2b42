// The event log, virtualized: a spacer as tall as every matching row, and only the rows in
// view (plus a margin) as elements, reused and moved with a transform on each scroll frame.
// 100,000 rows cost one array of indexes; a scroll frame touches about 60 elements.

const ROW = 20;          // px, as .log-row's height in style.css
const MARGIN = 10;       // rows drawn above and below the view

const fmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });

export class LogView {
  constructor(root, spacer, store, onSelect) {
    this.root = root; this.spacer = spacer; this.store = store; this.onSelect = onSelect;
    this.match = [];          // indexes into store.rows of the rows the filter keeps
    this.filter = null;       // null: keep all
    this.checked = 0;         // store rows filtered so far
    this.pool = [];
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
    while (this.pool.length < want) {
      const el = document.createElement('div');
      el.className = 'log-row';
      for (let c = 0; c < 7; c++) el.appendChild(document.createElement('span'));
      root.appendChild(el); this.pool.push(el);
    }
    const rows = this.store.rows;
    for (let p = 0; p < this.pool.length; p++) {
      const el = this.pool[p];
      if (p >= want) { if (!el.hidden) el.hidden = true; continue; }
      const row = rows[this.match[first + p]];
      el.hidden = false;
      el.style.transform = `translateY(${(first + p) * ROW}px)`;
      if (el._seq !== row.s) {
        el._seq = row.s; el.dataset.seq = row.s;
        const c = el.children;
        c[0].textContent = row.s;
        c[1].textContent = fmt.format(row.t);
        c[2].textContent = row.r;
        c[3].textContent = row.a; c[3].title = row.a;
        c[4].textContent = row.k; c[4].className = 'k-' + row.k;
        c[5].textContent = row.res ?? ''; c[5].title = row.res ?? '';
        c[6].textContent = row.sum ?? ''; c[6].title = row.sum ?? '';
      }
      el.classList.toggle('selected', row.s === this.selected);
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
