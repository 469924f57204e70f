/**
 * Just enough of jQuery for an editor script's oneditprepare to run outside a browser: elements
 * found by selector (one per selector, made on first use), values, options, events and classes.
 */
export class FakeElement {
  value: unknown;
  label = '';
  readonly attributes = new Map<string, string>();
  readonly children: FakeElement[] = [];
  readonly classes = new Set<string>();
  readonly properties = new Map<string, unknown>();
  private readonly handlers = new Map<string, Array<() => void>>();

  constructor(readonly selector: string) {}

  val(): unknown;
  val(value: unknown): this;
  val(...value: unknown[]): unknown {
    if (value.length === 0) return this.value;
    this.value = value[0];
    return this;
  }

  text(label: string): this {
    this.label = label;
    return this;
  }

  attr(name: string, value: string): this {
    this.attributes.set(name, value);
    return this;
  }

  appendTo(parent: FakeElement): this {
    parent.children.push(this);
    return this;
  }

  on(events: string, handler: () => void): this {
    for (const event of events.split(' ')) {
      this.handlers.set(event, [...(this.handlers.get(event) ?? []), handler]);
    }
    return this;
  }

  trigger(event: string): this {
    for (const handler of this.handlers.get(event) ?? []) handler.call(this);
    return this;
  }

  toggleClass(name: string, on: boolean): this {
    if (on) this.classes.add(name);
    else this.classes.delete(name);
    return this;
  }

  prop(name: string): unknown;
  prop(name: string, value: unknown): this;
  prop(name: string, ...value: unknown[]): unknown {
    if (value.length === 0) return this.properties.get(name);
    this.properties.set(name, value[0]);
    return this;
  }

  is(selector: string): boolean {
    return selector === ':checked' && this.properties.get('checked') === true;
  }

  typedInput(): this {
    return this;
  }
}

/** A `$` over a fresh set of elements; `$('<tag>')` makes a new detached element. */
export function fakeJquery(): { $: (selector: string) => FakeElement; find: typeof find } {
  const elements = new Map<string, FakeElement>();
  function find(selector: string): FakeElement {
    let element = elements.get(selector);
    if (!element) {
      element = new FakeElement(selector);
      elements.set(selector, element);
    }
    return element;
  }
  const $ = (selector: string): FakeElement =>
    selector.startsWith('<') ? new FakeElement(selector) : find(selector);
  return { $, find };
}
