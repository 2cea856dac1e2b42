// The selected event: its envelope, a file change's diff with the before/after hashes and the
// verdicts on it, its payload's fields, and the trace panel (with a Jaeger link when the
// dashboard was given one).

export function diffInto(pre, text) {
  while (pre.firstChild) pre.removeChild(pre.firstChild);
  const lines = text.split('\n');
  for (const line of lines.slice(0, 5000)) {
    const span = document.createElement('span');
    if (line.startsWith('+++') || line.startsWith('---')) span.className = 'file';
    else if (line.startsWith('+')) span.className = 'add';
    else if (line.startsWith('-')) span.className = 'del';
    else if (line.startsWith('@@')) span.className = 'hunk';
    span.textContent = line + '\n';
    pre.appendChild(span);
  }
  if (lines.length > 5000) pre.append(`… ${lines.length - 5000} more lines\n`);
}

function dl(pairs) {
  const list = document.createElement('dl');
  for (const [k, v] of pairs) {
    if (v === undefined || v === '' || v === null) continue;
    const dt = document.createElement('dt'); dt.textContent = k;
    const dd = document.createElement('dd');
    if (v instanceof Node) dd.appendChild(v); else dd.textContent = String(v);
    list.append(dt, dd);
  }
  return list;
}

export class DetailView {
  constructor(root, trace, store, jump) {
    this.root = root; this.trace = trace; this.store = store; this.jump = jump; this.jaeger = '';
    this.token = 0;
  }

  async show(seq) {
    const token = ++this.token;
    let res, data;
    try {
      res = await fetch(`/api/event/${seq}`);
      data = await res.json();
    } catch (err) {
      res = { ok: false }; data = { error: `event #${seq} could not be loaded: ${err}` };
    }
    if (token !== this.token) return;  // another event was selected meanwhile
    const root = this.root;
    while (root.firstChild) root.removeChild(root.firstChild);
    if (!res.ok) { root.textContent = data.error; return; }
    root.dataset.seq = seq;
    const causeLink = (id) => {
      const row = this.store.at(data.cause_sequence);
      if (!row) return id || undefined;
      const a = document.createElement('span'); a.className = 'linkish';
      a.textContent = `#${row.s} ${row.k} by ${row.a}`; a.addEventListener('click', () => this.jump(row.s));
      return a;
    };
    root.appendChild(dl([
      ['sequence', data.sequence], ['kind', data.kind], ['agent', `${data.agent_id} (${data.agent_role}) #${data.agent_sequence}`],
      ['time', new Date(data.timestamp_ns / 1e6).toISOString()], ['event id', data.event_id],
      ['caused by', data.causation_id ? causeLink(data.causation_id) : undefined],
    ]));
    const fc = data.file_change;
    if (fc) {
      const h = document.createElement('h2'); h.textContent = `diff: ${fc.op} ${fc.path}${fc.to_path ? ' → ' + fc.to_path : ''}`;
      root.appendChild(h);
      root.appendChild(dl([['before', fc.before_sha256 || '(no file)'], ['after', fc.after_sha256 || '(no file)'],
        ['size', `${fc.before_size} → ${fc.after_size} bytes`]]));
      this._verdicts(root, data.verdicts);
      const pre = document.createElement('pre'); pre.className = 'diff'; pre.id = 'diff';
      diffInto(pre, fc.binary ? '(binary content)' : fc.diff || '(no textual difference)');
      root.appendChild(pre);
    } else if (data.verdicts.length) {
      const h = document.createElement('h2'); h.textContent = 'decisions it led to'; root.appendChild(h);
      this._verdicts(root, data.verdicts);
    }
    const h = document.createElement('h2'); h.textContent = 'payload'; root.appendChild(h);
    root.appendChild(dl(Object.entries(data.payload).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : v])));
    this._trace(data);
  }

  _verdicts(root, verdicts) {
    if (!verdicts.length) {
      const p = document.createElement('p'); p.className = 'hint'; p.textContent = 'no verdict on this change (yet)';
      root.appendChild(p); return;
    }
    for (const v of verdicts) {
      const div = document.createElement('div');
      const word = v.choice.split(' ')[0];
      div.className = 'verdict ' + (word === 'approve' || word === 'reject' ? word : '');
      div.textContent = `${v.agent_id}: ${v.choice}: ${v.rationale}`;
      root.appendChild(div);
    }
  }

  _trace(data) {
    const t = this.trace;
    while (t.firstChild) t.removeChild(t.firstChild);
    if (!data.trace_id) { t.textContent = 'this event carries no trace id (tracing was off when it was recorded)'; return; }
    let link;
    if (this.jaeger) {
      link = document.createElement('a');
      link.href = `${this.jaeger.replace(/\/$/, '')}/trace/${data.trace_id}`;
      link.target = '_blank'; link.rel = 'noopener noreferrer'; link.textContent = 'open in Jaeger';
    }
    const same = this.store.rows.filter((r) => r.tr === data.trace_id).length;
    t.appendChild(dl([['trace id', data.trace_id], ['span id', data.span_id], ['events in this trace', same],
      ['jaeger', link ?? 'not configured (dashboard --jaeger URL, or $SWARM_JAEGER_URL)']]));
  }
}
