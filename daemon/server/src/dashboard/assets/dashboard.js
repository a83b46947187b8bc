// hitvault dashboard: progressive enhancement only. Every page works without
// this file; with it, the range form applies itself, the chart gets tooltips
// (mouse and keyboard), live numbers update over Server-Sent Events, and the
// tracker snippet can be copied. It talks to this daemon only.
(function () {
  "use strict";
  var root = document.documentElement;

  // Errors are recorded on the page (for the browser tests and for anyone
  // looking): data-js-errors counts them, data-js-last-error says the last.
  function record(message) {
    root.setAttribute("data-js-errors", String(Number(root.getAttribute("data-js-errors") || 0) + 1));
    root.setAttribute("data-js-last-error", String(message).slice(0, 300));
  }
  window.addEventListener("error", function (e) { record(e.message || "error"); });
  window.addEventListener("unhandledrejection", function (e) {
    record((e.reason && e.reason.message) || String(e.reason));
  });
  root.classList.add("js");

  var fmt = function (n) { return Number(n).toLocaleString("en-US"); };

  function ready(fn) {
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", fn);
    else fn();
  }

  // The range form: a preset applies at once; "custom" shows the dates.
  function rangeForm(form) {
    var period = form.querySelector("select[name=period]");
    var dates = form.querySelector(".custom-dates");
    if (!period || !dates) return;
    var sync = function () { dates.hidden = period.value !== "custom"; };
    sync();
    period.addEventListener("change", function () {
      sync();
      if (period.value === "custom") {
        var from = dates.querySelector("input");
        if (from) from.focus();
      } else if (form.requestSubmit) {
        form.requestSubmit();
      } else {
        form.submit();
      }
    });
    // Keep URLs short: leave out what is empty or does not apply.
    form.addEventListener("submit", function () {
      Array.prototype.forEach.call(form.elements, function (el) {
        if (!el.name) return;
        var unused = (el.name === "from" || el.name === "to") && period.value !== "custom";
        if (el.value === "" || unused) el.disabled = true;
      });
    });
  }

  // Chart tooltips: hover a column, or focus the chart and use the arrows.
  function chart(svg) {
    var card = svg.closest(".chart-card");
    var cols = svg.querySelectorAll(".hot rect");
    var cursor = svg.querySelector(".cursor");
    if (!card || !cols.length) return;
    var tip = document.createElement("div");
    tip.className = "tip";
    tip.hidden = true;
    tip.setAttribute("role", "status");
    tip.setAttribute("aria-live", "polite");
    card.appendChild(tip);
    var current = -1;
    var viewWidth = svg.viewBox.baseVal.width || 800;

    function show(i) {
      if (i < 0 || i >= cols.length) return;
      current = i;
      var c = cols[i];
      var x = Number(c.getAttribute("data-x"));
      tip.textContent = "";
      var title = document.createElement("strong");
      title.textContent = c.getAttribute("data-label");
      tip.appendChild(title);
      [["visitors", "Visitors"], ["pageviews", "Pageviews"]].forEach(function (m) {
        var line = document.createElement("span");
        line.textContent = m[1] + ": " + c.getAttribute("data-" + m[0]);
        tip.appendChild(line);
        tip.appendChild(document.createElement("br"));
      });
      // Positions relative to the card (SVG elements have no offsetLeft).
      var box = svg.getBoundingClientRect();
      var cardBox = card.getBoundingClientRect();
      var scale = box.width / viewWidth;
      tip.hidden = false;
      tip.style.left = (box.left - cardBox.left + x * scale) + "px";
      tip.style.top = (box.top - cardBox.top + 16 * scale + 8) + "px";
      if (cursor) {
        cursor.setAttribute("x1", x);
        cursor.setAttribute("x2", x);
        cursor.setAttribute("visibility", "visible");
      }
      svg.setAttribute("data-active", String(i));
    }
    function hide() {
      tip.hidden = true;
      current = -1;
      if (cursor) cursor.setAttribute("visibility", "hidden");
      svg.removeAttribute("data-active");
    }
    Array.prototype.forEach.call(cols, function (c, i) {
      c.addEventListener("mouseenter", function () { show(i); });
    });
    svg.addEventListener("mouseleave", hide);
    svg.addEventListener("blur", hide);
    svg.addEventListener("focus", function () { show(current < 0 ? cols.length - 1 : current); });
    svg.addEventListener("keydown", function (e) {
      var next = { ArrowLeft: current - 1, ArrowRight: current + 1, Home: 0, End: cols.length - 1 }[e.key];
      if (next === undefined) {
        if (e.key === "Escape") hide();
        return;
      }
      e.preventDefault();
      show(Math.max(0, Math.min(cols.length - 1, next)));
    });
  }

  // A monogram like the server's (html::monogram): first letter, colour from an FNV-1a hash.
  function monogram(name) {
    var host = name.replace(/^https?:\/\//, "").replace(/^www\./, "");
    var m = host.match(/[\p{L}\p{N}]/u);
    var h = 2166136261;
    var bytes = new TextEncoder().encode(host);
    for (var i = 0; i < bytes.length; i++) {
      h = Math.imul(h ^ bytes[i], 16777619) >>> 0;
    }
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "mono");
    svg.setAttribute("viewBox", "0 0 16 16");
    svg.setAttribute("aria-hidden", "true");
    var rect = document.createElementNS(ns, "rect");
    [["width", 16], ["height", 16], ["rx", 4], ["fill", "hsl(" + (h % 360) + " 55% 42%)"]].forEach(function (a) {
      rect.setAttribute(a[0], a[1]);
    });
    var text = document.createElementNS(ns, "text");
    [["x", 8], ["y", 11.5], ["text-anchor", "middle"], ["font-size", 10], ["font-weight", 600], ["fill", "#fff"]].forEach(function (a) {
      text.setAttribute(a[0], a[1]);
    });
    text.textContent = m ? m[0].toUpperCase() : "?";
    svg.appendChild(rect);
    svg.appendChild(text);
    return svg;
  }

  function fillRows(tbody, rows, empty, icons) {
    if (!tbody) return;
    tbody.textContent = "";
    if (!rows.length) {
      var tr = document.createElement("tr");
      var td = document.createElement("td");
      td.colSpan = 3;
      td.className = "empty";
      td.textContent = "Nothing in the last 30 minutes.";
      tr.appendChild(td);
      tbody.appendChild(tr);
      return;
    }
    rows.forEach(function (r) {
      var tr = document.createElement("tr");
      var label = document.createElement("td");
      label.className = "label";
      var span = document.createElement("span");
      span.className = r.value === null ? "v none" : "v";
      if (icons && r.value !== null) span.appendChild(monogram(r.value));
      span.appendChild(document.createTextNode(r.value === null ? empty : r.value));
      label.appendChild(span);
      tr.appendChild(label);
      [r.visitors, r.pageviews].forEach(function (n) {
        var td = document.createElement("td");
        td.className = "num";
        td.textContent = fmt(n);
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    });
  }

  function bars(svg, perMinute) {
    if (!svg) return;
    var top = Number(svg.getAttribute("data-top"));
    var bottom = Number(svg.getAttribute("data-bottom"));
    var max = Math.max.apply(null, perMinute.concat([1]));
    svg.querySelectorAll("rect[data-i]").forEach(function (r) {
      var v = perMinute[Number(r.getAttribute("data-i"))] || 0;
      var h = (bottom - top) * v / max;
      r.setAttribute("y", (bottom - h).toFixed(1));
      r.setAttribute("height", h.toFixed(1));
      var t = r.querySelector("title");
      if (t) t.textContent = t.textContent.replace(/^\d[\d,]*/, fmt(v));
    });
  }

  // Live numbers: one EventSource per page, on the daemon's realtime stream.
  function live(el) {
    var site = el.getAttribute("data-live-site");
    if (!site || !window.EventSource) return;
    var status = document.querySelector("[data-live-status]");
    var source = new EventSource("/api/v1/stats/realtime?site=" + encodeURIComponent(site));
    var updates = 0;
    source.onmessage = function (e) {
      var d = JSON.parse(e.data);
      updates += 1;
      el.setAttribute("data-live-updates", String(updates));
      document.querySelectorAll("[data-live=live_visitors]").forEach(function (n) { n.textContent = fmt(d.live_visitors); });
      document.querySelectorAll("[data-live=pageviews]").forEach(function (n) { n.textContent = fmt(d.pageviews); });
      bars(document.querySelector("svg.rt-bars"), d.per_minute);
      fillRows(document.getElementById("rt-pages"), d.top_pages, "(none)", false);
      fillRows(document.getElementById("rt-sources"), d.top_sources, "Direct / none", true);
      if (status) status.textContent = "Live · updated " + new Date(d.at).toLocaleTimeString();
    };
    source.onerror = function () {
      if (status) status.textContent = "Reconnecting…";
    };
    window.addEventListener("pagehide", function () { source.close(); });
  }

  // The settings page's copy buttons.
  function copy(button) {
    var target = document.getElementById(button.getAttribute("data-copy"));
    var done = document.createElement("span");
    done.className = "copied";
    done.setAttribute("role", "status");
    button.insertAdjacentElement("afterend", done);
    button.addEventListener("click", function () {
      var text = target ? target.textContent : "";
      var selectIt = function () {
        var range = document.createRange();
        range.selectNodeContents(target);
        var sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
        done.textContent = "Selected: press Ctrl+C to copy";
      };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text).then(function () { done.textContent = "Copied"; }, selectIt);
      } else {
        selectIt();
      }
    });
  }

  ready(function () {
    document.querySelectorAll("form.range").forEach(rangeForm);
    document.querySelectorAll("svg.chart").forEach(chart);
    document.querySelectorAll("[data-live-site]").forEach(live);
    document.querySelectorAll("button[data-copy]").forEach(copy);
  });
})();
