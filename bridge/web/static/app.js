// aqara-mqtt's web page: plain ES module, no build step, no network access beyond the daemon.
// State comes from the JSON API once, then from one WebSocket of live messages (batches).

const state = {
  devices: new Map(), // id -> summary
  status: null,
  detail: null, // the open device's document
  entities: undefined,
  events: [], // newest last, at most maxEvents
  maxEvents: 500, // the daemon's frontend.history (from api/history)
  shownSeq: 0, // the newest message of the daemon's history loaded: live copies of older ones are skipped
  live: false,
};
const view = document.getElementById("view");
const byName = new Intl.Collator(undefined, { numeric: true }); // one collator: localeCompare makes one per call
let rows = new Map(); // device id -> its <tr> on the device list
let traitCells = new Map(); // trait path -> {value, control} on the device page

// ---- helpers --------------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key in el && key !== "list") el[key] = value;
    else el.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

async function api(path, options) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  if (!response.ok) throw new Error(`${response.status} ${(await response.text()).trim()}`);
  return response.json();
}

function ago(seconds) {
  if (!seconds) return "—";
  const delta = Math.max(0, Date.now() / 1000 - seconds);
  if (delta < 60) return `${Math.round(delta)} s ago`;
  if (delta < 3600) return `${Math.round(delta / 60)} min ago`;
  return new Date(seconds * 1000).toLocaleString();
}

