// Keyboard shortcuts of the review and labeling queues: 1-9 pick (or toggle) a label,
// Enter confirms the model's guess (or saves), S skips. The elements carrying a shortcut
// have data-key inside the [data-shortcuts] form; htmx posts the answer and swaps the next
// item in. Typing in a text field or a list is left alone.
"use strict";
document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
  const target = event.target;
  const typing = target && (target.isContentEditable || /^(TEXTAREA|SELECT)$/.test(target.tagName) ||
    (target.tagName === "INPUT" && target.type !== "checkbox"));
  if (typing) return;
  const scope = document.querySelector("[data-shortcuts]");
  if (!scope) return;
  let key = null;
  if (/^[1-9]$/.test(event.key)) key = event.key;
  else if (event.key === "Enter") key = "enter";
  else if (event.key === "s" || event.key === "S") key = "s";
  const element = key && scope.querySelector(`[data-key="${key}"]`);
  if (!element || element.disabled) return;
  event.preventDefault();
  if (element.type === "checkbox") element.checked = !element.checked;
  else element.click();
});
