// The catalogue's search box: keeps, as one types, the apps whose name, title or description holds
// every word typed (the page's ?q= does the same on the server, for links and for no script).
"use strict";

function filterCatalogue(input) {
  const words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
  let shown = 0;
  for (const section of document.querySelectorAll("section.category")) {
    let inSection = 0;
    for (const card of section.querySelectorAll(".app-card[data-search]")) {
      const text = card.dataset.search;
      const match = words.every((word) => text.includes(word));
      card.hidden = !match;
      inSection += match ? 1 : 0;
    }
    section.hidden = inSection === 0;
    shown += inSection;
  }
  const none = document.getElementById("catalogue-no-match");
  if (none) {
    none.hidden = shown > 0;
    document.getElementById("catalogue-query").textContent = input.value.trim();
  }
  // The address keeps the search, so that reload, back and a shared link show the same apps.
  const url = new URL(window.location.href);
  if (words.length) {
    url.searchParams.set("q", input.value.trim());
  } else {
    url.searchParams.delete("q");
  }
  window.history.replaceState(null, "", url);
}

document.addEventListener("DOMContentLoaded", () => {
  const input = document.getElementById("catalogue-search");
  if (!input) {
    return;
  }
  input.addEventListener("input", () => filterCatalogue(input));
  // Enter filters here too: no reload needed when the script runs.
  input.form.addEventListener("submit", (event) => {
    event.preventDefault();
    filterCatalogue(input);
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "/" && document.activeElement === document.body) {
      event.preventDefault();
      input.focus();
    }
  });
});
