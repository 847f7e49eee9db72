(function () {
  "use strict";
  function key(cell, type) {
    var v = cell.getAttribute("data-value");
    if (v === null || v === "") return null;
    return type === "num" ? parseFloat(v) : v;
  }
  document.querySelectorAll("table.board").forEach(function (table) {
    var heads = table.querySelectorAll("thead th[data-col]");
    heads.forEach(function (th) {
      th.querySelector("button").addEventListener("click", function () {
        var col = parseInt(th.getAttribute("data-col"), 10);
        var type = th.getAttribute("data-type");
        var now = th.getAttribute("aria-sort");
        var first = th.getAttribute("data-order") === "asc" || type === "text" ? "ascending" : "descending";
        var dir = now ? (now === "ascending" ? "descending" : "ascending") : first;
        heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", dir);
        var sign = dir === "ascending" ? 1 : -1;
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a.cells[col], type), y = key(b.cells[col], type);
          if (x === null || y === null) return (x === null) - (y === null);
          if (type === "num") return sign * (x - y);
          return sign * x.localeCompare(y);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
})();
