// Dates in the person's own time zone (GET /users/me `time_zone`, else the browser's): day keys
// ("2026-12-24"), local midnights as instants, and the relative labels of the list ("Today",
// "Tomorrow", "Fri", "Dec 24"). No library: Intl.DateTimeFormat knows every IANA zone and its DST
// rules; a local wall-clock time is turned into an instant by asking Intl for the zone's offset.

let zone = browserZone();

/** The browser's IANA zone ("Pacific/Auckland"), or "UTC" when it cannot tell. */
export function browserZone() {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  } catch {
    return "UTC";
  }
}

/** Use `tz` (an IANA name) for every label and every "today" from now on; an unknown name is ignored. */
export function setZone(tz) {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: tz });
    zone = tz;
  } catch {
    zone = browserZone();
  }
}

export function currentZone() {
  return zone;
}

const partsFormats = new Map();

function parts(ms, tz = zone) {
  let f = partsFormats.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat("en-US", {
      timeZone: tz, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit",
    });
    partsFormats.set(tz, f);
  }
  const out = {};
  for (const p of f.formatToParts(new Date(ms))) if (p.type !== "literal") out[p.type] = Number(p.value);
  return out; // {year, month, day, hour, minute, second}
}

/** The zone's offset from UTC at instant `ms`, in ms (positive east of Greenwich). */
function offsetAt(ms, tz = zone) {
  const p = parts(ms, tz);
  const asUtc = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second);
  return asUtc - Math.floor(ms / 1000) * 1000;
}

/**
 * The instant (ms) of wall-clock time `key` ("YYYY-MM-DD") `hh:mm` in the zone. A time that a DST
 * change skips (it does not exist there) is read with the offset of before the change.
 */
export function zonedToMs(key, hh = 0, mm = 0, tz = zone) {
  const [y, m, d] = key.split("-").map(Number);
  const guess = Date.UTC(y, m - 1, d, hh, mm);
  let t = guess - offsetAt(guess, tz);
  const other = guess - offsetAt(t, tz);
  // Near a DST change the offset at `guess` may be the other side's: take the reading that is
  // consistent with itself (in a skipped hour neither is, and the first reading stays).
  if (other !== t && offsetAt(other, tz) === guess - other) t = other;
  return t;
}

function pad(n) {
  return String(n).padStart(2, "0");
}

/** The day ("YYYY-MM-DD") that instant `ms` falls on in the zone. */
export function dayKey(ms, tz = zone) {
  const p = parts(ms, tz);
  return `${p.year}-${pad(p.month)}-${pad(p.day)}`;
}

/** Today's key in the zone. */
export function todayKey(now = Date.now()) {
  return dayKey(now);
}

/** The key `n` days after `key` (calendar days, so DST does not matter). */
export function addDays(key, n) {
  const [y, m, d] = key.split("-").map(Number);
  const t = new Date(Date.UTC(y, m - 1, d + n));
  return `${t.getUTCFullYear()}-${pad(t.getUTCMonth() + 1)}-${pad(t.getUTCDate())}`;
}

/** Local midnight at the start of `key`, as an RFC 3339 instant in UTC ("2026-12-03T11:00:00.000Z"). */
export function startOfDayIso(key) {
  return new Date(zonedToMs(key)).toISOString();
}

/** "YYYY-MM-DD" + "HH:MM" typed in the zone -> "2026-12-24T17:00:00+13:00" (the zone's offset then). */
export function zonedInputToRfc3339(key, time) {
  const [hh, mm] = time.split(":").map(Number);
  const ms = zonedToMs(key, hh, mm);
  const off = Math.round(offsetAt(ms) / 60000);
  const p = parts(ms);
  const sign = off >= 0 ? "+" : "-";
  const abs = Math.abs(off);
  return `${p.year}-${pad(p.month)}-${pad(p.day)}T${pad(p.hour)}:${pad(p.minute)}:00${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

/** An API instant -> {date: "YYYY-MM-DD", time: "HH:MM"} in the zone (for the form's inputs). */
export function isoToZonedInputs(iso) {
  const p = parts(new Date(iso).getTime());
  return { date: `${p.year}-${pad(p.month)}-${pad(p.day)}`, time: `${pad(p.hour)}:${pad(p.minute)}` };
}

function fmt(options) {
  return new Intl.DateTimeFormat(undefined, { timeZone: zone, ...options });
}

/** The time of day of an instant in the zone: "5:00 PM". */
export function timeLabel(ms) {
  return fmt({ hour: "numeric", minute: "2-digit" }).format(new Date(ms));
}

function keyToNoonUtc(key) {
  const [y, m, d] = key.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d, 12));
}

/** "Today", "Tomorrow", "Yesterday", "Fri" (within the coming week), "Dec 24", "Dec 24, 2027". */
export function dayLabel(key, today = todayKey()) {
  if (key === today) return "Today";
  if (key === addDays(today, 1)) return "Tomorrow";
  if (key === addDays(today, -1)) return "Yesterday";
  const noon = keyToNoonUtc(key);
  const utc = (o) => new Intl.DateTimeFormat(undefined, { timeZone: "UTC", ...o }).format(noon);
  if (key > today && key <= addDays(today, 6)) return utc({ weekday: "short" });
  if (key.slice(0, 4) === today.slice(0, 4)) return utc({ month: "short", day: "numeric" });
  return utc({ month: "short", day: "numeric", year: "numeric" });
}

/** A long form of a day for headings and tooltips: "Friday, December 4, 2026". */
export function longDay(key) {
  return new Intl.DateTimeFormat(undefined, { timeZone: "UTC", dateStyle: "full" }).format(keyToNoonUtc(key));
}

/** The full date and time of an instant in the zone, with the zone's name (a row's tooltip). */
export function fullLabel(ms) {
  return fmt({ dateStyle: "full", timeStyle: "short" }).format(new Date(ms)) + ` (${zone})`;
}

/**
 * How a task's due date reads in a row: `{text, key, overdue, title}`. An all-day task (`all_day`,
 * `due_on`) is overdue from the day after; a timed one from its minute. Null without a due date.
 */
export function dueInfo(task, now = Date.now()) {
  if (!task.due_date) return null;
  const ms = new Date(task.due_date).getTime();
  const today = todayKey(now);
  if (task.all_day && task.due_on) {
    return {
      text: dayLabel(task.due_on, today),
      key: task.due_on,
      overdue: task.status !== "done" && task.due_on < today,
      title: longDay(task.due_on) + " (all day)",
    };
  }
  const key = dayKey(ms);
  return {
    text: `${dayLabel(key, today)} ${timeLabel(ms)}`,
    key,
    overdue: task.status !== "done" && ms < now,
    title: fullLabel(ms),
  };
}

/** "Today 5:03 PM" for an instant (completion times). */
export function whenLabel(iso, now = Date.now()) {
  const ms = new Date(iso).getTime();
  return `${dayLabel(dayKey(ms), todayKey(now))} ${timeLabel(ms)}`;
}

/** Every IANA zone the browser knows (for the account page), with the current one first if missing. */
export function knownZones() {
  let list = [];
  try {
    list = Intl.supportedValuesOf("timeZone");
  } catch {
    list = [];
  }
  if (!list.includes("UTC")) list = ["UTC", ...list];
  if (!list.includes(zone)) list = [zone, ...list];
  return list;
}