function age(seconds) { // how long ago an epoch time was: "42 s", "5 min", "3 h 12 min", "2 d 4 h"
  const delta = Math.max(0, Math.round(Date.now() / 1000 - seconds));
  if (delta < 60) return `${delta} s`;
  const minutes = Math.floor(delta / 60);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

function show(value) {
  if (value === null || value === undefined) return "—";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

function showValue(el, value, label) { // an enum's label (as MQTT shows it), its wire value on hover
  el.textContent = label ?? show(value);
  el.title = label === undefined ? "" : `wire value ${show(value)}`;
}

function optionText(e) { return e.key === e.value ? e.key : `${e.key} (${e.value})`; }

function availability(available) {
  return h("span", { class: `pill ${available ? "ok" : "bad"}` }, available ? "online" : "offline");
}

function route() {
  const [page, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  return { page: page || "devices", arg: rest.length ? decodeURIComponent(rest.join("/")) : null };
}

// ---- pages ----------------------------------------------------------------------------------

function standby(b) {
  const reach = b.hub_reachable === true ? ["ok", "hub reachable"]
    : b.hub_reachable === false ? ["bad", "hub not reachable"] : ["muted", "hub reachability unknown"];
  return h("span", { class: "standby", "data-member": b.member },
    h("strong", {}, show(b.member)), " (", h("span", { class: reach[0] }, reach[1]), ")");
}

function failoverSection(f) { // active/standby failover (status "failover"): nothing when not set up
  if (!f) return [];
  const standbys = Array.isArray(f.standbys) ? f.standbys : [];
  return [
    h("h2", {}, "Failover"),
    h("table", { id: "failover" },
      h("tr", { id: "failover-active" }, h("th", {}, "active member"),
        h("td", {}, h("strong", { class: "ok", id: "failover-member" }, show(f.member)),
          f.generation !== undefined && f.generation !== null ? ` (generation ${f.generation})` : "",
          f.since ? h("span", { id: "failover-since" }, " since ", new Date(f.since * 1000).toLocaleString(),
            h("span", { class: "muted" }, ` (${age(f.since)} ago)`)) : "")),
      h("tr", {}, h("th", {}, "standbys"),
        h("td", { id: "failover-standbys" }, standbys.length
          ? standbys.flatMap((b, i) => (i ? [", ", standby(b)] : [standby(b)]))
          : h("span", { class: "warn" }, "none — no standby is connected")))),
  ];
}

function budgetSection(backends) { // cloud backends: calls of the last hour by kind, quota state
  const clouds = backends.filter((b) => b.call_budget);
  if (!clouds.length) return [];
  return [
    h("h2", {}, "Cloud call budget"),
    h("table", { id: "budget" },
      h("tr", {}, h("th", {}, "hub"), h("th", {}, "calls in the last hour"), h("th", {}, "by kind"),
        h("th", {}, "quota")),
      clouds.map((b) => {
        const budget = b.call_budget;
        const kinds = Object.entries(budget.by_kind || {});
        const quota = b.quota || {};
        const closed = quota.state && quota.state !== "open";
        return h("tr", { "data-backend": b.name },
          h("td", {}, b.name),
          h("td", { class: "total" }, show(budget.total)),
          h("td", { class: "kinds" }, kinds.length
            ? kinds.map(([kind, n]) => `${kind} ${n}`).join(" · ") : h("span", { class: "muted" }, "none")),
          h("td", { class: closed ? "bad" : "ok" }, closed
            ? `${quota.state}${quota.retry_at ? `, next try ${new Date(quota.retry_at * 1000).toLocaleString()}` : ""}`
            : "open"));
      })),
  ];
}

async function bridgePage() {
  state.status = await api("api/status");
  const s = state.status;
  const c = s.counters;
  const health = s.health || {};
  view.replaceChildren(
    h("h1", {}, "Bridge"),
    h("div", { class: "card" },
      h("div", {}, "aqara-mqtt ", h("strong", { id: "version" }, s.version),
        " · health ", h("strong", { class: health.state === "ok" ? "ok" : "warn", id: "health" },
          health.state), " · started ", new Date(s.started_at * 1000).toLocaleString()),
      h("div", {}, "MQTT ", h("strong", { class: s.mqtt.connected ? "ok" : "bad", id: "mqtt-state" },
        s.mqtt.connected ? "connected" : "disconnected"),
        ` to ${s.mqtt.host}:${s.mqtt.port} (MQTT ${s.mqtt.protocol})`)),
    ...failoverSection(s.failover),
    h("h2", {}, "Hubs"),
    h("table", { id: "hubs" },
      h("tr", {}, h("th", {}, "name"), h("th", {}, "kind"), h("th", {}, "state"), h("th", {}, "reason")),
      s.backends.map((b) => h("tr", {},
        h("td", {}, b.name), h("td", {}, b.type),
        h("td", { class: b.connected ? "ok" : "bad" }, (health.hubs || {})[b.name] || (b.connected ? "connected" : "disconnected")),
        h("td", {}, b.detail || "")))),
    ...budgetSection(s.backends),
    h("h2", {}, "Counters"),
    h("div", { class: "grid", id: "counters" },
      [["events handled", c.events_handled], ["writes sent to hubs", c.writes],
       ["writes rejected", c.writes_rejected], ["writes the hub refused", c.writes_failed],
       ["MQTT messages published", c.mqtt_published], ["MQTT messages dropped", c.mqtt_dropped],
       ["live messages dropped (slow pages)", c.web_dropped], ["devices", state.devices.size]]
        .map(([label, n]) => h("div", { class: "stat" }, h("div", { class: "n" }, n), h("div", { class: "l" }, label)))),
  );
}

const COLUMNS = ["name", "backend", "model", "room", "availability", "last change"];

function deviceRow(d) { // a link per device; rows off screen are not laid out (content-visibility)
  return h("a", { class: "row", role: "row", href: `#/device/${encodeURIComponent(d.id)}`, "data-id": d.id, "data-available": String(d.available) },
    h("span", {}, h("strong", {}, d.friendly_name), d.name !== d.friendly_name ? h("div", { class: "muted" }, d.name) : null),
    h("span", {}, d.backend), h("span", {}, d.model), h("span", {}, d.room || ""),
    h("span", { class: "avail" }, availability(d.available)),
    h("span", { class: "last" }, ago(d.last_change)));
}

function devicesPage() {
  const search = h("input", { type: "search", id: "search", placeholder: "Search name, model, room, backend, id…", value: sessionStorage.getItem("search") || "" });
  const body = h("div", { class: "rows" });
  const count = h("span", { class: "muted", id: "count" });
  const filter = () => {
    sessionStorage.setItem("search", search.value);
    const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const [id, row] of rows) {
      const d = state.devices.get(id);
      const text = `${d.friendly_name} ${d.name} ${d.model} ${d.room || ""} ${d.backend} ${d.id}`.toLowerCase();
      const match = words.every((w) => text.includes(w));
      row.hidden = !match;
      if (match) shown += 1;
    }
    count.textContent = `${shown} of ${rows.size} devices`;
  };
  search.addEventListener("input", filter);
  const sorted = [...state.devices.values()].sort((a, b) => byName.compare(a.friendly_name, b.friendly_name));
  rows = new Map(sorted.map((d) => [d.id, deviceRow(d)]));
  body.append(...rows.values());
  view.replaceChildren(
    h("h1", {}, "Devices"),
    h("div", { class: "toolbar" }, search, count),
    h("div", { id: "devices", class: "list", role: "table" },
      h("div", { class: "head", role: "row" }, COLUMNS.map((t) => h("span", { role: "columnheader" }, t))),
      body));
  filter();
}

async function write(path, value, answer) {
  answer.className = "answer muted";
  answer.textContent = "sending…";
  try {
    const result = await api(`api/devices/${encodeURIComponent(state.detail.id)}/write`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ path, value }),
    });
    const ok = result.status === "ok";
    answer.className = `answer ${ok ? "ok" : "bad"}`;
    answer.textContent = ok ? "✓ done" : `✗ ${result.error.message || result.error.code}`;
  } catch (error) {
    answer.className = "answer bad";
    answer.textContent = `✗ ${error.message}`;
  }
}

