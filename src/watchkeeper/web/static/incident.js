// watchkeeper incident page (/incidents/<id>). Reads /api/incidents/<id> and shows the
// timeline of its alerts, the analyses and their reasoning, each action with the gate's
// decision and its verification, and how it ended. While the incident is open it is read
// again every few seconds; once resolved it is read once (from storage) and left alone.
// Everything the host, its services or a model wrote goes in with textContent (wkDom.el),
// never as markup.
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = "wk-token";
  const REFRESH_MS = 3000;
  const LOG_LINES_SHOWN = 10;
  const id = document.body.dataset.incident;
  const { el, pill } = window.wkDom;
  let timer = null;

  const STEP_WORDS = {
    opened: "incident opened",
    firing: "alert fired",
    changed: "severity changed",
    escalated: "escalated",
    resolved: "alert resolved",
    closed: "incident resolved",
  };
  const VERDICT_WORDS = {
    run: "run",
    approve: "wait for a person",
    refuse: "refuse",
    dry_run: "dry run only",
  };
  const VERDICT_LEVEL = { run: "ok", approve: "pending", refuse: "refused", dry_run: "dry_run" };
  const CHECK_LEVEL = {
    verified: "ok",
    "not verified": "failed",
    "not checked": "info",
    "did not run": "info",
    waiting: "pending",
  };

  function when(ts) {
    if (!ts) return "–";
    return new Date(ts * 1000).toLocaleString([], {
      year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
    });
  }

  function duration(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    if (s < 86400) return `${(s / 3600).toFixed(1)} h`;
    return `${(s / 86400).toFixed(1)} d`;
  }

  function empty(list, text, columns) {
    const row = columns
      ? el("tr", null, el("td", { colspan: String(columns), className: "empty", text }))
      : el("li", { className: "empty", text });
    list.replaceChildren(row);
  }

  function problem(text) {
    $("problem").hidden = !text;
    $("problem").textContent = text || "";
  }

  function live(state, text) {
    $("live").dataset.state = state;
    $("live").textContent = text;
  }

  // -- the parts of the page ------------------------------------------------------------
  // A resolved incident's root_cause describes its root as it cleared ("db is running");
  // the cause is what the root said when it fired, which the timeline keeps.
  function causeOf(incident, steps, alerts) {
    if (incident.state !== "resolved") return incident.root_cause;
    const root = alerts.find((a) => a.fingerprint === incident.root);
    const fired = root && steps.find((s) => s.kind === "firing" && s.alert_id === root.id);
    return fired && fired.summary ? fired.summary : incident.root_cause;
  }

  function renderHead(incident, steps, alerts) {
    document.title = `watchkeeper · ${incident.title}`;
    $("incident-title").textContent = incident.title;
    $("incident-opened").textContent = when(incident.opened_at);
    $("incident-severity").textContent = incident.severity;
    $("incident-severity").dataset.level = incident.severity;
    $("incident-state").textContent = incident.state;
    $("incident-state").dataset.level = incident.state === "resolved" ? "ok" : incident.severity;
    document.body.dataset.state = incident.state;
    const sure = incident.confidence ? ` (${Math.round(incident.confidence * 100)} % sure)` : "";
    const cause = causeOf(incident, steps, alerts);
    $("cause").textContent = cause
      ? `Probable cause: ${cause}${sure}`
      : "Root cause not determined; the alerts below are related.";
    const resolution = $("resolution");
    resolution.dataset.state = incident.state;
    resolution.textContent = incident.resolved_at
      ? `Resolved at ${when(incident.resolved_at)} after ${duration(incident.resolved_at - incident.opened_at)}.`
      : `Still open, for ${duration(Date.now() / 1000 - incident.opened_at)} so far.`;
    const flapping = $("flapping");
    flapping.hidden = !(incident.flapping || incident.flaps);
    flapping.textContent = `Flapping: ${incident.flaps} state changes in the flap window.`;
  }

  function renderTimeline(steps) {
    const list = $("timeline");
    if (!steps.length) return empty(list, "No steps recorded.");
    list.replaceChildren(...steps.map((step) => el("li", { className: "step", dataset: { kind: step.kind, severity: step.severity || "" } },
      el("time", { className: "at", text: when(step.at) }),
      el("span", { className: "kind", text: STEP_WORDS[step.kind] || step.kind }),
      step.subject ? el("span", { className: "subject", text: step.subject }) : null,
      step.severity && step.kind !== "resolved" && step.kind !== "closed" ? pill(step.severity) : null,
      el("span", { className: "summary", text: step.summary || "" }))));
  }

  function memberRow(incident, alert) {
    const role = alert.fingerprint === incident.root ? "root"
      : ((incident.members || []).find((m) => m.fingerprint === alert.fingerprint) || {}).role || "related";
    const parts = [
      el("div", { className: "head" },
        el("span", { className: "role", text: role }),
        pill(alert.severity),
        el("b", { className: "subject", text: alert.subject }),
        el("span", { className: "rule", text: alert.rule }),
        pill(alert.state, alert.state === "resolved" ? "ok" : alert.severity)),
      el("p", { className: "summary", text: alert.summary }),
    ];
    const times = `fired ${when(alert.started_at)}${alert.resolved_at ? ` · resolved ${when(alert.resolved_at)}` : ""}${alert.escalated ? " · escalated" : ""}`;
    parts.push(el("p", { className: "sub", text: times }));
    const journal = (alert.evidence || {}).journal;
    if (Array.isArray(journal) && journal.length) {
      parts.push(el("p", { className: "sub", text: "Last log lines:" }),
        el("pre", { className: "log", text: journal.slice(-LOG_LINES_SHOWN).map(String).join("\n") }));
    }
    return el("li", { className: "member", dataset: { role, fingerprint: alert.fingerprint } }, ...parts);
  }

  function renderMembers(detail) {
    const list = $("members");
    $("member-count").textContent = String(detail.members.length);
    if (!detail.members.length) return empty(list, "Its alerts are no longer kept.");
    list.replaceChildren(...detail.members.map((a) => memberRow(detail.incident, a)));
  }

  function analysisBlock(result, alertsById) {
    const source = result.source === "rules" ? "the rules" : `the model ${result.source}`;
    const parts = [
      el("p", { className: "meta" },
        el("time", { text: when(result.at) }), " · by ",
        el("b", { className: "source", text: source }), " · verdict ",
        pill(result.verdict)),
      el("blockquote", { className: "reasoning", text: result.summary }),
    ];
    const explained = Object.entries(result.explanations || {});
    if (explained.length) {
      parts.push(el("ul", { className: "explanations" }, ...explained.map(([alertId, words]) =>
        el("li", null, el("b", { text: `${alertsById[alertId] || alertId}: ` }), el("span", { text: words })))));
    }
    if (result.rules_summary && result.source !== "rules") {
      parts.push(el("p", { className: "sub", text: `The rules: ${result.rules_summary}` }));
    }
    if (result.model_verdict && result.rules_verdict && result.model_verdict !== result.rules_verdict) {
      parts.push(el("p", { className: "sub", text: `The model thought ${result.model_verdict}; the rules say ${result.rules_verdict}, and the rules are kept.` }));
    }
    if (result.fallback_reason) {
      parts.push(el("p", { className: "sub", text: `Rules only: ${result.fallback_reason}` }));
    }
    const recommended = result.recommended || [];
    if (recommended.length) {
      parts.push(el("p", { className: "sub", text: "Recommended:" }),
        el("ul", { className: "recommended" }, ...recommended.map((r) =>
          el("li", { text: `${r.action}${r.target ? ` ${r.target}` : ""}${r.reason ? ` (${r.reason})` : ""}` }))));
    }
    return el("article", { className: "analysis-item", dataset: { source: result.source === "rules" ? "rules" : "llm" } }, ...parts);
  }

  function renderAnalyses(detail) {
    const box = $("analyses");
    const alertsById = Object.fromEntries(detail.members.map((a) => [a.id, a.subject]));
    if (!detail.analyses.length) {
      box.replaceChildren(el("p", { className: "empty", text: "No analysis of this incident is kept." }));
      return;
    }
    box.replaceChildren(...detail.analyses.map((r) => analysisBlock(r, alertsById)));
  }

  function renderActions(detail) {
    const body = $("actions");
    const records = new Map();
    // The first record of each request says who proposed it (an approval makes the
    // later ones a person's).
    for (const record of detail.actions) if (!records.has(record.id)) records.set(record.id, record);
    if (!detail.decisions.length) return empty(body, "No action was taken for it.", 8);
    body.replaceChildren(...detail.decisions.map((d) => {
      const r = records.get(d.id) || {};
      const by = r.proposer ? `${r.proposer}${r.proposed_by ? ` (${r.proposed_by})` : ""}` : "–";
      return el("tr", { className: "decision", dataset: { verdict: d.verdict, outcome: d.outcome, id: d.id } },
        el("td", { className: "at", text: when(r.created_at) }),
        el("td", { className: "what", text: `${r.action || "?"}${r.target ? ` ${r.target}` : ""}` }),
        el("td", { className: "by", text: by }),
        el("td", { className: "verdict" }, pill(VERDICT_WORDS[d.verdict] || d.verdict, VERDICT_LEVEL[d.verdict])),
        el("td", { className: "why hide-s", text: d.approved_by ? `${d.reason}; approved by ${d.approved_by}` : d.reason }),
        el("td", { className: "outcome" }, pill(d.outcome)),
        el("td", { className: "check" }, pill(d.verification, CHECK_LEVEL[d.verification])),
        el("td", { className: "detail hide-s", text: d.detail }));
    }));
  }

  function renderRemedies(detail) {
    const list = $("remedies");
    if (!detail.remedies.length) return empty(list, "None.");
    list.replaceChildren(...detail.remedies.map((r) =>
      el("li", { text: `${r.action}${r.target ? ` ${r.target}` : ""}${r.reason ? ` (${r.reason})` : ""}` })));
  }

  function render(detail) {
    renderHead(detail.incident, detail.timeline || [], detail.members || []);
    renderTimeline(detail.timeline || []);
    renderMembers(detail);
    renderAnalyses(detail);
    renderActions(detail);
    renderRemedies(detail);
    problem(detail.history_unavailable || "");
  }

  // -- reading it -------------------------------------------------------------------------
  async function refresh() {
    const headers = {};
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await fetch(`/api/incidents/${encodeURIComponent(id)}`, { headers, cache: "no-store" });
    } catch (e) {
      live("retry", "offline");
      timer = setTimeout(refresh, REFRESH_MS);
      return;
    }
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      const detail = data && typeof data.detail === "string" ? data.detail : `HTTP ${response.status}`;
      if (response.status === 401) {
        problem("Reads need the API token on this server: paste it under “API token” above.");
        $("token-box").open = true;
        live("retry", "no token");
        timer = null;
        return;
      }
      if (response.status === 404) {
        problem(`No incident ${id} is known here (neither open nor stored).`);
        live("off", "not found");
        timer = null;
        return;
      }
      problem(`Could not read the incident: ${detail}`);
      live("retry", "retrying");
      timer = setTimeout(refresh, REFRESH_MS * 2);
      return;
    }
    render(data);
    if (data.incident.state === "resolved") {
      live("off", "resolved");
      $("live").title = "resolved: read from the history, no longer updated";
      return;
    }
    live("on", "live");
    timer = setTimeout(refresh, REFRESH_MS);
  }

  // The token, as on the dashboard (the same session key): only needed with closed reads.
  function showToken() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    $("token-box").dataset.set = token ? "yes" : "no";
    $("token-summary").textContent = token ? "✓ token set" : "API token";
  }

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token-input").value.trim();
    $("token-input").value = "";
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    $("token-box").open = false;
    showToken();
    if (timer !== null) clearTimeout(timer);
    refresh();
  });
  $("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $("token-box").open = false;
    showToken();
  });
  showToken();

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && timer !== null && document.body.dataset.state !== "resolved") {
      clearTimeout(timer);
      refresh();
    }
  });
  refresh();
})();
