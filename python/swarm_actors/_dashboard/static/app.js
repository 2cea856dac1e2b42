// Mission control: wires the views to the run's event stream (server-sent events).
// window.dashboard exposes the store and the views to tests and benchmarks.

import { Store } from './store.js';
import { HEADER, LogView, makeFilter } from './log.js';
import { GraphView } from './graph.js';
import { DetailView } from './detail.js';
import { ModelsView } from './models.js';
import { ReplayView } from './replay.js';

const $ = (id) => document.getElementById(id);
const store = new Store();
const metrics = { expected: -1, lag: [], backlog: [], batches: 0, statuses: [], bytes: 0, parseMs: 0, addMs: 0 };

const detail = new DetailView($('detail'), $('trace'), store, (seq) => { log.select(seq); log.scrollToSeq(seq); });
const log = new LogView($('log'), $('log-spacer'), store, (seq) => detail.show(seq));
const graph = new GraphView($('graph'), $('legend'), store, (agent) => {
  const form = $('filters');
  form.elements.agent.value = form.elements.agent.value === agent ? '' : agent;
  graph.pick(form.elements.agent.value);
  log.setFilter(makeFilter(Object.fromEntries(new FormData(form))));
});
const models = new ModelsView($('models').tBodies[0], store);
const replay = new ReplayView($('slider'), $('slider-label'), $('slider-now'), $('tree'), $('replay-diff'), store);

$('log-head').textContent = HEADER;
const form = $('filters');
const refilter = () => log.setFilter(makeFilter(Object.fromEntries(new FormData(form))));
form.addEventListener('input', refilter);
form.addEventListener('reset', () => setTimeout(refilter));
form.addEventListener('submit', (e) => e.preventDefault());

function setStatus(info) {
  $('run').textContent = info.run_id;
  if (info.status === 'failed') console.warn('the run cannot be read:', info.error);
  const s = $('status');
  s.textContent = info.status + (info.error ? `: ${info.error}` : '');
  s.className = 'status ' + info.status;
  if (metrics.statuses[metrics.statuses.length - 1] !== info.status) metrics.statuses.push(info.status);
}

let slowFrame = 0;
function frame() {
  log.render();
  const now = performance.now();
  if (now - slowFrame > 250) {  // topology, tables and labels: a few times a second is plenty
    slowFrame = now;
    graph.render(); models.render(); replay.render();
    $('count').textContent = `${log.match.length.toLocaleString()} / ${store.rows.length.toLocaleString()} events`;
  }
  if (metrics.expected >= 0 && store.rows.length >= metrics.expected && !metrics.history) {
    graph.render(); models.render(); replay.render();
    metrics.history = performance.now();
    performance.mark('dashboard:history-rendered', { detail: { events: store.rows.length } });
  }
  requestAnimationFrame(frame);
}

async function start() {
  const info = await (await fetch('/api/info')).json();
  detail.jaeger = info.jaeger;
  replay.available = info.replay;
  setStatus(info);
  // History first, by plain fetches (the fastest way to parse megabytes of JSON), then
  // the live stream from where the history ended.
  metrics.expected = info.events;
  requestAnimationFrame(frame);
  // The batches the server had when the page asked are fetched at once (the browser keeps
  // several connections): the server sends one while the page parses the one before.
  const BATCH = 10000;
  const pending = [];
  for (let i = 0; i < info.events; i += BATCH) pending.push(fetch(`/api/rows?index=${i}`).then((r) => r.json()));
  let after = 0;
  const take = (msg, t0) => {
    const t1 = performance.now();
    if (!metrics.batches) performance.mark('dashboard:first-rows');
    metrics.batches++; metrics.parseMs += t1 - t0;
    store.add(msg.rows);
    metrics.addMs += performance.now() - t1;
    if (msg.rows.length) after = msg.rows[msg.rows.length - 1].s;
  };
  for (const next of pending) { const t0 = performance.now(); take(await next, t0); }
  for (;;) {  // what came meanwhile, until caught up (then the stream takes over)
    const t0 = performance.now();
    const msg = await (await fetch(`/api/rows?after=${after}`)).json();
    take(msg, t0);
    if (!msg.rows.length || store.rows.length >= msg.n) break;
  }
  const source = new EventSource(`/api/stream?after=${after}`);
  source.addEventListener('status', (e) => setStatus(JSON.parse(e.data)));
  source.addEventListener('rows', (e) => {
    const t0 = performance.now();
    const msg = JSON.parse(e.data);
    const t1 = performance.now();
    store.add(msg.rows);
    // A verdict on the selected change (a decision it caused) arrived: show it.
    if (log.selected >= 0 && msg.rows.some((r) => r.c === log.selected && r.k === 'decision')) detail.show(log.selected);
    metrics.bytes += e.data.length; metrics.parseMs += t1 - t0; metrics.addMs += performance.now() - t1;
    metrics.batches++;
    if (msg.rows.length) {
      metrics.lag.push([Date.now(), Date.now() - msg.rows[msg.rows.length - 1].t]);
      metrics.backlog.push([Date.now(), msg.n - store.rows.length]);
      if (metrics.lag.length > 100000) { metrics.lag.splice(0, 50000); metrics.backlog.splice(0, 50000); }
    }
  });
}

window.dashboard = { store, log, graph, detail, replay, metrics };
start();
