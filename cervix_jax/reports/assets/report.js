// cervix_jax report pages: tabs, the attribution galleries (sort, filter, detail view).
// Plain JavaScript, no library, no network; the data of each gallery is the JSON block inside it.
(function () {
  "use strict";

  function text(value) {
    return value === null || value === undefined || value === "" ? "—" : String(value);
  }
  function num(value, digits) {
    return typeof value === "number" && isFinite(value) ? value.toFixed(digits) : "—";
  }
  function el(tag, cls, content) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (content !== undefined) node.textContent = content;
    return node;
  }

  // Tabs: buttons with data-tab="<panel id>" inside a .tabs bar switch the panels of its group.
  document.querySelectorAll(".tabs").forEach(function (bar) {
    var buttons = bar.querySelectorAll("button[data-tab]");
    buttons.forEach(function (button) {
      button.addEventListener("click", function () {
        buttons.forEach(function (b) {
          b.classList.toggle("active", b === button);
          var panel = document.getElementById(b.dataset.tab);
          if (panel) panel.hidden = b !== button;
        });
      });
    });
  });

  var dialog = document.getElementById("detail");
  var current = null; // {gallery, order: [item index], position}

  function showDetail() {
    var g = current.gallery, item = g.data.items[current.order[current.position]];
    dialog.querySelector(".d-title").textContent = item.id;
    dialog.querySelector(".d-pos").textContent =
      (current.position + 1) + " of " + current.order.length + " shown";
    var img = dialog.querySelector(".d-panel");
    if (item.panel) { img.src = item.panel; img.hidden = false; } else { img.hidden = true; }
    var rows = [
      ["True class", text(item.label)], ["Predicted", text(item.pred)],
      ["Probability (predicted)", num(item.prob, 4)],
      ["Result", item.correct === null ? "—" : item.correct ? "correct" : "wrong", "",
        item.correct === null ? "" : item.correct ? "ok" : "bad"],
      ["Explained class", text(item.target)]
    ];
    g.data.metrics.forEach(function (m) {
      rows.push([m.label, num(item.metrics[m.key], 4), m.description]);
    });
    if (item.source) rows.push(["Source", item.source]);
    var table = el("table");
    rows.forEach(function (r) {
      var tr = el("tr"), th = el("th", "", r[0]), td = el("td", "num " + (r[3] || ""), r[1]);
      if (r[2]) th.title = r[2];
      tr.appendChild(th); tr.appendChild(td); table.appendChild(tr);
    });
    var box = dialog.querySelector(".d-numbers");
    box.replaceChildren(table);
    if (item.map) {
      var link = el("a", "", "raw map (.npy)");
      link.href = item.map;
      box.appendChild(link);
    }
  }
  function openDetail(gallery, index) {
    var order = gallery.visibleOrder();
    current = {gallery: gallery, order: order, position: Math.max(order.indexOf(index), 0)};
    showDetail();
    dialog.hidden = false;
    dialog.querySelector(".d-close").focus();
  }
  function step(delta) {
    if (!current) return;
    var n = current.order.length;
    current.position = (current.position + delta + n) % n;
    showDetail();
  }
  function closeDetail() {
    dialog.hidden = true;
    current = null;
  }
  if (dialog) {
    dialog.querySelector(".d-close").addEventListener("click", closeDetail);
    dialog.querySelector(".d-prev").addEventListener("click", function () { step(-1); });
    dialog.querySelector(".d-next").addEventListener("click", function () { step(1); });
    dialog.addEventListener("click", function (e) { if (e.target === dialog) closeDetail(); });
    document.addEventListener("keydown", function (e) {
      if (dialog.hidden) return;
      if (e.key === "Escape") closeDetail();
      if (e.key === "ArrowRight") step(1);
      if (e.key === "ArrowLeft") step(-1);
    });
  }

  function Gallery(root) {
    var self = this;
    this.data = JSON.parse(root.querySelector("script.gallery-data").textContent);
    this.grid = root.querySelector(".grid");
    this.cards = Array.prototype.slice.call(this.grid.querySelectorAll(".thumb"));
    var q = function (cls) { return root.querySelector("." + cls); };
    this.controls = {
      sort: q("g-sort"), order: q("g-order"), cls: q("g-class"), pred: q("g-pred"),
      correct: q("g-correct"), metric: q("g-metric"), min: q("g-min"), max: q("g-max")
    };
    this.count = q("g-count");
    ["sort", "cls", "pred", "correct", "metric"].forEach(function (k) {
      self.controls[k].addEventListener("change", function () { self.update(); });
    });
    ["min", "max"].forEach(function (k) {
      self.controls[k].addEventListener("input", function () { self.update(); });
    });
    this.controls.order.addEventListener("click", function () {
      var b = self.controls.order, asc = b.dataset.order !== "asc";
      b.dataset.order = asc ? "asc" : "desc";
      b.textContent = asc ? "▲ ascending" : "▼ descending";
      self.update();
    });
    this.cards.forEach(function (card) {
      var open = function () { openDetail(self, Number(card.dataset.index)); };
      card.addEventListener("click", open);
      card.addEventListener("keydown", function (e) { if (e.key === "Enter") open(); });
    });
    this.update();
  }
  Gallery.prototype.value = function (item, key) {
    if (key.indexOf("m:") === 0) return item.metrics[key.slice(2)];
    if (key === "index") return null;
    return item[key];
  };
  Gallery.prototype.keep = function (item) {
    var c = this.controls;
    if (c.cls.value && item.label !== c.cls.value) return false;
    if (c.pred.value && item.pred !== c.pred.value) return false;
    if (c.correct.value === "ok" && item.correct !== true) return false;
    if (c.correct.value === "bad" && item.correct !== false) return false;
    if (c.metric.value) {
      var v = this.value(item, c.metric.value);
      var lo = parseFloat(c.min.value), hi = parseFloat(c.max.value);
      if ((!isNaN(lo) || !isNaN(hi)) && (typeof v !== "number")) return false;
      if (!isNaN(lo) && v < lo) return false;
      if (!isNaN(hi) && v > hi) return false;
    }
    return true;
  };
  Gallery.prototype.sortedIndices = function () {
    var self = this, key = this.controls.sort.value;
    var sign = this.controls.order.dataset.order === "asc" ? 1 : -1;
    var indices = this.data.items.map(function (_, i) { return i; });
    indices.sort(function (a, b) {
      var va = self.value(self.data.items[a], key), vb = self.value(self.data.items[b], key);
      var missA = va === null || va === undefined, missB = vb === null || vb === undefined;
      if (key === "index" || (missA && missB)) return sign * (a - b);
      if (missA) return 1; // missing values last in either order
      if (missB) return -1;
      if (va < vb) return -sign;
      if (va > vb) return sign;
      return a - b;
    });
    return indices;
  };
  Gallery.prototype.update = function () {
    var self = this, shown = 0;
    var fragment = document.createDocumentFragment();
    this.sortedIndices().forEach(function (i) {
      var card = self.cards[i], keep = self.keep(self.data.items[i]);
      card.hidden = !keep;
      if (keep) shown += 1;
      fragment.appendChild(card);
    });
    this.grid.appendChild(fragment);
    this.count.textContent = "showing " + shown + " of " + this.cards.length + " images";
  };
  Gallery.prototype.visibleOrder = function () {  // item indices as shown, in page order
    return Array.prototype.filter.call(this.grid.children, function (c) { return !c.hidden; })
      .map(function (c) { return Number(c.dataset.index); });
  };

  window.cervixGalleries = [];
  document.querySelectorAll(".gallery").forEach(function (root) {
    window.cervixGalleries.push(new Gallery(root));
  });
})();
