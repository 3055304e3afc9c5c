// Plain words for the API's 422 answers: each `errors[]` entry (`loc`, `msg`, `type`) of the problem
// details becomes a sentence for the person, next to the field it names. The server's own text
// ("must be 1..200 characters after trimming") is written for developers; it stays the fallback.
import { capitalize } from "./dom.js";

export const TITLE_MAX = 200; // SPEC "Tasks": 1..200 characters after trimming
export const TAG_MAX = 50;
export const TAGS_MAX = 20;

const chars = (n) => `${n.toLocaleString()} character${n === 1 ? "" : "s"}`;

/** Code points, as the server counts them (an emoji is one, not two UTF-16 units). */
export function length(text) {
  return [...text].length;
}

/**
 * One field error in plain words. `field`: the body field the error names; `msg`, `type`: as sent;
 * `values`: what the form sent (to say "your title has 250 characters", or which tag is too long).
 */
export function plainFieldMessage(field, msg, type, values = {}) {
  const text = String(msg || "");
  const value = values[field];
  switch (field) {
    case "title": {
      const n = typeof value === "string" ? length(value.trim()) : 0;
      if (n === 0) return "Give the task a title.";
      if (n > TITLE_MAX) return `The title has ${chars(n)}; shorten it to ${TITLE_MAX} or fewer.`;
      break;
    }
    case "description":
      if (/at most/.test(text)) return "The description is too long: keep it to 10,000 characters or fewer.";
      break;
    case "tags": {
      const tags = Array.isArray(value) ? value : [];
      if (/at most \d+ tags/.test(text)) return `Use at most ${TAGS_MAX} tags (there are ${tags.length}).`;
      const m = /tag (\d+) must be/.exec(text);
      if (m) {
        const tag = tags[Number(m[1])];
        return tag && tag.trim()
          ? `The tag “${tag.trim()}” is too long: a tag has at most ${TAG_MAX} characters.`
          : "A tag cannot be empty.";
      }
      break;
    }
    case "due_date":
      return "Enter a date, or a date and a time (or leave it empty).";
    case "name":
      return typeof value === "string" && value.trim()
        ? "Use a name of at most 100 characters."
        : "Enter your name.";
    case "email":
      if (/valid email/.test(text)) return "Enter an email address such as name@example.com.";
      break;
    case "current_password":
      if (/incorrect|wrong|does not match|invalid/i.test(text)) return "That is not your current password.";
      if (type === "missing") return "Enter your current password to confirm.";
      break;
    case "new_password":
    case "password":
      if (/common/i.test(text)) return "This password is too common: choose a longer or less guessable one.";
      if (/8\.\.128|at least 8|too short|min/i.test(text)) return "Use 8 to 128 characters.";
      if (/email/i.test(text)) return "The password must not be your email address.";
      break;
    case "time_zone":
      return "Choose a time zone from the list.";
    default:
      break;
  }
  if (type === "missing") return "Fill this in.";
  if (type === "extra_forbidden") return "This field is not accepted here.";
  return capitalize(text.replace(/\.$/, "")) + ".";
}

/** `err.fieldErrors()` with each `msg` in plain words (see plainFieldMessage). */
export function plainFieldErrors(err, values = {}) {
  return err.fieldErrors().map((e) => {
    const field = e.field;
    const raw = (err.problem && Array.isArray(err.problem.errors)) ? err.problem.errors.find((x) => x.msg === e.msg) : null;
    return { ...e, msg: plainFieldMessage(field, e.msg, raw ? raw.type : "", values) };
  });
}
