(function () {
  window.addEventListener("error", function (e) { document.body.dataset.error = e.message; });
  try {
    document.querySelectorAll("figure.chart").forEach(function (fig) {
      var drawn = 0;
      fig.querySelectorAll(".mark").forEach(function (m) {
        var r = m.getBoundingClientRect();
        if (r.width > 0 && r.height > 0) { drawn += 1; }
      });
      var box = fig.querySelector("svg").getBoundingClientRect();
      fig.dataset.drawn = String(drawn);
      fig.dataset.rect = [box.left + window.scrollX, box.top + window.scrollY, box.width,
                          box.height].map(Math.round).join(",");
    });
    document.body.dataset.height = String(document.documentElement.scrollHeight);
    document.body.dataset.ready = "1";
  } catch (e) {
    document.body.dataset.error = String(e);
  }
})();
