// The list's own message line (#list-msg): "Saved “…”.", "Deleted “…”.", "Could not load your tasks…".
import { $, say, sayBriefly } from "../dom.js";

let fromLoad = false; // it holds a "could not load" error, which the next good load clears

/** Say `text` about the list (kind: "success" | "error" | "info"); `ms`: fade it out after that long. */
export function sayOnList(text, kind = "info", { ms = 0 } = {}) {
  if (ms) sayBriefly($("list-msg"), text, kind, ms);
  else say($("list-msg"), text, kind);
  fromLoad = false;
}

/** The list could not be loaded: say so until a load succeeds. */
export function sayLoadFailed(text) {
  say($("list-msg"), text, "error");
  fromLoad = true;
}

/** A load succeeded: a "could not load" error is over. */
export function loadSucceeded() {
  if (fromLoad) clearListMessage();
}

/** A message about the list as it was: drop it when the view changes (filters, page, sign-out). */
export function clearListMessage() {
  say($("list-msg"), "");
  fromLoad = false;
}
