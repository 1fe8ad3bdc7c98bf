// The breadcrumb over the canvas while a subgraph is open: Back (one level up), the
// graph's name (back to the top), then each subgraph node opened on the way, the last
// being the one shown. Hidden at the top level.

export class Breadcrumb {
  /**
   * @param {HTMLElement} element  a <nav> over the canvas
   * @param {Workspace} workspace
   */
  constructor(element, workspace) {
    this.element = element;
    this.workspace = workspace;
    for (const event of ["scope", "loaded", "identity"]) workspace.on(event, () => this.render());
    this.render();
  }

  render() {
    const { path, identity } = this.workspace;
    this.element.hidden = path.length === 0;
    if (!path.length) {
      this.element.replaceChildren();
      return;
    }
    const back = this.button("← Back", path.length - 1, `Back to ${path.length > 1 ? path.at(-2).title : "the whole graph"}`);
    back.setAttribute("aria-label", "Back");
    back.classList.add("back");
    const top = identity.name || identity.opened || this.workspace.root?.meta?.name || "graph";
    const crumbs = [back, this.button(top, 0, "Back to the whole graph")];
    path.forEach((frame, i) => {
      crumbs.push(this.separator());
      if (i === path.length - 1) {
        const here = document.createElement("span");
        here.className = "here";
        here.textContent = frame.title;
        here.title = `subgraph "${frame.name}", opened through node ${frame.via}`;
        here.setAttribute("aria-current", "location");
        crumbs.push(here);
      } else crumbs.push(this.button(frame.title, i + 1, `Back to ${frame.title}`));
    });
    this.element.replaceChildren(...crumbs);
  }

  button(text, depth, title) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = text;
    button.title = title;
    button.addEventListener("click", () => this.workspace.leave(depth));
    return button;
  }

  separator() {
    const span = document.createElement("span");
    span.className = "sep";
    span.textContent = "›";
    span.setAttribute("aria-hidden", "true");
    return span;
  }
}
