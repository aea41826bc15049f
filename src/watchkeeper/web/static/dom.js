// watchkeeper pages' shared DOM helpers: el() builds an element whose text always goes in
// as textContent (never as markup), pill() a small status badge. Loaded before each page's
// own script; both the dashboard and the fleet page use them as window.wkDom.
(function () {
  "use strict";

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [key, value] of Object.entries(props)) {
        if (value == null) continue;
        if (key === "text") node.textContent = value;
        else if (key === "dataset") Object.assign(node.dataset, value);
        else if (key === "className") node.className = value;
        else node.setAttribute(key, value);
      }
    }
    for (const child of children) {
      if (child == null) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function pill(text, level) {
    return el("span", { className: "pill small", text, dataset: { level: level || text } });
  }

  window.wkDom = Object.freeze({ el, pill });
})();