function control(t) {
  const spec = t.spec;
  const answer = h("span", { class: "answer", "data-answer": t.path });
  if (!spec.writable) return { el: h("span", { class: "muted" }, "read-only"), set() {} };
  const send = (value) => write(t.path, value, answer);
  if (spec.type === "BOOLEAN") {
    const box = h("input", { type: "checkbox", class: "switch", role: "switch", checked: t.value === true, "aria-label": t.path, onchange: () => send(box.checked) });
    return { el: h("span", { class: "control" }, box, answer), set(v) { box.checked = v === true; } };
  }
  if (spec.type === "ENUM") {
    const select = h("select", { "aria-label": t.path, onchange: () => send(select.value) },
      spec.enums.map((e) => h("option", { value: e.value }, optionText(e))));
    select.value = t.value ?? "";
    return { el: h("span", { class: "control" }, select, answer), set(v) { select.value = v ?? ""; } };
  }
  if (spec.type === "NUMBER" && spec.min !== undefined && spec.max !== undefined) {
    const out = h("output", {}, show(t.value));
    const range = h("input", { type: "range", min: spec.min, max: spec.max, step: spec.step ?? (spec.integer ? 1 : "any"), value: t.value ?? spec.min, "aria-label": t.path,
      oninput: () => { out.textContent = range.value; }, onchange: () => send(Number(range.value)) });
    return { el: h("span", { class: "control" }, range, out, answer), set(v) { if (v !== null) { range.value = v; out.textContent = show(v); } } };
  }
  const input = h("input", { type: spec.type === "NUMBER" ? "number" : "text", "aria-label": t.path, value: t.value === null ? "" : (spec.type === "OTHER" ? JSON.stringify(t.value) : t.value) });
  const button = h("button", { onclick: () => send(spec.type === "NUMBER" ? Number(input.value) : input.value) }, "Set");
  return { el: h("span", { class: "control" }, input, button, answer), set() {} };
}

