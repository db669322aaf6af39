// routerd dashboard: one page that reads and changes routerd through its admin API
// (/api/v1). No build step and no framework: pages are plain functions that build DOM nodes
// (never HTML strings, so route names and patterns cannot inject markup), chosen by the URL's
// hash. The admin token, when one is entered, lives in this tab's sessionStorage only.
"use strict";

const TOKEN_KEY = "routerd-admin-token";
const REFRESH_MS = 5000;
const LIVE_REFRESH_MS = 2000;
const CONDITIONS = ["path", "path_prefix", "host", "method", "header", "query_param", "cookie",
  "body_field", "body_regex", "remote_addr", "plugin"];
// Route fields the editor has inputs for; any other field is edited as JSON under "More".
const FORM_FIELDS = ["name", "target_url", "priority", "strip_prefix", "timeout_ms", "enabled",
  "default_rule", "matchers", "filters"];
const API_ADDED = ["version", "source", "status", "reason"];
const COLORS = ["#2759d8", "#d9480f", "#2b8a3e", "#862e9c", "#e67700", "#0b7285", "#c2255c", "#5c940d"];

// ---------------------------------------------------------------------------------------------
// DOM and API helpers
// ---------------------------------------------------------------------------------------------

/** Builds an element: h("a", {href: "#"}, "text", child, [more children]). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "value") el.value = v;
    else if (k === "checked") el.checked = !!v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of [children].flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

/** An API error with the server's code and, for validation errors, the field errors. */
class ApiError extends Error {
  constructor(status, doc, fallback) {
    super((doc && doc.message) || fallback);
    this.status = status;
    this.code = doc && doc.error;
    this.errors = (doc && doc.errors) || [];
  }
}

// Answers kept by ETag for `opts.revalidate` reads: an unchanged route listing comes back as
// a bodiless 304.
const kept = new Map();

/** Calls the admin API; resolves to {doc, resp}, rejects with an ApiError. */
async function api(method, path, opts = {}) {
  const headers = Object.assign({}, opts.headers || {});
  if (token()) headers.Authorization = "Bearer " + token();
  const old = opts.revalidate ? kept.get(path) : null;
  if (old) headers["If-None-Match"] = old.etag;
  let body = opts.body;
  if (body !== undefined && !(body instanceof Blob) && typeof body !== "string") {
    body = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  const resp = await fetch(path, { method, headers, body, cache: "no-store" });
  if (resp.status === 304 && old) return { doc: old.doc, resp };
  const text = await resp.text();
  let doc = null;
  if (text) {
    try { doc = JSON.parse(text); } catch (_) { doc = { message: text }; }
  }
  if (opts.revalidate && resp.ok && resp.headers.get("ETag")) {
    kept.set(path, { etag: resp.headers.get("ETag"), doc });
  }
  if (!resp.ok) {
    const err = new ApiError(resp.status, doc, `${resp.status} ${resp.statusText}`);
    if (resp.status === 401) showTokenPanel(err.message);
    throw err;
  }
  return { doc, resp };
}

let bannerSticky = false;
let bannerTimer = null;

/** Shows a message above the page; `sticky` keeps it over the next page change (a save that
 * then shows the saved route). */
function banner(message, kind, sticky) {
  const el = document.getElementById("banner");
  el.className = kind || "";
  el.hidden = !message;
  el.textContent = message || "";
  bannerSticky = !!sticky;
  clearTimeout(bannerTimer);
  // Good news fades; errors stay until the next page.
  if (message && kind === "info") bannerTimer = setTimeout(() => { el.hidden = true; }, 8000);
}

function fmtNum(v, digits) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  return Number(v).toLocaleString("en-US", { maximumFractionDigits: digits ?? 1 });
}

function fmtBytes(n) {
  if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + " MiB";
  if (n >= 1 << 10) return (n / (1 << 10)).toFixed(1) + " KiB";
  return n + " B";
}

function fmtSince(unixSecs) {
  if (!unixSecs) return "–";
  const secs = Math.max(0, Math.round(Date.now() / 1000 - unixSecs));
  const ago = secs < 90 ? `${secs} s` : secs < 5400 ? `${Math.round(secs / 60)} min` : `${Math.round(secs / 3600)} h`;
  return `${ago} ago`;
}

/** Asks `question` in `box` (beside the button that opened it), offering `button` or Cancel. */
function confirmIn(box, question, button) {
  replace(box, h("span", { class: "inline-confirm" }, question, " ", button,
    h("button", { type: "button", class: "secondary", onclick: () => box.replaceChildren() }, "Cancel")));
}

function badge(text, kind) { return h("span", { class: "badge " + (kind || text) }, text); }

/** A route's page; `source` picks one of two routes sharing a name (`name@api`). */
function routeHref(name, source) {
  return "#/routes/" + encodeURIComponent(name) + (source ? "@" + source : "");
}

/** A link to the route that serves `name`. */
function routeLink(name) { return h("a", { href: routeHref(name) }, name); }

function matcherText(m) {
  if (m.condition === "plugin") return `plugin ${m.plugin || "?"}(${(m.args || []).join(", ")})`;
  const op = m.is_regex ? " ~ " : m.field ? " = " : " ";
  return m.condition + (m.field ? " " + m.field : "") + (m.pattern !== undefined ? op + m.pattern : "");
}

function matchersSummary(rule) {
  if (rule.default_rule) return "default rule";
  return (rule.matchers || []).map(matcherText).join(" · ");
}

/** The route as the API takes it back: without the fields the API adds. */
function ruleOf(view) {
  const rule = Object.assign({}, view);
  for (const k of API_ADDED) delete rule[k];
  return rule;
}

// ---------------------------------------------------------------------------------------------
// Page switching and timers
// ---------------------------------------------------------------------------------------------

let timers = [];

// Each page draws into a root of its own, made when it is opened: a page still loading when
// the user moves on writes into a detached root, and its timers stop themselves.
let currentRoot = null;

/** Runs `fn` every `ms` while the page of `root` is the one shown. */
function every(root, ms, fn) {
  if (!root.isConnected) return;
  const id = setInterval(() => (root.isConnected ? fn() : clearInterval(id)), ms);
  timers.push(id);
}

/** Loads the page of `root` now, then again every `ms` while it is shown; a failed refresh
 * says so in the banner and the page keeps what it last drew. */
async function keepLoading(root, ms, what, load) {
  await load();
  every(root, ms, () => load().catch((e) => banner(`Cannot refresh ${what}: ${e.message}`)));
}

function leavePage() {
  for (const t of timers) clearInterval(t);
  timers = [];
  if (currentRoot) for (const c of currentRoot.charts) c.destroy();
}

const PAGES = {
  routes: (arg) => arg ? routePage(arg) : routesPage(),
  new: () => editorPage(null),
  edit: (arg) => editorPage(arg),
  plugins: () => pluginsPage(),
  explain: () => explainPage(),
  health: () => healthPage(),
  live: () => livePage(),
  cluster: () => clusterPage(),
};

