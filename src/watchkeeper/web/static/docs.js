// The API reference, rendered from /openapi.json by watchkeeper itself (no CDN, no inline
// script): each operation with its parameters, body fields and a curl line to copy.
(function () {
  "use strict";

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "text") node.textContent = value;
      else if (key === "className") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) if (child != null) node.append(child);
    return node;
  }

  function resolve(spec, schema) {
    let s = schema || {};
    while (s.$ref) s = s.$ref.split("/").slice(1).reduce((node, key) => node[key], spec);
    return s;
  }

  function typeOf(spec, schema) {
    const s = resolve(spec, schema);
    if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(" | ");
    if (s.anyOf) return s.anyOf.map((x) => typeOf(spec, x)).join(" | ");
    if (s.type === "array") return `${typeOf(spec, s.items)}[]`;
    return s.type || "object";
  }

  function example(spec, schema) {
    const s = resolve(spec, schema);
    if (s.examples && s.examples.length) return s.examples[0];
    if (s.default !== undefined) return s.default;
    if (s.type === "object" && s.properties) {
      const out = {};
      for (const [name, prop] of Object.entries(s.properties)) {
        if ((s.required || []).includes(name)) out[name] = example(spec, prop);
      }
      return out;
    }
    return s.type === "string" ? "…" : null;
  }

  function operation(spec, path, method, op) {
    const card = el("section", { className: "card" });
    card.append(el("h2", null, el("span", { className: "pill small", text: method.toUpperCase() }),
      el("code", { text: path }), el("span", { className: "now", text: op.summary || "" })));
    if (op.description) card.append(el("p", { text: op.description }));
    const params = op.parameters || [];
    if (params.length) {
      const body = el("tbody");
      for (const p of params) {
        body.append(el("tr", null, el("td", null, el("code", { text: p.name })), el("td", { text: p.in }),
          el("td", { text: typeOf(spec, p.schema) + (p.required ? " (required)" : "") }),
          el("td", { text: p.description || (resolve(spec, p.schema).description || "") })));
      }
      card.append(el("table", null, el("thead", null, el("tr", null, el("th", { text: "parameter" }),
        el("th", { text: "in" }), el("th", { text: "type" }), el("th", { text: "about" }))), body));
    }
    let data = null;
    const content = op.requestBody && op.requestBody.content && op.requestBody.content["application/json"];
    if (content) {
      const schema = resolve(spec, content.schema);
      data = example(spec, schema);
      const body = el("tbody");
      for (const [name, prop] of Object.entries(schema.properties || {})) {
        body.append(el("tr", null, el("td", null, el("code", { text: name })),
          el("td", { text: typeOf(spec, prop) + ((schema.required || []).includes(name) ? " (required)" : "") }),
          el("td", { text: resolve(spec, prop).description || "" })));
      }
      card.append(el("h3", { text: "body (JSON)" }), el("table", null, body));
    }
    let curl = `curl -s`;
    if (op.security) curl += ` -H "Authorization: Bearer $TOKEN"`;
    if (method !== "get") curl += ` -X ${method.toUpperCase()} -H 'Content-Type: application/json'`;
    if (data) curl += ` -d '${JSON.stringify(data)}'`;
    curl += ` ${location.origin}${path}`;
    card.append(el("pre", { className: "mono" }, el("code", { text: curl })));
    const codes = Object.entries(op.responses || {}).map(([code, r]) => `${code} ${r.description || ""}`);
    card.append(el("p", { className: "meta", text: `responses: ${codes.join(" · ")}` }));
    return card;
  }

  document.addEventListener("DOMContentLoaded", async () => {
    const response = await fetch("/openapi.json");
    const spec = await response.json();
    document.getElementById("api-version").textContent = `version ${spec.info.version} · OpenAPI ${spec.openapi}`;
    document.getElementById("api-description").textContent = (spec.info.description || "").replace(/`/g, "");
    const box = document.getElementById("operations");
    for (const [path, ops] of Object.entries(spec.paths)) {
      for (const [method, op] of Object.entries(ops)) box.append(operation(spec, path, method, op));
    }
  });
})();
