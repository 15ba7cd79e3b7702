// The home page follows an indexing run: poll /status, move the progress
// bar, and reload the page once the run has ended (its figures changed).
// Served by the project itself; the page reads the same without it.
(function () {
  "use strict";
  var box = document.getElementById("indexing");
  if (!box || box.dataset.running !== "true") return;
  var bar = document.getElementById("indexing-bar");
  var text = document.getElementById("indexing-text");
  var step = document.getElementById("indexing-step");
  var every = 1000 * (parseInt(box.dataset.refreshSeconds, 10) || 2);
  var statusUrl = box.dataset.statusUrl;
  // The page's <noscript> refresh is not needed: this script takes over.
  function show(progress) {
    var done = progress.files_processed || 0;
    var total = progress.total_files || 0;
    if (total > 0) {
      bar.max = total;
      bar.value = done;
    } else {
      bar.removeAttribute("value");  // indeterminate: the walk has not counted yet
    }
    var percent = total ? Math.round((100 * done) / total) : 0;
    text.textContent = done + " of " + total + " files (" + percent + "%)";
    box.dataset.processed = String(done);
    if (step) step.textContent = progress.indexing_step || "";
  }
  function poll() {
    fetch(statusUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) {
        if (!body || !body.indexing) return setTimeout(poll, every);
        show(body.indexing.progress || {});
        if (body.indexing.in_progress) return setTimeout(poll, every);
        window.location.reload();
      })
      .catch(function () { setTimeout(poll, every); });
  }
  setTimeout(poll, every);
})();
