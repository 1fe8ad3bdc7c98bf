// Small page furniture: the toast (one-line messages), the in-page confirm dialog
// (a <dialog>, so it never blocks scripts the way window.confirm does), and the
// keyboard shortcut list.

export class Toast {
  /** @param {HTMLElement} element */
  constructor(element) {
    this.element = element;
    this.timer = null;
  }

  show(message) {
    this.element.textContent = message;
    this.element.hidden = false;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.element.hidden = true;
    }, 6000);
  }
}

export class Confirm {
  /** @param {HTMLDialogElement} dialog  holds #confirm-message and buttons with value "ok" / "cancel" */
  constructor(dialog) {
    this.dialog = dialog;
    this.message = dialog.querySelector("[data-role=message]");
    this.ok = dialog.querySelector("button[value=ok]");
  }

  /** Ask; resolves true when the user confirms, false on Cancel or Esc. */
  ask(message, confirmLabel) {
    if (this.dialog.open) this.dialog.close("cancel");
    this.message.textContent = message;
    this.ok.textContent = confirmLabel;
    this.dialog.returnValue = "";
    this.dialog.showModal();
    this.ok.focus();
    return new Promise((resolve) => {
      this.dialog.addEventListener("close", () => resolve(this.dialog.returnValue === "ok"), { once: true });
    });
  }
}

/** Fill the shortcut list dialog from [{keys, what}] (the list shortcuts.js acts on). */
export function renderShortcuts(dialog, shortcuts) {
  const rows = shortcuts.map(({ keys, what }) => {
    const row = document.createElement("tr");
    const k = document.createElement("td");
    keys.split(" / ").forEach((combo, i) => {
      if (i) k.append(" / ");
      const kbd = document.createElement("kbd");
      kbd.textContent = combo;
      k.append(kbd);
    });
    const w = document.createElement("td");
    w.textContent = what;
    row.append(k, w);
    return row;
  });
  dialog.querySelector("tbody").replaceChildren(...rows);
}
