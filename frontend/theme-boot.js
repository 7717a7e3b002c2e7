// Applies the saved theme before first paint (no flash). A file of its own, not inline: the CSP allows no
// inline scripts.
try {
  let t = localStorage.getItem("cb-theme");
  if (!t) t = matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  document.documentElement.dataset.theme = t;
} catch {
  document.documentElement.dataset.theme = "light";
}
