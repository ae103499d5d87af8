// orchestrack ui: optional niceties; every page works without this script.
document.addEventListener("DOMContentLoaded", () => {
  const toggle = document.getElementById("only-differences");
  if (toggle) {
    toggle.addEventListener("change", () => document.body.classList.toggle("only-differences", toggle.checked));
  }
});
