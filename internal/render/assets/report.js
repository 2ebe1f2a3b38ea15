
"use strict";
// pathtrace report: the packet table, a packet's timeline beside its reply,
// and the packet's path lit up on the map. Data: the JSON in #pt-data (see
// internal/render/html.go, appendData). No network, no libraries.
(function () {
  var D = JSON.parse(document.getElementById("pt-data").textContent);
  var S = D.strings, P = D.packets, NS = D.ns;
  var byID = new Map();
  P.forEach(function (p, i) { byID.set(p.id, p); p.i = i; });
  var PAGE = 200;
  var current = 0; // the packet shown
  var state = { key: "id", dir: 1, filter: "", verdict: "", limit: PAGE, rows: [] };

  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  // Durations as the text timeline writes them: µs with one decimal, or
  // seconds with µs precision from one second up.
  function dur(ns) {
    var neg = ns < 0 ? "-" : "";
    ns = Math.abs(ns);
    if (ns < 1e9) {
      var t = Math.floor((ns + 50) / 100);
      return neg + Math.floor(t / 10) + "." + (t % 10) + "µs";
    }
    var us = Math.floor((ns + 500) / 1000);
    var frac = String(us % 1e6);
    while (frac.length < 6) frac = "0" + frac;
    return neg + Math.floor(us / 1e6) + "." + frac + "s";
  }
  // A namespace as the paths name it, and as people do where the report
  // knows (a pod's name).
  function nsName(i) { return i >= 0 && NS[i] ? NS[i].name : "-"; }
  function nsLabel(i) { return i >= 0 && NS[i] && NS[i].label ? NS[i].label : nsName(i); }
  function names(p) {
    var a = nsLabel(p.from), b = nsLabel(p.to);
    return a === b ? a : a + " → " + b;
  }
  function endpoint(addr, name) { return name ? addr + " (" + name + ")" : addr; }
  function clock(p) { return p.start.slice(11, 26); }
  function search(p) {
    if (p.q === undefined) {
      var seen = {}, parts = ["#" + p.id, p.proto, endpoint(p.src, p.src_name), endpoint(p.dst, p.dst_name), p.flags || "", p.verdict, names(p)];
      p.hops.forEach(function (h) {
        var k = nsName(h[3]) + " " + S[h[2]];
        if (!seen[k]) { seen[k] = 1; parts.push(k); }
      });
      p.q = parts.join(" ").toLowerCase();
    }
    return p.q;
  }
  var keys = {
    id: function (p) { return p.id; },
    start: function (p) { return p.start; },
    proto: function (p) { return p.proto; },
    src: function (p) { return p.src; },
    dst: function (p) { return p.dst; },
    names: function (p) { return names(p); },
    verdict: function (p) { return p.verdict; },
    total: function (p) { return p.total; },
    hops: function (p) { return p.hops.length; }
  };

  // The table.
  var tbody = document.querySelector("#table tbody");
  function select() {
    var words = state.filter.toLowerCase().split(/\s+/).filter(Boolean);
    var rows = P.filter(function (p) {
      if (state.verdict && p.verdict !== state.verdict) return false;
      var q = words.length ? search(p) : "";
      return words.every(function (w) { return q.indexOf(w) >= 0; });
    });
    var key = keys[state.key], dir = state.dir;
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      return x < y ? -dir : x > y ? dir : a.id - b.id;
    });
    state.rows = rows;
  }
  function row(p) {
    return '<tr data-id="' + p.id + '"' + (p.id === current ? ' class="sel"' : "") + '><td class="num">' + p.id +
      "</td><td class=mono>" + esc(clock(p)) + "</td><td>" + esc(p.proto) + (p.flags ? " [" + esc(p.flags) + "]" : "") +
      "</td><td class=mono>" + esc(endpoint(p.src, p.src_name)) + "</td><td class=mono>" + esc(endpoint(p.dst, p.dst_name)) + "</td><td>" + esc(names(p)) +
      '</td><td class="v-' + esc(p.verdict) + '">' + esc(p.verdict) + '</td><td class="num">' + dur(p.total) +
      '</td><td class="num">' + p.hops.length + (p.clipped ? "+" : "") + "</td></tr>";
  }
  function draw() {
    var rows = state.rows, n = Math.min(rows.length, state.limit), html = [];
    for (var i = 0; i < n; i++) html.push(row(rows[i]));
    tbody.innerHTML = html.join("");
    document.getElementById("shown").textContent = (n < rows.length ? "showing " + n + " of " : "") +
      rows.length + (rows.length === 1 ? " packet" : " packets") + (rows.length < P.length ? " (of " + P.length + ")" : "") +
      (D.omitted ? "; " + D.omitted + " more only on the map" : "");
    document.getElementById("more").hidden = n >= rows.length;
    document.getElementById("all").hidden = n >= rows.length;
    document.querySelectorAll("#table th").forEach(function (th) {
      th.className = th.dataset.k === state.key ? (state.dir > 0 ? "asc" : "desc") : "";
    });
  }
  function refresh() { select(); draw(); }
  document.querySelector("#table thead").addEventListener("click", function (e) {
    var k = e.target.dataset && e.target.dataset.k;
    if (!k) return;
    state.dir = state.key === k ? -state.dir : 1;
    state.key = k;
    refresh();
  });
  document.getElementById("filter").addEventListener("input", function (e) {
    state.filter = e.target.value; state.limit = PAGE; refresh();
  });
  document.getElementById("verdict").addEventListener("change", function (e) {
    state.verdict = e.target.value; state.limit = PAGE; refresh();
  });
  document.getElementById("more").addEventListener("click", function () { state.limit += PAGE * 5; draw(); });
  document.getElementById("all").addEventListener("click", function () { state.limit = Infinity; draw(); });
  tbody.addEventListener("click", function (e) {
    var tr = e.target.closest("tr");
    if (tr) location.hash = "packet=" + tr.dataset.id;
  });

  // A packet's timeline: one column per namespace in the order the packet
  // went through them, one row per hop, the advice under a drop.
  function lanesOf(p) {
    var lanes = [], at = [], cur = -1;
    p.hops.forEach(function (h, i) {
      if (h[3] >= 0) cur = h[3];
      var k = lanes.indexOf(cur);
      if (k < 0) { k = lanes.length; lanes.push(cur); }
      at[i] = k;
    });
    return { lanes: lanes, at: at };
  }
  function swim(p, role) {
    var L = lanesOf(p), adv = {}, slow = -1, slowD = 0;
    (p.advice || []).forEach(function (a) { adv[a[0]] = a[1]; });
    p.hops.forEach(function (h, i) {
      var d = i ? h[0] - p.hops[i - 1][0] : 0;
      if (d > slowD) { slowD = d; slow = i; }
    });
    var out = ['<div class="pv-side"><h3><span class="role">' + esc(role) + "</span> #" + p.id + " " +
      esc(p.proto.toUpperCase()) + " " + esc(endpoint(p.src, p.src_name)) + " → " + esc(endpoint(p.dst, p.dst_name)) + (p.flags ? " [" + esc(p.flags) + "]" : "") +
      ' <span class="v-' + esc(p.verdict) + '">' + esc(p.verdict) + "</span> " + dur(p.total) + "</h3>"];
    (p.warnings || []).forEach(function (w) { out.push('<div class="pv-warn">warning: ' + esc(w) + "</div>"); });
    out.push('<table class="swim" data-packet="' + p.id + '"><thead><tr><th>time</th><th>Δ</th>');
    L.lanes.forEach(function (n) {
      out.push('<th class="' + (n >= 0 && NS[n].node ? "lane-node" : "lane-pod") + '">' + esc(nsLabel(n)) + "</th>");
    });
    out.push("</tr></thead><tbody>");
    p.hops.forEach(function (h, i) {
      var kind = S[h[1]], cls = D.kinds[kind] || "other", dev = S[h[2]], what = S[h[4]];
      out.push('<tr class="hop k-' + cls + (i === slow && p.hops.length > 2 ? " slow" : "") + '" data-hop="' + i +
        '" data-kind="' + esc(kind) + '" data-dev="' + esc(dev) + '" data-netns="' + esc(nsName(h[3])) +
        '" data-point="' + h[5] + '"><td class="t">' + dur(h[0]) + '</td><td class="d">' + (i ? "+" + dur(h[0] - p.hops[i - 1][0]) : "") + "</td>");
      L.lanes.forEach(function (n, k) {
        if (k !== L.at[i]) { out.push('<td class="lane"></td>'); return; }
        out.push('<td class="lane here"><span class="kind">' + esc(kind) + '</span> <span class="dev">' + esc(dev || "-") +
          "</span>" + (what ? '<span class="what">' + esc(what) + "</span>" : "") + "</td>");
      });
      out.push("</tr>");
      if (adv[i] !== undefined) {
        out.push('<tr class="advice"><td></td><td colspan="' + (L.lanes.length + 1) + '"><b>advice:</b><pre>' + esc(adv[i]) + "</pre></td></tr>");
      }
    });
    if (p.clipped) out.push('<tr><td colspan="' + (L.lanes.length + 2) + '" class="pv-empty">… more hops clipped</td></tr>');
    out.push("</tbody></table></div>");
    return out.join("");
  }
  function show(id) {
    var p = byID.get(id), view = document.getElementById("packet-view");
    current = p ? id : 0;
    document.querySelectorAll("#table tbody tr").forEach(function (tr) {
      tr.classList.toggle("sel", +tr.dataset.id === current);
    });
    if (!p) {
      view.innerHTML = '<p class="hint">No packet #' + esc(id) + " in this report.</p>";
      light(null);
      return;
    }
    var pair = [], other;
    if (p.reply && (other = byID.get(p.reply))) pair = [[p, "request"], [other, "reply"]];
    else if (p.request && (other = byID.get(p.request))) pair = [[other, "request"], [p, "reply"]];
    else pair = [[p, "packet"]];
    var head = '<p class="pv-head">' + esc(p.start) + " · " + p.hops.length + " hops" +
      (pair.length > 1 ? " · shown beside its " + (pair[0][0] === p ? "reply #" + pair[1][0].id : "request #" + pair[0][0].id) : " · no reply in the trace") + "</p>";
    view.innerHTML = head + '<div class="pv-pair">' + pair.map(function (x) { return swim(x[0], x[1]); }).join("") + "</div>";
    light(p);
  }
  // Light the packet's path on the map, dim the rest.
  function light(p) {
    var pts = {}, edges = {};
    if (p) {
      p.hops.forEach(function (h, i) {
        pts[h[5]] = 1;
        if (i && h[5] !== p.hops[i - 1][5]) edges[p.hops[i - 1][5] + "-" + h[5]] = 1;
      });
    }
    document.querySelectorAll(".m-edge").forEach(function (g) {
      g.classList.toggle("on", !!p && !!edges[g.dataset.e]);
      g.classList.toggle("off", !!p && !edges[g.dataset.e]);
    });
    document.querySelectorAll(".m-pt").forEach(function (g) {
      g.classList.toggle("on", !!p && !!pts[g.dataset.p]);
      g.classList.toggle("off", !!p && !pts[g.dataset.p]);
    });
  }
  function route() {
    var h = decodeURIComponent(location.hash.slice(1)), m = /^packet=(\d+)$/.exec(h);
    if (m) { show(+m[1]); return true; }
    var el = h && document.getElementById(h);
    if (el && el.tagName === "DETAILS") el.open = true;
    return false;
  }
  window.addEventListener("hashchange", function () {
    if (route()) document.getElementById("packet").scrollIntoView();
  });

  refresh();
  route();
  // For the load benchmark: when the script was done, and when the page
  // was next painted.
  document.body.dataset.ready = String(Math.round(performance.now()));
  requestAnimationFrame(function () {
    setTimeout(function () { document.body.dataset.painted = String(Math.round(performance.now())); }, 0);
  });
})();
