/* whyrst HTML report: builds the charts, the table of resets and, on demand, each reset's ladder and
 * explanation from the JSON embedded in the page.
 *
 * Every string from the capture reaches the page through textContent, createTextNode or setAttribute on
 * attributes that are not URLs or event handlers; nothing is ever parsed as HTML (the page's
 * Content-Security-Policy enforces Trusted Types, so innerHTML with a string would throw). */
(function () {
  "use strict";

  const D = JSON.parse(document.getElementById("whyrst-data").textContent);
  const R = D.resets, C = D.causes, A = D.addresses, T = D.templates, W = D.words;
  const K = {};
  D.columns.forEach(function (name, i) { K[name] = i; });
  const STRIDE = D.ladder_columns.length;
  const ALOW = A.map(function (a) { return a.toLowerCase(); });
  const SVGNS = "http://www.w3.org/2000/svg";
  const HOLE = "\u0001";
  const RST_COLOR = "#d62728", EVIDENCE_COLOR = "#d97706", PACKET_COLOR = "#555b66";

  // -- text -----------------------------------------------------------------------------------------

  const holes = [];
  // A sentence is a template index, or [template, "numbers separated by spaces"] (see html.py).
  function text(item) {
    if (typeof item === "number") return T[item];
    const parts = holes[item[0]] || (holes[item[0]] = T[item[0]].split(HOLE));
    const numbers = item[1].split(" ");
    let s = parts[0];
    for (let i = 1; i < parts.length; i++) s += numbers[i - 1] + parts[i];
    return s;
  }

  function hostPort(a, port) {
    return (a.indexOf(":") >= 0 ? "[" + a + "]" : a) + ":" + port;
  }

  function clock(ts, withDate) {
    if (ts === null || ts === undefined) return "?";
    let sec = Math.floor(ts), us = Math.round((ts - sec) * 1e6);
    if (us >= 1e6) { us -= 1e6; sec += 1; }
    const iso = new Date(sec * 1000).toISOString();
    const hms = iso.slice(11, 19) + "." + String(us).padStart(6, "0");
    return withDate ? iso.slice(0, 10) + " " + hms + " UTC" : hms;
  }

  function seconds(us) { // microseconds since the connection started
    return "+" + (us / 1e6).toFixed(6) + " s";
  }

  // confidences are embedded in thousandths
  function pct(x) {
    return x === null ? "?" : Math.round(x / 10) + "%";
  }

  function time(r) {
    return r[K.ts] === null ? null : D.t0 + r[K.ts];
  }

  function alternatives(r) {
    const a = r[K.alts], out = [];
    for (let k = 0; k < a.length; k += 2) out.push([a[k], a[k + 1]]);
    return out;
  }

  // -- DOM helpers: elements and text nodes only ----------------------------------------------------

  function add(e, kids) {
    for (const k of kids) {
      if (k === null || k === undefined || k === false) continue;
      if (Array.isArray(k)) add(e, k);
      else e.appendChild(typeof k === "string" || typeof k === "number" ? document.createTextNode(String(k)) : k);
    }
    return e;
  }

  function h(tag, attrs) {
    const e = document.createElement(tag);
    for (const name in attrs || {}) e.setAttribute(name, attrs[name]);
    return add(e, Array.prototype.slice.call(arguments, 2));
  }

  function s(tag, attrs) {
    const e = document.createElementNS(SVGNS, tag);
    for (const name in attrs || {}) e.setAttribute(name, attrs[name]);
    return add(e, Array.prototype.slice.call(arguments, 2));
  }

  function swatch(color) {
    return s("svg", { class: "swatch", width: 12, height: 12, "aria-hidden": "true" },
      s("rect", { width: 12, height: 12, rx: 2, fill: color }));
  }

  // -- state ----------------------------------------------------------------------------------------

  const state = {
    cause: -1, sender: -1, addr: "", port: "", text: "", tmin: null, tmax: null,
    key: "frame", dir: 1, page: 0, size: 100, selected: -1,
  };
  let view = [];
  const byFrame = new Map();
  R.forEach(function (r, i) { if (!byFrame.has(r[K.frame])) byFrame.set(r[K.frame], i); });

  const $ = function (id) { return document.getElementById(id); };
  const table = $("reset-table");
  if (!table) return; // a capture without resets: the page is the summary alone
  const tbody = table.tBodies[0];

  // -- filtering and sorting -------------------------------------------------------------------------

  function haystack(r) {
    const parts = [r[K.frame], hostPort(A[r[K.src]], r[K.sport]), hostPort(A[r[K.dst]], r[K.dport]), r[K.uid],
      C[r[K.cause]].id, C[r[K.cause]].title, W[r[K.role]], W[r[K.sender]], W[r[K.flags]], r[K.payload]];
    for (const a of alternatives(r)) parts.push(C[a[0]].id);
    for (const e of r[K.evidence]) parts.push(text(e));
    return parts.join("\n").toLowerCase();
  }

  function filter() {
    const addr = state.addr.toLowerCase(), q = state.text.toLowerCase();
    const port = /^\d+$/.test(state.port) ? Number(state.port) : state.port ? -1 : null;
    $("f-port").setAttribute("aria-invalid", port === -1 ? "true" : "false");
    const out = [];
    for (let i = 0; i < R.length; i++) {
      const r = R[i];
      if (state.cause >= 0 && r[K.cause] !== state.cause) continue;
      if (state.sender >= 0 && r[K.sender] !== state.sender) continue;
      if (port !== null && r[K.sport] !== port && r[K.dport] !== port) continue;
      if (state.tmin !== null && !(time(r) >= state.tmin && time(r) < state.tmax)) continue;
      if (addr && (ALOW[r[K.src]] + ":" + r[K.sport]).indexOf(addr) < 0
          && (ALOW[r[K.dst]] + ":" + r[K.dport]).indexOf(addr) < 0) continue;
      if (q && haystack(r).indexOf(q) < 0) continue;
      out.push(i);
    }
    return out;
  }

  function cmp(a, b) { return a < b ? -1 : a > b ? 1 : 0; }

  const ORDER = {
    frame: function (a, b) { return a[K.frame] - b[K.frame]; },
    ts: function (a, b) { return (a[K.ts] === null ? -1 : a[K.ts]) - (b[K.ts] === null ? -1 : b[K.ts]); },
    from: function (a, b) { return cmp(A[a[K.src]], A[b[K.src]]) || a[K.sport] - b[K.sport]; },
    to: function (a, b) { return cmp(A[a[K.dst]], A[b[K.dst]]) || a[K.dport] - b[K.dport]; },
    role: function (a, b) { return cmp(W[a[K.role]], W[b[K.role]]); },
    sender: function (a, b) { return cmp(W[a[K.sender]], W[b[K.sender]]); },
    cause: function (a, b) { return cmp(C[a[K.cause]].id, C[b[K.cause]].id); },
    conf: function (a, b) { return a[K.conf] - b[K.conf]; },
    alts: function (a, b) {
      return cmp(a[K.alts].length ? C[a[K.alts][0]].id : "", b[K.alts].length ? C[b[K.alts][0]].id : "");
    },
  };

  function sort(rows) {
    const order = ORDER[state.key], dir = state.dir;
    rows.sort(function (i, j) { return order(R[i], R[j]) * dir || R[i][K.frame] - R[j][K.frame]; });
  }

  function refresh(keepPage) {
    view = filter();
    sort(view);
    if (!keepPage) state.page = 0;
    renderTable();
  }

  // -- the table -------------------------------------------------------------------------------------

  function pages() { return Math.max(1, Math.ceil(view.length / state.size)); }

  function renderTable() {
    state.page = Math.min(state.page, pages() - 1);
    const start = state.page * state.size, end = Math.min(view.length, start + state.size);
    const rows = [];
    for (let p = start; p < end; p++) {
      const i = view[p], r = R[i], cause = C[r[K.cause]];
      const tr = h("tr", { "data-i": i, tabindex: 0, "aria-expanded": i === state.selected ? "true" : "false" },
        h("td", { class: "num" }, r[K.frame]),
        h("td", { title: clock(time(r), true) }, clock(time(r), false)),
        h("td", { class: "addr" }, hostPort(A[r[K.src]], r[K.sport])),
        h("td", { class: "addr" }, hostPort(A[r[K.dst]], r[K.dport])),
        h("td", null, W[r[K.role]]),
        h("td", null, W[r[K.sender]]),
        h("td", { title: cause.title }, swatch(cause.color), " ", cause.id),
        h("td", { class: "num" }, r[K.conf] === null ? "?" : (r[K.conf] / 1000).toFixed(2)),
        h("td", { class: "muted" }, alternatives(r).slice(0, 2).map(function (a) { return C[a[0]].id; }).join(", ")));
      if (i === state.selected) tr.classList.add("selected");
      rows.push(tr);
      if (i === state.selected) rows.push(h("tr", { class: "detail-row" }, h("td", { colspan: 9 }, detail(i))));
    }
    tbody.replaceChildren.apply(tbody, rows);
    $("p-where").textContent = view.length ? "page " + (state.page + 1) + " of " + pages() : "no resets match";
    $("f-count").textContent = (view.length ? (start + 1) + "–" + end + " of " : "") + view.length.toLocaleString("en")
      + (view.length !== R.length ? " (of " + R.length.toLocaleString("en") + ")" : "") + " resets"
      + (state.tmin !== null ? ", " + clock(state.tmin) + " to " + clock(state.tmax) : "");
    $("p-first").disabled = $("p-prev").disabled = state.page === 0;
    $("p-next").disabled = $("p-last").disabled = state.page >= pages() - 1;
    for (const th of table.tHead.rows[0].cells) {
      const key = th.getAttribute("data-key");
      th.setAttribute("aria-sort", key === state.key ? (state.dir > 0 ? "ascending" : "descending") : "none");
    }
  }

  // -- one reset: the ladder and the explanation ----------------------------------------------------

  // The packets around the RST, decoded from the flat list of integers html.py embeds.
  function ladderRows(r) {
    const flat = r[K.ladder], rows = [];
    if (!flat || !flat.length) { // no packet context was kept (analysis without ladders): the RST alone
      return [{ frame: r[K.frame], t: 0, fromClient: W[r[K.role]] === "client", main: true, elided: 0,
        flags: W[r[K.flags]], seq: r[K.seq], ack: r[K.ack], len: 0, ttl: r[K.ttl] }];
    }
    let frame = r[K.frame], t = 0;
    for (let k = 0; k < flat.length; k += STRIDE) {
      frame += flat[k];
      t += flat[k + 1];
      const bits = flat[k + 2];
      rows.push({ frame: frame, t: t, fromClient: (bits & 1) === 1, main: (bits & 2) === 2, elided: bits >> 2,
        flags: W[flat[k + 3]], seq: flat[k + 4], ack: flat[k + 5], len: flat[k + 6], ttl: flat[k + 7] });
    }
    return rows;
  }

  function arrowLabel(p) {
    let label = p.flags + "  seq " + p.seq;
    if (p.flags.indexOf(".") >= 0 || p.ack) label += "  ack " + p.ack;
    if (p.len) label += "  len " + p.len;
    return label;
  }

  // What is missing before rows[k]. Where frame numbers jump, the frames in between are other traffic
  // or packets of this connection the analysis did not keep (it says how many in `elided`); either
  // direction's next packet carrying a later sequence number than the ladder accounts for shows bytes
  // that went by unseen. A sequence jump with no frame jump is a packet missing from the capture.
  function gapBefore(rows, k, next, explained) {
    const p = rows[k], prev = rows[k - 1];
    const jumps = [];
    const missing = function (j, dir) {
      const q = rows[j], expected = next[dir];
      if (expected === undefined || q.seq <= expected) return;
      jumps.push((dir ? "client → server" : "server → client") + " seq " + expected + " → " + q.seq);
      explained.add(j);
    };
    const skipped = p.frame - prev.frame - 1;
    if (skipped > 0) {
      for (const dir of [1, 0]) { // the first later packet of each direction
        for (let j = k; j < rows.length; j++) {
          if ((rows[j].fromClient ? 1 : 0) !== dir || rows[j].flags.indexOf("R") >= 0) continue;
          if (!explained.has(j)) missing(j, dir);
          break;
        }
      }
    } else if (!explained.has(k) && p.flags.indexOf("R") < 0) {
      missing(k, p.fromClient ? 1 : 0);
    }
    const frames = skipped === 1 ? "frame " + (prev.frame + 1) : "frames " + (prev.frame + 1) + "–" + (p.frame - 1);
    const seq = jumps.length ? " (" + jumps.join(", ") + ")" : "";
    if (p.elided > 0) return { big: true, label: "⋯ " + p.elided + " packets of this connection not kept" + seq };
    if (jumps.length && skipped > 0) return { big: true, label: "⋯ " + frames + " not shown" + seq };
    if (jumps.length) return { big: true, label: "⋯ not in the capture" + seq };
    if (skipped > 0) return { big: false, label: frames + " not shown" };
    return null;
  }

  function ladder(i) {
    const r = R[i], rows = ladderRows(r), rstFrame = r[K.frame];
    const cites = new Set(r[K.evframes].map(function (d) { return rstFrame + d; }));
    const main = rows.find(function (p) { return p.main; }) || rows[rows.length - 1];
    const src = hostPort(A[r[K.src]], r[K.sport]), dst = hostPort(A[r[K.dst]], r[K.dport]);
    const client = main.fromClient ? src : dst, server = main.fromClient ? dst : src;
    const Wd = 700, xC = 200, xS = 580, top = 62, rowH = 30, drop = 9;
    const uid = "l" + rstFrame;
    const items = [];
    let y = top;
    const next = {}; // per direction (1: client), the next sequence number expected
    const explained = new Set(); // rows whose sequence jump a gap above already shows
    for (let k = 0; k < rows.length; k++) {
      const p = rows[k];
      const gap = k > 0 ? gapBefore(rows, k, next, explained) : null;
      if (gap && gap.big) {
        const label = { x: Wd / 2, y: y + 8, "text-anchor": "middle", class: "gap-label" };
        if (gap.label.length * 6.6 > Wd - 20) { label.textLength = Wd - 20; label.lengthAdjust = "spacingAndGlyphs"; }
        items.push(s("rect", { x: 4, y: y - 6, width: Wd - 8, height: 20, rx: 3, class: "gap" }),
          s("text", label, gap.label));
        y += 26;
      } else if (gap) {
        items.push(s("line", { x1: 8, x2: xS + 40, y1: y - 3, y2: y - 3, class: "skip" }),
          s("text", { x: 8, y: y + 6, class: "skip-label" }, "⋮ " + gap.label));
        y += 12;
      }
      const isRst = p.flags.indexOf("R") >= 0, cited = !p.main && cites.has(p.frame);
      const x1 = p.fromClient ? xC : xS, x2 = p.fromClient ? xS : xC;
      const kind = p.main ? "rst" : isRst ? "rst other" : cited ? "cited" : "pkt";
      const way = p.fromClient ? "client → server" : "server → client";
      items.push(s("g", { class: "arrow " + kind, "data-frame": p.frame },
        s("title", null, "frame " + p.frame + ", " + seconds(p.t) + ", " + way + ": " + arrowLabel(p)
          + (p.ttl ? "  ttl " + p.ttl : "")),
        s("text", { x: 8, y: y + 8, class: "frame" }, "#" + p.frame),
        s("text", { x: xC - 14, y: y + 8, "text-anchor": "end", class: "time" }, seconds(p.t)),
        s("line", { x1: x1, y1: y, x2: x2 + (p.fromClient ? -3 : 3), y2: y + drop,
          "marker-end": "url(#" + uid + (isRst ? "-r" : cited ? "-e" : "-p") + ")" }),
        s("text", { x: (xC + xS) / 2, y: y - 2, "text-anchor": "middle", class: "label" }, arrowLabel(p))));
      if (!isRst) {
        const dir = p.fromClient ? 1 : 0;
        const len = p.len + (p.flags.indexOf("S") >= 0 ? 1 : 0) + (p.flags.indexOf("F") >= 0 ? 1 : 0);
        next[dir] = Math.max(next[dir] === undefined ? 0 : next[dir], p.seq + len);
      }
      y += rowH;
    }
    const height = y + 6;
    function head(x, role, addr) {
      const attrs = { x: x, y: 36, "text-anchor": "middle", class: "addr" };
      const room = 2 * Math.min(x - 4, Wd - x - 4);
      if (addr.length * 7 > room) { attrs.textLength = room; attrs.lengthAdjust = "spacingAndGlyphs"; }
      return [s("text", { x: x, y: 18, "text-anchor": "middle", class: "role" }, role), s("text", attrs, addr)];
    }
    function marker(id, color) {
      return s("marker", { id: id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7,
        orient: "auto-start-reverse" }, s("path", { d: "M0,0 L10,5 L0,10 z", fill: color }));
    }
    return s("svg", { class: "ladder", width: Wd, height: height, viewBox: "0 0 " + Wd + " " + height,
      role: "img", "aria-label": "ladder diagram of the connection of frame " + rstFrame, "data-frame": rstFrame },
      s("defs", null, marker(uid + "-p", PACKET_COLOR), marker(uid + "-r", RST_COLOR),
        marker(uid + "-e", EVIDENCE_COLOR)),
      head(xC, "client", client), head(xS, "server", server),
      s("line", { x1: xC, x2: xC, y1: top - 16, y2: height - 4, class: "lifeline" }),
      s("line", { x1: xS, x2: xS, y1: top - 16, y2: height - 4, class: "lifeline" }),
      items);
  }

  function section(title, body) {
    return body ? [h("h4", null, title), body] : null;
  }

  function detail(i) {
    const r = R[i], cause = C[r[K.cause]];
    const evidence = r[K.evidence].map(text), fix = r[K.fix].map(text), confirm = r[K.confirm].map(text);
    const explanation = h("div", { class: "explanation" },
      h("h3", null, swatch(cause.color), " ", cause.title),
      h("p", { class: "meta" }, h("code", null, cause.id), " · confidence " + pct(r[K.conf]) + " · sent by the ",
        h("b", null, W[r[K.role]]), " (" + W[r[K.sender]] + ")"),
      h("p", { class: "meta" }, "frame " + r[K.frame] + " · " + clock(time(r), true) + " · ",
        h("span", { class: "addr" }, hostPort(A[r[K.src]], r[K.sport]) + " → " + hostPort(A[r[K.dst]], r[K.dport])),
        " · " + W[r[K.flags]] + " seq " + r[K.seq] + " ack " + r[K.ack] + " ttl " + r[K.ttl] + " · uid ",
        h("code", null, r[K.uid])),
      cause.summary ? h("details", null, h("summary", null, "What this cause is"), h("p", null, cause.summary)) : null,
      section("Evidence", evidence.length ? h("ul", { class: "evidence" },
        evidence.map(function (e) { return h("li", null, e); })) : null),
      section("Payload of the RST", r[K.payload] ? h("pre", { class: "payload" }, r[K.payload]) : null),
      section("Diagnostic payload", r[K.diag] ? h("pre", { class: "payload" }, JSON.stringify(r[K.diag], null, 1))
        : null),
      section("Other possible causes", r[K.alts].length ? h("ul", { class: "alts" }, alternatives(r).map(function (a) {
        const c = C[a[0]];
        return h("li", null, swatch(c.color), " ", h("code", null, c.id), " " + pct(a[1]) + " · " + c.title);
      })) : null),
      section("How to confirm on the host", confirm.length ? h("div", null, confirm.map(function (c) {
        return h("pre", { class: "cmd" }, c);
      })) : null),
      section("Fix", fix.length ? h("ul", null, fix.map(function (f) { return h("li", null, f); })) : null));
    const legend = h("p", { class: "legend muted" }, "client on the left, server on the right; ",
      h("span", { class: "k-rst" }, "red: the RST"), ", ", h("span", { class: "k-cited" }, "orange: packets the evidence cites"),
      "; seq and ack are relative; hover an arrow for its details");
    return h("div", { class: "detail", id: "detail-" + r[K.frame] },
      h("div", { class: "ladder-wrap" }, ladder(i), legend), explanation);
  }

  // -- selection and the URL hash (#frame=N opens a reset) --------------------------------------------

  function clearFilters() {
    $("filters").reset();
    Object.assign(state, { cause: -1, sender: -1, addr: "", port: "", text: "", tmin: null, tmax: null });
  }

  function select(i, scroll) {
    if (i === undefined || i < 0) return;
    state.selected = i;
    let pos = view.indexOf(i);
    if (pos < 0) { // filtered out: show everything again so the reset is in the table
      clearFilters();
      view = filter();
      sort(view);
      pos = view.indexOf(i);
    }
    state.page = Math.floor(pos / state.size);
    renderTable();
    // only when the row is out of sight: the reset's own row, not its (tall) details, decides
    const tr = tbody.querySelector("tr.selected");
    if (scroll && tr) {
      const box = tr.getBoundingClientRect();
      if (box.top < 0 || box.bottom > window.innerHeight) tr.scrollIntoView({ block: "start" });
    }
  }

  function close() {
    state.selected = -1;
    try { history.replaceState(null, "", location.pathname + location.search); } catch (e) { /* file: quirks */ }
    renderTable();
  }

  function fromHash() {
    const m = /(?:^#|&)frame=(\d+)/.exec(location.hash);
    if (m && byFrame.has(Number(m[1]))) select(byFrame.get(Number(m[1])), true);
  }

  function open(i) {
    if (i === state.selected) { close(); return; }
    const hash = "#frame=" + R[i][K.frame];
    if (location.hash !== hash) location.hash = hash; // hashchange selects it
    else select(i, true);
  }

  // -- controls --------------------------------------------------------------------------------------

  function setCause(ci) {
    state.cause = ci;
    $("f-cause").value = ci >= 0 ? String(ci) : "";
    refresh();
  }

  function setup() {
    const causeSelect = $("f-cause"), senderSelect = $("f-sender");
    for (const pair of D.by_cause) {
      causeSelect.appendChild(h("option", { value: pair[0] }, C[pair[0]].id + " (" + pair[1].toLocaleString("en") + ")"));
    }
    const senders = new Map();
    for (const r of R) senders.set(r[K.sender], (senders.get(r[K.sender]) || 0) + 1);
    for (const [w, n] of senders) senderSelect.appendChild(h("option", { value: w }, W[w] + " (" + n.toLocaleString("en") + ")"));
    causeSelect.addEventListener("change", function () { setCause(causeSelect.value === "" ? -1 : Number(causeSelect.value)); });
    senderSelect.addEventListener("change", function () {
      state.sender = senderSelect.value === "" ? -1 : Number(senderSelect.value);
      refresh();
    });
    // typing refreshes once the typing pauses (a text search reads every reset); Enter or leaving the
    // field refreshes at once
    let timer = 0;
    const typed = function () {
      clearTimeout(timer);
      const next = { addr: $("f-addr").value.trim(), port: $("f-port").value.trim(), text: $("f-text").value.trim() };
      if (next.addr === state.addr && next.port === state.port && next.text === state.text) return;
      Object.assign(state, next);
      refresh();
    };
    for (const id of ["f-addr", "f-port", "f-text"]) {
      $(id).addEventListener("input", function () {
        clearTimeout(timer);
        timer = setTimeout(typed, R.length > 20000 ? 250 : 60);
      });
      $(id).addEventListener("change", typed);
    }
    $("filters").addEventListener("submit", function (e) { e.preventDefault(); });
    $("filters").addEventListener("reset", function () {
      setTimeout(function () {
        Object.assign(state, { cause: -1, sender: -1, addr: "", port: "", text: "", tmin: null, tmax: null });
        refresh();
      }, 0);
    });
    for (const th of table.tHead.rows[0].cells) {
      th.tabIndex = 0;
      const sortBy = function () {
        const key = th.getAttribute("data-key");
        state.dir = state.key === key ? -state.dir : 1;
        state.key = key;
        refresh(true);
      };
      th.addEventListener("click", sortBy);
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") sortBy(); });
    }
    tbody.addEventListener("click", function (e) {
      const tr = e.target.closest("tr[data-i]");
      if (tr) open(Number(tr.getAttribute("data-i")));
    });
    tbody.addEventListener("keydown", function (e) {
      const tr = e.target.closest("tr[data-i]");
      if (tr && e.key === "Enter") open(Number(tr.getAttribute("data-i")));
      if (e.key === "Escape") close();
    });
    const go = function (page) { state.page = Math.max(0, Math.min(pages() - 1, page)); renderTable(); };
    $("p-first").addEventListener("click", function () { go(0); });
    $("p-prev").addEventListener("click", function () { go(state.page - 1); });
    $("p-next").addEventListener("click", function () { go(state.page + 1); });
    $("p-last").addEventListener("click", function () { go(pages() - 1); });
    $("p-size").addEventListener("change", function () {
      const first = state.page * state.size;
      state.size = Number($("p-size").value);
      go(Math.floor(first / state.size));
    });
    window.addEventListener("hashchange", fromHash);
  }

  // -- charts ----------------------------------------------------------------------------------------

  function charts() {
    if (typeof Chart === "undefined") return;
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    Chart.defaults.animation = false;
    const order = D.by_cause.map(function (p) { return p[0]; });
    new Chart($("chart-causes"), {
      type: "bar",
      data: {
        labels: order.map(function (ci) { return C[ci].id; }),
        datasets: [{ data: D.by_cause.map(function (p) { return p[1]; }),
          backgroundColor: order.map(function (ci) { return C[ci].color; }) }],
      },
      options: {
        indexAxis: "y", responsive: true, maintainAspectRatio: false,
        plugins: {
          legend: { display: false },
          tooltip: { callbacks: { afterLabel: function (item) { return C[order[item.dataIndex]].title; } } },
        },
        scales: { x: { beginAtZero: true, ticks: { precision: 0 } } },
        onClick: function (e, elements) {
          if (elements.length) setCause(state.cause === order[elements[0].index] ? -1 : order[elements[0].index]);
        },
      },
    });
    const tl = D.timeline;
    const labels = [];
    const days = tl.step * tl.bins > 86400;
    for (let b = 0; b < tl.bins; b++) {
      const at = tl.t0 + b * tl.step;
      labels.push(days ? new Date(at * 1000).toISOString().slice(5, 16).replace("T", " ")
        : clock(at).slice(0, tl.step >= 1 ? 8 : 12));
    }
    new Chart($("chart-timeline"), {
      type: "bar",
      data: {
        labels: labels,
        datasets: tl.series.map(function (sr) {
          return { label: C[sr[0]].id, data: sr[1], backgroundColor: C[sr[0]].color, stack: "resets" };
        }),
      },
      options: {
        responsive: true, maintainAspectRatio: false,
        datasets: { bar: { barPercentage: 1, categoryPercentage: 0.9 } },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 10, font: { size: 11 } } },
          tooltip: { callbacks: { title: function (items) {
            const b = items[0].dataIndex;
            return clock(tl.t0 + b * tl.step) + " to " + clock(tl.t0 + (b + 1) * tl.step) + " UTC";
          } } } },
        scales: { x: { stacked: true, ticks: { maxTicksLimit: 8, maxRotation: 0 } },
          y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } },
        onClick: function (e, elements) {
          if (!elements.length || tl.bins < 2) return;
          const b = elements[0].index;
          state.tmin = tl.t0 + b * tl.step;
          // the last bin also holds the last reset, which sits exactly on its end
          state.tmax = tl.t0 + (b + 1 + (b === tl.bins - 1 ? 1e-3 : 0)) * tl.step;
          refresh();
        },
      },
    });
  }

  setup();
  refresh();
  charts();
  fromHash();
  // when the page became usable, for the tests and the size benchmark
  document.documentElement.setAttribute("data-ready-ms", String(Math.round(performance.now())));
})();
