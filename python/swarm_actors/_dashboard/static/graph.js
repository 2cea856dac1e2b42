// The agent graph in SVG: one column per role (in the order roles first appear), agents as
// nodes coloured by state, and arrows only where events link agents explicitly (a causation
// id: solid; a decision citing another agent's event: dashed). Redrawn when the topology
// changes, never per event.

const NS = 'http://www.w3.org/2000/svg';
const STATES = ['running', 'seen', 'restarted', 'degraded', 'failing', 'stopped', 'crashed'];
const STATE_TEXT = { running: 'running', seen: 'active (no lifecycle signal yet)', restarted: 'restarted', degraded: 'degraded', failing: 'failing', stopped: 'stopped', crashed: 'crashed' };

function el(name, attrs, parent) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

export class GraphView {
  constructor(svg, legend, store, onPick) {
    this.svg = svg; this.store = store; this.onPick = onPick;
    this.drawn = -1; this.selected = '';
    for (const s of STATES) {
      const item = document.createElement('span');
      const dot = document.createElement('i'); dot.className = 'state-' + s;
      item.append(dot, STATE_TEXT[s]); legend.appendChild(item);
    }
    const solid = document.createElement('span'); solid.textContent = '→ caused';
    const dashed = document.createElement('span'); dashed.textContent = '⇢ cites';
    legend.append(solid, dashed);
  }

  pick(agentId) { this.selected = agentId; this.drawn = -1; }

  render() {
    const store = this.store;
    if (store.topology === this.drawn) return;
    this.drawn = store.topology;
    const svg = this.svg;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const defs = el('defs', {}, svg);
    const marker = el('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: '10', refY: '5', markerWidth: '8', markerHeight: '8', markerUnits: 'userSpaceOnUse', orient: 'auto-start-reverse' }, defs);
    el('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrow' }, marker);
    const roles = [];
    const byRole = new Map();
    for (const a of [...store.agents.values()].sort((x, y) => x.first - y.first)) {
      if (!byRole.has(a.role)) { byRole.set(a.role, []); roles.push(a.role); }
      byRole.get(a.role).push(a);
    }
    const width = svg.clientWidth || 300, height = svg.clientHeight || 200;
    const colW = width / Math.max(1, roles.length);
    this.colW = colW;
    const pos = new Map();
    roles.forEach((role, ci) => {
      const agents = byRole.get(role);
      const x = colW * ci + colW / 2;
      const label = el('text', { x, y: 14, 'text-anchor': 'middle', class: 'role' }, svg);
      label.textContent = role;
      const step = (height - 30) / (agents.length + 1);
      // Lone agents of neighbouring roles sit at different heights, so an arrow between two
      // of them does not run through a third.
      const nudge = agents.length === 1 ? (ci % 2 ? 0.18 : -0.18) * (height - 30) : 0;
      agents.forEach((a, i) => pos.set(a.id, [x, 24 + step * (i + 1) + nudge]));
    });
    const radius = Math.max(4, Math.min(12, (height - 30) / (2.5 * Math.max(1, ...roles.map((r) => byRole.get(r).length)))));
    const edges = el('g', {}, svg);
    for (const e of store.edges.values()) {
      const a = pos.get(e.from), b = pos.get(e.to);
      if (!a || !b) continue;
      const dx = b[0] - a[0], dy = b[1] - a[1], len = Math.hypot(dx, dy) || 1;
      const [x1, y1] = [a[0] + dx / len * radius, a[1] + dy / len * radius];
      const [x2, y2] = [b[0] - dx / len * (radius + 2), b[1] - dy / len * (radius + 2)];
      const bend = e.kind === 'cites' ? -0.15 : 0.15;  // both kinds between a pair stay apart
      const mx = (x1 + x2) / 2 - dy * bend, my = (y1 + y2) / 2 + dx * bend;
      const path = el('path', {
        d: `M${x1},${y1} Q${mx},${my} ${x2},${y2}`, class: 'edge ' + e.kind,
        'stroke-width': String(1 + Math.log2(e.count)), 'marker-end': 'url(#arrow)',
      }, edges);
      const title = el('title', {}, path);
      title.textContent = `${e.from} → ${e.to}: ${e.count} ${e.kind === 'cites' ? 'citation' : 'caused event'}${e.count > 1 ? 's' : ''}`;
    }
    const nodes = el('g', {}, svg);
    for (const a of store.agents.values()) {
      const [x, y] = pos.get(a.id);
      const g = el('g', { class: 'node' + (a.id === this.selected ? ' selected' : ''), 'data-agent': a.id }, nodes);
      el('circle', { cx: x, cy: y, r: radius, class: 'state-' + a.state }, g);
      const text = el('text', { x, y: y + radius + 11, 'text-anchor': 'middle' }, g);
      const maxChars = Math.max(6, Math.floor(colW / 6.5));
      text.textContent = a.id.length > maxChars ? '…' + a.id.slice(-(maxChars - 1)) : a.id;
      const title = el('title', {}, g);
      title.textContent = `${a.id} (${a.role}): ${a.state}, ${a.events} events. Click to filter the log.`;
      g.addEventListener('click', () => this.onPick(a.id));
    }
  }
}
