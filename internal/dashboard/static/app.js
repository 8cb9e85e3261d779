// The live page of a lab: it draws what the server pushes as server-sent
// events (status, events, load) and posts the buttons' actions.
'use strict';

const SVG = 'http://www.w3.org/2000/svg';

// Tiers, top to bottom: the roles drawn in each row, and the row's label.
const TIERS = [
  { roles: ['client', 'dns'], label: 'clients' },
  { roles: ['host'], label: 'hosts' },
  { roles: ['router', 'rr'], label: 'routers' },
  { roles: ['lb4'], label: 'LB4' },
  { roles: ['lb7'], label: 'LB7' },
  { roles: ['server'], label: 'servers' },
];

const STATES = ['ready', 'waiting', 'killed', 'frozen', 'slow', 'exited', 'maintenance', 'withdrawn'];
const MAX_ROWS = 2000; // event log rows kept

const page = {
  status: null, // the last status message
  load: null, // the last load message: the page's own load
  loads: [], // the loads charted (the last loads message)
  chosen: '', // "node/id" of the load the user chose to chart ('' : the page picks)
  injects: [], // injections and maintenance: {t (ms), node, msg}
  linkDown: new Set(), // "node|link" set down, from the lab's state
  selected: null, // the node whose panel shows
};

const MARKED = ['inject', 'maintenance']; // event kinds marked on the charts

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const e = tag.startsWith('svg:') ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

// parseTime reads an RFC 3339 time with up to nanoseconds.
function parseTime(s) {
  return Date.parse(s.replace(/(\.\d{3})\d+/, '$1'));
}