function render() {
  leavePage();
  const [, page = "routes", ...rest] = location.hash.split("/");
  const arg = rest.length ? decodeURIComponent(rest.join("/")) : null;
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", a.dataset.page === page || (page === "new" || page === "edit") && a.dataset.page === "routes");
  }
  const root = h("div", { class: "page", dataset: { page } }, h("p", { class: "muted" }, "Loading…"));
  // The page's uPlot charts, destroyed when it is left.
  root.charts = [];
  replace(document.getElementById("main"), root);
  currentRoot = root;
  const draw = PAGES[page] || routesPage;
  Promise.resolve(draw(arg)).catch((e) => {
    replace(root, h("h1", {}, "Cannot show this page"), h("p", { class: "field-error" }, e.message));
  });
}

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

async function allRoutes() {
  let routes = [];
  for (let offset = 0; ;) {
    const { doc } = await api("GET", `/api/v1/routes?offset=${offset}&limit=1000`, { revalidate: true });
    routes = routes.concat(doc.routes);
    offset += doc.routes.length;
    if (!doc.routes.length || offset >= doc.total) return routes;
  }
}

/** Each checked backend's health; none when the list cannot be read (a page shows "–"). */
async function healthList() {
  try { return (await api("GET", "/api/v1/health")).doc.routes; } catch (_) { return []; }
}

async function liveSummary() {
  try { return (await api("GET", "/api/v1/live?summary=true")).doc; } catch (_) { return { routes: {}, times: [], window_s: 300 }; }
}

const routesState = { sort: "name", desc: false, filter: "", status: "" };
// Rows drawn at most; a larger table is narrowed with the filter (every refresh redraws them).
const MAX_ROWS = 500;

const ROUTE_COLUMNS = [
  { key: "name", label: "Name", get: (r) => r.name },
  { key: "matchers", label: "Matchers", get: (r) => matchersSummary(r) },
  { key: "target", label: "Target", get: (r) => r.target_url || "" },
  { key: "priority", label: "Priority", get: (r) => r.priority || 0, num: true },
  { key: "source", label: "Source", get: (r) => r.source },
  { key: "status", label: "Status", get: (r) => r.status },
  { key: "version", label: "Version", get: (r) => r.version, num: true },
  { key: "backend", label: "Backend", get: (r) => r.health ? r.health.status : "" },
  { key: "rps", label: "Req/s", get: (r) => r.live ? r.live.rps_1m : 0, num: true },
  { key: "p99", label: "p99 ms", get: (r) => r.live && r.live.p99_ms_1m !== null ? r.live.p99_ms_1m : -1, num: true },
];

async function routesPage() {
  const main = currentRoot;
  const tbody = h("tbody", { id: "routes-body" });
  const count = h("span", { class: "muted", id: "routes-count" });
  const head = h("tr", {}, ROUTE_COLUMNS.map((c) => h("th", {
    class: "sortable" + (c.num ? " num" : ""), dataset: { key: c.key },
    onclick: () => {
      routesState.desc = routesState.sort === c.key ? !routesState.desc : !!c.num;
      routesState.sort = c.key;
      draw();
    },
  }, c.label)));
  let routes = [];
  const draw = () => {
    for (const th of head.children) {
      th.classList.toggle("sorted-asc", th.dataset.key === routesState.sort && !routesState.desc);
      th.classList.toggle("sorted-desc", th.dataset.key === routesState.sort && routesState.desc);
    }
    const needle = routesState.filter.toLowerCase();
    const col = ROUTE_COLUMNS.find((c) => c.key === routesState.sort) || ROUTE_COLUMNS[0];
    const shown = routes
      .filter((r) => !routesState.status || r.status === routesState.status)
      .filter((r) => !needle || [r.name, r.target_url, matchersSummary(r), r.reason]
        .some((s) => (s || "").toLowerCase().includes(needle)))
      .sort((a, b) => {
        const x = col.get(a), y = col.get(b);
        const c = typeof x === "number" ? x - y : String(x).localeCompare(String(y));
        return routesState.desc ? -c : c;
      });
    const drawn = shown.slice(0, MAX_ROWS);
    replace(tbody, drawn.map((r) => h("tr", { dataset: { route: r.name, source: r.source } },
      h("td", {}, h("a", { href: r.href }, r.name)),
      h("td", { class: "mono" }, matchersSummary(r)),
      h("td", { class: "mono" }, r.target_url || "–"),
      h("td", { class: "num" }, r.priority || 0),
      h("td", {}, badge(r.source)),
      h("td", {}, badge(r.status), r.reason ? h("span", { class: "reason" }, r.reason) : null),
      h("td", { class: "num" }, r.version),
      h("td", { dataset: { col: "backend" }, title: r.health ? `${r.health.target}, since ${fmtSince(r.health.since)}` : "" },
        r.health ? badge(r.health.status) : h("span", { class: "muted" }, "–")),
      h("td", { class: "num", dataset: { col: "rps" } }, fmtNum(r.live && r.live.rps_1m, 1)),
      h("td", { class: "num", dataset: { col: "p99" } }, fmtNum(r.live && r.live.p99_ms_1m, 2)),
    )));
    count.textContent = `${shown.length} of ${routes.length} routes` +
      (drawn.length < shown.length ? `, the first ${drawn.length} shown: filter to narrow` : "");
  };
  const load = async () => {
    const [list, live, health] = await Promise.all([allRoutes(), liveSummary(),
      healthList()]);
    const byRoute = new Map(health.map((x) => [x.route, x]));
    const counts = new Map();
    for (const r of list) counts.set(r.name, (counts.get(r.name) || 0) + 1);
    // Health and traffic are by name and belong to the route that serves it, never to an
    // excluded route sharing the name.
    const serving = (r) => r.status !== "excluded";
    routes = list.map((r) => Object.assign(r, {
      live: serving(r) ? live.routes[r.name] || null : null,
      health: serving(r) ? byRoute.get(r.name) || null : null,
      href: routeHref(r.name, counts.get(r.name) > 1 ? r.source : null),
    }));
    draw();
  };
  const statusSelect = h("select", {
    id: "routes-status",
    onchange: (e) => { routesState.status = e.target.value; draw(); },
  }, ["", "active", "disabled", "excluded"].map((s) => h("option", { value: s }, s || "any status")));
  statusSelect.value = routesState.status;
  replace(main,
    h("h1", {}, "Routes", count),
    h("div", { class: "toolbar" },
      h("input", {
        id: "routes-filter", type: "search", placeholder: "Filter by name, matcher, target…",
        value: routesState.filter, class: "grow",
        oninput: (e) => { routesState.filter = e.target.value; draw(); },
        onchange: (e) => { routesState.filter = e.target.value; draw(); },
      }),
      statusSelect,
      h("a", { href: "#/new" }, h("button", { type: "button", id: "new-route" }, "New route"))),
    h("table", { id: "routes-table" }, h("thead", {}, head), tbody),
    h("p", { class: "muted" }, "Req/s and p99 are over the last minute, from the live view."));
  await keepLoading(main, REFRESH_MS, "the routes", load);
}

