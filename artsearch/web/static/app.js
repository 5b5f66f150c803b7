// Drag and drop onto the upload box; everything else works without script.
(function () {
  "use strict";
  var drop = document.getElementById("drop");
  var input = document.getElementById("upload-file");
  var form = document.getElementById("upload-form");
  regionBox();
  if (!drop || !input || !form) { return; }
  ["dragenter", "dragover"].forEach(function (name) {
    document.addEventListener(name, function (ev) {
      ev.preventDefault();
      drop.classList.add("over");
    });
  });
  document.addEventListener("dragleave", function () { drop.classList.remove("over"); });
  document.addEventListener("drop", function (ev) {
    ev.preventDefault();
    drop.classList.remove("over");
    if (ev.dataTransfer && ev.dataTransfer.files.length) {
      input.files = ev.dataTransfer.files;
      form.submit();
    }
  });
  input.addEventListener("change", function () { if (input.files.length) { form.submit(); } });
  // The blend slider: its value shown as it moves; once it rests, the neighbours are asked
  // again and swapped in without reloading the page (the form still works without script).
  var blend = document.getElementById("blend");
  var shown = document.getElementById("blend-value");
  var timer = null;
  function swap() {
    var form = blend.form;
    var url = form.getAttribute("action") + "?" +
      new URLSearchParams(new FormData(form)).toString();
    fetch(url, {headers: {"accept": "text/html"}}).then(function (r) {
      if (!r.ok) { throw new Error(r.statusText); }
      return r.text();
    }).then(function (html) {
      var fresh = new DOMParser().parseFromString(html, "text/html");
      ["compared", "neighbour-columns"].forEach(function (id) {
        var mine = document.getElementById(id), theirs = fresh.getElementById(id);
        if (mine && theirs) { mine.replaceWith(document.importNode(theirs, true)); }
      });
      history.replaceState(null, "", url);
    }).catch(function () { form.submit(); });
  }
  if (blend) {
    blend.addEventListener("input", function () { if (shown) { shown.value = blend.value + " %"; } });
    blend.addEventListener("change", function () {
      if (timer) { clearTimeout(timer); }
      timer = setTimeout(swap, 400);
    });
  }

  // Drag a box over a work's picture to fill "Find this elsewhere" (regions); a click
  // without a drag still opens the full image.
  function regionBox() {
    var holder = document.getElementById("work-picture");
    var svg = document.getElementById("region-overlay");
    var rect = document.getElementById("region-rect");
    var field = document.getElementById("region-box");
    if (!holder || !svg || !rect || !field) { return; }
    holder.classList.add("drawing");
    var start = null;
    function at(ev) {
      var r = svg.getBoundingClientRect();
      return [Math.min(1, Math.max(0, (ev.clientX - r.left) / r.width)),
              Math.min(1, Math.max(0, (ev.clientY - r.top) / r.height))];
    }
    function box(a, b) {
      return [Math.min(a[0], b[0]), Math.min(a[1], b[1]),
              Math.abs(a[0] - b[0]), Math.abs(a[1] - b[1])];
    }
    function draw(b) {
      rect.setAttribute("x", b[0]); rect.setAttribute("y", b[1]);
      rect.setAttribute("width", b[2]); rect.setAttribute("height", b[3]);
    }
    svg.addEventListener("pointerdown", function (ev) {
      ev.preventDefault();
      start = at(ev);
      svg.setPointerCapture(ev.pointerId);
      draw([start[0], start[1], 0, 0]);
    });
    svg.addEventListener("pointermove", function (ev) {
      if (start) { draw(box(start, at(ev))); }
    });
    svg.addEventListener("pointerup", function (ev) {
      if (!start) { return; }
      var b = box(start, at(ev));
      start = null;
      if (b[2] < 0.02 || b[3] < 0.02) {  // a click, not a box: open the picture
        draw([0, 0, 0, 0]);
        var link = holder.querySelector("a");
        if (link) { window.location.href = link.href; }
        return;
      }
      field.value = b.map(function (v) { return v.toFixed(3); }).join(",");
      document.getElementById("region-find").focus();
    });
  }
})();
