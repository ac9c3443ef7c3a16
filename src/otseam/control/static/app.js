// The Seam console: plain JavaScript served by the node, no build step, no network beyond the node.
// Every text that comes from the node goes through textContent or esc(): the contract is edited by
// many hands and alert messages quote network traffic.
"use strict";

const API = "/api/v1";
const QUALITY = ["good", "stale", "uncertain", "bad-comm", "bad-config", "bad-device"];
const state = { session: null, values: new Map(), stream: null, lastMessage: 0, lostSince: null, page: null, timers: [] };

function esc(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
function $(id) { return document.getElementById(id); }
function fmtTime(ts) { return ts ? new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 19) + "Z" : ""; }
function fmtValue(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(3);
  return String(v);
}
function fmtAge(sourceTs) {
  if (!sourceTs) return "";
  const age = Date.now() / 1000 - sourceTs;
  return age < 60 ? age.toFixed(1) + " s" : age < 3600 ? (age / 60).toFixed(1) + " min" : (age / 3600).toFixed(1) + " h";
}

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && state.session && state.session.csrf) headers["X-CSRF-Token"] = state.session.csrf;
  const response = await fetch(API + path, {
    method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401 && path !== "/login") { showLogin(); throw new Error("signed out"); }
  const type = response.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    const error = new Error((data && data.error) || response.statusText);
    error.status = response.status; error.data = data;
    throw error;
  }
  return data;
}

// --- signing in -------------------------------------------------------------------------------------

async function showLogin() {
  stopStream();
  stopTimers();
  state.session = null;
  $("top").hidden = true; $("view").hidden = true; $("stream-lost").hidden = true; $("stream-resync").hidden = true; $("login").hidden = false;
  try { $("banner").textContent = (await (await fetch(API + "/banner")).json()).banner || ""; } catch (e) { /* shown empty */ }
  $("banner").hidden = !$("banner").textContent;
  $("login-user").focus();
}

async function submitLogin(event) {
  event.preventDefault();
  $("login-error").textContent = "";
  const body = { user: $("login-user").value, password: $("login-password").value };
  if (!$("login-totp-row").hidden) body.totp = $("login-totp").value;
  try {
    state.session = await api("POST", "/login", body);
    $("login-password").value = ""; $("login-totp").value = "";
    started();
  } catch (error) {
    if (error.data && error.data.totp) { $("login-totp-row").hidden = false; $("login-totp").focus(); }
    $("login-error").textContent = error.message;
  }
}

function started() {
  const s = state.session;
  $("login").hidden = true; $("top").hidden = false; $("view").hidden = false;
  $("who").textContent = $("who").title = `${s.name} (${s.side} side, ${s.role})`;
  $("where").textContent = $("where").title = `${s.site} / ${s.node}`;
  startStream();
  route();
}

// --- live updates: never silent ---------------------------------------------------------------------

function setLive(up, text) {
  const el = $("live");
  el.className = "live " + (up ? "up" : "down");
  el.textContent = text;
  const banner = $("stream-lost");
  if (up) { banner.hidden = true; state.lostSince = null; return; }
  if (!state.lostSince) state.lostSince = new Date();
  banner.hidden = false;
  banner.textContent = `Live updates lost at ${state.lostSince.toISOString().slice(11, 19)}Z: values on this page are not current. Reconnecting…`;
}