function specText(spec) {
  const parts = [spec.type.toLowerCase()];
  if (spec.unit) parts.push(spec.unit);
  if (spec.min !== undefined || spec.max !== undefined) parts.push(`${spec.min ?? "…"} – ${spec.max ?? "…"}`);
  if (spec.step !== undefined) parts.push(`step ${spec.step}`);
  if (spec.enums) parts.push(spec.enums.map(optionText).join(" | "));
  parts.push([spec.readable ? "r" : "", spec.writable ? "w" : ""].join(""));
  return parts.join(" · ");
}

function copyButton(text) {
  return h("button", { title: "copy the topic", onclick: async (event) => {
    const button = event.target;
    try {
      await navigator.clipboard.writeText(text); // only on https or loopback (a secure context)
      button.textContent = "copied";
    } catch {
      const range = document.createRange(); // elsewhere: selected, for Ctrl+C
      range.selectNodeContents(button.previousElementSibling);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      button.textContent = "Ctrl+C";
    }
    setTimeout(() => { button.textContent = "copy"; }, 1500);
  } }, "copy");
}

async function devicePage(id) {
  const d = await api(`api/devices/${encodeURIComponent(id)}`);
  state.detail = d;
  traitCells = new Map();
  const body = h("tbody");
  for (const t of d.traits) {
    const value = h("span", { class: "value", "data-path": t.path });
    showValue(value, t.value, t.label);
    const ctl = control(t);
    traitCells.set(t.path, { value, ctl, trait: t });
    body.append(h("tr", {},
      h("td", { class: "name" }, h("strong", {}, t.trait), h("div", { class: "muted" }, `${t.function} · endpoint ${t.endpoint}`)),
      h("td", { class: "current" }, value, t.spec.unit ? h("span", { class: "muted" }, ` ${t.spec.unit}`) : null),
      h("td", { class: "spec" }, specText(t.spec)),
      h("td", { class: "set" }, ctl.el),
      h("td", { class: "mqtt" }, t.topic ? h("span", { class: "topic" }, h("code", {}, t.topic), copyButton(t.topic)) : "")));
  }
  const entities = d.entities === null ? h("p", { class: "muted" }, "Home Assistant discovery is off.")
    : d.entities.length === 0 ? h("p", { class: "muted" }, "No entity announced for this device.")
      : h("ul", {}, d.entities.map((e) => h("li", {}, `${e.platform}: ${e.name ?? "(device name)"} `, h("code", {}, e.unique_id))));
  const events = d.events === null ? [] : [
    h("h2", {}, "Events"),
    h("p", {}, "Presses and gestures, never retained, on ", h("span", { class: "topic" }, h("code", {}, d.events.topic), copyButton(d.events.topic))),
    h("table", { id: "events-fired" },
      h("thead", {}, h("tr", {}, ["button", "endpoint", "events", "action"].map((t) => h("th", {}, t)))),
      h("tbody", {}, d.events.sources.map((s) => h("tr", {}, // data-label: the heading, on a phone
        h("td", { "data-label": "button" }, s.button), h("td", { "data-label": "endpoint" }, String(s.endpoint)),
        h("td", { "data-label": "events" }, s.event_types.join(", ")), h("td", { "data-label": "action" }, h("code", {}, s.actions.join(", "))))))),
  ];
  view.replaceChildren(
    h("p", {}, h("a", { href: "#/devices" }, "← all devices")),
    h("h1", {}, d.friendly_name, " ", h("span", { id: "device-availability" }, availability(d.available))),
    h("div", { class: "card" },
      h("div", {}, `hub name ${d.name} · model ${d.model || "—"} · backend ${d.backend}${d.room ? ` · room ${d.room}` : ""}`),
      h("div", { class: "muted" }, `id ${d.id} · topic level ${d.topic_name} · last change `, h("span", { id: "last-change" }, ago(d.last_change))),
      h("div", {}, h("a", { href: `#/events/${encodeURIComponent(d.id)}`, id: "device-events" }, "its events and log"))),
    h("table", { id: "traits" },
      h("thead", {}, h("tr", {}, ["trait", "value", "spec", "control", "MQTT topic"].map((t) => h("th", {}, t)))), body),
    ...events,
    h("h2", {}, "Home Assistant"), entities);
}

