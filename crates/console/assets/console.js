// insta-router console: progressive enhancement only. Every page works without this file.
(function () {
  "use strict";

  // Times in the viewer's zone.
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (!isNaN(d)) { el.textContent = d.toLocaleString(); el.title = el.getAttribute("datetime"); }
    });
  }

  // Parts of a page marked data-poll are refreshed from their source while the page is open.
  function poll(el) {
    var source = el.getAttribute("data-poll");
    var busy = false;
    setInterval(function () {
      if (busy || document.hidden) { return; }
      busy = true;
      fetch(source, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
        .then(function (r) {
          if (r.status === 401) { window.location.reload(); return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) {
          if (html !== null && html !== el.innerHTML) { el.innerHTML = html; localTimes(el); }
        })
        .catch(function () {})
        .then(function () { busy = false; });
    }, 2000);
  }

  // Pickers apply on change.
  function autosubmit(form) {
    form.querySelectorAll("select").forEach(function (s) {
      s.addEventListener("change", function () { form.submit(); });
    });
  }

  // Charts: a data-chart element names the JSON element holding its series.
  function chart(el) {
    var source = document.getElementById(el.getAttribute("data-chart"));
    if (!source || typeof uPlot === "undefined") { return; }
    var data = JSON.parse(source.textContent);
    var width = function () { return Math.max(280, el.clientWidth); };
    var plot = new uPlot({
      width: width(), height: 240,
      series: [{}, { label: "Received", stroke: "#0a58ca", width: 2 }, { label: "Sent", stroke: "#1a7f37", width: 2 }],
      axes: [{}, { size: 50 }],
    }, [data.x, data.inbound, data.outbound], el);
    window.addEventListener("resize", function () { plot.setSize({ width: width(), height: 240 }); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    document.querySelectorAll("[data-poll]").forEach(poll);
    document.querySelectorAll("form[data-autosubmit]").forEach(autosubmit);
    document.querySelectorAll("[data-chart]").forEach(chart);
  });
})();
