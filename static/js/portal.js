// Behaviour the portal's pages declare with data attributes, so that no page needs inline script
// (the content-security policy allows scripts from this site's files only).
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-confirm]");
  if (button && !window.confirm(button.dataset.confirm)) {
    event.preventDefault();
  }
});

document.addEventListener("DOMContentLoaded", () => {
  for (const form of document.querySelectorAll("form[data-autosubmit]")) {
    form.submit();
  }
});