async function routePage(arg) {
  const main = currentRoot;
  // Route names never hold "@": "name@api" is the API route of a name the file also has.
  const [name, source] = arg.split("@");
  const path = "/api/v1/routes/" + encodeURIComponent(name);
  const livePath = "/api/v1/live?route=" + encodeURIComponent(name);
  const [{ doc: named }, { doc: live }, health] = await Promise.all([
    api("GET", "/api/v1/routes?name=" + encodeURIComponent(name)), api("GET", livePath),
    healthList(),
  ]);
  const view = named.routes.find((r) => !source || r.source === source);
  if (!view) throw new Error(`no route named ${name}` + (source ? ` from the ${source}` : ""));
  const shadowed = view.source === "file" && named.routes.some((r) => r.source === "api" && r.status === "excluded");
  const serving = view.status !== "excluded";
  const l = serving ? live.routes[name] : null;
  const hc = serving ? health.find((x) => x.route === name) : null;
  const isApi = view.source === "api" && !view.system;
  const actions = h("div", { class: "toolbar", id: "route-actions" });
  if (isApi) {
    const toggle = async () => {
      const rule = ruleOf(view);
      rule.enabled = !view.enabled;
      try {
        await api("PUT", path, { body: rule, headers: { "If-Match": `"${view.version}"` } });
        banner(`Route ${name} ${rule.enabled ? "enabled" : "disabled"}.`, "info");
        render();
      } catch (e) { banner("Not changed: " + e.message); }
    };
    const confirmBox = h("span", {});
    const remove = async () => {
      try {
        await api("DELETE", path, { headers: { "If-Match": `"${view.version}"` } });
        banner(`Route ${name} deleted.`, "info", true);
        location.hash = "#/routes";
      } catch (e) { banner("Not deleted: " + e.message); }
    };
    const ask = () => confirmIn(confirmBox, `Delete route ${name}? This cannot be undone.`,
      h("button", { type: "button", class: "danger", id: "confirm-delete", onclick: remove }, "Delete"));
    // While the file has this name the API refuses to change its API route (it may only be
    // deleted), so only Delete is offered.
    const fileHasName = named.routes.some((r) => r.source === "file");
    append(actions, [
      fileHasName ? h("span", { class: "muted", id: "route-file-owns" },
        "The config file defines this name, so this API route cannot be edited; delete it, or remove the file's route to serve it again.") : [
        h("a", { href: "#/edit/" + encodeURIComponent(name) }, h("button", { type: "button", id: "edit-route" }, "Edit")),
        h("button", { type: "button", class: "secondary", id: "toggle-route", onclick: toggle }, view.enabled ? "Disable" : "Enable"),
      ],
      h("button", { type: "button", class: "danger", id: "delete-route", onclick: ask }, "Delete"),
      confirmBox,
    ]);
  } else {
    append(actions, h("span", { class: "muted" }, view.system
      ? "A system route: it cannot be changed through the API."
      : "Defined in the config file: change it there (routerd reloads the file on save)."));
  }
  replace(main,
    h("h1", {}, h("a", { href: "#/routes" }, "Routes"), " / ", name, badge(view.status), badge(view.source)),
    view.reason ? h("p", { class: "reason" }, view.reason) : null,
    shadowed ? h("p", { class: "muted", id: "route-twin" }, "An API route of this name is stored but excluded while the file has it: ",
      h("a", { href: routeHref(name, "api") }, "see it")) : null,
    actions,
    h("div", { class: "card" }, h("dl", { class: "kv" },
      h("dt", {}, "Target"), h("dd", { class: "mono" }, view.target_url
        || (view.targets ? `${view.targets.length} endpoints, ${(view.balance && view.balance.policy) || "round_robin"}` : "–")),
      h("dt", {}, "Matchers"), h("dd", { class: "mono" }, matchersSummary(view) || "–"),
      h("dt", {}, "Priority"), h("dd", {}, view.priority || 0),
      h("dt", {}, "Version"), h("dd", {}, view.version),
      h("dt", {}, "Req/s (1 min)"), h("dd", {}, fmtNum(l && l.rps_1m, 1)),
      h("dt", {}, "p99 (1 min)"), h("dd", {}, l && l.p99_ms_1m !== null ? fmtNum(l.p99_ms_1m, 2) + " ms" : "–"),
      h("dt", {}, "Backend"), h("dd", {}, hc ? [badge(hc.status), ` ${hc.target}, since ${fmtSince(hc.since)}`] : "not checked"))),
    hc && hc.endpoints && hc.endpoints.length > 1 ? [
      h("h2", {}, "Endpoints"),
      h("div", { class: "card" }, h("table", { id: "route-endpoints" },
        h("thead", {}, h("tr", {}, ["Endpoint", "Weight", "Health", "Ejected", "In flight"].map((c) => h("th", {}, c)))),
        h("tbody", {}, hc.endpoints.map((e) => h("tr", {},
          h("td", { class: "mono" }, e.target),
          h("td", {}, e.weight),
          h("td", {}, badge(e.status)),
          h("td", {}, e.ejected_ms ? `for ${Math.ceil(e.ejected_ms / 1000)} s` : "–"),
          h("td", {}, e.outstanding)))))),
    ] : null,
    h("h2", {}, "Last 5 minutes"),
    h("div", { class: "card chart", id: "route-chart" }),
    h("h2", {}, "JSON"),
    h("pre", { class: "json", id: "route-json" }, JSON.stringify(view, null, 2)));
  const box = document.getElementById("route-chart");
  const drawChart = (doc) => {
    const r = doc.routes[name];
    const xs = doc.times.map((t) => t / 1000);
    const data = [xs, r ? r.rps : xs.map(() => 0), r ? r.p99_ms : xs.map(() => null)];
    if (main.charts.length) { main.charts[0].setData(data); return; }
    main.charts.push(new uPlot({
      width: Math.max(400, box.clientWidth - 32), height: 220,
      scales: { x: { time: true, range: () => { const now = Date.now() / 1000; return [now - doc.window_s, now]; } }, ms: {} },
      axes: [{}, { label: "req/s", size: 60 }, { scale: "ms", side: 1, label: "p99 ms", size: 60, grid: { show: false } }],
      series: [{}, { label: "req/s", stroke: COLORS[0], width: 2 }, { label: "p99 ms", scale: "ms", stroke: COLORS[1], width: 2, points: { show: true, size: 5 } }],
    }, data, box));
  };
  drawChart(live);
  every(main, LIVE_REFRESH_MS, () => api("GET", livePath).then((x) => drawChart(x.doc)).catch(() => {}));
}

