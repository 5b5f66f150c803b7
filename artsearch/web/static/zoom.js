// The deep-zoom page: OpenSeadragon (vendored) over the app's own Deep Zoom tiles.
(function () {
  "use strict";
  var box = document.getElementById("zoom");
  if (!box || typeof OpenSeadragon === "undefined") { return; }
  OpenSeadragon({
    element: box,
    prefixUrl: "/static/openseadragon/images/",
    tileSources: box.getAttribute("data-dzi"),
    showNavigator: true,
    showRotationControl: false,
    maxZoomPixelRatio: 4,
    visibilityRatio: 0.5
  });
})();
