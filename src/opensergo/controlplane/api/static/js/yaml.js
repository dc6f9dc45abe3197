// JSON value -> YAML text (block style), enough for Kubernetes-style objects.

const RESERVED = /^(true|false|yes|no|on|off|null|~|y|n)$/i;
const NUMBERLIKE = /^[-+]?(\d[\d_]*(\.\d*)?|\.\d+)([eE][-+]?\d+)?$|^0x[0-9a-f]+$|^0o[0-7]+$|^[-+]?\.(inf|nan)$/i;
const PLAIN = /^[A-Za-z0-9_/.$][A-Za-z0-9_ ./:%$*+()=,-]*$/;

function scalar(value) {
  if (value === null || value === undefined) return "null";
  if (typeof value === "boolean" || typeof value === "number") return String(value);
  const s = String(value);
  if (s === "" || RESERVED.test(s) || NUMBERLIKE.test(s) || !PLAIN.test(s) || s.includes(": ") ||
      s.includes(" #") || s.endsWith(":") || s.endsWith(" ") || s.startsWith(" ")) {
    return JSON.stringify(s);
  }
  return s;
}

function key(k) {
  return scalar(k);
}

function isEmptyCollection(v) {
  return (Array.isArray(v) && v.length === 0) || (v && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length === 0);
}

function lines(value, indent) {
  const pad = " ".repeat(indent);
  const out = [];
  if (Array.isArray(value)) {
    for (const item of value) {
      if (item && typeof item === "object" && !isEmptyCollection(item)) {
        const inner = lines(item, indent + 2);
        out.push(`${pad}- ${inner[0].trimStart()}`, ...inner.slice(1));
      } else {
        out.push(`${pad}- ${isEmptyCollection(item) ? (Array.isArray(item) ? "[]" : "{}") : scalar(item)}`);
      }
    }
    return out;
  }
  for (const [k, v] of Object.entries(value)) {
    if (v && typeof v === "object" && !isEmptyCollection(v)) {
      out.push(`${pad}${key(k)}:`);
      out.push(...lines(v, Array.isArray(v) ? indent : indent + 2));
    } else if (isEmptyCollection(v)) {
      out.push(`${pad}${key(k)}: ${Array.isArray(v) ? "[]" : "{}"}`);
    } else if (typeof v === "string" && v.includes("\n")) {
      out.push(`${pad}${key(k)}: |-`);
      for (const line of v.split("\n")) out.push(`${pad}  ${line}`);
    } else {
      out.push(`${pad}${key(k)}: ${scalar(v)}`);
    }
  }
  return out;
}

export function dump(value) {
  if (value === null || typeof value !== "object") return `${scalar(value)}\n`;
  return `${lines(value, 0).join("\n")}\n`;
}