// ---------------------------------------------------------------------------------------------
// Route editor
// ---------------------------------------------------------------------------------------------

function argsText(args) { return (args || []).length ? JSON.stringify(args) : ""; }

/** Arguments as typed: a JSON array, or a comma-separated list. */
function parseArgs(text, field) {
  const t = text.trim();
  if (!t) return [];
  if (t.startsWith("[")) {
    let v;
    try { v = JSON.parse(t); } catch (e) { throw fieldError(field, "not a JSON array: " + e.message); }
    if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) throw fieldError(field, "must be an array of strings");
    return v;
  }
  return t.split(",").map((s) => s.trim());
}

function fieldError(field, reason) {
  const e = new Error(reason);
  e.errors = [{ field, reason }];
  return e;
}

function matcherRow(m, list) {
  const row = h("div", { class: "row matcher", dataset: { kind: "matcher" } },
    h("div", {}, h("select", { dataset: { part: "condition" } },
      CONDITIONS.map((c) => h("option", { value: c }, c)))),
    h("div", {}, h("input", { class: "narrow", placeholder: "field", dataset: { part: "field" }, value: m.field || "" })),
    h("div", {}, h("input", { class: "wide", placeholder: "pattern", dataset: { part: "pattern" }, value: m.pattern ?? "" })),
    h("label", { class: "muted" }, h("input", { type: "checkbox", dataset: { part: "is_regex" }, checked: m.is_regex }), " regex"),
    h("div", {}, h("input", { class: "narrow", placeholder: "plugin", dataset: { part: "plugin" }, value: m.plugin || "" })),
    h("div", {}, h("input", { class: "narrow", placeholder: "args (a, b)", dataset: { part: "args" }, value: argsText(m.args) })),
    h("button", { type: "button", class: "secondary", onclick: () => { row.remove(); renumber(list); } }, "Remove"));
  row.querySelector("select").value = m.condition || "path_prefix";
  return row;
}

function filterRow(f, list) {
  const row = h("div", { class: "row filter", dataset: { kind: "filter" } },
    h("div", {}, h("select", { dataset: { part: "kind" } },
      h("option", { value: "name" }, "built-in"), h("option", { value: "plugin" }, "plugin"))),
    h("div", {}, h("input", { class: "narrow", placeholder: "name", dataset: { part: "which" }, value: f.plugin || f.name || "" })),
    h("div", {}, h("input", { class: "wide", placeholder: 'args (a, b) or ["a", "b"]', dataset: { part: "args" }, value: argsText(f.args) })),
    h("button", { type: "button", class: "secondary", onclick: () => { row.remove(); renumber(list); } }, "Remove"));
  row.querySelector("select").value = f.plugin ? "plugin" : "name";
  return row;
}

/** Gives each row's inputs the field names the API's errors use (matchers[1].pattern ...). */
function renumber(list) {
  const kind = list.dataset.field;
  [...list.children].forEach((row, i) => {
    row.dataset.field = `${kind}[${i}]`;
    for (const input of row.querySelectorAll("[data-part]")) {
      const part = input.dataset.part === "which" ? "name" : input.dataset.part;
      input.dataset.field = `${kind}[${i}].${part}`;
    }
  });
}

async function editorPage(name) {
  const main = currentRoot;
  let view = null;
  // Only API routes are edited, and the file may have a route of the same name.
  if (name) view = (await api("GET", "/api/v1/routes/" + encodeURIComponent(name) + "?source=api")).doc;
  const rule = view ? ruleOf(view) : { name: "", priority: 0, enabled: true, matchers: [{ condition: "path_prefix", pattern: "/" }] };
  const other = {};
  for (const [k, v] of Object.entries(rule)) if (!FORM_FIELDS.includes(k)) other[k] = v;
  const input = (field, attrs) => h("div", {}, h("input", Object.assign({ id: "f-" + field, dataset: { field } }, attrs)));
  const matchers = h("div", { class: "rows", id: "f-matchers", dataset: { field: "matchers" } });
  for (const m of rule.matchers || []) matchers.append(matcherRow(m, matchers));
  const filters = h("div", { class: "rows", id: "f-filters", dataset: { field: "filters" } });
  for (const f of rule.filters || []) filters.append(filterRow(f, filters));
  renumber(matchers);
  renumber(filters);
  const general = h("div", { id: "form-errors", class: "field-error" });
  const form = h("form", { id: "route-form", class: "card", novalidate: true },
    h("div", { class: "form-grid" },
      h("label", { for: "f-name" }, "Name"), input("name", { value: rule.name, placeholder: "letters, digits, - and _" }),
      h("label", { for: "f-target_url" }, "Target URL"), input("target_url", { value: rule.target_url || "", placeholder: "http://host:port/base", class: "wide" }),
      h("label", { for: "f-priority" }, "Priority"), input("priority", { type: "number", value: rule.priority ?? 0 }),
      h("label", { for: "f-strip_prefix" }, "Strip prefix"), input("strip_prefix", { value: rule.strip_prefix || "", placeholder: "/api" }),
      h("label", { for: "f-timeout_ms" }, "Timeout (ms)"), input("timeout_ms", { type: "number", value: rule.timeout_ms ?? "" }),
      h("label", {}, "Flags"), h("div", {},
        h("label", {}, h("input", { type: "checkbox", id: "f-enabled", dataset: { field: "enabled" }, checked: rule.enabled !== false }), " enabled "),
        h("label", {}, h("input", { type: "checkbox", id: "f-default_rule", dataset: { field: "default_rule" }, checked: rule.default_rule }), " default rule")),
      h("label", {}, "Matchers"), h("div", {}, matchers,
        h("button", { type: "button", class: "secondary", id: "add-matcher", onclick: () => { matchers.append(matcherRow({}, matchers)); renumber(matchers); } }, "Add matcher")),
      h("label", {}, "Filters"), h("div", {}, filters,
        h("button", { type: "button", class: "secondary", id: "add-filter", onclick: () => { filters.append(filterRow({}, filters)); renumber(filters); } }, "Add filter")),
      h("label", { for: "f-other" }, "More (JSON)"), h("div", {},
        h("textarea", { id: "f-other", rows: 4, dataset: { field: "other" } }, JSON.stringify(other, null, 2)),
        h("span", { class: "muted" }, "Other route fields: consumes, produces, upstream_protocol, tls_ca_file, tls_server_name …"))),
    general,
    h("div", { class: "toolbar" },
      h("button", { type: "submit", id: "save-route" }, view ? "Save" : "Create route"),
      h("button", { type: "button", class: "secondary", id: "dry-run-route", onclick: () => dryRun() }, "Dry run"),
      h("a", { href: view ? routeHref(name, view.status === "excluded" ? "api" : null) : "#/routes" }, "Cancel"),
      view ? h("span", { class: "muted" }, `Editing version ${view.version}; saving checks nobody saved in between.`) : null));
  const dryRunBox = h("div", { id: "dry-run" });
  // What saving would do to recently seen requests, before anything is saved.
  const dryRun = async () => {
    clearErrors(form);
    replace(dryRunBox);
    let body;
    try { body = collectRule(form, matchers, filters); } catch (e) { showErrors(form, general, e); return; }
    try {
      const { doc } = view
        ? await api("PUT", "/api/v1/routes/" + encodeURIComponent(name) + "?dry_run=true", { body, headers: { "If-Match": `"${view.version}"` } })
        : await api("POST", "/api/v1/routes?dry_run=true", { body });
      replace(dryRunBox, dryRunReport(doc));
    } catch (e) { showErrors(form, general, e); }
  };
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    let body;
    try { body = collectRule(form, matchers, filters); } catch (e) { showErrors(form, general, e); return; }
    try {
      const { doc } = view
        ? await api("PUT", "/api/v1/routes/" + encodeURIComponent(name), { body, headers: { "If-Match": `"${view.version}"` } })
        : await api("POST", "/api/v1/routes", { body });
      banner(`Route ${doc.name} saved (version ${doc.version}).`, "info", true);
      location.hash = routeHref(doc.name, doc.status === "excluded" ? "api" : null);
    } catch (e) {
      if (e.status === 412) e.message = e.message.replace(/\.?$/, ".") + " Someone saved this route after you opened it: reload the page to see their change, then edit again.";
      showErrors(form, general, e);
    }
  });
  replace(main, h("h1", {}, h("a", { href: "#/routes" }, "Routes"), " / ", view ? `Edit ${name}` : "New route"), form, dryRunBox);
}

