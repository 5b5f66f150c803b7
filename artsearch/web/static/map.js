// The collection map: every work of a space as a point on a canvas. Pan (drag), zoom (wheel
// or +/- keys), a click opens the work, Shift-drag selects a box of works; thumbnails come
// from atlas sheets of 256 works (one image each), drawn once zoomed in.
(function () {
  "use strict";
  var canvas = document.getElementById("map");
  if (!canvas) { return; }
  var ctx = canvas.getContext("2d");
  var status = document.getElementById("map-status");
  var legend = document.getElementById("map-legend");
  var meaning = document.getElementById("map-meaning");
  var chosen = document.getElementById("map-selected");
  var chosenCount = document.getElementById("map-selected-count");
  var thumbsBox = document.getElementById("map-thumbs");
  var space = canvas.getAttribute("data-space");
  var colour = canvas.getAttribute("data-colour");
  // Colour-blind-safe (Okabe-Ito, then Tol's muted), grey for "other" and for none.
  var PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00",
                 "#F0E442", "#882255", "#44AA99", "#999933", "#AA4499"];
  var NONE = "#b9b6ad";
  var data = null, view = {scale: 1, x: 0, y: 0}, sheets = {}, box = null, drag = null;

  function size() {
    var r = canvas.getBoundingClientRect(), d = window.devicePixelRatio || 1;
    canvas.width = Math.round(r.width * d);
    canvas.height = Math.round(r.height * d);
    ctx.setTransform(d, 0, 0, d, 0, 0);
    return r;
  }
  // The layout fills the canvas (its axes carry no units: only nearness means something).
  function toScreen(i) {
    var r = canvas.getBoundingClientRect();
    return [12 + data.x[i] * (r.width - 24) * view.scale + view.x,
            12 + data.y[i] * (r.height - 24) * view.scale + view.y];
  }
  function colourOf(i) {
    var g = data.group[i];
    if (g < 0) { return NONE; }
    return data.groups[g] === "other" ? NONE : PALETTE[g % PALETTE.length];
  }
  function sheet(n) {
    if (!sheets[n]) {
      var im = new Image();
      im.onload = draw;
      im.src = "/map/atlas/" + encodeURIComponent(space) + "/" + n + ".jpg";
      sheets[n] = im;
    }
    return sheets[n];
  }
  function draw() {
    if (!data) { return; }
    var r = size();
    ctx.clearRect(0, 0, r.width, r.height);
    var per = data.atlas.side * data.atlas.side, cell = data.atlas.cell;
    var visible = [], i, p;
    for (i = 0; i < data.count; i++) {
      p = toScreen(i);
      if (p[0] >= -64 && p[1] >= -64 && p[0] <= r.width + 64 && p[1] <= r.height + 64) {
        visible.push(i);
      }
    }
    // Thumbnails once few enough works are in view (zoom in on a large collection), each as
    // large as its share of the view allows.
    var thumb = thumbsBox && thumbsBox.checked && visible.length && visible.length <= 1500 ?
      Math.max(16, Math.min(96, 0.7 * Math.sqrt(r.width * r.height / visible.length))) : 0;
    for (var v = 0; v < visible.length; v++) {
      i = visible[v];
      p = toScreen(i);
      if (thumb) {
        var n = Math.floor(i / per), k = i % per, im = sheet(n);
        if (im.complete && im.naturalWidth) {
          ctx.drawImage(im, (k % data.atlas.side) * cell, Math.floor(k / data.atlas.side) * cell,
                        cell, cell, p[0] - thumb / 2, p[1] - thumb / 2, thumb, thumb);
          continue;
        }
      }
      ctx.fillStyle = colourOf(i);
      ctx.beginPath();
      ctx.arc(p[0], p[1], data.count > 20000 ? 1.6 : 3, 0, 2 * Math.PI);
      ctx.fill();
    }
    if (box) {
      ctx.strokeStyle = "#d1401b";
      ctx.lineWidth = 1.5;
      ctx.strokeRect(box[0], box[1], box[2] - box[0], box[3] - box[1]);
    }
  }
  function nearest(x, y) {
    var best = -1, dist = 64;  // within 8 px
    for (var i = 0; i < data.count; i++) {
      var p = toScreen(i), d = (p[0] - x) * (p[0] - x) + (p[1] - y) * (p[1] - y);
      if (d < dist) { dist = d; best = i; }
    }
    return best;
  }
  function at(ev) {
    var r = canvas.getBoundingClientRect();
    return [ev.clientX - r.left, ev.clientY - r.top];
  }
  function zoom(factor, cx, cy) {
    var next = Math.min(400, Math.max(0.5, view.scale * factor));
    factor = next / view.scale;
    view.x = cx - (cx - view.x - 12) * factor - 12;
    view.y = cy - (cy - view.y - 12) * factor - 12;
    view.scale = next;
    draw();
  }
  function select(b) {
    var x0 = Math.min(b[0], b[2]), x1 = Math.max(b[0], b[2]);
    var y0 = Math.min(b[1], b[3]), y1 = Math.max(b[1], b[3]);
    var found = [];
    for (var i = 0; i < data.count; i++) {
      var p = toScreen(i);
      if (p[0] >= x0 && p[0] <= x1 && p[1] >= y0 && p[1] <= y1) { found.push(data.ids[i]); }
    }
    chosen.textContent = "";
    found.slice(0, 200).forEach(function (id) {
      var li = document.createElement("li"), a = document.createElement("a");
      a.href = "/work/" + id;
      a.textContent = "work " + id;
      li.appendChild(a);
      chosen.appendChild(li);
    });
    chosenCount.textContent = found.length + " works selected" +
      (found.length > 200 ? " (the first 200 listed)" : "");
    chosen.setAttribute("data-ids", found.join(","));
    var add = document.getElementById("map-add");
    if (add) {
      document.getElementById("map-add-ids").value = found.join(",");
      add.hidden = found.length === 0;
    }
  }
  canvas.addEventListener("pointerdown", function (ev) {
    if (!data) { return; }
    var p = at(ev);
    drag = {start: p, last: p, shift: ev.shiftKey, moved: false};
    canvas.setPointerCapture(ev.pointerId);
  });
  canvas.addEventListener("pointermove", function (ev) {
    if (!drag) { return; }
    var p = at(ev);
    if (Math.abs(p[0] - drag.start[0]) + Math.abs(p[1] - drag.start[1]) > 3) { drag.moved = true; }
    if (drag.shift) {
      box = [drag.start[0], drag.start[1], p[0], p[1]];
    } else {
      view.x += p[0] - drag.last[0];
      view.y += p[1] - drag.last[1];
    }
    drag.last = p;
    draw();
  });
  canvas.addEventListener("pointerup", function (ev) {
    if (!drag) { return; }
    var p = at(ev), was = drag;
    drag = null;
    if (was.shift && was.moved) {
      select([was.start[0], was.start[1], p[0], p[1]]);
      box = null;
      draw();
      return;
    }
    if (!was.moved) {
      var i = nearest(p[0], p[1]);
      if (i >= 0) { window.location.href = "/work/" + data.ids[i]; }
    }
  });
  canvas.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    var p = at(ev);
    zoom(ev.deltaY < 0 ? 1.25 : 0.8, p[0], p[1]);
  }, {passive: false});
  canvas.addEventListener("keydown", function (ev) {
    var r = canvas.getBoundingClientRect();
    if (ev.key === "+" || ev.key === "=") { zoom(1.25, r.width / 2, r.height / 2); }
    else if (ev.key === "-") { zoom(0.8, r.width / 2, r.height / 2); }
    else if (ev.key.indexOf("Arrow") === 0) {
      view.x += ev.key === "ArrowLeft" ? 40 : ev.key === "ArrowRight" ? -40 : 0;
      view.y += ev.key === "ArrowUp" ? 40 : ev.key === "ArrowDown" ? -40 : 0;
      draw();
    } else { return; }
    ev.preventDefault();
  });
  if (thumbsBox) { thumbsBox.addEventListener("change", draw); }
  window.addEventListener("resize", draw);
  fetch("/api/map?space=" + encodeURIComponent(space) + "&colour=" + encodeURIComponent(colour))
    .then(function (r) {
      if (!r.ok) { return r.json().then(function (e) { throw new Error(e.error || r.statusText); }); }
      return r.json();
    })
    .then(function (d) {
      data = d;
      status.textContent = d.count + " works; layout: " + d.method;
      canvas.setAttribute("data-ready", "true");
      meaning.textContent = d.colour_meaning;
      legend.textContent = "";
      d.groups.forEach(function (name, g) {
        var li = document.createElement("li"), sw = document.createElement("span");
        sw.className = "swatch";
        sw.style.background = name === "other" ? NONE : PALETTE[g % PALETTE.length];
        li.appendChild(sw);
        li.appendChild(document.createTextNode(name.replace(/_/g, " ")));
        legend.appendChild(li);
      });
      draw();
    })
    .catch(function (e) { status.textContent = "the map could not be made: " + e.message; });
})();