function startStream() {
  stopStream();
  const source = new EventSource(API + "/stream", { withCredentials: true });
  state.stream = source;
  state.lastMessage = Date.now();
  const seen = () => { state.lastMessage = Date.now(); if ($("live").className !== "live up") setLive(true, "live"); };
  source.addEventListener("snapshot", (e) => { seen(); state.values.clear(); applyValues(JSON.parse(e.data)); });
  source.addEventListener("values", (e) => { seen(); applyValues(JSON.parse(e.data)); });
  source.addEventListener("events", (e) => { seen(); onEvents(JSON.parse(e.data)); });
  source.addEventListener("tick", () => seen());
  source.addEventListener("resync", (e) => { seen(); showResync(JSON.parse(e.data).missed); });
  source.addEventListener("error", (e) => {
    if (e.data) { setLive(false, "live: error"); $("stream-lost").textContent = JSON.parse(e.data).message; return; }
    lost();
  });
  source.addEventListener("signed-out", () => { stopStream(); showLogin(); });
  if (!state.watchdog) {
    // Ticks come every second: three seconds of silence means the stream is gone even if the browser
    // has not noticed (a proxy holding the connection, a suspended laptop).
    state.watchdog = setInterval(() => {
      if (state.stream && Date.now() - state.lastMessage > 3500) lost();
    }, 500);
  }
}

// The node could not write to this page as fast as values changed: it skipped what was waiting and sends
// the current value of every point instead (the snapshot that follows). Said on the page, never silent.
function showResync(missed) {
  const bar = $("stream-resync");
  bar.hidden = false;
  const what = `${esc(missed)} ${missed === 1 ? "message was" : "messages were"} skipped and every value was sent afresh`;
  bar.innerHTML = `Live updates fell behind at ${new Date().toISOString().slice(11, 19)}Z: ${what}. ` +
    "Events in that interval may be missing from this page's lists. " +
    '<button type="button" id="resync-reload">Reload this page</button> <button type="button" id="resync-close">Dismiss</button>';
  $("resync-reload").addEventListener("click", () => { bar.hidden = true; route(); });
  $("resync-close").addEventListener("click", () => { bar.hidden = true; });
}

function lost() {
  setLive(false, "live: lost");
  if (state.stream) { state.stream.close(); state.stream = null; }
  clearTimeout(state.reconnect);
  state.reconnect = setTimeout(async () => {
    try { await api("GET", "/session"); startStream(); } catch (e) { if (state.session) lost(); }
  }, 1500);
}

function stopStream() {
  if (state.stream) state.stream.close();
  state.stream = null;
  clearTimeout(state.reconnect);
}

// A values or snapshot message: groups of points that share quality and timestamps (one driver poll).
function applyValues(groups) {
  for (const [quality, sourceTs, reportTs, points, values] of groups) {
    for (let i = 0; i < points.length; i++) state.values.set(points[i], { value: values[i], quality, sourceTs, reportTs });
  }
  if (state.page && state.page.onValues) state.page.onValues(groups);
}

function onEvents(events) {
  if (state.page && state.page.onEvents) state.page.onEvents(events);
}

// --- pages ------------------------------------------------------------------------------------------

const pages = {
  map: mapPage, points: pointsPage, alerts: alertsPage, link: linkPage, contract: contractPage,
  // requests and audit: approvals.js

};

