import assert from 'node:assert/strict';
import type { Locator, Page } from 'playwright-core';

/**
 * The Node-RED 4 editor as a user sees it: palette, workspace, edit trays, sidebar and menu.
 * Every action goes through the page (mouse, keyboard, clicks), never through RED.* calls.
 */
export class NodeRedEditor {
  constructor(
    readonly page: Page,
    readonly url: string,
  ) {}

  async open(query = ''): Promise<void> {
    await this.page.goto(this.url + query);
    await this.waitUntilLoaded();
  }

  async reload(): Promise<void> {
    await this.page.reload();
    await this.waitUntilLoaded();
  }

  private async waitUntilLoaded(): Promise<void> {
    await this.page.locator('.red-ui-palette-node[data-palette-type="inject"]').waitFor();
    await this.page.locator('#red-ui-workspace-chart svg').first().waitFor();
    await this.page.locator('#red-ui-loading-progress').waitFor({ state: 'hidden' });
  }

  // ---- palette --------------------------------------------------------------------------------

  paletteCategory(category: string): Locator {
    return this.page.locator(`#red-ui-palette-container-${category}`);
  }

  paletteCategoryLabel(category: string): Locator {
    return this.page.locator(`#red-ui-palette-header-${category} span`);
  }

  paletteNode(type: string): Locator {
    return this.page.locator(`.red-ui-palette-node[data-palette-type="${type}"]`);
  }

  // ---- workspace ------------------------------------------------------------------------------

  private workspaceNodes(): Locator {
    return this.page.locator('#red-ui-workspace-chart g.red-ui-flow-node-group');
  }

  /** The SVG group of a node on the workspace (node ids may start with a digit: no #id). */
  node(id: string): Locator {
    return this.page.locator(`#red-ui-workspace-chart g.red-ui-flow-node-group[id="${id}"]`);
  }

  /** Drags a node from the palette to a point of the workspace; returns the new node's id. */
  async dragFromPalette(type: string, x: number, y: number): Promise<string> {
    const before = new Set(await this.workspaceNodes().evaluateAll((els) => els.map((e) => e.id)));
    const source = this.paletteNode(type);
    await source.scrollIntoViewIfNeeded();
    const from = await box(source);
    const chart = await box(this.page.locator('#red-ui-workspace-chart'));
    await this.page.mouse.move(from.x + from.width / 2, from.y + from.height / 2);
    await this.page.mouse.down();
    await this.page.mouse.move(from.x + from.width / 2 + 20, from.y + from.height / 2, {
      steps: 5,
    });
    await this.page.mouse.move(chart.x + x, chart.y + y, { steps: 20 });
    await this.page.mouse.up();
    await this.page.waitForFunction(
      (count) =>
        document.querySelectorAll('#red-ui-workspace-chart g.red-ui-flow-node-group').length >
        count,
      before.size,
    );
    const after = await this.workspaceNodes().evaluateAll((els) => els.map((e) => e.id));
    const added = after.filter((id) => !before.has(id));
    if (added.length !== 1) throw new Error(`dropping ${type} added ${added.length} nodes`);
    return added[0];
  }

  /** Drags a wire from the output port of one node to the input port of another. */
  async wire(fromId: string, toId: string): Promise<void> {
    const wiresBefore = await this.page
      .locator('#red-ui-workspace-chart .red-ui-flow-link')
      .count();
    const from = await box(this.node(fromId).locator('.red-ui-flow-port-output .red-ui-flow-port'));
    const to = await box(this.node(toId).locator('.red-ui-flow-port-input .red-ui-flow-port'));
    await this.page.mouse.move(from.x + from.width / 2, from.y + from.height / 2);
    await this.page.mouse.down();
    await this.page.mouse.move(to.x + to.width / 2, to.y + to.height / 2, { steps: 15 });
    await this.page.mouse.up();
    await this.page.waitForFunction(
      (count) =>
        document.querySelectorAll('#red-ui-workspace-chart .red-ui-flow-link').length > count,
      wiresBefore,
    );
  }