const eventFilter = { text: "", kind: "all", device: "" };
const KINDS = { all: "all kinds", value: "values", action: "presses", availability: "availability",
  device: "devices", log: "log", answer: "answers (writes, reads)" };

function answerText(m) { // a write's or read's answer, with what was asked and why it was refused
  const verb = m.topic.endsWith("/set") ? "write" : m.topic.endsWith("/get") ? "read" : "request";
  const asked = m.payload === undefined ? "" : ` ${show(m.payload)}`;
  return `${verb} ${m.topic}${asked}: ${m.status === "ok" ? "✓ done" : `✗ ${m.error}`}`;
}

function describe(m) { // a message of the daemon's history (or its live copy) as an event row
  const e = { kind: m.t, time: m.time, id: m.id, seq: m.seq };
  switch (m.t) {
    case "value":
      return { ...e, text: `${nameOf(m.id)} ${m.path} = ${m.label ?? show(m.value)}`, title: m.label === undefined ? undefined : `wire value ${show(m.value)}` };
    case "action": return { ...e, text: `${nameOf(m.id)} ${m.action}` };
    case "availability": return { ...e, text: `${nameOf(m.id)} is ${m.available ? "online" : "offline"}`, level: m.available ? "info" : "warning" };
    case "device": return { ...e, text: `${m.name} ${m.change}` };
    case "removed": return { ...e, kind: "device", text: `${nameOf(m.id)} removed` };
    case "log": return { ...e, text: `${m.message}${m.topic ? ` (${m.topic})` : ""}`, level: m.level };
    case "answer": return { ...e, text: answerText(m), level: m.status === "ok" ? "info" : "error" };
    default: return null;
  }
}

function eventRow(e) {
  return h("div", { class: `row kind-${e.kind}`, role: "row" },
    h("span", { class: "muted" }, new Date(e.time * 1000).toLocaleTimeString()),
    h("span", {}, h("span", { class: `pill ${e.level === "error" ? "bad" : e.level === "warning" ? "warn" : "muted"}` }, e.kind)),
    h("span", { class: "text", title: e.title }, e.text));
}

function eventMatches(e) {
  if (eventFilter.kind !== "all" && e.kind !== eventFilter.kind) return false;
  if (eventFilter.device && e.id !== eventFilter.device) return false;
  return !eventFilter.text || `${e.text} ${e.title || ""}`.toLowerCase().includes(eventFilter.text);
}

function eventsPage(device) {
  if (device !== null) eventFilter.device = device;
  const text = h("input", { type: "search", id: "event-filter", placeholder: "Filter…", value: eventFilter.text });
  const kind = h("select", { id: "event-kind", "aria-label": "kind" }, Object.entries(KINDS).map(([k, label]) => h("option", { value: k }, label)));
  kind.value = eventFilter.kind;
  const devices = [...state.devices.values()].sort((a, b) => byName.compare(a.friendly_name, b.friendly_name));
  const which = h("select", { id: "event-device", "aria-label": "device" }, h("option", { value: "" }, "all devices"),
    devices.map((d) => h("option", { value: d.id }, d.friendly_name)));
  which.value = eventFilter.device;
  if (which.value !== eventFilter.device) which.append(h("option", { value: eventFilter.device, selected: true }, eventFilter.device)); // gone since
  const body = h("div", { id: "event-rows", class: "rows" });
  const refill = () => {
    eventFilter.text = text.value.toLowerCase();
    eventFilter.kind = kind.value;
    eventFilter.device = which.value;
    const shown = state.events.filter(eventMatches).reverse().map(eventRow);
    body.replaceChildren(...(shown.length ? shown
      : [h("div", { class: "placeholder muted" }, state.events.length ? "Nothing matches these filters."
        : "Nothing yet: changes, device events, bridge/log lines and answers to writes appear here as they happen.")]));
  };
  text.addEventListener("input", refill);
  kind.addEventListener("change", refill);
  which.addEventListener("change", refill);
  view.replaceChildren(h("h1", {}, "Events and log"),
    h("div", { class: "toolbar" }, text, kind, which, h("span", { class: "muted", id: "event-limit" }, `the last ${state.maxEvents}, newest first`)),
    h("div", { class: "list events", id: "events", role: "table" }, body));
  refill();
}

