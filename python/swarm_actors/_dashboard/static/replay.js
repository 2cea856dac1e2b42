// The replay slider: pick a journal sequence; the workspace tree as it was then (the server
// rebuilds it from the run's recorded file changes) and the diff of the change made at or
// just before that point follow the slider.

import { diffInto } from './detail.js';

export class ReplayView {
  constructor(slider, label, now, tree, pre, store) {
    this.slider = slider; this.label = label; this.tree = tree; this.pre = pre; this.store = store;
    this.following = true; this.available = true; this.token = 0; this.timer = 0; this.shown = -1;
    slider.addEventListener('input', () => { this.following = false; this._soon(); });
    now.addEventListener('click', () => { this.following = true; this.render(); this._soon(); });
  }

  render() {
    const rows = this.store.rows;
    const head = rows.length ? rows[rows.length - 1].s : 0;
    if (Number(this.slider.max) !== head) this.slider.max = String(head);
    if (this.following && Number(this.slider.value) !== head) { this.slider.value = String(head); this._soon(); }
    const at = Number(this.slider.value);
    const idx = this.store.indexAt(at);
    const when = idx >= 0 ? new Date(rows[idx].t).toISOString().slice(11, 23) : 'start';
    this.label.textContent = `#${at} of ${head} · ${when}${this.following ? ' · following' : ''}`;
  }

  _soon() {  // at most one request per 120 ms while the slider is dragged
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.load(Number(this.slider.value)), 120);
  }

  async load(at) {
    if (!this.available || at === this.shown) return;
    const token = ++this.token;
    let res, data;
    try {
      res = await fetch(`/api/workspace?at=${at}`);
      data = await res.json();
    } catch (err) {
      data = { error: `the workspace at #${at} could not be loaded: ${err}` };
      res = { ok: false, status: 0 };
    }
    if (token !== this.token) return;
    this.shown = at;
    const tree = this.tree;
    while (tree.firstChild) tree.removeChild(tree.firstChild);
    if (!res.ok) {
      if (res.status === 404) this.available = false;
      const li = document.createElement('li'); li.className = 'hint'; li.textContent = data.error; tree.appendChild(li);
      return;
    }
    tree.dataset.at = at;
    for (const f of data.files) {
      const li = document.createElement('li');
      li.textContent = f.path;
      if (f.changed) li.classList.add('changed');
      if (data.change && f.path === data.change.path) li.classList.add('current');
      const small = document.createElement('small'); small.textContent = f.sha256 ? f.sha256.slice(0, 10) : '';
      li.appendChild(small); li.title = `${f.path}: ${f.size} bytes, sha256 ${f.sha256}`;
      tree.appendChild(li);
    }
    if (data.change) {
      diffInto(this.pre, `# #${data.change.sequence} ${data.change.op} ${data.change.path} by ${data.change.agent}\n` + (data.change.diff || '(no textual difference)'));
    } else diffInto(this.pre, '(no file change yet at this point)');
  }
}
