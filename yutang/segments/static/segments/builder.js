/* Visual builder for the segment rule tree. The JSON textarea (#rule-json) is the source of
   truth that the form submits and HTMX previews; the builder edits a tree and writes it
   there, and editing the JSON re-draws the builder. No framework: plain DOM. */
(function () {
  "use strict";

  var OPTIONS = JSON.parse(document.getElementById("builder-options").textContent);
  var L = OPTIONS.labels;
  var NUM_OPS = ["eq", "ne", "gt", "gte", "lt", "lte", "between"];
  var TEXT_OPS = ["eq", "ne", "in", "not_in", "contains", "exists"];
  var OP_LABELS = {eq: "=", ne: "≠", gt: ">", gte: "≥", lt: "<", lte: "≤", between: L.between,
    "in": L["in"], not_in: L.not_in, contains: L.contains, exists: L.exists, none: L.none};

  // Fields of each condition kind: [name, input type, choices]
  var KINDS = {
    profile: [["field", "select", ["gender", "province", "city", "display_name", "birthday"]],
              ["op", "select", TEXT_OPS.concat(["gt", "gte", "lt", "lte"])], ["value", "text"]],
    attribute: [["key", "text"], ["type", "select", ["string", "number", "boolean", "date"]],
                ["op", "select", TEXT_OPS.concat(["gt", "gte", "lt", "lte", "between"])], ["value", "typed"]],
    tag: [["tag_ids", "multi", OPTIONS.tags], ["match", "select", ["any", "all"]]],
    identity: [["identity_kind", "select", ["wecom_external_userid", "wechat_unionid", "wechat_openid", "phone", "email", "app_user", "external"]],
               ["namespace", "text"]],
    carrier: [["carrier", "select", ["", "wecom", "official_account", "sandbox", "sms", "email", "webhook"], "carrier_kinds"],
              ["account_ids", "multi", OPTIONS.carrier_accounts],
              ["status", "select", ["held", "lost", "none"], "carrier_status"]],
    group: [["group_id", "text"]],
    consent: [["purpose", "select", ["marketing", "service"]], ["carrier", "text"],
              ["status", "select", ["granted", "withdrawn", "unset"]]],
    owner: [["owner", "select", ["store", "staff"]], ["op", "select", ["in", "none"]], ["ids", "idlist"]],
    channel: [["channels", "list"]],
    lifecycle: [["stages", "multi", OPTIONS.stages]],
    rfm: [["classes", "multi", OPTIONS.rfm_classes]],
    aggregate: [["field", "select", ["order_count", "paid_fen", "refunded_fen", "net_fen", "touch_count", "event_count",
                 "days_since_first_order", "days_since_last_order", "days_since_last_touch", "days_since_last_inbound",
                 "days_since_last_click", "days_since_contact_added", "days_since_last_event"]],
                ["op", "select", NUM_OPS], ["value", "number"]],
    event: [["type", "text"], ["measure", "select", ["count", "sum", "first", "last"]], ["property", "text"],
            ["filters", "filter"], ["window", "window"], ["op", "select", NUM_OPS], ["value", "number"]],
    touches: [["window", "window"], ["op", "select", NUM_OPS], ["value", "number"]]
  };
  var DEFAULTS = {
    profile: {field: "city", op: "eq", value: ""}, attribute: {key: "", type: "string", op: "eq", value: ""},
    tag: {tag_ids: [], match: "any"}, identity: {identity_kind: "wecom_external_userid"},
    carrier: {carrier: "wecom", account_ids: [], status: "held"}, group: {group_id: ""},
    consent: {purpose: "marketing", carrier: "", status: "granted"}, owner: {owner: "store", op: "in", ids: []},
    channel: {channels: []}, lifecycle: {stages: ["new_contact"]}, rfm: {classes: ["important_value"]},
    aggregate: {field: "order_count", op: "gte", value: 1},
    event: {type: "order.paid", measure: "count", window: {days: 30}, op: "gte", value: 1},
    touches: {window: {days: 7}, op: "gte", value: 1}
  };

  var textarea = document.getElementById("rule-json");
  var root = document.getElementById("rule-builder");
  var tree;

  function fromJson(j) {
    if (j && j.not) { var inner = fromJson(j.not); inner.negate = !inner.negate; return inner; }
    if (j && (j.and || j.or)) {
      return {group: j.and ? "and" : "or", negate: false, children: (j.and || j.or).map(fromJson)};
    }
    return {negate: false, cond: j || {kind: "aggregate", field: "order_count", op: "gte", value: 1}};
  }
  function toJson(n) {
    var out;
    if (n.group) { out = {}; out[n.group] = n.children.map(toJson); } else { out = clean(n.cond); }
    return n.negate ? {not: out} : out;
  }
  function clean(c) {
    var out = {};
    Object.keys(c).forEach(function (k) {
      var v = c[k];
      if (v === "" || v === null || v === undefined) { return; }
      if (k === "property" && c.measure !== "sum") { return; }
      if ((k === "value") && c.op === "exists") { return; }
      if (Array.isArray(v) && v.length === 0 && (k === "filters" || k === "account_ids")) { return; }
      out[k] = v;
    });
    return out;
  }
  function write() {
    textarea.value = JSON.stringify(toJson(tree), null, 1);
    textarea.dispatchEvent(new Event("rule-changed", {bubbles: true}));
  }
  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") { e.textContent = attrs[k]; } else { e.setAttribute(k, attrs[k]); }
    });
    (children || []).forEach(function (c) { e.appendChild(c); });
    return e;
  }
  function select(values, current, labels, onchange, testid) {
    var s = el("select", {"class": "form-select form-select-sm w-auto", "data-testid": testid || ""});
    values.forEach(function (v) {
      var value = typeof v === "object" ? String(v.id) : v;
      var label = typeof v === "object" ? v.label : ((labels && labels[v]) || v);
      var o = el("option", {value: value, text: label});
      if (String(current) === value) { o.selected = true; }
      s.appendChild(o);
    });
    s.addEventListener("change", function () { onchange(s.value); });
    return s;
  }
  function input(type, value, onchange, placeholder, testid) {
    var i = el("input", {"class": "form-control form-control-sm w-auto", type: type,
      placeholder: placeholder || "", "data-testid": testid || ""});
    i.value = value === undefined || value === null ? "" : value;
    i.addEventListener("input", function () { onchange(i.value); });
    return i;
  }
  function num(v) { var n = parseFloat(v); return isNaN(n) ? "" : n; }
  function list(v) { return v.split(/[,，\s]+/).filter(Boolean); }

  function valueInput(c, kind) {
    var numeric = kind === "number" || (c.kind === "attribute" && c.type === "number");
    var date = (c.kind === "attribute" && c.type === "date") || (c.kind === "profile" && c.field === "birthday");
    if (c.op === "exists") { return el("span"); }
    if (c.kind === "attribute" && c.type === "boolean") {
      return select(["true", "false"], String(c.value === true), null, function (v) { c.value = v === "true"; write(); });
    }
    if (c.op === "between") {
      var pair = Array.isArray(c.value) ? c.value : ["", ""];
      var conv = numeric ? num : String;
      var wrap = el("span", {"class": "d-inline-flex gap-1"});
      wrap.appendChild(input(date ? "date" : "number", pair[0], function (v) { pair[0] = conv(v); c.value = pair; write(); }));
      wrap.appendChild(input(date ? "date" : "number", pair[1], function (v) { pair[1] = conv(v); c.value = pair; write(); }));
      return wrap;
    }
    if (c.op === "in" || c.op === "not_in") {
      return input("text", Array.isArray(c.value) ? c.value.join(", ") : c.value, function (v) {
        c.value = numeric ? list(v).map(num) : list(v); write();
      }, L.comma_list);
    }
    if (numeric) { return input("number", c.value, function (v) { c.value = num(v); write(); }, "", "cond-value"); }
    return input(date ? "date" : "text", c.value, function (v) { c.value = v; write(); }, "", "cond-value");
  }

  function drawCondition(n, parent) {
    var c = n.cond;
    var row = el("div", {"class": "d-flex flex-wrap gap-2 align-items-center yt-rule-cond p-2 border rounded mb-2", "data-testid": "rule-condition"});
    row.appendChild(notToggle(n));
    row.appendChild(select(Object.keys(KINDS), c.kind, L.kinds, function (v) {
      n.cond = JSON.parse(JSON.stringify(DEFAULTS[v])); n.cond.kind = v; redraw();
    }, "cond-kind"));
    (KINDS[c.kind] || []).forEach(function (spec) {
      var name = spec[0], type = spec[1];
      if (name === "property" && c.measure !== "sum") { return; }
      if (name === "value" || type === "number") {
        row.appendChild(valueInput(c, type === "number" ? "number" : "typed"));
      } else if (type === "select") {
        // A spec may name its own label map (a value like "lost" means different things).
        var labels = name === "op" ? OP_LABELS : (spec[3] ? L[spec[3]] : L.values);
        row.appendChild(select(spec[2], c[name] === undefined ? "" : c[name], labels, function (v) {
          c[name] = v; if (name === "op" || name === "type" || name === "measure" || name === "field") { redraw(); } else { write(); }
        }, "cond-" + name));
      } else if (type === "multi") {
        var m = el("select", {"class": "form-select form-select-sm w-auto", multiple: "multiple", size: "3", "data-testid": "cond-" + name});
        spec[2].forEach(function (v) {
          var value = typeof v === "object" ? String(v.id) : v;
          var o = el("option", {value: value, text: typeof v === "object" ? v.label : ((L.values && L.values[v]) || v)});
          if ((c[name] || []).map(String).indexOf(value) >= 0) { o.selected = true; }
          m.appendChild(o);
        });
        m.addEventListener("change", function () {
          c[name] = Array.prototype.filter.call(m.options, function (o) { return o.selected; })
            .map(function (o) { return /_ids$/.test(name) ? parseInt(o.value, 10) : o.value; });
          write();
        });
        row.appendChild(m);
      } else if (type === "list" || type === "idlist") {
        row.appendChild(input("text", (c[name] || []).join(", "), function (v) {
          c[name] = type === "idlist" ? list(v).map(function (x) { return parseInt(x, 10); }) : list(v); write();
        }, L.comma_list));
      } else if (type === "window") {
        var w = el("span", {"class": "d-inline-flex align-items-center gap-1 small"}, [el("span", {text: L.in_last})]);
        w.appendChild(input("number", c.window ? c.window.days : "", function (v) {
          c.window = v === "" ? undefined : {days: parseInt(v, 10)}; write();
        }, L.all_time, "cond-window-days"));
        w.appendChild(el("span", {text: L.days}));
        row.appendChild(w);
      } else if (type === "filter") {
        var f = (c.filters && c.filters[0]) || {property: "", op: "eq", value: ""};
        var fw = el("span", {"class": "d-inline-flex align-items-center gap-1 small"}, [el("span", {text: L.where})]);
        var sync = function () { c.filters = f.property ? [f] : []; write(); };
        fw.appendChild(input("text", f.property, function (v) { f.property = v; sync(); }, L.property));
        fw.appendChild(select(TEXT_OPS.concat(["gt", "gte", "lt", "lte"]), f.op, OP_LABELS, function (v) { f.op = v; sync(); }));
        fw.appendChild(input("text", f.value, function (v) {
          f.value = /^-?\d+(\.\d+)?$/.test(v) ? parseFloat(v) : v; sync();
        }, L.value));
        row.appendChild(fw);
      } else {
        row.appendChild(input("text", c[name], function (v) { c[name] = v; write(); }, L[name] || name, "cond-" + name));
      }
    });
    row.appendChild(removeButton(n, parent));
    return row;
  }
  function notToggle(n) {
    var label = el("label", {"class": "form-check-label small d-inline-flex align-items-center gap-1"});
    var box = el("input", {type: "checkbox", "class": "form-check-input", "data-testid": "rule-not"});
    box.checked = !!n.negate;
    box.addEventListener("change", function () { n.negate = box.checked; write(); });
    label.appendChild(box);
    label.appendChild(document.createTextNode(L.not));
    return label;
  }
  function removeButton(n, parent) {
    var b = el("button", {type: "button", "class": "btn btn-sm btn-link text-danger", text: "×", title: L.remove});
    if (!parent) { b.disabled = true; }
    b.addEventListener("click", function () {
      parent.children.splice(parent.children.indexOf(n), 1);
      if (parent.children.length === 0) { parent.children.push(fromJson(null)); }
      redraw();
    });
    return b;
  }
  function drawGroup(n, parent) {
    var box = el("div", {"class": "border rounded p-2 mb-2 yt-rule-group", "data-testid": "rule-group"});
    var head = el("div", {"class": "d-flex gap-2 align-items-center mb-2"});
    head.appendChild(notToggle(n));
    head.appendChild(select(["and", "or"], n.group, {and: L.all_of, or: L.any_of}, function (v) { n.group = v; write(); }, "group-op"));
    var addC = el("button", {type: "button", "class": "btn btn-sm btn-outline-secondary", text: L.add_condition, "data-testid": "add-condition"});
    addC.addEventListener("click", function () { n.children.push(fromJson(null)); redraw(); });
    var addG = el("button", {type: "button", "class": "btn btn-sm btn-outline-secondary", text: L.add_group, "data-testid": "add-group"});
    addG.addEventListener("click", function () { n.children.push({group: "or", negate: false, children: [fromJson(null)]}); redraw(); });
    head.appendChild(addC);
    head.appendChild(addG);
    head.appendChild(removeButton(n, parent));
    box.appendChild(head);
    n.children.forEach(function (child) { box.appendChild(draw(child, n)); });
    return box;
  }
  function draw(n, parent) { return n.group ? drawGroup(n, parent) : drawCondition(n, parent); }
  function redraw() {
    root.replaceChildren(draw(tree, null));
    write();
  }
  function load() {
    var parsed;
    try { parsed = JSON.parse(textarea.value || "null"); } catch (e) { return false; }
    tree = fromJson(parsed);
    if (!tree.group) { tree = {group: "and", negate: false, children: [tree]}; }
    root.replaceChildren(draw(tree, null));
    return true;
  }
  textarea.addEventListener("change", load);
  load();
})();