async function homeAssistantPage() {
  const all = await api("api/entities");
  if (all === null) {
    view.replaceChildren(h("h1", {}, "Home Assistant"), h("p", { class: "muted" }, "Home Assistant discovery is off (homeassistant: enabled: false)."));
    return;
  }
  const body = h("tbody");
  for (const [id, entities] of Object.entries(all)) {
    const d = state.devices.get(id);
    entities.forEach((e, i) => body.append(h("tr", {},
      h("td", {}, i === 0 ? [h("a", { href: `#/device/${encodeURIComponent(id)}` }, d ? d.friendly_name : id),
        d && d.name !== d.friendly_name ? h("div", { class: "muted" }, d.name) : null] : ""),
      h("td", {}, e.platform), h("td", {}, e.name ?? "(device name)"), h("td", {}, h("code", {}, e.unique_id)))));
  }
  const total = Object.values(all).reduce((n, list) => n + list.length, 0);
  view.replaceChildren(h("h1", {}, "Home Assistant"),
    h("p", { class: "muted" }, `${total} entities and device triggers announced for ${Object.keys(all).length} devices`),
    h("table", { id: "entities" }, h("thead", {}, h("tr", {}, ["device", "platform", "entity", "unique id"].map((t) => h("th", {}, t)))), body));
}

// ---- live updates ---------------------------------------------------------------------------

let dirty = new Set(); // device ids whose list row needs repainting
let eventsDirty = 0; // events recorded since the events page was last painted
let statusDirty = false;
let frame = 0;

function schedule() {
  if (!frame) frame = requestAnimationFrame(paint);
}

function paintRow(id) {
  const row = rows.get(id);
  const d = state.devices.get(id);
  if (!row || !d) return;
  if (row.dataset.available !== String(d.available)) {
    row.dataset.available = String(d.available);
    row.querySelector(".avail").replaceChildren(availability(d.available));
  }
  const last = row.querySelector(".last");
  const text = ago(d.last_change);
  if (last.textContent !== text) last.textContent = text;
}

function paintEvents() {
  const body = document.getElementById("event-rows");
  const fresh = state.events.slice(state.events.length - Math.min(eventsDirty, state.maxEvents)).filter(eventMatches);
  if (!body || !fresh.length) return;
  body.querySelector(".placeholder")?.remove();
  body.prepend(...fresh.reverse().map(eventRow));
  while (body.childElementCount > state.maxEvents) body.lastElementChild.remove();
}

function paint() {
  frame = 0;
  const { page } = route();
  if (page === "devices") for (const id of dirty) paintRow(id);
  dirty.clear();
  if (page === "events" && eventsDirty) paintEvents();
  eventsDirty = 0;
  if (page === "bridge" && statusDirty) bridgePage();
  statusDirty = false;
}

function record(e) {
  state.events.push(e);
  if (state.events.length > state.maxEvents) state.events.splice(0, state.events.length - state.maxEvents);
  eventsDirty += 1;
}

function note(message) { // a live message the daemon keeps in its history: an event row, once
  if (!message.seq || message.seq <= state.shownSeq) return;
  const e = describe(message);
  if (e) record(e);
}

function nameOf(id) {
  const d = state.devices.get(id);
  return d ? d.friendly_name : id;
}

