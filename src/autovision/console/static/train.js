// The Train pages: the detected task of the chosen dataset version, and a job's live
// progress. An EventSource on /train/jobs/ID/events tells when something happened; the
// progress fragment is then fetched and swapped in (the server renders it, as for htmx).
// While the stream is open, htmx's 2-second polling of the fragment stands down; when the
// stream fails, polling goes on by itself.
"use strict";
(() => {
  const dataset = document.getElementById("train-dataset");
  const detected = document.getElementById("task-detected");
  if (dataset && detected) {
    const show = () => {
      const option = dataset.selectedOptions[0];
      detected.textContent = option ? `detected: ${option.dataset.task}` : "";
    };
    dataset.addEventListener("change", show);
    show();
  }

  const box = document.getElementById("train-progress");
  if (!box || !box.dataset.events || typeof EventSource === "undefined") return;
  const progressUrl = box.dataset.progress;
  let live = false;
  let pending = null;
  let busy = false;
  let again = false;

  const refresh = async () => {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const response = await fetch(progressUrl, { headers: { "HX-Request": "true" }, credentials: "same-origin" });
      if (response.ok && window.htmx) {
        const html = await response.text();
        const target = document.getElementById("train-progress");
        if (target) window.htmx.swap(target, html, { swapStyle: "outerHTML" });
      }
    } finally {
      busy = false;
      if (again) { again = false; refresh(); }
    }
  };
  const soon = () => {
    if (pending) return;
    pending = setTimeout(() => { pending = null; refresh(); }, 150);
  };

  // htmx asks before each poll: none while the stream brings the news.
  document.addEventListener("htmx:confirm", (event) => {
    if (live && event.detail.elt && event.detail.elt.id === "train-progress") event.preventDefault();
  });

  const source = new EventSource(`${box.dataset.events}?after=${encodeURIComponent(box.dataset.after || "0")}`);
  source.addEventListener("open", () => { live = true; });
  source.addEventListener("progress", soon);
  source.addEventListener("end", () => {
    source.close();
    live = false;
    refresh();
  });
  source.addEventListener("error", () => {
    live = source.readyState === EventSource.OPEN;
  });
})();
