// watchkeeper fleet page. Lists every host the central host hears from (/api/fleet/hosts)
// and the fleet incidents, refreshed every few seconds; /fleet#host=<id> opens one host's
// own view (/api/fleet/hosts/<id>) with approve / reject buttons that call the API with
// the token, as the dashboard does. Everything a host sends (names, alert text, reasons)
// goes in with textContent, never as markup.
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = "wk-token";
  const REFRESH_MS = 3000;
  const state = { token: sessionStorage.getItem(TOKEN_KEY) || "", host: null, timer: null, status: 200 };

  const { el, pill } = window.wkDom;

  function ago(seconds) {
    if (seconds == null) return "never";
    const s = Math.max(0, seconds);
    if (s < 60) return `${Math.round(s)} s ago`;
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    if (s < 86400) return `${(s / 3600).toFixed(1)} h ago`;
    return `${(s / 86400).toFixed(1)} d ago`;
  }

  function clock(ts) {
    if (!ts) return "–";
    return new Date(ts * 1000).toLocaleTimeString([], {
      hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
    });
  }

  const pct = (v) => (v == null ? "–" : `${Number(v).toFixed(1)} %`);

  function empty(list, text, columns) {
    const row = columns
      ? el("tr", null, el("td", { colspan: String(columns), className: "empty", text }))
      : el("li", { className: "empty", text });
    list.replaceChildren(row);
  }

  async function api(path, options) {
    const opts = Object.assign({ headers: {}, cache: "no-store" }, options || {});
    if (state.token) opts.headers.Authorization = `Bearer ${state.token}`;
    if (opts.body && typeof opts.body !== "string") {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(opts.body);
    }
    const response = await fetch(path, opts);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    return { status: response.status, ok: response.ok, data };
  }

  // -- theme and token, as on the dashboard ---------------------------------------------
  function setupTheme() {
    let choice = "auto";
    try { choice = localStorage.getItem("wk-theme") || "auto"; } catch (e) { choice = "auto"; }
    const apply = () => {
      if (choice === "light" || choice === "dark") document.documentElement.setAttribute("data-theme", choice);
      else document.documentElement.removeAttribute("data-theme");
      $("theme").textContent = { light: "☀ light", dark: "☾ dark" }[choice] || "◐ auto";
    };
    apply();
    $("theme").addEventListener("click", () => {
      const order = ["auto", "light", "dark"];
      choice = order[(order.indexOf(choice) + 1) % order.length];
      try { localStorage.setItem("wk-theme", choice); } catch (e) { /* private mode */ }
      apply();
    });
  }

  function showToken() {
    $("token-box").dataset.set = state.token ? "yes" : "no";
    $("token-summary").textContent = state.token ? "✓ token set" : "API token";
  }

  function setupToken() {
    showToken();
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      state.token = $("token-input").value.trim();
      $("token-input").value = "";
      if (state.token) sessionStorage.setItem(TOKEN_KEY, state.token);
      else sessionStorage.removeItem(TOKEN_KEY);
      $("token-box").open = false;
      showToken();
      refresh();
    });
    $("token-forget").addEventListener("click", () => {
      state.token = "";
      sessionStorage.removeItem(TOKEN_KEY);
      $("token-box").open = false;
      showToken();
    });
  }

  function result(text, ok) {
    const out = $("action-result");
    out.textContent = text;
    out.dataset.ok = ok == null ? "" : String(ok);
  }

  function problem(text) {
    const box = $("problem");
    box.hidden = !text;
    box.textContent = text || "";
  }

  function live(on, text) {
    $("live").dataset.state = on ? "on" : "retry";
    $("live").textContent = text;
  }

  // -- the host list ---------------------------------------------------------------------
  function renderIncidents(data) {
    const list = $("fleet-incidents");
    const open = (data.incidents || []).filter((item) => item.state === "open");
    $("incident-count").textContent = String(open.length);
    $("incident-count").dataset.hot = open.length ? "true" : "false";
    if (!open.length) return empty(list, "No fleet incidents.");
    list.replaceChildren(...open.map((item) => el("li", { className: "fleet-incident", dataset: { severity: item.severity } },
      pill(item.severity),
      el("span", { className: "title", text: item.title }),
      el("span", { className: "since", text: `since ${clock(item.since)}` }),
      el("span", { className: "subject", text: (item.hosts || []).map((h) => h.host).join(", ") }))));
  }

  function renderHosts(data) {
    const counts = data.counts || {};
    $("central").textContent = data.central || "–";
    $("fleet-counts").textContent =
      `${data.total || 0} hosts: ${counts.up || 0} up, ${counts.stale || 0} stale, ${counts.lost || 0} lost`;
    $("host-count").textContent = String(data.total || 0);
    const body = $("hosts");
    const rows = data.hosts || [];
    if (!rows.length) return empty(body, "No host has been heard from yet.", 8);
    body.replaceChildren(...rows.map((row) => {
      const link = el("a", { href: `#host=${encodeURIComponent(row.host)}`, className: "host-link", text: row.host });
      const name = row.name && row.name !== row.host ? el("span", { className: "host-name", text: row.name }) : null;
      const tr = el("tr", { dataset: { state: row.state, host: row.host } },
        el("td", null, link, name),
        el("td", null, pill(row.state, row.state === "up" ? "ok" : row.state === "stale" ? "warning" : "critical")),
        el("td", { className: "hide-s" }, pill(row.status || "unknown")),
        el("td", { className: "num", text: row.score == null ? "–" : Math.round(row.score) }),
        el("td", { className: "num", text: row.firing, dataset: { hot: row.firing ? "true" : "false" } }),
        el("td", { className: "num hide-s", text: row.incidents }),
        el("td", { className: "num", text: row.pending_approvals }),
        el("td", { className: "seen", text: ago(row.age_s) }));
      // The whole row opens the host (the link inside stays for keyboards).
      tr.addEventListener("click", (event) => {
        if (!event.target.closest("a")) window.location.hash = link.getAttribute("href");
      });
      return tr;
    }));
  }

  async function refreshList() {
    const [hosts, incidents] = await Promise.all([api("/api/fleet/hosts"), api("/api/fleet/incidents")]);
    if (!hosts.ok) return failed(hosts);
    problem("");
    renderHosts(hosts.data);
    if (incidents.ok) renderIncidents(incidents.data);
    return true;
  }

  // -- one host's own view ---------------------------------------------------------------
  function renderView(view) {
    const summary = view.summary || {};
    const sample = view.sample || {};
    $("crumb").textContent = ` › ${summary.host}`;
    const host = $("host-state");
    host.textContent = summary.state;
    host.dataset.level = summary.state === "up" ? "ok" : summary.state === "stale" ? "warning" : "critical";
    $("host-score").textContent = summary.score == null ? "–" : String(Math.round(summary.score));
    $("host-status").textContent = summary.status || "unknown";
    $("host-seen").textContent = `${summary.name || summary.host} · last seen ${ago(summary.age_s)}`;
    $("host-agents").textContent = (summary.agents || []).length ? `agents: ${summary.agents.join(", ")}` : "";

    const metrics = [];
    const cpu = sample.cpu || {};
    const memory = sample.memory || {};
    if (cpu.percent != null) metrics.push(["CPU", pct(cpu.percent)]);
    if (cpu.load_1m != null) metrics.push(["Load (1 min)", Number(cpu.load_1m).toFixed(2)]);
    if (memory.percent != null) metrics.push(["Memory", pct(memory.percent)]);
    if (memory.swap_percent != null) metrics.push(["Swap", pct(memory.swap_percent)]);
    for (const fs of ((sample.disks || {}).filesystems || []).slice(0, 8)) {
      if (fs && fs.percent != null) metrics.push([`Disk ${fs.mount}`, pct(fs.percent)]);
    }
    if (sample.timestamp) metrics.push(["Sampled", clock(sample.timestamp)]);
    if (metrics.length) {
      $("host-metrics").replaceChildren(...metrics.map(([label, value]) =>
        el("tr", null, el("th", { text: label }), el("td", { className: "num", text: value }))));
    } else empty($("host-metrics"), "No sample yet.", 2);

    const services = sample.services || [];
    if (services.length) {
      $("host-services").replaceChildren(...services.map((svc) => el("tr", null,
        el("td", { text: svc.name }),
        el("td", null, pill(svc.state, svc.state === "running" ? "ok" : "critical")),
        el("td", { className: "hide-s", text: svc.manager }),
        el("td", { className: "num", text: svc.restarts || 0 }))));
    } else empty($("host-services"), "No services configured.", 4);

    const procs = ((sample.processes || {}).top_cpu || []).slice(0, 10);
    if (procs.length) {
      $("host-procs").replaceChildren(...procs.map((proc) => el("tr", null,
        el("td", { className: "num", text: proc.pid }),
        el("td", { text: proc.name, title: proc.cmdline || null }),
        el("td", { className: "num", text: proc.cpu_percent == null ? "–" : Number(proc.cpu_percent).toFixed(1) }),
        el("td", { className: "num", text: proc.memory_percent == null ? "–" : Number(proc.memory_percent).toFixed(1) }),
        el("td", { className: "hide-s", text: proc.user || "–" }))));
    } else empty($("host-procs"), "No processes in the sample.", 5);

    const alerts = view.alerts || [];
    $("host-alert-count").textContent = String(alerts.length);
    $("host-alert-count").dataset.hot = alerts.length ? "true" : "false";
    if (alerts.length) {
      $("host-alerts").replaceChildren(...alerts.map((alert) => el("li", { dataset: { severity: alert.severity } },
        pill(alert.severity),
        el("span", { className: "summary", text: alert.summary }),
        el("span", { className: "since", text: clock(alert.started_at) }),
        el("span", { className: "subject", text: `${alert.rule} · ${alert.subject}` }))));
    } else empty($("host-alerts"), "No alerts firing.");

    const incidents = view.incidents || [];
    if (incidents.length) {
      $("host-incidents").replaceChildren(...incidents.map((item) => el("li", null,
        pill(item.severity),
        el("span", { text: item.title || item.summary || item.id }),
        el("span", { className: "since", text: clock(item.opened_at || item.started_at) }))));
    } else empty($("host-incidents"), "No open incidents.");

    const pending = view.approvals || [];
    if (pending.length) {
      $("host-pending").replaceChildren(...pending.map((record) => {
        const approve = el("button", { type: "button", className: "small approve", text: "Approve", dataset: { id: record.id, verb: "approvals" } });
        const reject = el("button", { type: "button", className: "small danger", text: "Reject", dataset: { id: record.id, verb: "rejections" } });
        return el("li", { dataset: { id: record.id } },
          pill(record.action, "pending"),
          el("span", { className: "target", text: record.target || "–" }),
          el("span", { className: "buttons" }, approve, reject),
          el("span", { className: "why", text: record.reason || "" }));
      }));
    } else empty($("host-pending"), "Nothing waiting.");

    const actions = view.actions || [];
    if (actions.length) {
      $("host-actions").replaceChildren(...actions.slice(0, 30).map((record) => el("tr", null,
        el("td", { text: clock(record.created_at) }),
        el("td", { text: record.action }),
        el("td", { text: record.target || "–" }),
        el("td", null, pill(record.outcome)),
        el("td", { className: "hide-s", text: record.proposed_by || record.proposer }),
        el("td", { className: "hide-s detail", text: record.detail || "" }))));
    } else empty($("host-actions"), "No actions yet.", 6);
  }

  async function refreshHost() {
    const [reply, hosts] = await Promise.all([
      api(`/api/fleet/hosts/${encodeURIComponent(state.host)}`),
      api("/api/fleet/hosts"),
    ]);
    if (!reply.ok) return failed(reply);
    problem("");
    if (hosts.ok) renderHosts(hosts.data);
    renderView(reply.data);
    return true;
  }

  async function answer(button) {
    if (!state.token) {
      result("Paste the API token first (API token, top right): approvals need it.", false);
      $("token-box").open = true;
      $("token-input").focus();
      return;
    }
    const verb = button.dataset.verb;
    const id = button.dataset.id;
    button.disabled = true;
    result(`${verb === "approvals" ? "approving" : "rejecting"} ${id} on ${state.host}…`, null);
    try {
      const path = `/api/fleet/hosts/${encodeURIComponent(state.host)}/${verb}/${encodeURIComponent(id)}`;
      const reply = await api(path, { method: "POST", body: { by: "dashboard" } });
      if (reply.status === 401) {
        result("The token was refused (401). Check it against the api_token file.", false);
        return;
      }
      const data = reply.data || {};
      if (reply.ok) result(`${state.host}: ${id} ${data.outcome || "done"} (by ${data.by || "dashboard"})`, true);
      else result(data.detail || `${state.host} did not take it (HTTP ${reply.status})`, false);
      refresh();
    } catch (error) {
      result(`${id}: ${error.message}`, false);
    } finally {
      button.disabled = false;
    }
  }

  // -- routing and refresh ---------------------------------------------------------------
  function failed(reply) {
    state.status = reply.status;
    const detail = reply.data && reply.data.detail;
    if (reply.status === 401) problem("Reads need the API token on this server: paste it under API token.");
    else problem(typeof detail === "string" ? detail : `the fleet view answered HTTP ${reply.status}`);
    return false;
  }

  function clearView() {
    // Nothing of the host shown before may stay on screen (an Approve button least of all).
    for (const id of ["host-alerts", "host-incidents", "host-pending"]) empty($(id), "Loading…");
    empty($("host-metrics"), "Loading…", 2);
    empty($("host-services"), "Loading…", 4);
    empty($("host-procs"), "Loading…", 5);
    empty($("host-actions"), "Loading…", 6);
    for (const id of ["host-score", "host-status", "host-seen", "host-agents"]) $(id).textContent = "";
    $("host-state").textContent = "…";
  }

  function route() {
    const match = /^#host=([a-z0-9][a-z0-9_-]{0,63})$/.exec(window.location.hash);
    const host = match ? match[1] : null;
    if (host !== state.host) clearView();
    state.host = host;
    $("fleet-list").hidden = Boolean(state.host);
    $("host-view").hidden = !state.host;
    if (!state.host) $("crumb").textContent = "";
    document.title = state.host ? `watchkeeper · ${state.host}` : "watchkeeper · fleet";
    result("", null);
    refresh();
  }

  async function refresh() {
    window.clearTimeout(state.timer);
    state.status = 200;
    try {
      const ok = state.host ? await refreshHost() : await refreshList();
      if (ok) {
        $("updated").textContent = clock(Date.now() / 1000);
        live(true, "live");
      } else live(false, state.status === 409 ? "no fleet view here" : "retrying");
    } catch (error) {
      live(false, "offline");
      problem(`cannot reach watchkeeper: ${error.message}`);
    }
    // A host that keeps no fleet view will not grow one soon: ask again now and then.
    state.timer = window.setTimeout(refresh, state.status === 409 ? 30000 : REFRESH_MS);
  }

  document.addEventListener("DOMContentLoaded", () => {
    setupTheme();
    setupToken();
    $("host-pending").addEventListener("click", (event) => {
      const button = event.target.closest("button[data-verb]");
      if (button) answer(button);
    });
    window.addEventListener("hashchange", route);
    route();
  });
})();
