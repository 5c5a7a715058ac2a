// Dataset version page: select images (click, shift-click for a range, select all shown),
// enable the edit buttons, and close the detail panel. htmx loads tiles and details.
"use strict";
(() => {
  const form = document.getElementById("edit-form");
  let anchor = null; // the last box clicked without shift: one end of a range

  const boxes = () => Array.from(document.querySelectorAll("#tiles input[type=checkbox][name=ids]"));

  function refresh() {
    const n = boxes().filter((b) => b.checked).length;
    for (const b of boxes()) b.closest(".tile").classList.toggle("selected", b.checked);
    if (!form) return;
    document.getElementById("sel-n").textContent = String(n);
    form.dataset.empty = n ? "false" : "true";
    document.getElementById("btn-exclude").disabled = n === 0;
    const label = document.getElementById("relabel-input");
    document.getElementById("btn-relabel").disabled = n === 0 || !label.value.trim();
  }

  document.addEventListener("click", (event) => {
    const box = event.target.closest && event.target.closest("#tiles input[type=checkbox][name=ids]");
    if (!box) return;
    const all = boxes();
    if (event.shiftKey && anchor && all.includes(anchor) && anchor !== box) {
      const [a, b] = [all.indexOf(anchor), all.indexOf(box)].sort((x, y) => x - y);
      for (const other of all.slice(a, b + 1)) other.checked = box.checked;
    } else {
      anchor = box;
    }
    refresh();
  });
  document.addEventListener("change", (event) => {
    if (event.target.id === "relabel-input") refresh();
  });
  document.addEventListener("input", (event) => {
    if (event.target.id === "relabel-input") refresh();
  });
  const page = document.getElementById("sel-page");
  if (page) page.addEventListener("click", () => { for (const b of boxes()) b.checked = true; refresh(); });
  const clear = document.getElementById("sel-clear");
  if (clear) clear.addEventListener("click", () => { for (const b of boxes()) b.checked = false; anchor = null; refresh(); });
  if (form) {
    form.addEventListener("submit", (event) => {
      if (!boxes().some((b) => b.checked)) {
        event.preventDefault();
        return;
      }
      // A large version takes a while to write: say so, and do not send it twice.
      const note = form.querySelector(".hint");
      if (note) note.textContent = "Making the new version…";
      setTimeout(() => { for (const b of form.querySelectorAll("button")) b.disabled = true; }, 0);
    });
  }

  // The detail panel: close with its button or Escape; the open tile is marked.
  const panel = document.getElementById("detail");
  function closePanel() {
    if (panel) panel.replaceChildren();
    for (const t of document.querySelectorAll(".tile.open")) t.classList.remove("open");
  }
  document.addEventListener("click", (event) => {
    if (event.target.closest && event.target.closest("#detail-close")) closePanel();
    const open = event.target.closest && event.target.closest(".tile-open");
    if (open) {
      for (const t of document.querySelectorAll(".tile.open")) t.classList.remove("open");
      open.closest(".tile").classList.add("open");
    }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && panel && panel.childElementCount) closePanel();
  });
  // New tiles (infinite scroll, filters): keep the counts and buttons right.
  document.addEventListener("htmx:afterSettle", refresh);
  refresh();
})();
