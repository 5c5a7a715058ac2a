// The model page's confidence-threshold slider: precision, recall and F1 per label and
// micro-averaged, recomputed in the browser from the test images' probabilities embedded in
// <script type="application/json" id="eval-data">. The same definitions as
// autovision.evaluation.confidence.metrics_at (its Python reference): single-label, the top
// label counts when its confidence is >= the threshold, else the model abstains; multi-label,
// each label's score on its own.
"use strict";
(function () {
  function prf(tp, fp, fn) {
    return {
      tp: tp,
      fp: fp,
      fn: fn,
      precision: tp + fp ? tp / (tp + fp) : null,
      recall: tp + fn ? tp / (tp + fn) : null,
      f1: tp + fp + fn ? (2 * tp) / (2 * tp + fp + fn) : null,
    };
  }

  function compute(data, threshold) {
    const L = data.labels.length;
    const n = data.true.length;
    const tp = new Array(L).fill(0);
    const fp = new Array(L).fill(0);
    const fn = new Array(L).fill(0);
    let covered = 0;
    for (let i = 0; i < n; i++) {
      const truth = data.true[i];
      const predicted = [];
      if (data.task === "single-label") {
        if (data.conf[i] >= threshold) predicted.push(data.pred[i]);
      } else {
        const row = data.probs[i];
        for (let j = 0; j < L; j++) if (row[j] >= threshold) predicted.push(j);
      }
      if (predicted.length) covered++;
      for (const j of predicted) {
        if (truth.includes(j)) tp[j]++;
        else fp[j]++;
      }
      for (const j of truth) if (!predicted.includes(j)) fn[j]++;
    }
    const sum = (a) => a.reduce((s, x) => s + x, 0);
    const micro = prf(sum(tp), sum(fp), sum(fn));
    micro.coverage = n ? covered / n : null;
    return {
      threshold: threshold,
      micro: micro,
      per_label: tp.map((_, j) => prf(tp[j], fp[j], fn[j])),
    };
  }

  window.avEvalpage = { compute: compute };

  function show(el, value) {
    el.dataset.value = value === null ? "" : String(value);
    el.textContent = value === null ? "n/a" : value.toFixed(3);
    el.classList.toggle("muted", value === null);
  }

  function init() {
    const source = document.getElementById("eval-data");
    const slider = document.getElementById("threshold-slider");
    if (!source || !slider) return;
    const data = JSON.parse(source.textContent);
    const output = document.getElementById("threshold-value");
    const overall = document.getElementById("threshold-overall");
    const rows = document.querySelectorAll("#threshold-table tr[data-label-index]");
    const marker = document.getElementById("threshold-marker");
    function update() {
      const t = parseFloat(slider.value);
      const r = compute(data, t);
      output.textContent = t.toFixed(2);
      for (const key of ["precision", "recall", "f1", "coverage"]) {
        show(overall.querySelector(`[data-metric="${key}"]`), r.micro[key]);
      }
      for (const row of rows) {
        const m = r.per_label[Number(row.dataset.labelIndex)];
        const predicted = row.querySelector('[data-metric="predicted"]');
        predicted.dataset.value = String(m.tp + m.fp);
        predicted.textContent = String(m.tp + m.fp);
        for (const key of ["precision", "recall", "f1"]) {
          show(row.querySelector(`[data-metric="${key}"]`), m[key]);
        }
      }
      if (marker) {
        const x0 = Number(marker.dataset.x0);
        const x1 = Number(marker.dataset.x1);
        const x = (x0 + t * (x1 - x0)).toFixed(2);
        marker.setAttribute("x1", x);
        marker.setAttribute("x2", x);
      }
      document.body.dispatchEvent(new CustomEvent("threshold-updated", { detail: r }));
    }
    slider.addEventListener("input", update);
    update();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
