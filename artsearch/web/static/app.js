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
  var blend = document.getElementById("blend");
  if (blend) { blend.addEventListener("change", function () { blend.form.submit(); }); }
})();