function outcomeText(o) { return o.target ? `${o.route} (${o.target})` : o.route; }

/** A dry run's answer: the moved requests by group, with examples, and unreachable routes. */
function dryRunReport(doc) {
  const card = h("div", { class: "card" }, h("h2", {}, "Dry run: nothing was saved"));
  if (!doc.sample) card.append(h("p", { class: "muted" }, "routerd keeps no request sample (--sample-every 0): only unreachable routes are checked."));
  else card.append(h("p", { id: "dry-run-summary" }, `${doc.moved} of ${doc.replayed} recently sampled requests would move.`));
  if (doc.groups.length) {
    card.append(h("table", { id: "dry-run-groups" },
      h("thead", {}, h("tr", {}, h("th", {}, "Requests"), h("th", {}, "Now"), h("th", {}, "After"), h("th", {}, "For example"))),
      h("tbody", {}, doc.groups.map((g) => h("tr", {},
        h("td", { class: "num" }, fmtNum(g.count, 0)),
        h("td", {}, outcomeText(g.from)),
        h("td", {}, outcomeText(g.to)),
        h("td", { class: "mono" }, g.examples.map((e) => h("div", {}, `${e.method} ${e.host || ""}${e.path}${e.query ? "?" + e.query : ""}`))))))));
  }
  if (doc.no_longer_reached.length) card.append(h("p", {}, "No sampled request would reach: ", doc.no_longer_reached.map((r, i) => [i ? ", " : "", routeLink(r)])));
  if (doc.unreachable.length) {
    card.append(h("p", { id: "dry-run-unreachable" }, "Unreachable routes: ",
      doc.unreachable.map((u, i) => [i ? ", " : "", h("b", {}, u.route), ` (behind ${u.shadowed_by}${u.new ? ", by this change" : ""})`])));
  }
  if (doc.uncertain) card.append(h("p", { class: "muted" }, `${doc.uncertain} sampled requests carry sealed secrets a regex matcher reads: their replay may differ.`));
  return card;
}

function collectRule(form, matchers, filters) {
  const val = (id) => form.querySelector("#f-" + id).value.trim();
  const num = (id) => {
    const v = val(id);
    if (v === "") return undefined;
    const n = Number(v);
    if (!Number.isInteger(n)) throw fieldError(id, "must be a whole number");
    return n;
  };
  let other = {};
  const otherText = val("other");
  if (otherText) {
    try { other = JSON.parse(otherText); } catch (e) { throw fieldError("other", "not JSON: " + e.message); }
    if (typeof other !== "object" || Array.isArray(other) || other === null) throw fieldError("other", "must be a JSON object");
  }
  const rule = Object.assign({}, other, {
    name: val("name"),
    priority: num("priority") ?? 0,
    enabled: form.querySelector("#f-enabled").checked,
    default_rule: form.querySelector("#f-default_rule").checked,
  });
  if (val("target_url")) rule.target_url = val("target_url");
  if (val("strip_prefix")) rule.strip_prefix = val("strip_prefix");
  const timeout = num("timeout_ms");
  if (timeout !== undefined) rule.timeout_ms = timeout;
  rule.matchers = [...matchers.children].map((row, i) => {
    const part = (p) => row.querySelector(`[data-part="${p}"]`);
    const m = { condition: part("condition").value };
    for (const k of ["field", "pattern", "plugin"]) if (part(k).value !== "") m[k] = part(k).value;
    if (part("is_regex").checked) m.is_regex = true;
    const args = parseArgs(part("args").value, `matchers[${i}].args`);
    if (args.length) m.args = args;
    return m;
  });
  rule.filters = [...filters.children].map((row, i) => {
    const part = (p) => row.querySelector(`[data-part="${p}"]`);
    return { [part("kind").value]: part("which").value.trim(), args: parseArgs(part("args").value, `filters[${i}].args`) };
  });
  return rule;
}

function clearErrors(form) {
  for (const e of form.querySelectorAll(".field-error[data-for]")) e.remove();
  for (const e of form.querySelectorAll(".invalid")) e.classList.remove("invalid");
  form.querySelector("#form-errors").textContent = "";
}