function route() {
  if (!state.session) return;
  stopTimers();
  const name = (location.hash.match(/^#\/(\w+)/) || [])[1] || "map";
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.getAttribute("href") === "#/" + name);
  const view = $("view");
  view.innerHTML = "";
  state.page = {};
  (pages[name] || mapPage)(view, state.page).catch((error) => {
    if (error.message !== "signed out") view.insertAdjacentHTML("beforeend", `<p class="error">${esc(error.message)}</p>`);
  });
}

// A page's periodic refresh: a failure is shown on the page (and retried), never left unhandled.
function every(ms, fn) {
  state.timers.push(setInterval(() => {
    Promise.resolve().then(fn).then(
      () => { const note = $("refresh-error"); if (note) note.remove(); },
      notRefreshed,
    );
  }, ms));
}

// A redraw a live event asked for: if the person has moved to another page meanwhile, the old page's
// elements are gone and that is no failure; any other failure is said on the page.
function redraw(page, draw) {
  draw().catch((error) => { if (state.page === page) notRefreshed(error); });
}

function notRefreshed(error) {
  if (error.message === "signed out" || $("refresh-error")) return;
  $("view").insertAdjacentHTML("afterbegin", `<p class="error" id="refresh-error">Not refreshed: ${esc(error.message)}</p>`);
}

function stopTimers() {
  for (const timer of state.timers) clearInterval(timer);
  state.timers = [];
}

// Map: zones by Purdue level (enterprise at the top), nodes in their zone, conduits between.
async function mapPage(view, page) {
  view.innerHTML = `<h2>Map</h2><div id="map"></div><h3>Flows</h3><div id="flows"></div>
    <p class="muted">Declared-and-seen: a conduit of the contract with traffic from this node. Declared-not-seen: declared,
    no traffic yet. Seen-but-not-declared: traffic the capture source reported that no conduit allows.</p>`;
  const draw = async () => {
    const [zones, conduits, nodes] = await Promise.all([api("GET", "/zones"), api("GET", "/conduits"), api("GET", "/nodes")]);
    $("map").innerHTML = mapSvg(zones.items, conduits.items.filter((c) => c.from), nodes.items);
    $("flows").innerHTML = table(
      ["Flow", "Between", "Direction", "Rate (records/s)", "Status"],
      conduits.items.map((c) => [
        esc(c.id),
        c.from ? `${esc(c.from)} → ${esc(c.to)}` : `${esc(c.src)} → ${esc(c.dst)}`,
        esc(c.direction || ""),
        c.rate === undefined ? "" : c.rate.toFixed(1),
        `<span class="badge flow-${esc(c.flow)}">${esc(c.flow)}</span>`,
      ]),
    );
  };
  await draw();
  every(2000, draw);
}

function mapSvg(zones, conduits, nodes) {
  const levels = [...new Set(zones.map((z) => z.level))].sort((a, b) => b - a);
  const rowH = 110, width = 1000, left = 110;
  const boxes = {};
  let svg = "";
  levels.forEach((level, row) => {
    const y = 20 + row * rowH;
    svg += `<g class="band"><line x1="0" x2="${width}" y1="${y + rowH - 5}" y2="${y + rowH - 5}"/><text x="8" y="${y + 20}">Level ${level}</text></g>`;
    const inRow = zones.filter((z) => z.level === level);
    const w = Math.min(260, (width - left - 20) / inRow.length - 20);
    inRow.forEach((zone, i) => {
      const x = left + i * (w + 30);
      boxes[zone.id] = { x, y, w, h: rowH - 30 };
      const here = nodes.filter((n) => n.zone === zone.id);
      svg += `<g class="zone ${zone.health === "ok" ? "ok" : "degraded"}" data-zone="${esc(zone.id)}"><rect x="${x}" y="${y}" width="${w}" height="${rowH - 30}"/>
        <text x="${x + 8}" y="${y + 18}">${esc(zone.name)} <tspan class="muted">SL${esc(zone.sl)} · ${esc(zone.health)}</tspan></text>`;
      here.forEach((node, j) => {
        svg += `<g class="node"><rect x="${x + 8 + j * 110}" y="${y + 30}" width="100" height="26" rx="4"/><text x="${x + 14 + j * 110}" y="${y + 47}">node ${esc(node.id)}</text></g>`;
      });
      svg += `<text x="${x + 8}" y="${y + 72}" class="muted" font-size="11">${esc(zone.devices.length)} device(s)</text></g>`;
    });
  });
  const defs = `<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#57606a"/></marker></defs>`;
  for (const c of conduits) {
    const a = boxes[c.from], b = boxes[c.to];
    if (!a || !b) continue;
    const x1 = a.x + a.w / 2, y1 = a.y + (b.y < a.y ? 0 : a.h), x2 = b.x + b.w / 2, y2 = b.y + (b.y < a.y ? b.h : 0);
    const cls = c.flow === "declared-and-seen" ? "seen" : "not-seen";
    const ends = c.direction === "two-way" ? 'marker-start="url(#arrow)" marker-end="url(#arrow)"' : 'marker-end="url(#arrow)"';
    svg += `<path class="conduit ${cls}" d="M${x1},${y1} L${x2},${y2}" ${ends}/>
      <text class="clabel" x="${(x1 + x2) / 2 + 8}" y="${(y1 + y2) / 2}">${esc(c.id)}: ${c.rate.toFixed(1)}/s (${esc(c.flow)})</text>`;
  }
  const height = 20 + levels.length * rowH;
  return `<svg class="map" viewBox="0 0 ${width} ${height}" role="img" aria-label="zones and conduits">${defs}${svg}</svg>`;
}

function table(headers, rows, attrs = "") {
  return `<table ${attrs}><thead><tr>${headers.map((h) => `<th>${esc(h)}</th>`).join("")}</tr></thead><tbody>${rows
    .map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join("")}</tr>`)
    .join("")}</tbody></table>`;
}

// Devices and points: live values from the stream; a trend of the selected points from the historian.
async function pointsPage(view, page) {
  view.innerHTML = `<h2>Devices and points</h2><div id="devices"></div>
    <div class="toolbar"><input id="filter" type="search" placeholder="filter points">
    <label>Range <select id="range"><option value="-15min">15 min</option><option value="-1h" selected>1 h</option>
    <option value="-6h">6 h</option><option value="-24h">24 h</option><option value="-7d">7 days</option></select></label>
    <button id="trend" type="button">Trend selected</button><span class="muted">drag on the chart to zoom, double-click to reset, ← → to pan</span></div>
    <div id="chart"></div><div id="points"></div>`;
  const devices = await api("GET", "/devices");
  $("devices").innerHTML = table(
    ["Device", "Zone", "Driver", "Poll", "Points", "State"],
    devices.items.map((d) => [esc(d.id), esc(d.zone), esc(d.driver), esc(d.poll) + " s", esc(d.points), esc(d.state)]),
  );
  const all = [];
  for (let offset = 0; ; offset += 1000) {
    const pageData = await api("GET", `/points?limit=1000&offset=${offset}`);
    all.push(...pageData.items);
    if (all.length >= pageData.total || !pageData.items.length) break;
  }
  // A computed point says what it is made of and who owns its formula (the contract's lineage).
  const lineageNote = (p) => p.lineage
    ? `<div class="lineage">= ${esc(p.lineage.formula)}<br>from ${esc(p.lineage.sources.join(", "))}` +
      `${p.lineage.owner ? `; formula owned by ${esc(p.lineage.owner)}` : ""}</div>`
    : "";
  const selected = new Set(all.slice(0, 1).map((p) => p.key));
  const render = () => {
    const text = $("filter").value.toLowerCase();
    const shown = all.filter((p) => !text || p.key.toLowerCase().includes(text)).slice(0, 500);
    $("points").innerHTML = table(
      ["", "Point", "Value", "Unit", "Quality", "Age"],
      shown.map((p) => [
        `<input type="checkbox" data-key="${esc(p.key)}" ${selected.has(p.key) ? "checked" : ""}>`,
        esc(p.key) + lineageNote(p), `<span data-v="${esc(p.key)}"></span>`, esc(p.unit), `<span data-q="${esc(p.key)}"></span>`,
        `<span data-a="${esc(p.key)}"></span>`,
      ]),
      'id="points-table"',
    );
    refresh();
  };
  const refresh = () => {
    for (const el of document.querySelectorAll("[data-v]")) {
      const key = el.dataset.v, live = state.values.get(key);
      if (!live) continue;
      el.textContent = fmtValue(live.value);
      const q = document.querySelector(`[data-q="${CSS.escape(key)}"]`);
      q.textContent = QUALITY[live.quality] || String(live.quality);
      q.className = "q-" + (QUALITY[live.quality] || "bad-config");
      document.querySelector(`[data-a="${CSS.escape(key)}"]`).textContent = fmtAge(live.sourceTs);
    }
  };
  $("filter").addEventListener("input", render);
  $("points").addEventListener("change", (e) => {
    const key = e.target.dataset.key;
    if (key) { if (e.target.checked) selected.add(key); else selected.delete(key); }
  });
  $("trend").addEventListener("click", () => trend([...selected], $("range").value));
  render();
  page.onValues = refresh;
  every(1000, refresh);
}

async function trend(keys, from) {
  const chart = $("chart");
  if (!keys.length) { chart.innerHTML = `<p class="muted">Select one or more points first.</p>`; return; }
  if (typeof uPlot === "undefined") {
    chart.innerHTML = `<p class="error">The chart library (uPlot) is not installed on this node: run 'make console' there.</p>`;
    return;
  }
  chart.innerHTML = `<p class="muted">Loading ${esc(keys.join(", "))}…</p>`;
  const started = performance.now();
  const series = await Promise.all(
    keys.map((key) => api("GET", `/points/${key.split("/").map(encodeURIComponent).join("/")}/history?from=${encodeURIComponent(from)}&limit=500000`)),
  );
  const tables = series.map((s) => [s.ts, s.value]);
  const data = tables.length === 1 ? tables[0] : uPlot.join(tables);
  const count = series.reduce((n, s) => n + s.ts.length, 0);
  const notes = series.filter((s) => s.note || s.truncated).map((s) => `${s.point}: ${s.note || s.truncated + " rows beyond the limit"}`);
  chart.innerHTML = `<div class="chart" id="plot"></div><p class="muted" id="trend-info"></p>`;
  const colours = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#9a6700", "#bc4c00"];
  const plot = new uPlot(
    {
      width: Math.min(1300, chart.clientWidth || 1000), height: 360,
      scales: { x: { time: true } },
      series: [{}, ...keys.map((key, i) => ({ label: key, stroke: colours[i % colours.length], width: 1, spanGaps: false }))],
      cursor: { drag: { x: true, y: false } },
    },
    data,
    $("plot"),
  );
  $("trend-info").textContent = `${count.toLocaleString()} samples drawn in ${(performance.now() - started).toFixed(0)} ms. ${notes.join(" ")}`;
  chart.dataset.samples = String(count);
  const pan = (direction) => {
    const { min, max } = plot.scales.x, step = (max - min) * 0.25 * direction;
    plot.setScale("x", { min: min + step, max: max + step });
  };
  document.onkeydown = (e) => { if (e.key === "ArrowLeft") pan(-1); if (e.key === "ArrowRight") pan(1); };
  state.plot = plot;
}

// Alerts (ATT&CK for ICS ids, acknowledge with a comment) and inventory (unknown assets first).
async function alertsPage(view, page) {
  view.innerHTML = `<h2>Alerts</h2><label><input type="checkbox" id="unacked"> only unacknowledged</label>
    <p id="alerts-waiting" class="muted" hidden>New alerts arrived: the list is refreshed once the comment is sent or cleared.</p>
    <div id="alerts"></div>
    <h2>Inventory</h2><p class="muted">Assets the capture source saw, against the devices the contract declares. Unknown assets first.</p><div id="inventory"></div>`;
  const canAck = ["operator", "engineer", "seam-owner", "admin"].includes(state.session.role);
  const writing = () =>
    [...document.querySelectorAll("[data-ack-comment]")].some((el) => el.value.trim() || el === document.activeElement);
  const draw = async (force) => {
    // Never redraw under someone typing a comment: say that new alerts wait instead.
    if (!force && writing()) {
      $("alerts-waiting").hidden = false;
      return;
    }
    $("alerts-waiting").hidden = true;
    const alerts = await api("GET", `/alerts?limit=200${$("unacked").checked ? "&unacknowledged=true" : ""}`);
    // The person may have started typing while the list was fetched: their comment wins over the list.
    if (!force && writing()) {
      $("alerts-waiting").hidden = false;
      return;
    }
    $("alerts").innerHTML = alerts.items.length
      ? table(
          ["Time", "Severity", "ATT&CK", "Source", "Message", "Acknowledged"],
          alerts.items.map((a) => [
            esc(fmtTime(a.ts)), `<span class="sev-${esc(a.severity)}">${esc(a.severity)}</span>`,
            esc((a.data.attack || []).join ? (a.data.attack || []).join(", ") : a.data.attack || ""), esc(a.source), esc(a.message),
            a.acknowledged
              ? `${esc(a.acknowledged.user)}: ${esc(a.acknowledged.comment)}`
              : !a.needs_ack
                ? `<span class="muted">cleared</span>`
                : canAck
                ? `<input type="text" placeholder="comment" data-ack-comment="${a.offset}"> <button type="button" data-ack="${a.offset}">Acknowledge</button>`
                : `<span class="muted">not acknowledged</span>`,
          ]),
        )
      : `<p class="muted">No alerts.</p>`;
    const inventory = await api("GET", "/inventory");
    $("inventory").innerHTML = table(
      ["Address", "Status", "Declared device", "Identity", "First seen", "Last seen"],
      inventory.items.map((a) => [
        esc(a.ip), `<span class="badge status-${esc(a.status)}">${esc(a.status)}</span>`, esc(a.device || ""), esc(a.identity || ""),
        esc(fmtTime(a.first_seen)), esc(fmtTime(a.last_seen)),
      ]),
    );
  };
  // On #alerts (made by this page): #view outlives pages, a listener there would be added on every visit.
  $("alerts").addEventListener("click", async (e) => {
    const offset = e.target.dataset && e.target.dataset.ack;
    if (!offset) return;
    const comment = document.querySelector(`[data-ack-comment="${offset}"]`).value.trim();
    if (!comment) { alert("Say in a comment what was done or why."); return; }
    try { await api("POST", `/alerts/${offset}/ack`, { comment }); } catch (error) { alert(error.message); }
    draw(true);
  });
  $("unacked").addEventListener("change", () => draw(true));
  page.onEvents = (events) => {
    if (events.some((e) => e.kind === "alert" || e.kind === "alarm" || e.kind.startsWith("inventory."))) redraw(page, () => draw(false));
  };
  await draw(true);
}

// The diode link: what this node sends, what it receives, and each gap with the command that closes it.
async function linkPage(view, page) {
  view.innerHTML = `<h2>The link</h2><div id="link"></div>`;
  const draw = async () => {
    const link = await api("GET", "/link");
    const receivers = link.receivers;
    $("link").innerHTML =
      `<h3>Sending (OT side)</h3>` +
      (link.senders.length
        ? table(["Sink", "Conduit", "Records", "Rate (records/s)", "State", "FEC"], link.senders.map((s) => [
            esc(s.sink), esc(s.conduit || ""), esc(s.records), s.rate.toFixed(1), esc(s.state || ""), esc(JSON.stringify(s.fec)),
          ]))
        : `<p class="muted">This node sends nothing over a diode.</p>`) +
      `<h3>Receiving (IT side)</h3>` +
      (receivers.length
        ? table(["Source", "Conduit", "Link", "Records", "Rate (records/s)", "Gaps", "Blocks lost", "State"], receivers.map((r) => [
            esc(r.source), esc(r.conduit || ""), r.link_up ? "up" : '<span class="error">down</span>', esc(r.records ?? ""),
            r.rate.toFixed(1), esc(r.gaps ?? ""), esc(r.blocks_lost ?? ""), esc(r.state || ""),
          ]))
        : `<p class="muted">This node receives nothing from a diode.</p>`) +
      `<p>FEC margin used (largest share of the repair capacity a block needed): ${link.fec_margin === null ? '<span class="muted">not reported by this node</span>' : esc((link.fec_margin * 100).toFixed(0) + " %")}</p>` +
      `<h3>Gaps</h3>` +
      (link.gaps.length
        ? table(["Time", "What was lost", "Close it on the OT side with"], link.gaps.map((g) => [
            esc(fmtTime(g.ts)), esc(g.message), `<code class="cmd">${esc(g.replay)}</code>`,
          ]), 'id="gaps"')
        : `<p class="muted" id="no-gaps">No gaps recorded.</p>`);
  };
  page.onEvents = (events) => { if (events.some((e) => e.kind.startsWith("diode."))) redraw(page, draw); };
  await draw();
  every(2000, draw);
}

async function contractPage(view) {
  // The session as it is now, with its permissions (the sign-in answer does not list them).
  const [contract, session] = await Promise.all([api("GET", "/contract"), api("GET", "/session")]);
  view.innerHTML = `<h2>Contract</h2>
    <p>${esc(contract.site.enterprise)} / ${esc(contract.site.site)} · ${contract.people.length} people · ${contract.zones.length} zones ·
    ${contract.conduits.length} conduits · ${contract.devices.length} devices · ${contract.sinks.length} sinks</p>
    <p class="muted">Proposals, the changes they make in words and who must approve them: on the
    <a href="#/requests">Requests</a> page (<code>seam contract diff</code> compares two files).</p>
    ${(session.permissions || []).includes("contract.change") ? proposeForm() : ""}
    <h3>People</h3>${table(["Person", "Name", "Side", "Role"], contract.people.map((p) => [esc(p.id), esc(p.name), esc(p.side), esc(p.role)]))}
    <h3>Interface document (seam doc)</h3><p><a href="${API}/contract/document" target="_blank" rel="noopener">open in its own tab</a></p>
    <iframe class="doc" src="${API}/contract/document" title="interface document" sandbox></iframe>`;
  if ($("propose-form")) wirePropose();
}

// Proposing a change is what `seam contract propose` does: the node compares the text with the contract in
// force, runs the rules (an error refuses it), and records a proposal for the approvers the change needs.
function proposeForm() {
  return `<h3>Propose a change</h3><form id="propose-form" class="propose">
    <p class="muted">Paste the changed contract, or pick its file (read here, in the browser). The node shows the
    changes in words and the rules' findings; the approvers sign it on the <a href="#/requests">Requests</a> page.</p>
    <label>Contract file <input type="file" id="propose-file" accept=".yaml,.yml,text/yaml"></label>
    <textarea id="propose-text" rows="10" spellcheck="false" placeholder="the whole changed contract (YAML)" required></textarea>
    <p><button type="submit">Propose</button></p></form><div id="propose-result" role="status"></div>`;
}

function wirePropose() {
  $("propose-file").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    if (file) $("propose-text").value = await file.text();
  });
  $("propose-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const out = $("propose-result");
    out.textContent = "Proposing…";
    try {
      const p = await api("POST", "/contract/proposals", { text: $("propose-text").value });
      const list = (items, mark) => items.length ? `<ul>${items.map((i) => `<li>${mark(i)}${esc(i)}</li>`).join("")}</ul>` : "<p class=\"muted\">none</p>";
      out.innerHTML = `<p class="ok" id="propose-done">Proposed r${esc(p.revision)} (${esc(p.status)}), SHA-256 <code>${esc(p.digest)}</code>.</p>
        <h4>Changes</h4>${list(p.changes, (c) => (p.widening.includes(c) ? "<strong>widens:</strong> " : ""))}
        <h4>Rule findings</h4>${list(p.findings, () => "")}
        <h4>Needs approval from</h4>${list(Object.entries(p.required).map(([who, why]) => `${who} (${why})`), () => "")}`;
    } catch (error) {
      out.innerHTML = `<pre class="error" id="propose-error"></pre>`;
      $("propose-error").textContent = error.message;
    }
  });
}

// --- start ------------------------------------------------------------------------------------------

window.addEventListener("hashchange", route);
document.addEventListener("DOMContentLoaded", async () => {
  $("login-form").addEventListener("submit", submitLogin);
  $("logout").addEventListener("click", async () => { try { await api("POST", "/logout"); } finally { showLogin(); } });
  try {
    state.session = await (await fetch(API + "/session", { credentials: "same-origin" })).json();
    if (!state.session.user) throw new Error("not signed in");
    started();
  } catch (e) {
    showLogin();
  }
});