function apply(message) {
  note(message); // first: a removed device's name is still known
  switch (message.t) {
    case "value": {
      const d = state.devices.get(message.id);
      if (d) { d.last_change = message.time; dirty.add(message.id); }
      if (state.detail && state.detail.id === message.id) {
        const cell = traitCells.get(message.path);
        if (cell) {
          showValue(cell.value, message.value, message.label);
          cell.value.classList.remove("flash");
          void cell.value.offsetWidth; // restart the highlight
          cell.value.classList.add("flash");
          cell.ctl.set(message.value);
        }
        const last = document.getElementById("last-change");
        if (last) last.textContent = ago(message.time);
      }
      break;
    }
    case "availability": {
      const d = state.devices.get(message.id);
      if (d) { d.available = message.available; dirty.add(message.id); }
      if (state.detail && state.detail.id === message.id) {
        document.getElementById("device-availability").replaceChildren(availability(message.available));
      }
      break;
    }
    case "device": {
      state.devices.set(message.device.id, message.device);
      const row = rows.get(message.device.id);
      if (row) { // renamed or changed: its row drawn again
        const fresh = deviceRow(message.device);
        fresh.hidden = row.hidden;
        row.replaceWith(fresh);
        rows.set(message.device.id, fresh);
      } else if (route().page === "devices") devicesPage();
      break;
    }
    case "removed":
      state.devices.delete(message.id);
      rows.get(message.id)?.remove();
      rows.delete(message.id);
      break;
    case "status":
      statusDirty = true;
      break;
    case "resync":
      record({ kind: "log", text: "live updates were too fast for this page: reloaded", time: Date.now() / 1000, level: "warning" });
      load();
      return;
    default:
      break;
  }
  schedule();
}

function connect() {
  const url = new URL("ws", location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(url);
  const badge = document.getElementById("live");
  socket.addEventListener("open", () => {
    badge.className = "live on"; badge.textContent = "live";
    if (state.live) load(); // reconnected: the state again, and the daemon's history of meanwhile
    state.live = true;
  });
  socket.addEventListener("message", (event) => { for (const message of JSON.parse(event.data)) apply(message); });
  socket.addEventListener("close", () => {
    badge.className = "live off"; badge.textContent = "reconnecting…";
    setTimeout(connect, 2000);
  });
}

// ---- navigation -----------------------------------------------------------------------------

async function render() {
  const { page, arg } = route();
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.dataset.page === (page === "device" ? "devices" : page));
  if (page !== "device") state.detail = null;
  try {
    if (page === "bridge") await bridgePage();
    else if (page === "device") await devicePage(arg);
    else if (page === "events") eventsPage(arg);
    else if (page === "homeassistant") await homeAssistantPage();
    else devicesPage();
  } catch (error) {
    view.replaceChildren(h("p", { class: "bad" }, `Cannot load this page: ${error.message}`));
  }
  document.body.dataset.ready = page;
}

async function load() {
  const [devices, history] = await Promise.all([api("api/devices"), api("api/history")]);
  state.devices = new Map(devices.map((d) => [d.id, d]));
  loadHistory(history);
  await render();
}

function loadHistory(history) { // the daemon's last events, then what came live meanwhile
  const kept = history.entries.map(describe).filter(Boolean);
  const newest = kept.length ? kept[kept.length - 1].seq : state.shownSeq;
  state.events = [...kept, ...state.events.filter((e) => !e.seq || e.seq > newest)].slice(-history.limit);
  state.maxEvents = history.limit;
  state.shownSeq = newest;
  eventsDirty = 0;
}

window.addEventListener("hashchange", () => { scrollTo(0, 0); render(); }); // another page: from its top
setInterval(() => { // "N s ago" and the counters move on by themselves
  const { page } = route();
  if (page === "devices") for (const id of rows.keys()) dirty.add(id);
  if (page === "bridge") statusDirty = true;
  schedule();
}, 5000);
connect();
load();
