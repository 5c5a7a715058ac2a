// The console's few lines of script: upload progress on import forms. htmx does the rest.
"use strict";
document.addEventListener("htmx:xhr:progress", (event) => {
  const form = event.target.closest("form");
  const bar = form && form.querySelector(".upload-progress");
  if (!bar || !event.detail.lengthComputable) return;
  bar.hidden = false;
  bar.value = Math.round((100 * event.detail.loaded) / event.detail.total);
});
document.addEventListener("htmx:afterRequest", (event) => {
  const bar = event.target.querySelector && event.target.querySelector(".upload-progress");
  if (bar) bar.hidden = true;
});