  /** Opens a node's edit tray by double-clicking it. */
  async edit(id: string): Promise<Locator> {
    await this.node(id).locator('.red-ui-flow-node').first().dblclick();
    await this.page.locator('#node-dialog-ok').waitFor();
    return this.trayOpened();
  }

  /** The topmost tray, once it has finished sliding in. */
  async trayOpened(): Promise<Locator> {
    const tray = this.page.locator('.red-ui-tray').last();
    await tray.locator('.red-ui-tray-body').waitFor();
    let last = '';
    for (let i = 0; i < 50; i++) {
      const where = JSON.stringify(await tray.boundingBox());
      if (where === last) break;
      last = where;
      await this.page.waitForTimeout(100);
    }
    return tray;
  }

  /** A text the user reads in the topmost edit tray, exactly as the catalog has it. */
  async seeInTray(text: string): Promise<void> {
    const tray = this.page.locator('.red-ui-tray').last();
    await tray
      .getByText(text, { exact: true })
      .first()
      .waitFor({ timeout: 5_000 })
      .catch(() => assert.fail(`the dialog does not show "${text}"`));
  }

  /** The Done (or Add, Update, Close) button of the topmost tray; waits for the tray to go. */
  async done(buttonId = 'node-dialog-ok'): Promise<void> {
    const button = this.page.locator(`#${buttonId}`);
    await button.click();
    await button.waitFor({ state: 'detached' });
    if ((await this.page.locator('.red-ui-tray').count()) > 0) await this.trayOpened();
  }

  nodeLabel(id: string): Locator {
    return this.node(id).locator('.red-ui-flow-node-label text');
  }

  statusLabel(id: string): Locator {
    return this.node(id).locator('.red-ui-flow-node-status-label');
  }

  statusShape(id: string): Locator {
    return this.node(id).locator('.red-ui-flow-node-status');
  }

  /** Waits for a node's status; on timeout, fails saying what the status was instead. */
  async waitForStatus(
    id: string,
    expected: { text: string | RegExp; shape: string },
  ): Promise<void> {
    const deadline = Date.now() + 20_000;
    let seen = { text: '', shape: '' };
    while (Date.now() < deadline) {
      seen = {
        text:
          (await this.statusLabel(id)
            .textContent()
            .catch(() => '')) ?? '',
        shape:
          (await this.statusShape(id)
            .getAttribute('class')
            .catch(() => '')) ?? '',
      };
      const textSeen =
        typeof expected.text === 'string'
          ? seen.text === expected.text
          : expected.text.test(seen.text);
      if (textSeen && seen.shape.includes(expected.shape)) return;
      await this.page.waitForTimeout(100);
    }
    assert.fail(
      `status "${seen.text}" (${seen.shape}), expected "${String(expected.text)}" (${expected.shape})`,
    );
  }

  async clickInjectButton(id: string): Promise<void> {
    await this.node(id).locator('.red-ui-flow-node-button').click();
  }

  // ---- header ---------------------------------------------------------------------------------

  async deploy(): Promise<void> {
    const button = this.page.locator('#red-ui-header-button-deploy');
    await button.click();
    await this.page.locator('.red-ui-notification-success').last().waitFor();
    await this.page.waitForFunction(() =>
      document.querySelector('#red-ui-header-button-deploy')?.classList.contains('disabled'),
    );
  }

  /** Clicks away the deploy and inject notifications that cover the top of the workspace. */
  async dismissNotifications(): Promise<void> {
    const notifications = this.page.locator('#red-ui-notifications .red-ui-notification:visible');
    for (let i = 0; i < 20 && (await notifications.count()) > 0; i++) {
      await notifications
        .first()
        .click({ timeout: 2_000 })
        .catch(() => {});
      await this.page.waitForTimeout(100);
    }
  }