/** Puts each error next to the input of the field it names, or the nearest enclosing one. */
function showErrors(form, general, e) {
  const errors = e.errors && e.errors.length ? e.errors : [];
  if (!errors.length) general.textContent = e.message;
  for (const err of errors) {
    // matchers[1].args[0] -> matchers[1].args -> matchers[1] -> matchers
    const parent = (f) => { const p = f.replace(/(\[\d+\]|\.[^.[\]]+)$/, ""); return p === f ? "" : p; };
    let target = null;
    for (let field = err.field || ""; field && !target; field = parent(field)) {
      target = form.querySelector(`[data-field="${CSS.escape(field)}"]`);
    }
    if (!target && err.field && !FORM_FIELDS.includes(err.field.split(/[.[]/)[0])) {
      target = form.querySelector('[data-field="other"]');
    }
    if (!target) {
      general.append(h("div", {}, err.field ? `${err.field}: ${err.reason}` : err.reason));
      continue;
    }
    target.classList.add("invalid");
    const note = h("div", { class: "field-error", dataset: { for: err.field } }, err.reason);
    (target.closest(".row > div, .form-grid > div") || target.parentElement).append(note);
  }
}

// ---------------------------------------------------------------------------------------------
// Plugins
// ---------------------------------------------------------------------------------------------

async function pluginsPage() {
  const main = currentRoot;
  const tbody = h("tbody", { id: "plugins-body" });
  const load = async () => {
    const { doc } = await api("GET", "/api/v1/plugins");
    replace(tbody, doc.plugins.length ? doc.plugins.map((p) => [pluginRow(p, load), trialRow(p, load)]) :
      h("tr", {}, h("td", { colspan: 14, class: "muted" }, "No plugins loaded.")));
  };
  const nameInput = h("input", { id: "plugin-name", placeholder: "name (default: the file's name)" });
  const fileInput = h("input", { id: "plugin-file", type: "file", accept: ".wasm,application/wasm" });
  const status = h("span", { id: "upload-status", class: "muted" });
  const upload = async (file) => {
    if (!file) return;
    const name = nameInput.value.trim() || file.name.replace(/\.wasm$/i, "");
    status.textContent = `Uploading ${file.name} as ${name}…`;
    try {
      const { doc } = await api("POST", "/api/v1/plugins?name=" + encodeURIComponent(name), {
        body: file, headers: { "Content-Type": "application/wasm" },
      });
      status.textContent = `Loaded ${doc.name} (${doc.kind}, ${fmtBytes(doc.size)}).`;
      nameInput.value = "";
      fileInput.value = "";
      await load();
    } catch (e) { status.textContent = ""; banner(`Plugin ${name} not loaded: ${e.message}`); }
  };
  fileInput.addEventListener("change", () => upload(fileInput.files[0]));
  const zone = h("div", { class: "dropzone", id: "plugin-drop" },
    h("p", {}, "Drop a ", h("code", {}, ".wasm"), " component here, or ", fileInput),
    h("p", {}, nameInput, " ", status));
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    upload(e.dataTransfer.files[0]);
  });
  replace(main,
    h("h1", {}, "Plugins"),
    zone,
    h("table", { id: "plugins-table" },
      h("thead", {}, h("tr", {}, ["Name", "Kind", "Language", "sha256", "Size", "Load ms", "Used by", "Calls", "Traps",
        "Deadline hits", "Memory-cap hits", "Refused results", "Breaker", ""].map((t, i) =>
        h("th", { class: i >= 7 && i <= 11 ? "num" : "" }, t)))),
      tbody));
  await keepLoading(main, REFRESH_MS, "the plugins", load);
}

/** A plugin's trial version (shadow or canary) under its row: agreement per route, examples of
 * where it differs, a canary's failures beside the live version's, and promote / discard. */
function trialRow(p, reload) {
  const t = p.trial;
  if (!t) return null;
  const act = async (what) => {
    try {
      await api("POST", `/api/v1/plugins/${encodeURIComponent(p.name)}/${what}`);
      banner(`Trial version of ${p.name} ${what === "promote" ? "promoted" : "discarded"}.`, "info");
      await reload();
    } catch (e) { banner(`Not done: ${e.message}`); }
  };
  const routes = Object.entries(t.routes);
  return h("tr", { class: "trial", dataset: { trial: p.name } },
    h("td", { colspan: 14 },
      h("b", {}, t.mode), " ", h("span", { class: "mono", title: t.sha256 }, t.sha256.slice(0, 12) + "…"),
      ` — its calls ${fmtNum(t.calls, 0)}, traps ${fmtNum(t.traps, 0)}, deadline hits ${fmtNum(t.deadline_hits, 0)}`,
      t.mode.startsWith("canary") ? ` — canary ${t.trial_failures}/${t.trial_calls} failed, live ${t.live_failures}/${t.live_calls}` : null,
      t.rolled_back ? h("div", {}, badge("rolled back", "down"), " ", t.rolled_back) : null,
      routes.length ? h("table", {},
        h("thead", {}, h("tr", {}, ["Route", "Agreed", "Diverged", "Trial failed", "Differs on"].map((c) => h("th", {}, c)))),
        h("tbody", {}, routes.map(([route, c]) => h("tr", {},
          h("td", {}, routeLink(route)),
          h("td", { class: "num" }, fmtNum(c.agreed, 0)),
          h("td", { class: "num" }, fmtNum(c.diverged, 0)),
          h("td", { class: "num" }, fmtNum(c.trial_failed, 0)),
          h("td", { class: "mono" }, c.examples.map((e) => h("div", {}, `${e.method} ${e.path}${e.query ? "?" + e.query : ""}: live ${e.live}, trial ${e.trial}`))))))) : null,
      h("div", { class: "toolbar" },
        h("button", { type: "button", dataset: { action: "promote" }, onclick: () => act("promote") }, "Promote"),
        h("button", { type: "button", class: "secondary", dataset: { action: "discard" }, onclick: () => act("discard") }, "Discard"))));
}

function pluginRow(p, reload) {
  const confirmBox = h("span", {});
  const unload = async (force) => {
    try {
      await api("DELETE", `/api/v1/plugins/${encodeURIComponent(p.name)}${force ? "?force=true" : ""}`);
      banner(`Plugin ${p.name} unloaded.`, "info");
      await reload();
    } catch (e) {
      if (e.code === "plugin_in_use") {
        confirmIn(confirmBox, e.message,
          h("button", { type: "button", class: "danger", onclick: () => unload(true) }, "Unload anyway"));
      } else banner("Not unloaded: " + e.message);
    }
  };
  const ask = () => confirmIn(confirmBox, `Unload ${p.name}?`,
    h("button", { type: "button", class: "danger", dataset: { action: "confirm-unload" }, onclick: () => unload(false) }, "Unload"));
  const loadMs = p.compile_ms + p.instantiate_ms;
  return h("tr", { dataset: { plugin: p.name } },
    h("td", {}, h("b", {}, p.name)),
    h("td", {}, p.kind, h("div", { class: "muted" }, p.engine)),
    h("td", { title: p.built_with.length ? "built with " + p.built_with.join(", ") : "" },
      p.languages.length ? p.languages.join(", ") : h("span", { class: "muted" }, "not declared")),
    h("td", { class: "mono", title: p.sha256 }, p.sha256.slice(0, 12) + "…"),
    h("td", {}, fmtBytes(p.size)),
    h("td", { title: `compile ${fmtNum(p.compile_ms, 1)} ms + instantiate ${fmtNum(p.instantiate_ms, 1)} ms` },
      fmtNum(loadMs, 1), p.compiled_from_cache ? h("div", { class: "muted" }, "from cache") : null),
    h("td", {}, p.used_by.length ? p.used_by.map((r, i) => [i ? ", " : "", routeLink(r)]) : h("span", { class: "muted" }, "none")),
    h("td", { class: "num" }, fmtNum(p.calls, 0)),
    h("td", { class: "num" }, fmtNum(p.traps, 0)),
    h("td", { class: "num" }, fmtNum(p.deadline_hits, 0)),
    h("td", { class: "num" }, fmtNum(p.memory_cap_hits, 0)),
    h("td", { class: "num" }, fmtNum(p.rejected_results, 0)),
    h("td", {}, p.breaker_open ? badge("open", "down") : badge("closed", "up")),
    h("td", {}, h("button", { type: "button", class: "secondary", dataset: { action: "unload" }, onclick: ask }, "Unload"), confirmBox));
}

