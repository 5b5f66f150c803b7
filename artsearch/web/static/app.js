// Drag and drop onto the upload box; everything else works without script.
(function () {
  "use strict";
  var drop = document.getElementById("drop");
  var input = document.getElementById("upload-file");
  var form = document.getElementById("upload-form");
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
  // The blend slider: its value shown as it moves; the page asked again once it rests
  // (each arrow key would otherwise reload the page).
  var blend = document.getElementById("blend");
  var shown = document.getElementById("blend-value");
  var timer = null;
  if (blend) {
    blend.addEventListener("input", function () { if (shown) { shown.value = blend.value + " %"; } });
    blend.addEventListener("change", function () {
      if (timer) { clearTimeout(timer); }
      timer = setTimeout(function () { blend.form.submit(); }, 700);
    });
  }
})();
