// Dark mode: follows the system (prefers-color-scheme) until the person picks one with the toggle;
// that choice is kept in localStorage under "taskhub-theme" ("light" | "dark"), the one thing the
// dashboard keeps there (no token, no user data: see tests/e2e/test_static.py).
const KEY = "taskhub-theme";
const media = window.matchMedia("(prefers-color-scheme: dark)");

function stored() {
  try {
    const value = window.localStorage.getItem(KEY);
    return value === "light" || value === "dark" ? value : null;
  } catch {
    return null; // storage blocked: follow the system
  }
}

/** The theme in effect: the person's choice, else the system's. */
export function currentTheme() {
  return stored() || (media.matches ? "dark" : "light");
}

function apply() {
  const theme = currentTheme();
  document.documentElement.dataset.theme = theme;
  const toggle = document.getElementById("theme-toggle");
  if (toggle) {
    // A toggle button: its name stays "Dark mode", aria-pressed says whether it is on.
    toggle.setAttribute("aria-pressed", String(theme === "dark"));
    toggle.textContent = theme === "dark" ? "☀" : "☾";
    toggle.title = theme === "dark" ? "Dark mode is on (click for light)" : "Dark mode is off (click for dark)";
  }
}

/** Wire the toggle (and follow system changes while the person has not chosen). */
export function initTheme() {
  apply();
  media.addEventListener("change", apply);
  document.getElementById("theme-toggle").addEventListener("click", () => {
    const next = currentTheme() === "dark" ? "light" : "dark";
    try {
      window.localStorage.setItem(KEY, next);
    } catch {
      // not kept: it still applies to this page
      document.documentElement.dataset.theme = next;
      return;
    }
    apply();
  });
}

apply(); // as early as the module runs, before the first screen shows
