// A YAML editor: a plain textarea with a line-number gutter that marks the lines with errors,
// and a list of the errors (each one moves the cursor to its line).

import { h } from "./dom.js";

let counter = 0;

export class YamlEditor {
  constructor({ value = "", readOnly = false, label = "YAML", onChange = null } = {}) {
    const id = `yaml-editor-${++counter}`;
    this.onChange = onChange;
    this.errors = [];
    this.gutter = h("pre", { class: "gutter", "aria-hidden": "true" });
    this.problems = h("ul", { class: "problems", id: `${id}-problems`, "aria-label": "Validation errors" });
    this.textarea = h("textarea", {
      id, spellcheck: "false", autocapitalize: "off", autocomplete: "off", wrap: "off",
      "aria-describedby": `${id}-problems`, readonly: readOnly || null, rows: "22",
    });
    this.textarea.value = value;
    this.label = h("label", { for: id }, label);
    this.box = h("div", { class: "editor" }, this.gutter, this.textarea);
    this.el = h("div", { class: "field" }, this.label, this.box, this.problems);
    this.textarea.addEventListener("input", () => { this.renderGutter(); if (this.onChange) this.onChange(this.value); });
    this.textarea.addEventListener("scroll", () => { this.gutter.scrollTop = this.textarea.scrollTop; });
    this.textarea.addEventListener("keydown", (e) => {
      // Enter keeps the current line's indentation.
      if (e.key === "Enter" && !e.shiftKey && !e.ctrlKey && !e.metaKey && !e.altKey) {
        const t = this.textarea;
        const start = t.selectionStart;
        const lineStart = t.value.lastIndexOf("\n", start - 1) + 1;
        const indent = (t.value.slice(lineStart, start).match(/^ */) || [""])[0];
        if (indent) {
          e.preventDefault();
          t.setRangeText(`\n${indent}`, start, t.selectionEnd, "end");
          this.renderGutter();
          if (this.onChange) this.onChange(this.value);
        }
      }
    });
    this.renderGutter();
  }

  get value() { return this.textarea.value; }

  set value(text) {
    this.textarea.value = text;
    this.renderGutter();
  }

  renderGutter() {
    const lines = this.textarea.value.split("\n").length;
    const bad = new Map();
    for (const e of this.errors) if (e.line) bad.set(e.line, `${e.field ? `${e.field}: ` : ""}${e.message}`);
    const frag = document.createDocumentFragment();
    for (let i = 1; i <= lines; i++) {
      frag.append(h("span", { class: bad.has(i) ? "err" : null, title: bad.get(i) || null }, String(i)));
    }
    this.gutter.replaceChildren(frag);
    this.gutter.scrollTop = this.textarea.scrollTop;
  }

  setErrors(errors) {
    this.errors = errors || [];
    this.box.classList.toggle("invalid", this.errors.length > 0);
    this.textarea.setAttribute("aria-invalid", String(this.errors.length > 0));
    this.problems.replaceChildren(...this.errors.map((e) => h("li", { "data-line": e.line || "" },
      e.line ? h("button", { type: "button", class: "link", onclick: () => this.focusLine(e.line, e.column) }, `Line ${e.line}`) : null,
      e.line ? ": " : "",
      e.field ? h("code", {}, e.field) : null,
      e.field ? ": " : "",
      e.message)));
    this.renderGutter();
  }

  focusLine(line, column = 1) {
    const lines = this.textarea.value.split("\n");
    let offset = 0;
    for (let i = 0; i < Math.min(line - 1, lines.length); i++) offset += lines[i].length + 1;
    offset += Math.max(0, (column || 1) - 1);
    this.textarea.focus();
    this.textarea.setSelectionRange(offset, offset);
    const lineHeight = parseFloat(getComputedStyle(this.textarea).lineHeight) || 20;
    this.textarea.scrollTop = Math.max(0, (line - 3) * lineHeight);
  }
}
