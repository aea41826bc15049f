// watchkeeper dashboard. Loads the current state once, then follows /api/events (server-
// sent events) for everything that changes: no polling. Every string from the host
// (process names, command lines, service names, alert text) goes in with textContent,
// never as markup. The API token lives in sessionStorage and is sent only as a header.
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = "wk-token";
  const state = {
    token: sessionStorage.getItem(TOKEN_KEY) || "",
    startedAt: null,
    alerts: new Map(),
    incidents: new Map(),
    sample: null,
    sortBy: "cpu",
    agents: {},
    feed: [],
    charts: {},
    refreshTimers: {},
  };

  // -- small helpers ----------------------------------------------------------------------
  const { el, pill } = window.wkDom;

  function bytes(value, suffix) {
    if (value == null) return "–";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let v = value;
    let i = 0;
    while (Math.abs(v) >= 1000 && i < units.length - 1) { v /= 1000; i++; }
    return `${v >= 100 || i === 0 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}${suffix || ""}`;
  }
  const rate = (v) => bytes(v, "/s");
  const pct = (v) => (v == null ? "–" : `${Number(v).toFixed(v >= 10 ? 0 : 1)} %`);

  function ago(ts) {
    if (!ts) return "never";
    const s = Math.max(0, Date.now() / 1000 - ts);
    if (s < 60) return `${Math.round(s)} s ago`;
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    if (s < 86400) return `${(s / 3600).toFixed(1)} h ago`;
    return `${(s / 86400).toFixed(1)} d ago`;
  }

  function duration(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (d) return `${d}d ${h}h`;
    if (h) return `${h}h ${m}m`;
    if (m) return `${m}m ${s % 60}s`;
    return `${s}s`;
  }

  function clock(ts) {
    return new Date(ts * 1000).toLocaleTimeString([], {
      hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
    });
  }

  function placeholder(list, text, columns) {
    if (columns) return el("tr", null, el("td", { colspan: String(columns), className: "empty", text }));
    return el("li", { className: "empty", text });
  }

  async function api(path, options) {
    const opts = Object.assign({ headers: {} }, options || {});
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

  // -- theme ------------------------------------------------------------------------------
  function applyTheme(choice) {
    if (choice === "light" || choice === "dark") document.documentElement.setAttribute("data-theme", choice);
    else document.documentElement.removeAttribute("data-theme");
    $("theme").textContent = { light: "☀ light", dark: "☾ dark" }[choice] || "◐ auto";
    for (const chart of Object.values(state.charts)) chart.recolor();
  }

  function setupTheme() {
    let choice = "auto";
    try { choice = localStorage.getItem("wk-theme") || "auto"; } catch (e) { choice = "auto"; }
    applyTheme(choice);
    $("theme").addEventListener("click", () => {
      const order = ["auto", "light", "dark"];
      choice = order[(order.indexOf(choice) + 1) % order.length];
      try { localStorage.setItem("wk-theme", choice); } catch (e) { /* private mode */ }
      applyTheme(choice);
    });
    window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => applyTheme(choice));
  }

  // -- token ------------------------------------------------------------------------------
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
      events.restart();
    });
    $("token-forget").addEventListener("click", () => {
      state.token = "";
      sessionStorage.removeItem(TOKEN_KEY);
      $("token-box").open = false;
      showToken();
    });
  }

  // -- actions ----------------------------------------------------------------------------
  function result(text, ok) {
    const out = $("action-result");
    out.textContent = text;
    out.dataset.ok = ok == null ? "" : String(ok);
  }

  function describeReply(command, data) {
    if (!data) return `${command}: no answer`;
    if (data.replies) {
      const parts = [];
      for (const [agent, reply] of Object.entries(data.replies)) {
        if (!reply.ok) { parts.push(`${agent}: ${reply.error || "failed"}`); continue; }
        if (reply.health) parts.push(`${agent} ${reply.health.state}`);
        else if (reply.analysis) parts.push(`${agent}: ${reply.analysis.verdict} (${reply.analysis.source})`);
        else if (reply.verdict) parts.push(`${agent}: ${reply.verdict}${reply.summary ? ` — ${reply.summary}` : ""}`);
        else if (reply.state) parts.push(`${agent} ${reply.state}`);
        else parts.push(`${agent} ok`);
      }
      return `${command}: ${parts.join(" · ")}`;
    }
    return `${command}: ${data.detail || data.message || "failed"}`;
  }

  async function command(name, target, params, button) {
    if (!state.token) {
      result("Paste the API token first (API token, top right): changes need it.", false);
      $("token-box").open = true;
      $("token-input").focus();
      return;
    }
    if (button) button.disabled = true;
    result(`${name} → ${target}…`, null);
    try {
      const reply = await api("/api/command", {
        method: "POST",
        body: params ? { command: name, target, params } : { command: name, target },
      });
      if (reply.status === 401) {
        result("The token was refused (401). Check it against the api_token file.", false);
        return;
      }
      result(describeReply(name, reply.data), reply.ok);
      if (name === "analyze_now") refresh("analysis");
      if (["approve", "reject", "run_action", "reset_giveup"].includes(name)) refresh("remediation");
    } catch (error) {
      result(`${name}: ${error.message}`, false);
    } finally {
      if (button) button.disabled = false;
    }
  }

  function setupActions() {
    for (const button of document.querySelectorAll("[data-command]")) {
      button.addEventListener("click", () => command(button.dataset.command, button.dataset.target, null, button));
    }
    $("restart-button").addEventListener("click", (event) => {
      const target = $("restart-target").value;
      if (target) command("restart", target, null, event.currentTarget);
    });
    for (const tab of document.querySelectorAll(".tab")) {
      tab.addEventListener("click", () => {
        state.sortBy = tab.dataset.sort;
        for (const other of document.querySelectorAll(".tab")) {
          other.setAttribute("aria-selected", String(other === tab));
        }
        renderProcesses();
      });
    }
  }

  // -- rendering: system, agents, health --------------------------------------------------
  function renderHealth(health) {
    if (!health) return;
    const level = health.status || "unknown";
    $("status").textContent = level;
    $("status").dataset.level = level;
    $("score").textContent = health.score != null ? String(health.score) : "–";
    $("score-box").dataset.level = level;
    const list = $("reasons");
    list.replaceChildren(...(health.reasons || []).map((r) => el("li", { text: r })));
    if (!list.children.length) list.append(el("li", { className: "empty", text: "Nothing to worry about." }));
  }

  function renderAgents(agents) {
    state.agents = agents || {};
    const box = $("agents");
    const cards = [];
    for (const [name, a] of Object.entries(state.agents)) {
      const dl = el("dl", null,
        el("dt", { text: "last check" }), el("dd", { text: ago(a.last_check) }),
        el("dt", { text: "checks" }), el("dd", { text: String(a.checks) }),
        el("dt", { text: "errors" }), el("dd", { text: String(a.errors) }),
        el("dt", { text: "restarts" }), el("dd", { text: String(a.restarts) }));
      const card = el("article", { className: "agent", dataset: { agent: name } },
        el("header", null, el("b", { text: name }), pill(a.state)), dl);
      if (a.last_error && a.consecutive_errors) card.append(el("p", { className: "error", text: a.last_error }));
      cards.push(card);
    }
    box.replaceChildren(...cards);
    const select = $("restart-target");
    const current = select.value;
    const names = Object.keys(state.agents);
    if (select.options.length !== names.length) {
      select.replaceChildren(...names.map((n) => el("option", { value: n, text: n })));
      if (names.includes(current)) select.value = current;
    }
  }

  function renderStatus(status) {
    if (status.started_at) state.startedAt = status.started_at;
    renderHealth(status.health);
    renderAgents(status.agents);
  }

  function tickUptime() {
    if (state.startedAt) $("uptime").textContent = duration(Date.now() / 1000 - state.startedAt);
  }

  // -- rendering: metrics -----------------------------------------------------------------
  function renderSample(sample) {
    state.sample = sample;
    $("host").textContent = sample.host || "";
    $("sampled").textContent = clock(sample.timestamp);
    const cpu = sample.cpu || {};
    const mem = sample.memory || {};
    $("now-cpu").textContent = `${pct(cpu.percent)}${cpu.load_1m != null ? ` · load ${cpu.load_1m.toFixed(2)}` : ""}`;
    $("now-memory").textContent = `${pct(mem.percent)} of ${bytes(mem.total_bytes)}`;
    renderFilesystems(sample.disks);
    renderProcesses();
    renderServices(sample.services || []);
  }

  function renderFilesystems(disks) {
    const rows = [];
    let worst = null;
    for (const fs of ((disks && disks.filesystems) || []).slice(0, 6)) {
      const level = fs.percent >= 95 ? "critical" : fs.percent >= 85 ? "warning" : "ok";
      const fill = el("span", { dataset: { level } });
      fill.style.width = `${Math.min(100, fs.percent)}%`;
      rows.push(el("div", { className: "fs" },
        el("span", { className: "name mono", text: fs.mount, title: `${fs.device} (${fs.fstype})` }),
        el("span", { text: `${pct(fs.percent)} of ${bytes(fs.total_bytes)}` }),
        el("div", { className: "bar" }, fill)));
      if (worst == null || fs.percent > worst) worst = fs.percent;
    }
    $("filesystems").replaceChildren(...rows);
    state.worstDisk = worst;
  }

  function renderProcesses() {
    const procs = (state.sample && state.sample.processes) || {};
    const list = state.sortBy === "memory" ? procs.top_memory || [] : procs.top_cpu || [];
    const body = $("procs");
    if (!list.length) {
      body.replaceChildren(placeholder(null, "Waiting for a second sample (CPU % needs two).", 6));
      return;
    }
    body.replaceChildren(...list.map((p) => el("tr", null,
      el("td", { className: "num", text: String(p.pid) }),
      el("td", { text: p.name }),
      el("td", { className: "num", text: p.cpu_percent == null ? "–" : p.cpu_percent.toFixed(1) }),
      el("td", { className: "num", text: bytes(p.rss_bytes) }),
      el("td", { className: "hide-s", text: p.user || "" }),
      el("td", { className: "cmd hide-s mono", text: p.cmdline || "", title: p.cmdline || "" }))));
  }

  function renderServices(services) {
    const body = $("services");
    if (!services.length) {
      body.replaceChildren(placeholder(null, "No services configured.", 4));
      return;
    }
    body.replaceChildren(...services.map((s) => {
      const level = s.state === "running" ? (s.healthy === false ? "degraded" : "running") : s.state;
      const label = s.healthy === false ? `${s.state}, unhealthy` : s.state;
      return el("tr", null, el("td", { text: s.name }), el("td", null, pill(label, level)),
        el("td", { className: "hide-s", text: s.manager }), el("td", { className: "num", text: String(s.restarts) }));
    }));
  }

  function setupCharts() {
    const LineChart = window.WKChart.LineChart;
    const make = (id, series, format, fixedMax) => new LineChart($(`chart-${id}`), {
      series, format, fixedMax, legend: $(`legend-${id}`),
    });
    state.charts.cpu = make("cpu", [{ key: "cpu", label: "CPU", color: "--c1" }], (v) => `${Math.round(v)}%`, 100);
    state.charts.memory = make("memory", [
      { key: "memory", label: "memory", color: "--c1" },
      { key: "swap", label: "swap", color: "--c2" }], (v) => `${Math.round(v)}%`, 100);
    state.charts.disk = make("disk", [
      { key: "disk_read", label: "read", color: "--c3" },
      { key: "disk_write", label: "write", color: "--c4" }], (v) => bytes(v));
    state.charts.net = make("net", [
      { key: "net_rx", label: "received", color: "--c1" },
      { key: "net_tx", label: "sent", color: "--c2" }], (v) => bytes(v));
    for (const [id, chart] of Object.entries(state.charts)) setupRanges(id, chart);
  }

  // -- chart time ranges: live (the default, streaming) or a stored range ---------------
  const RANGES = ["live", "15m", "1h", "24h", "7d", "30d"];
  const RANGE_LABELS = { live: "live", "15m": "15 min", "1h": "1 h", "24h": "24 h", "7d": "7 d", "30d": "30 d" };
  // A stored range is fetched again this often while shown, so it moves on with time.
  const RANGE_REFRESH_MS = 60000;

  function setupRanges(id, chart) {
    const card = $(`chart-${id}`).closest(".chart-card");
    const note = el("span", { className: "range-note", id: `range-note-${id}` });
    const buttons = RANGES.map((r) => el("button", {
      type: "button", className: "range", text: RANGE_LABELS[r], dataset: { range: r },
      "aria-pressed": String(r === "live"),
    }));
    const group = el("div", { className: "ranges", role: "group", "aria-label": "time range" }, ...buttons, note);
    card.querySelector("h2").after(group);
    const ranged = { range: "live", timer: null, seq: 0 };
    const load = async () => {
      const seq = ++ranged.seq;
      const keys = chart.series.map((s) => s.key).join(",");
      note.textContent = "loading…";
      try {
        const r = await api(`/api/metrics/history/chart?range=${encodeURIComponent(ranged.range)}&series=${keys}`);
        if (seq !== ranged.seq || ranged.range === "live") return;
        if (!r.ok) { note.textContent = (r.data && r.data.detail) || `history: HTTP ${r.status}`; return; }
        chart.showHistory(r.data, RANGE_LABELS[ranged.range]);
        note.textContent = "";
      } catch (error) {
        if (seq === ranged.seq) note.textContent = `history: ${error.message}`;
      }
    };
    const choose = (range) => {
      ranged.range = range;
      clearInterval(ranged.timer);
      ranged.timer = null;
      for (const b of buttons) b.setAttribute("aria-pressed", String(b.dataset.range === range));
      if (range === "live") { ranged.seq += 1; note.textContent = ""; chart.live(); return; }
      load();
      ranged.timer = setInterval(() => { if (!document.hidden) load(); }, RANGE_REFRESH_MS);
    };
    for (const b of buttons) b.addEventListener("click", () => choose(b.dataset.range));
  }

  function chartPoint(point) {
    for (const chart of Object.values(state.charts)) chart.push(point);
    $("now-disk").textContent = `${rate(point.disk_read)} in · ${rate(point.disk_write)} out`;
    $("now-net").textContent = `${rate(point.net_rx)} in · ${rate(point.net_tx)} out`;
  }

  // -- rendering: alerts, analysis, remediation, feed -------------------------------------
  const RANK = { critical: 0, warning: 1, info: 2 };

  const bySeverity = (a, b) => (RANK[a.severity] - RANK[b.severity]);

  // A failed service's last log lines (evidence.journal), as plain text, never as HTML.
  function journalBlock(a) {
    const lines = a && a.evidence && Array.isArray(a.evidence.journal) ? a.evidence.journal : [];
    if (!lines.length) return null;
    return el("pre", { className: "journal", title: "last log lines", text: lines.slice(-20).map(String).join("\n") });
  }

  function alertRow(a) {
    return el("li", { dataset: { fingerprint: a.fingerprint } },
      pill(a.severity), el("span", { text: a.summary }),
      el("span", { className: "since", text: ago(a.started_at) }),
      el("span", { className: "subject", text: `${a.rule} · ${a.subject}${a.escalated ? " · escalated" : ""}` }),
      journalBlock(a));
  }

  // A member as the live alert shows it, else as the incident last saw it.
  function memberRow(incident, m) {
    const live = state.alerts.get(m.fingerprint);
    const role = m.fingerprint === incident.root ? "root" : (m.role || "related");
    const summary = live ? live.summary : m.summary;
    const cleared = !m.firing && !live;
    return el("li", { className: "member", dataset: { fingerprint: m.fingerprint, role } },
      el("span", { className: "role", text: role }),
      pill(live ? live.severity : m.severity),
      el("span", { text: cleared ? `${summary} (cleared)` : summary }),
      el("span", { className: "subject", text: `${m.rule} · ${m.subject}${live && live.escalated ? " · escalated" : ""}` }),
      m.rule === "service_down" ? journalBlock(live) : null);
  }

  function incidentRow(incident) {
    const members = [...(incident.members || [])].sort((a, b) => {
      const ra = a.fingerprint === incident.root ? 0 : a.role === "effect" ? 1 : 2;
      const rb = b.fingerprint === incident.root ? 0 : b.role === "effect" ? 1 : 2;
      return ra - rb || bySeverity(a, b);
    });
    const head = el("div", { className: "head" },
      pill(incident.severity),
      el("a", { className: "incident-link", href: `/incidents/${encodeURIComponent(incident.id)}`, title: "the incident's page" },
        el("b", { className: "title", text: incident.title })),
      el("span", { className: "since", text: ago(incident.opened_at) }));
    const parts = [head];
    const cause = incident.root_cause
      ? `Probable cause: ${incident.root_cause}${incident.confidence ? ` (${Math.round(incident.confidence * 100)} %)` : ""}`
      : "Related alerts; no single cause found.";
    const facts = el("p", { className: "cause", text: cause });
    if (incident.flapping || incident.flaps) {
      facts.append(" ", el("span", { className: "flap", text: `flapping ×${incident.flaps}` }));
    }
    parts.push(facts);
    const shown = members.slice(0, 20).map((m) => memberRow(incident, m));
    if (members.length > 20) shown.push(el("li", { className: "empty", text: `… and ${members.length - 20} more alerts` }));
    parts.push(el("ul", { className: "members" }, ...shown));
    const remedies = incident.remedies || [];
    if (remedies.length) {
      parts.push(el("p", { className: "remedies-label", text: "Remedies, root cause first" }));
      parts.push(el("ol", { className: "remedies" },
        ...remedies.slice(0, 5).map((r) => el("li", null, el("code", { text: r.action }), r.target ? ` ${r.target}` : ""))));
    }
    return el("li", { className: "incident", dataset: { incident: incident.id, severity: incident.severity } }, ...parts);
  }

  function renderAlerts() {
    const list = $("alerts");
    const alerts = [...state.alerts.values()].sort(
      (a, b) => bySeverity(a, b) || (b.started_at - a.started_at));
    const incidents = [...state.incidents.values()].sort(
      (a, b) => bySeverity(a, b) || (b.opened_at - a.opened_at));
    const grouped = new Set();
    for (const i of incidents) for (const m of i.members || []) grouped.add(m.fingerprint);
    const lone = alerts.filter((a) => !grouped.has(a.fingerprint));
    $("alert-count").textContent = String(alerts.length);
    $("alert-count").dataset.hot = String(alerts.some((a) => a.severity === "critical"));
    $("incident-count").textContent = incidents.length
      ? `${incidents.length} incident${incidents.length === 1 ? "" : "s"}` : "";
    if (!alerts.length && !incidents.length) { list.replaceChildren(placeholder(null, "No alerts firing.")); return; }
    list.replaceChildren(...incidents.map(incidentRow), ...lone.map(alertRow));
  }

  function renderAnalysis(data) {
    if (!data) return;
    if (data.llm) $("llm-status").textContent = data.llm.status || "";
    const box = $("analysis");
    const shown = data.latest_llm || data.latest;
    if (!shown) { box.replaceChildren(el("p", { className: "empty", text: "No analysis yet." })); return; }
    // The model's tokens and speed, when it answered: what a CPU host's model costs.
    const speed = `${shown.completion_tokens != null ? ` · ${shown.completion_tokens} tokens` : ""}${shown.tokens_per_s != null ? ` · ${shown.tokens_per_s} tokens/s` : ""}`;
    const parts = [
      el("p", null, el("span", { className: "verdict", text: shown.verdict }), " — ", shown.summary),
      el("p", { className: "meta", text: `by ${shown.source} · ${ago(shown.at)}${shown.latency_s != null ? ` · ${shown.latency_s.toFixed(1)} s` : ""}${speed}${shown.cached ? " · cached" : ""}${shown.fallback_reason ? ` · fell back: ${shown.fallback_reason}` : ""}` }),
    ];
    // The verdict is never below the rules'; the model's differing view is its opinion.
    if (shown.model_verdict && shown.rules_verdict && shown.model_verdict !== shown.rules_verdict) {
      const because = shown.rules_summary ? `: ${shown.rules_summary}` : "";
      parts.push(el("p", { className: "opinion", text: `the model thinks ${shown.model_verdict}; the rules say ${shown.rules_verdict}${because}` }));
    }
    const reasons = Object.entries(shown.explanations || {});
    if (reasons.length) {
      parts.push(el("h3", { text: "Reasoning" }));
      for (const [, text] of reasons) parts.push(el("blockquote", { text }));
    }
    if ((shown.recommended || []).length) {
      parts.push(el("h3", { text: "Recommended" }));
      parts.push(el("ul", null, ...shown.recommended.map((r) => el("li", null,
        el("code", { text: r.action }), r.target ? ` on ${r.target}` : "",
        r.reason ? ` — ${r.reason}` : "",
        r.confidence != null && r.confidence < 1 ? ` (confidence ${Math.round(r.confidence * 100)} %)` : ""))));
    }
    if (data.latest_llm && data.latest && data.latest.id !== data.latest_llm.id) {
      parts.push(el("p", { className: "meta", text: `latest from the rules: ${data.latest.verdict} — ${data.latest.summary}` }));
    }
    box.replaceChildren(...parts);
  }

  function renderRemediation(data) {
    if (!data) return;
    $("remediation-mode").textContent = `mode: ${data.mode}${data.available ? "" : " · remediator off"}`;
    $("remediation-mode").dataset.level = data.mode === "auto" ? "ok" : "warning";
    const pending = $("pending");
    if (!(data.pending || []).length) pending.replaceChildren(placeholder(null, "Nothing waiting."));
    else {
      pending.replaceChildren(...data.pending.map((r) => {
        const approve = el("button", { type: "button", className: "small approve", text: "Approve" });
        const reject = el("button", { type: "button", className: "small danger", text: "Reject" });
        approve.addEventListener("click", () => command("approve", "remediator", { id: r.id }, approve));
        reject.addEventListener("click", () => command("reject", "remediator", { id: r.id }, reject));
        return el("li", { dataset: { id: r.id } }, pill(r.risk || "pending", r.risk === "dangerous" ? "critical" : "warning"),
          el("span", null, el("code", { text: r.action }), ` on ${r.target || "-"}`),
          el("span", { className: "buttons" }, approve, reject),
          el("span", { className: "why", text: `${r.proposer}${r.proposed_by ? ` (${r.proposed_by})` : ""}: ${r.reason || "no reason given"}` }));
      }));
    }
    const audit = $("audit");
    const rows = (data.audit || []).slice(0, 30);
    if (!rows.length) audit.replaceChildren(placeholder(null, "No actions yet.", 5));
    else {
      audit.replaceChildren(...rows.map((r) => el("tr", null,
        el("td", { text: clock(r.finished_at || r.started_at || r.created_at) }),
        el("td", null, el("code", { text: r.action })),
        el("td", { text: r.target || "-" }),
        el("td", null, pill(r.outcome)),
        // Who said yes to it ("alice from host central-1" when approved on the fleet view).
        el("td", { className: "hide-s", text: r.proposer === "user" && r.proposed_by ? `by ${r.proposed_by}: ${r.detail || ""}` : r.detail || "" }))));
    }
  }

  function addFeed(items, prepend) {
    const feed = $("feed");
    if (feed.firstElementChild && feed.firstElementChild.classList.contains("empty")) feed.replaceChildren();
    const nodes = items.map((i) => el("li", { dataset: { severity: i.severity }, title: i.severity },
      el("time", { text: clock(i.ts) }), el("span", { className: "msg", text: i.message })));
    if (prepend) feed.prepend(...nodes);
    else feed.append(...nodes);
    while (feed.children.length > 100) feed.lastElementChild.remove();
  }

  // -- loading and refreshing -------------------------------------------------------------
  const loaders = {
    async analysis() { const r = await api("/api/analysis"); if (r.ok) renderAnalysis(r.data); },
    async remediation() { const r = await api("/api/remediation?limit=30"); if (r.ok) renderRemediation(r.data); },
    async alerts() {
      const [r, i] = await Promise.all([api("/api/alerts"), api("/api/incidents?state=open")]);
      if (!r.ok) return;
      state.alerts = new Map(r.data.firing.map((a) => [a.fingerprint, a]));
      if (i.ok) state.incidents = new Map(i.data.incidents.map((x) => [x.id, x]));
      renderAlerts();
    },
  };

  // Coalesce bursts of events into one request per section (at most every 500 ms).
  function refresh(name) {
    if (state.refreshTimers[name]) return;
    state.refreshTimers[name] = setTimeout(() => {
      state.refreshTimers[name] = null;
      loaders[name]().catch(() => {});
    }, 500);
  }

  async function loadAll() {
    const [system, metrics, recent, activity] = await Promise.all([
      api("/api/system"), api("/api/metrics"), api("/api/metrics/recent"), api("/api/activity?limit=60"),
    ]);
    if (system.status === 401) {
      result("Reads need the API token on this server: paste it under API token.", false);
      return;
    }
    if (system.ok) {
      const s = system.data;
      $("version").textContent = `watchkeeper ${s.version}`;
      renderStatus({ started_at: s.started_at, health: s.health, agents: s.agents });
      if (s.details && s.details.sensor) $("comment").textContent = s.details.sensor.comment || "";
    }
    if (metrics.ok) renderSample(metrics.data);
    if (recent.ok) {
      for (const chart of Object.values(state.charts)) chart.load(recent.data.ts, recent.data);
      const n = recent.data.ts.length;
      if (n) {
        const last = {};
        for (const key of recent.data.series) last[key] = recent.data[key][n - 1];
        $("now-disk").textContent = `${rate(last.disk_read)} in · ${rate(last.disk_write)} out`;
        $("now-net").textContent = `${rate(last.net_rx)} in · ${rate(last.net_tx)} out`;
      }
    }
    if (activity.ok && activity.data.items.length) {
      $("feed").replaceChildren();
      addFeed(activity.data.items, false);
    }
    await Promise.all([loaders.alerts(), loaders.analysis(), loaders.remediation()]);
  }

  // -- the event stream -------------------------------------------------------------------
  // fetch() rather than EventSource, so the token can go in a header when reads need it.
  const handlers = {
    status(d) { renderStatus(d); },
    sample(d) {
      renderSample(d.data);
      if (d.point) chartPoint(d.point);
    },
    alert(d) {
      const alert = d.data;
      if (alert.state === "resolved" || d.topic === "alert.resolved") state.alerts.delete(alert.fingerprint);
      else state.alerts.set(alert.fingerprint, alert);
      renderAlerts();
    },
    incident(d) {
      const incident = d.data;
      if (incident.state === "resolved" || d.topic === "incident.resolved") state.incidents.delete(incident.id);
      else state.incidents.set(incident.id, incident);
      renderAlerts();
    },
    analysis() { refresh("analysis"); },
    action() { refresh("remediation"); },
    health(d) { renderHealth(d.data); },
  };

  function dispatch(name, raw) {
    let data;
    try { data = JSON.parse(raw); } catch (e) { return; }
    if (data.activity) addFeed([data.activity], true);
    const handler = handlers[name];
    if (handler) handler(data);
  }

  const events = {
    controller: null,
    attempt: 0,
    restart() { if (this.controller) this.controller.abort(); this.start(); },
    async start() {
      const controller = new AbortController();
      this.controller = controller;
      const live = $("live");
      try {
        const headers = state.token ? { Authorization: `Bearer ${state.token}` } : {};
        const response = await fetch("/api/events", { headers, signal: controller.signal, cache: "no-store" });
        if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
        live.dataset.state = "on";
        live.textContent = "live";
        this.attempt = 0;
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            let name = "message";
            const data = [];
            for (const line of block.split("\n")) {
              if (line.startsWith("event:")) name = line.slice(6).trim();
              else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
            }
            if (data.length) dispatch(name, data.join("\n"));
          }
        }
      } catch (error) {
        if (controller.signal.aborted) return;
      }
      if (controller !== this.controller) return;
      live.dataset.state = "retry";
      live.textContent = "reconnecting…";
      this.attempt += 1;
      const wait = Math.min(30000, 1000 * 2 ** Math.min(this.attempt, 5));
      setTimeout(() => {
        if (controller === this.controller) loadAll().catch(() => {}).finally(() => this.start());
      }, wait);
    },
  };

  // -- start ------------------------------------------------------------------------------
  document.addEventListener("DOMContentLoaded", () => {
    setupCharts();
    setupTheme();
    setupToken();
    setupActions();
    setInterval(tickUptime, 1000);
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) for (const chart of Object.values(state.charts)) chart.schedule();
    });
    loadAll().catch((error) => result(`Could not load: ${error.message}`, false)).finally(() => events.start());
  });
})();