  async menu(...itemIds: string[]): Promise<void> {
    await this.page.locator('#red-ui-header-button-sidemenu').click();
    for (const id of itemIds) {
      await this.page.locator(`#${id}`).click();
    }
  }

  // ---- sidebar --------------------------------------------------------------------------------

  async sidebarTab(id: 'info' | 'help' | 'debug' | 'config' | 'context'): Promise<Locator> {
    const link = this.page.locator(`#red-ui-tab-${id}-link-button`);
    if (await link.isVisible()) await link.click();
    else await this.page.locator(`#red-ui-tab-${id} a`).click();
    return this.page.locator('#red-ui-sidebar-content');
  }

  debugMessages(): Locator {
    return this.page.locator('#red-ui-sidebar-content .red-ui-debug-msg');
  }

  /** The help sidebar's text after the book button of the topmost edit tray was clicked. */
  async helpFromTray(): Promise<Locator> {
    await this.page
      .locator('.red-ui-tray')
      .last()
      .locator('.red-ui-tray-footer-left button:has(i.fa-book)')
      .click();
    const help = this.page.locator(
      '#red-ui-sidebar-content .red-ui-help:has(> h1.red-ui-help-title)',
    );
    await help.waitFor();
    return help;
  }

  // ---- server dialog --------------------------------------------------------------------------

  /** Adds a ThingsBoard server from the open node dialog's + button, filled in, and closes it. */
  async addServer(server: {
    name: string;
    host: string;
    ports: { mqtt: number; http: number; coap: number };
    key: string;
    secret: string;
  }): Promise<void> {
    await this.page.locator('#node-input-btn-config-add').click();
    await this.page.locator('#node-config-input-host').waitFor();
    await this.trayOpened();
    await this.page.locator('#node-config-input-name').fill(server.name);
    await this.page.locator('#node-config-input-host').fill(server.host);
    for (const transport of ['mqtt', 'http', 'coap'] as const) {
      await this.page
        .locator(`#node-config-input-${transport}Port`)
        .fill(String(server.ports[transport]));
    }
    await this.page.locator('#node-config-input-provisionDeviceKey').fill(server.key);
    await this.page.locator('#node-config-input-provisionDeviceSecret').fill(server.secret);
    await this.done('node-config-dialog-ok');
  }

  // ---- typed input ----------------------------------------------------------------------------

  /** Picks the type of a typed input (e.g. `str`) from its drop-down and types the value. */
  async setTypedInput(inputId: string, type: string, value: string): Promise<void> {
    await this.setTypedInputOf(`#${inputId}`, type, value);
  }

  /** The same for the typed input made of the first element a CSS selector finds. */
  async setTypedInputOf(selector: string, type: string, value: string): Promise<void> {
    const container = this.page.locator(`${selector} + .red-ui-typedInput-container`).first();
    await container.locator('button.red-ui-typedInput-type-select').click();
    await this.page.locator(`.red-ui-typedInput-options:visible a[value="${type}"]`).click();
    const input = container.locator('input.red-ui-typedInput-input');
    await input.fill(value);
  }

  /** Replaces the code of the open function node's On Message tab, as pasted into its editor. */
  async pasteFunctionCode(code: string): Promise<void> {
    await this.page.locator('#node-input-func-editor .monaco-editor').first().click();
    await this.page.keyboard.press('ControlOrMeta+A');
    await this.page.keyboard.press('Delete');
    // One insertion, like a paste: typed key by key, the code editor would close brackets itself.
    await this.page.keyboard.insertText(code);
  }
}

async function box(
  locator: Locator,
): Promise<{ x: number; y: number; width: number; height: number }> {
  await locator.scrollIntoViewIfNeeded();
  const found = await locator.boundingBox();
  if (!found) throw new Error(`not visible: ${locator.toString()}`);
  return found;
}