function clock(ms) {
  const d = new Date(ms);
  const p = (n, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

let messageTimer;
function say(text, error = false) {
  const m = $('#message');
  m.textContent = text;
  m.className = 'shown' + (error ? ' error' : '');
  clearTimeout(messageTimer);
  messageTimer = setTimeout(() => { m.className = ''; }, error ? 8000 : 3000);
}

async function post(url, what) {
  say(what + '…');
  try {
    const r = await fetch(url, { method: 'POST', headers: { 'X-Lab-Web': '1' } });
    if (r.ok) {
      say(what + ': done');
    } else {
      say((await r.text()).trim() || `${what}: ${r.status} ${r.statusText}`, true);
    }
  } catch (e) {
    say(`${what}: ${e}`, true);
  }
}

// ---- The lab as a picture.

function drawLab() {
  const st = page.status;
  const svg = $('#lab');
  svg.replaceChildren();
  if (!st) return;
  const BW = 118, BH = 44, GX = 22, GY = 58, LEFT = 78, PAD = 16;
  const rows = [];
  const placed = new Set();
  for (const tier of TIERS) {
    const nodes = st.nodes.filter((n) => tier.roles.includes(n.role));
    nodes.forEach((n) => placed.add(n.name));
    if (nodes.length) rows.push({ label: tier.label, nodes });
  }
  const others = st.nodes.filter((n) => !placed.has(n.name));
  if (others.length) rows.push({ label: 'other', nodes: others });

  const cols = Math.max(1, ...rows.map((r) => r.nodes.length));
  const width = LEFT + cols * (BW + GX) - GX + PAD;
  const height = PAD * 2 + rows.length * (BH + GY) - GY;
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  // No bigger than life: a small lab does not fill the screen with boxes.
  svg.style.maxWidth = `${width}px`;

  const pos = new Map(); // name -> {x, y, row}
  rows.forEach((row, i) => {
    const y = PAD + i * (BH + GY);
    const span = row.nodes.length * (BW + GX) - GX;
    const x0 = LEFT + (cols * (BW + GX) - GX - span) / 2;
    row.nodes.forEach((n, j) => pos.set(n.name, { x: x0 + j * (BW + GX), y, row: i }));
    svg.append(el('svg:text', { class: 'tier-label', x: 4, y: y + BH / 2 + 4 }, row.label));
  });

  // Links: a peer link joins its two nodes; a segment joins its members
  // of one row to its members of the next row that has some.
  const edges = new Map();
  const addEdge = (a, b, via) => {
    const key = [a, b].sort().join('|') + '|' + via;
    if (a !== b && !edges.has(key)) edges.set(key, { a, b, via });
  };
  const names = new Set(st.nodes.map((n) => n.name));
  const segments = new Map();
  for (const n of st.nodes) {
    for (const l of n.links) {
      if (names.has(l)) {
        addEdge(n.name, l, l);
      } else {
        if (!segments.has(l)) segments.set(l, []);
        segments.get(l).push(n.name);
      }
    }
  }
  for (const [seg, members] of segments) {
    const byRow = new Map();
    for (const m of members) {
      const r = pos.get(m).row;
      if (!byRow.has(r)) byRow.set(r, []);
      byRow.get(r).push(m);
    }
    const order = [...byRow.keys()].sort((a, b) => a - b);
    for (let i = 0; i + 1 < order.length; i++) {
      for (const a of byRow.get(order[i])) for (const b of byRow.get(order[i + 1])) addEdge(a, b, seg);
    }
  }
  for (const { a, b, via } of edges.values()) {
    const pa = pos.get(a), pb = pos.get(b);
    const down = page.linkDown.has(a + '|' + via) || page.linkDown.has(b + '|' + via) ||
      page.linkDown.has(a + '|' + b) || page.linkDown.has(b + '|' + a);
    const upper = pa.y <= pb.y ? pa : pb, lower = pa.y <= pb.y ? pb : pa;
    const same = pa.y === pb.y;
    svg.append(el('svg:line', {
      class: 'edge' + (down ? ' down' : ''), 'data-link': via,
      x1: upper.x + BW / 2, y1: same ? upper.y + BH / 2 : upper.y + BH,
      x2: lower.x + BW / 2, y2: same ? lower.y + BH / 2 : lower.y,
    }));
  }

  for (const n of st.nodes) {
    const p = pos.get(n.name);
    const g = el('svg:g', {
      class: 'node' + (n.name === page.selected ? ' selected' : ''),
      id: 'node-' + n.name, 'data-node': n.name, 'data-state': n.state, 'data-role': n.role,
      transform: `translate(${p.x},${p.y})`,
    });
    const tip = [`${n.name} (${n.role}): ${n.state}`];
    if (n.detail) tip.push(n.detail);
    if (n.addresses && n.addresses.length) tip.push(n.addresses.join(' '));
    g.append(
      el('svg:title', {}, tip.join('\n')),
      el('svg:rect', { width: BW, height: BH, rx: 6 }),
      el('svg:text', { class: 'name', x: 9, y: 18 }, n.name),
      el('svg:text', { class: 'state', x: 9, y: 35 }, n.state),
    );
    g.addEventListener('click', () => { page.selected = n.name; drawLab(); drawPanel(); });
    svg.append(g);
  }
}

function drawLegend() {
  $('#legend').replaceChildren(...STATES.map((s) => el('li', { class: s }, s === 'exited' ? 'exited / unreachable' : s)));
}

// ---- The selected node's buttons.

function drawPanel() {
  const panel = $('#panel');
  const n = page.status && page.status.nodes.find((x) => x.name === page.selected);
  if (!n) {
    panel.replaceChildren(el('h2', {}, 'Node'), el('p', { class: 'hint' }, 'Click a node to break it or mend it.'));
    return;
  }
  const base = 'api/nodes/' + encodeURIComponent(n.name);
  const button = (label, path, what, cls) => {
    const b = el('button', { type: 'button', class: cls, 'data-action': what }, label);
    b.addEventListener('click', () => post(base + path, what));
    return b;
  };
  const verbs = el('div', { class: 'buttons' },
    button('Kill', '/kill', 'kill ' + n.name, 'danger'),
    button('Freeze', '/freeze', 'freeze ' + n.name, 'danger'),
    button('Revive', '/revive', 'revive ' + n.name));
  if (n.role === 'lb4' || n.role === 'lb7') {
    verbs.append(
      button('Maint on', '/maint?state=on', `maint ${n.name} on`),
      button('Maint off', '/maint?state=off', `maint ${n.name} off`));
  }
  const links = el('table', { class: 'links' });
  for (const l of n.links) {
    const down = page.linkDown.has(n.name + '|' + l) || page.linkDown.has(l + '|' + n.name);
    const lp = '/links/' + encodeURIComponent(l);
    links.append(el('tr', {},
      el('td', {}, l), el('td', { class: down ? 'down' : '' }, down ? 'down' : 'up'),
      el('td', {}, button('Down', lp + '?state=down', `link ${n.name} ${l} down`, 'danger')),
      el('td', {}, button('Up', lp + '?state=up', `link ${n.name} ${l} up`))));
  }
  panel.replaceChildren(
    el('h2', {}, n.name + ' ', el('small', {}, n.role)),
    el('p', { class: 'state' }, n.state),
    el('p', { class: 'detail' }, n.detail || ''),
    verbs,
    el('h2', {}, 'Links'),
    links);
}

// ---- Status and header.

function applyStatus(st) {
  page.status = st;
  page.linkDown = new Set((st.down_links || []).map((l) => l.node + '|' + l.link));
  $('#lab-name').textContent = 'lab ' + (st.name || '?');
  document.title = 'lab ' + (st.name || '');
  $('#lab-mode').textContent = st.mode ? 'mode ' + st.mode : '';
  $('#lab-phase').textContent = st.phase || '';
  $('#vips').textContent = (st.vips || []).map((v) => `${v.name} ${v.address} ${v.scheduler}`).join(' · ');
  const banner = $('#banner');
  banner.hidden = !st.error;
  banner.textContent = st.error || '';
  drawLab();
  drawPanel();
}

// ---- The event log, newest first.

function applyEvents(msg) {
  const body = $('#events');
  if (msg.replace) {
    body.replaceChildren();
    page.injects = [];
  }
  for (const e of msg.events) {
    const t = parseTime(e.time);
    const inject = e.kind === 'inject';
    if (MARKED.includes(e.kind)) page.injects.push({ t, node: e.node, msg: e.kind === 'maintenance' ? 'maint: ' + e.msg : e.msg });
    const row = el('tr', { class: (inject ? 'inject' : '') + (msg.replace ? '' : ' fresh'), 'data-kind': e.kind, 'data-ev-node': e.node, 'data-time': t },
      el('td', {}, clock(t)), el('td', {}, e.node), el('td', {}, e.kind), el('td', { class: 'msg' }, e.msg));
    // Newest first; an event that comes late goes where its time says.
    let before = body.firstChild;
    while (before && Number(before.dataset.time) > t) before = before.nextSibling;
    body.insertBefore(row, before);
  }
  while (body.childElementCount > MAX_ROWS) body.lastChild.remove();
  drawCharts();
}

// ---- The loads and their charts.

function applyLoad(ld) {
  page.load = ld;
  const busy = ld.state !== 'idle';
  $('#load-start').disabled = busy;
  $('#load-stop').disabled = ld.state !== 'running';
  $('#load').dataset.state = ld.state;
  const f = $('#load-figures');
  const parts = [];
  if (ld.state !== 'idle') parts.push(`This page's load: ${ld.state} from ${ld.from || 'the first client'}, ${ld.workers} workers`);
  f.replaceChildren(parts.join(''));
  if (ld.report) {
    const r = ld.report;
    if (parts.length) f.append(el('br'));
    f.append(`Last load from this page: ${r.total} connections, ok ${r.ok}, broken ${r.broken}, interrupted ${r.interrupted}.`);
  }
  if (ld.error) f.append(el('br'), el('span', { class: 'broken' }, ld.error));
  if (!f.textContent) f.textContent = 'No load from this page yet.';
}

const loadKey = (l) => l.node + '/' + l.id;

function applyLoads(msg) {
  page.loads = msg.loads || [];
  const sel = $('#load-select');
  const keys = page.loads.map(loadKey);
  if (page.chosen && !keys.includes(page.chosen)) page.chosen = '';
  const label = (l) => `${l.own ? "this page's load" : 'load ' + l.id} from ${l.node}` +
    (l.targets ? `, ${l.targets.length} VIPs` : '') + (l.running ? '' : ' (ended)');
  const options = page.loads.length
    ? [el('option', { value: '' }, 'the latest running'), ...page.loads.map((l) => el('option', { value: loadKey(l) }, label(l)))]
    : [el('option', { value: '' }, 'no load runs')];
  sel.replaceChildren(...options);
  sel.value = page.chosen;
  drawCharts();
}

// chartedLoad is the load the charts show: the one chosen, else the
// page's own while it runs, else the latest running, else the latest.
function chartedLoad() {
  const ls = page.loads;
  if (page.chosen) return ls.find((l) => loadKey(l) === page.chosen);
  return ls.find((l) => l.own && l.running) || [...ls].reverse().find((l) => l.running) || ls[ls.length - 1];
}

function drawCharts() {
  const box = $('#charts');
  const ld = chartedLoad();
  box.dataset.load = ld ? loadKey(ld) : '';
  const fig = $('#chart-figures');
  if (!ld) {
    fig.textContent = 'Start a load (here, with lab load or a scenario) to see connections per second, per VIP.';
    box.replaceChildren();
    return;
  }
  fig.replaceChildren(`${ld.running ? 'running' : 'ended'}, from ${ld.node}, ${ld.workers || '?'} workers, ` +
    `${Math.floor(ld.elapsed)} s: started ${ld.started}, active ${ld.active}, ok ${ld.ok}, `,
  el('span', { class: ld.broken ? 'broken' : '' }, `broken ${ld.broken}`), `, interrupted ${ld.interrupted}`);
  if (ld.error) fig.append(el('br'), el('span', { class: 'broken' }, ld.error));
  const vips = ld.vips || [];
  // One scale for every VIP's chart, so that they compare at a glance.
  let ymax = 1;
  for (const v of vips) for (const s of v.seconds) ymax = Math.max(ymax, s.ok, s.broken, s.interrupted, s.dns_failed || 0);
  box.replaceChildren(...vips.map((v) => vipChart(ld, v, ymax)));
}

function vipChart(ld, vip, top) {
  const svg = el('svg:svg', { class: 'vip-chart', 'data-vip': vip.name, 'data-target': vip.target });
  const W = 560, H = 150, L = 34, R = 8, T = 16, B = 20;
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  const secs = vip.seconds;
  svg.dataset.points = secs.length;
  svg.append(el('svg:text', { class: 'vip-title', x: L, y: 11 }, vip.name === vip.target ? vip.name : `${vip.name} ${vip.target}`));
  const n = Math.max(10, secs.length);
  const step = niceStep(top / 3);
  const ymax = Math.ceil(top / step) * step;
  const x = (i) => L + (i + 0.5) * (W - L - R) / n;
  const y = (v) => T + (H - T - B) * (1 - v / ymax);
  for (let v = 0; v <= ymax; v += step) {
    svg.append(el('svg:line', { class: 'grid', x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    svg.append(el('svg:text', { x: L - 4, y: y(v) + 3, 'text-anchor': 'end' }, String(v)));
  }
  const xstep = niceStep(n / 8);
  for (let i = 0; i <= n; i += xstep) {
    svg.append(el('svg:text', { x: L + i * (W - L - R) / n, y: H - 6, 'text-anchor': 'middle' }, i + 's'));
  }
  svg.append(el('svg:line', { class: 'axis', x1: L, x2: W - R, y1: y(0), y2: y(0) }));
  svg.append(el('svg:line', { class: 'axis', x1: L, x2: L, y1: T, y2: y(0) }));

  // Injections during the load, where they happened.
  if (ld.start) {
    const start = parseTime(ld.start);
    for (const inj of page.injects) {
      const s = (inj.t - start) / 1000;
      if (s < 0 || s > n) continue;
      const px = L + s * (W - L - R) / n;
      svg.append(el('svg:line', { class: 'inject-mark', x1: px, x2: px, y1: T, y2: y(0) },
        el('svg:title', {}, `${clock(inj.t)} ${inj.node} ${inj.msg}`)));
      svg.append(el('svg:text', { class: 'inject-label', x: px + 3, y: T + 9 }, `${inj.node} ${inj.msg.split(/[: ]/)[0]}`));
    }
  }
  const kinds = ['ok', 'interrupted', 'broken'];
  if (secs.some((s) => s.dns_failed)) kinds.push('dns_failed');
  for (const k of kinds) {
    const cls = k === 'dns_failed' ? 'dns' : k;
    const pts = secs.map((s, i) => `${x(i).toFixed(1)},${y(s[k] || 0).toFixed(1)}`).join(' ');
    svg.append(el('svg:polyline', { class: cls, points: pts }));
    if (secs.length <= 300 && k !== 'dns_failed') {
      secs.forEach((s, i) => svg.append(el('svg:circle', { class: 'point ' + k, cx: x(i), cy: y(s[k]), r: 2 },
        el('svg:title', {}, `${vip.name} ${i}s: ${k} ${s[k]}`))));
    }
  }
  return svg;
}

// niceStep rounds a raw step up to 1, 2 or 5 times a power of ten.
function niceStep(raw) {
  if (raw <= 1) return 1;
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

// ---- Wiring.

function connect() {
  const conn = $('#conn');
  const es = new EventSource('api/stream');
  es.onopen = () => { conn.dataset.conn = 'live'; conn.textContent = 'live'; };
  es.onerror = () => { conn.dataset.conn = 'down'; conn.textContent = 'reconnecting…'; };
  es.addEventListener('status', (e) => applyStatus(JSON.parse(e.data)));
  es.addEventListener('events', (e) => applyEvents(JSON.parse(e.data)));
  es.addEventListener('load', (e) => applyLoad(JSON.parse(e.data)));
  es.addEventListener('loads', (e) => applyLoads(JSON.parse(e.data)));
}

$('#load-start').addEventListener('click', () => {
  const w = $('#load-workers').value;
  post('api/load/start?workers=' + encodeURIComponent(w), 'start load');
});
$('#load-stop').addEventListener('click', () => post('api/load/stop', 'stop load'));
$('#load-select').addEventListener('change', (e) => { page.chosen = e.target.value; drawCharts(); });
drawLegend();
drawCharts();
connect();
