// The collection map: every work of a space as a point on a canvas. Pan (drag; Shift and an
// arrow key), zoom (wheel, pinch, +/- keys), a click or tap opens the work, Shift-drag (or a
// drag in select mode) selects a box of works. The point under the pointer, or the one the
// arrow keys reached, is shown in a card with a real link, beside links to the works near it;
// Enter opens it. Thumbnails come from atlas sheets of 256 works (one image each).
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
  var selectMode = document.getElementById("map-select-mode");
  var card = document.getElementById("map-card");
  var near = document.getElementById("map-near");
  var touch = window.matchMedia && window.matchMedia("(pointer: coarse)").matches;
  document.body.classList.add(touch ? "touch" : "mouse");
  var space = canvas.getAttribute("data-space");
  var colour = canvas.getAttribute("data-colour");
  // Colour-blind-safe (Okabe-Ito, then Tol's muted), grey for "other" and for none.
  var PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00",
                 "#F0E442", "#882255", "#44AA99", "#999933", "#AA4499"];
  var NONE = "#b9b6ad";
  var data = null, view = {scale: 1, x: 0, y: 0}, sheets = {}, box = null, drag = null;
  var current = -1, pointers = {}, pinch = null;

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
    if (current >= 0) {
      p = toScreen(current);
      ctx.strokeStyle = "#1b1b1b";
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.arc(p[0], p[1], Math.max(7, thumb / 2 + 3), 0, 2 * Math.PI);
      ctx.stroke();
    }
    if (box) {
      ctx.strokeStyle = "#d1401b";
      ctx.lineWidth = 1.5;
      ctx.strokeRect(box[0], box[1], box[2] - box[0], box[3] - box[1]);
    }
  }
  function nearest(x, y, radius) {
    var best = -1, dist = (radius || 8) * (radius || 8);
    for (var i = 0; i < data.count; i++) {
      var p = toScreen(i), d = (p[0] - x) * (p[0] - x) + (p[1] - y) * (p[1] - y);
      if (d < dist) { dist = d; best = i; }
    }
    return best;
  }
  function link(i, withThumb) {
    var a = document.createElement("a");
    a.href = "/work/" + data.ids[i];
    a.setAttribute("data-id", data.ids[i]);
    if (withThumb) {
      var im = document.createElement("img");
      im.src = "/thumb/" + data.ids[i] + "?size=s";
      im.alt = "";
      im.width = 96;
      a.appendChild(im);
    }
    var t = document.createElement("span");
    t.className = "caption";
    t.textContent = data.titles[i] || ("work " + data.ids[i]);
    a.appendChild(t);
    if (data.artists[i]) {
      var by = document.createElement("span");
      by.className = "muted";
      by.textContent = (withThumb ? "" : " · ") + data.artists[i];
      a.appendChild(by);
    }
    return a;
  }
  // The card: the current point's thumbnail, title and artist as a link, and the eight
  // works nearest it in view as links too (what a pointer cannot single out, a list can).
  function show(i) {
    current = i;
    draw();
    if (i < 0) { return; }
    card.textContent = "";
    card.appendChild(link(i, true));
    card.setAttribute("data-id", data.ids[i]);
    var r = canvas.getBoundingClientRect(), p = toScreen(i), others = [];
    for (var j = 0; j < data.count; j++) {
      var q = toScreen(j);
      if (j === i || q[0] < 0 || q[1] < 0 || q[0] > r.width || q[1] > r.height) { continue; }
      others.push([(p[0] - q[0]) * (p[0] - q[0]) + (p[1] - q[1]) * (p[1] - q[1]), j]);
    }
    others.sort(function (a, b) { return a[0] - b[0]; });
    near.textContent = "";
    others.slice(0, 8).forEach(function (o) {
      var li = document.createElement("li");
      li.appendChild(link(o[1], false));
      near.appendChild(li);
    });
  }
  // From the current point to the nearest in the arrow's direction (within a 45-degree
  // cone), keeping it in view.
  function step(dx, dy) {
    var r = canvas.getBoundingClientRect();
    if (current < 0) {
      show(nearest(r.width / 2, r.height / 2, 1e6));
      return;
    }
    var p = toScreen(current), best = -1, score = Infinity;
    for (var j = 0; j < data.count; j++) {
      if (j === current) { continue; }
      var q = toScreen(j), ax = q[0] - p[0], ay = q[1] - p[1];
      var along = ax * dx + ay * dy, across = Math.abs(ax * dy - ay * dx);
      if (along <= 0 || across > along) { continue; }
      var s = along + 2 * across;
      if (s < score) { score = s; best = j; }
    }
    if (best < 0) { return; }
    var b = toScreen(best);
    if (b[0] < 20 || b[0] > r.width - 20) { view.x += r.width / 2 - b[0]; }
    if (b[1] < 20 || b[1] > r.height - 20) { view.y += r.height / 2 - b[1]; }
    show(best);
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
    var row = {};
    for (var j = 0; j < data.count; j++) { row[data.ids[j]] = j; }
    found.slice(0, 200).forEach(function (id) {
      var li = document.createElement("li");
      li.appendChild(link(row[id], true));
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
  function selecting(ev) { return ev.shiftKey || (selectMode && selectMode.checked); }
  canvas.addEventListener("pointerdown", function (ev) {
    if (!data) { return; }
    var p = at(ev);
    pointers[ev.pointerId] = p;
    var held = Object.keys(pointers);
    if (held.length === 2) {  // two fingers: pinch to zoom, no drag
      var a = pointers[held[0]], b = pointers[held[1]];
      pinch = {dist: Math.hypot(a[0] - b[0], a[1] - b[1]) || 1};
      drag = null;
      box = null;
      return;
    }
    drag = {start: p, last: p, shift: selecting(ev), moved: false};
    canvas.setPointerCapture(ev.pointerId);
  });
  canvas.addEventListener("pointermove", function (ev) {
    if (pointers[ev.pointerId]) { pointers[ev.pointerId] = at(ev); }
    if (pinch) {
      var held = Object.keys(pointers);
      if (held.length === 2) {
        var a = pointers[held[0]], b = pointers[held[1]];
        var d = Math.hypot(a[0] - b[0], a[1] - b[1]) || 1;
        zoom(d / pinch.dist, (a[0] + b[0]) / 2, (a[1] + b[1]) / 2);
        pinch.dist = d;
      }
      return;
    }
    if (!drag) {
      if (data && ev.pointerType === "mouse") {
        var h = at(ev), i = nearest(h[0], h[1]);
        if (i >= 0 && i !== current) { show(i); }
      }
      return;
    }
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
  function release(ev) {
    delete pointers[ev.pointerId];
    if (pinch && Object.keys(pointers).length < 2) { pinch = null; }
  }
  canvas.addEventListener("pointercancel", function (ev) { release(ev); drag = null; });
  canvas.addEventListener("pointerup", function (ev) {
    var wasPinch = pinch !== null;
    release(ev);
    if (!drag || wasPinch) { return; }
    var p = at(ev), was = drag;
    drag = null;
    if (was.shift && was.moved) {
      select([was.start[0], was.start[1], p[0], p[1]]);
      box = null;
      draw();
      return;
    }
    if (!was.moved) {
      var i = nearest(p[0], p[1], ev.pointerType === "touch" ? 16 : 8);
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
    if (!data) { return; }
    var dx = ev.key === "ArrowLeft" ? -1 : ev.key === "ArrowRight" ? 1 : 0;
    var dy = ev.key === "ArrowUp" ? -1 : ev.key === "ArrowDown" ? 1 : 0;
    if (ev.key === "+" || ev.key === "=") { zoom(1.25, r.width / 2, r.height / 2); }
    else if (ev.key === "-") { zoom(0.8, r.width / 2, r.height / 2); }
    else if ((dx || dy) && ev.shiftKey) {
      view.x -= 40 * dx;
      view.y -= 40 * dy;
      draw();
    } else if (dx || dy) { step(dx, dy); }
    else if (ev.key === "Enter" && current >= 0) {
      window.location.href = "/work/" + data.ids[current];
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