// ---------------------------------------------------------------------------------------------
// Try a request (explain)
// ---------------------------------------------------------------------------------------------

function explainPage() {
  const main = currentRoot;
  const result = h("div", { id: "explain-result", class: "card" }, h("p", { class: "muted" }, "The decision shows here."));
  const form = h("form", { id: "explain-form", class: "card" },
    h("div", { class: "form-grid" },
      h("label", { for: "x-method" }, "Method"), h("div", {}, h("input", { id: "x-method", value: "GET", list: "x-methods" }),
        h("datalist", { id: "x-methods" }, ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"].map((m) => h("option", { value: m })))),
      h("label", { for: "x-url" }, "URL"), h("div", {}, h("input", { id: "x-url", class: "wide", value: "/", placeholder: "/path?query or http://host/path" })),
      h("label", { for: "x-headers" }, "Headers"), h("textarea", { id: "x-headers", rows: 4, placeholder: "X-Tier: gold\nAccept: application/json" }),
      h("label", { for: "x-body" }, "Body"), h("textarea", { id: "x-body", rows: 4 }),
      h("label", { for: "x-remote" }, "Client address"), h("div", {}, h("input", { id: "x-remote", placeholder: "127.0.0.1" }))),
    h("div", { class: "toolbar" }, h("button", { type: "submit", id: "explain-run" }, "Explain")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const q = { method: form.querySelector("#x-method").value.trim().toUpperCase() || "GET", headers: {} };
    const url = form.querySelector("#x-url").value.trim() || "/";
    if (/^https?:\/\//i.test(url)) {
      let u;
      try { u = new URL(url); } catch (_) {
        replace(result, h("p", { class: "field-error" }, `${url} is not a URL`));
        return;
      }
      q.path = u.pathname + u.search;
      q.host = u.host;
      q.scheme = u.protocol.replace(":", "");
    } else q.path = url;
    for (const line of form.querySelector("#x-headers").value.split("\n")) {
      const i = line.indexOf(":");
      if (i > 0) q.headers[line.slice(0, i).trim()] = line.slice(i + 1).trim();
    }
    const body = form.querySelector("#x-body").value;
    if (body) q.body = body;
    const remote = form.querySelector("#x-remote").value.trim();
    if (remote) q.remote_addr = remote;
    replace(result, h("p", { class: "muted" }, "Asking routerd…"));
    try {
      const { doc } = await api("POST", "/api/v1/match", { body: q });
      replace(result, await explanationTree(q, doc));
    } catch (e) {
      replace(result, h("p", { class: "field-error" }, e.message));
    }
  });
  replace(main, h("h1", {}, "Try a request"),
    h("p", { class: "muted" }, "Runs the request through the route table as it is served now (plugin predicates included) without sending it anywhere."),
    h("div", { class: "explain-grid" }, form, result));
}

async function explanationTree(q, doc) {
  const decision = doc.decision === "route"
    ? [badge("route", "matched"), " ", routeLink(doc.route)]
    : [badge(doc.decision, doc.decision === "not_found" ? "failed" : "disabled"), doc.detail ? " " + doc.detail : ""];
  // Each candidate's matchers, with how far evaluation got.
  const rules = await Promise.all(doc.candidates.map((c) =>
    api("GET", "/api/v1/routes/" + encodeURIComponent(c.route)).then((r) => r.doc).catch(() => null)));
  const candidateNode = (c, rule) => {
    const failedAt = c.failed ? Number((/^matchers\[(\d+)\]/.exec(c.failed) || [])[1]) : -1;
    const matchers = rule ? (rule.matchers || []).map((m, i) => {
      const state = failedAt < 0 || i < failedAt ? "matched" : i === failedAt ? "failed" : "skipped";
      return h("li", { dataset: { matcher: i } }, badge(state === "skipped" ? "not evaluated" : state, state === "skipped" ? "disabled" : state),
        " ", h("code", {}, matcherText(m)));
    }) : [];
    return h("li", { dataset: { candidate: c.route, result: c.result } },
      badge(c.result), " ", routeLink(c.route),
      c.failed ? h("span", { class: "muted" }, " failed at " + c.failed) : null,
      matchers.length ? h("ul", {}, matchers) : null);
  };
  return h("ul", { class: "tree", id: "explain-tree" },
    h("li", {}, h("b", {}, q.method), " ", h("code", {}, (q.host ? q.host : "") + q.path),
      h("ul", {},
        h("li", { id: "explain-decision" }, "Decision: ", decision),
        h("li", {}, `Candidates considered (${doc.candidates.length}), in decision order`,
          doc.candidates.length ? h("ul", {}, doc.candidates.map((c, i) => candidateNode(c, rules[i]))) :
            h("ul", {}, h("li", { class: "muted" }, "no route's path can match"))))));
}

// ---------------------------------------------------------------------------------------------
// Health, live view, cluster
// ---------------------------------------------------------------------------------------------

async function healthPage() {
  const main = currentRoot;
  const tbody = h("tbody", { id: "health-body" });
  const load = async () => {
    const { doc } = await api("GET", "/api/v1/health");
    replace(tbody, doc.routes.length ? doc.routes.map((r) => h("tr", { dataset: { route: r.route } },
      h("td", {}, routeLink(r.route)),
      h("td", { class: "mono" }, r.target),
      h("td", {}, badge(r.status)),
      h("td", { class: "num" }, r.latency_ms === null ? "–" : fmtNum(r.latency_ms, 2)),
      h("td", { title: r.since ? new Date(r.since * 1000).toISOString() : "" }, fmtSince(r.since)))) :
      h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No backend checked yet.")));
  };
  replace(main, h("h1", {}, "Health"),
    h("p", { class: "muted" }, "Each backend is probed with a TCP connect every health interval."),
    h("table", { id: "health-table" }, h("thead", {}, h("tr", {},
      h("th", {}, "Route"), h("th", {}, "Backend"), h("th", {}, "Status"), h("th", { class: "num" }, "Connect ms"), h("th", {}, "Since"))), tbody));
  await keepLoading(main, REFRESH_MS, "health", load);
}

const liveState = { filter: "" };
// Answers that no route gave are counted under these names.
const PSEUDO_ROUTES = { none: "(no route)", default_url: "(default_url)" };

function seriesLabel(name) { return PSEUDO_ROUTES[name] || name; }

/** A square in a series' colour (set through the DOM: the page's policy allows no inline style). */
function swatch(color) {
  const el = h("span", { class: "swatch" }, "■");
  el.style.color = color;
  return el;
}

async function livePage() {
  const main = currentRoot;
  const rpsBox = h("div", { id: "chart-rps" });
  const p99Box = h("div", { id: "chart-p99" });
  const tbody = h("tbody", { id: "live-body" });
  const note = h("span", { class: "muted", id: "live-note" });
  let shownRoutes = "";
  let liveWindow = 300;
  const draw = (doc) => {
    liveWindow = doc.window_s;
    const names = Object.keys(doc.routes)
      .sort((a, b) => doc.routes[b].rps_1m - doc.routes[a].rps_1m || a.localeCompare(b));
    const xs = doc.times.map((t) => t / 1000);
    const rpsData = [xs, ...names.map((n) => doc.routes[n].rps)];
    const p99Data = [xs, ...names.map((n) => doc.routes[n].p99_ms)];
    note.textContent = `${doc.times.length} samples, one every ${doc.interval_ms / 1000} s, last ${doc.window_s / 60} min; ` +
      `the ${names.length} busiest routes${liveState.filter ? ` whose name contains "${liveState.filter}"` : ""} drawn.`;
    replace(tbody, names.length ? names.map((n, i) => {
      const r = doc.routes[n];
      return h("tr", { dataset: { route: n } },
        h("td", {}, swatch(COLORS[i]), " ", PSEUDO_ROUTES[n] ? seriesLabel(n) : routeLink(n)),
        h("td", { class: "num", dataset: { col: "rps-now" } }, fmtNum(r.rps[r.rps.length - 1], 1)),
        h("td", { class: "num", dataset: { col: "rps-1m" } }, fmtNum(r.rps_1m, 1)),
        h("td", { class: "num", dataset: { col: "p99-1m" } }, fmtNum(r.p99_ms_1m, 2)));
    }) : h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No traffic in the last 5 minutes.")));
    const key = names.join("\n");
    const charts = main.charts;
    if (key === shownRoutes && charts.length === 2) {
      charts[0].setData(rpsData);
      charts[1].setData(p99Data);
      return;
    }
    shownRoutes = key;
    for (const c of charts.splice(0)) c.destroy();
    const width = Math.max(400, rpsBox.clientWidth);
    // p99 has no value where a route had no traffic: points keep a lone sample visible.
    const opts = (title, unit, points) => ({
      width, height: 240, title,
      // Always the whole window, ending now, so a quiet route shows as a short line at the end.
      scales: { x: { time: true, range: () => { const now = Date.now() / 1000; return [now - liveWindow, now]; } } },
      axes: [{}, { label: unit, size: 60 }],
      series: [{}, ...names.map((n, i) => ({ label: seriesLabel(n), stroke: COLORS[i], width: 2, points: points ? { show: true, size: 5 } : {} }))],
    });
    charts.push(new uPlot(opts("Requests per second", "req/s"), rpsData, rpsBox));
    charts.push(new uPlot(opts("p99 latency (ms, to the response head)", "ms", true), p99Data, p99Box));
  };
  const load = async () => {
    const contains = liveState.filter ? "&contains=" + encodeURIComponent(liveState.filter) : "";
    draw((await api("GET", `/api/v1/live?top=${COLORS.length}${contains}`)).doc);
  };
  replace(main, h("h1", {}, "Live"),
    h("div", { class: "toolbar" },
      h("input", { id: "live-filter", type: "search", placeholder: "Only routes whose name contains…", value: liveState.filter,
        oninput: (e) => { liveState.filter = e.target.value; load(); },
        onchange: (e) => { liveState.filter = e.target.value; load(); } }), note),
    h("div", { class: "charts" }, h("div", { class: "card chart" }, rpsBox), h("div", { class: "card chart" }, p99Box)),
    h("table", { id: "live-table" }, h("thead", {}, h("tr", {},
      h("th", {}, "Route"), h("th", { class: "num" }, "Req/s now"), h("th", { class: "num" }, "Req/s 1 min"), h("th", { class: "num" }, "p99 ms 1 min"))), tbody));
  await keepLoading(main, LIVE_REFRESH_MS, "the live view", load);
}

async function clusterPage() {
  const main = currentRoot;
  const body = h("div", {});
  const load = async () => {
    const { doc } = await api("GET", "/api/v1/cluster");
    const keys = [...new Set(doc.instances.flatMap((i) => Object.keys(i)))];
    // Instances number their own table generations; the store's revision is what they share.
    const position = (i) => i.revision ?? i.table_version ?? 0;
    const newest = Math.max(...doc.instances.map(position));
    replace(body,
      h("p", {}, "Store: ", h("code", { id: "cluster-store" }, doc.store),
        doc.store === "none" ? h("span", { class: "muted" }, " (a single instance; start routerd with --store etcd://… to share routes)") : null),
      h("table", { id: "cluster-table" },
        h("thead", {}, h("tr", {}, keys.map((k) => h("th", {}, k.replace(/_unix$/, "").replace(/_/g, " "))), h("th", {}, ""))),
        h("tbody", {}, doc.instances.map((i) => h("tr", { dataset: { instance: i.id } },
          keys.map((k) => h("td", { class: typeof i[k] === "number" ? "num" : "mono", dataset: { col: k } },
            k.endsWith("_unix") && i[k] ? fmtSince(i[k]) :
              k === "admin" && /^https?:\/\//.test(i[k] || "") ? h("a", { href: i[k] + "/ui/#/cluster" }, i[k]) :
              typeof i[k] === "object" && i[k] !== null ? JSON.stringify(i[k]) : (i[k] ?? "–"))),
          h("td", {}, position(i) < newest ? badge("behind", "excluded") : badge("current", "active")))))));
  };
  replace(main, h("h1", {}, "Cluster"), body);
  await keepLoading(main, REFRESH_MS, "the cluster", load);
}

// ---------------------------------------------------------------------------------------------
// Token and start
// ---------------------------------------------------------------------------------------------

function showTokenPanel(why) {
  document.getElementById("token-panel").hidden = false;
  if (why) banner(why);
  document.getElementById("token-input").focus();
}

function tokenButton() {
  document.getElementById("token-button").textContent = token() ? "Admin token ✓" : "Admin token";
}

function start() {
  document.getElementById("token-button").addEventListener("click", () => {
    const panel = document.getElementById("token-panel");
    panel.hidden = !panel.hidden;
  });
  document.getElementById("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, document.getElementById("token-input").value);
    document.getElementById("token-input").value = "";
    document.getElementById("token-panel").hidden = true;
    tokenButton();
    banner("");
    render();
  });
  document.getElementById("token-clear").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    tokenButton();
  });
  window.addEventListener("hashchange", () => {
    if (bannerSticky) bannerSticky = false;
    else banner("");
    render();
  });
  tokenButton();
  render();
}

start();
