// Hot keys of an app's governed caches (opensergo.cache), refreshed every second from
// GET /api/v1/metrics/hotkeys: the SDKs report each cache's heaviest keys with their metrics.

import { api } from "./api.js";
import { h, fill, table, badge, fmtNum, fmtAgo } from "./dom.js";

export function hotKeysView(namespace, app) {
  const status = h("p", { class: "muted", role: "status" }, "Waiting for hot-key reports…");
  const holder = h("div", { "data-testid": "hot-keys" });
  const el = h("section", { "aria-label": "Hot keys" },
    h("p", { class: "muted" }, "The heaviest keys of each governed cache over its CachePolicy's detection window, summed over the app's instances. A key is hot when its rate on an instance reaches the policy's threshold."),
    status, holder);
  let busy = false;
  let stopped = false;

  async function tick() {
    if (busy || stopped || document.hidden) return;
    busy = true;
    try {
      const data = await api("/api/v1/metrics/hotkeys", { params: { namespace, app } });
      status.textContent = data.items.length ? "" : "No hot-key report from this app (a CachePolicy with hotKey, and metrics export on, make its SDKs report them).";
      fill(holder, table(
        [{ label: "Cache" }, { label: "Key" }, { label: "Requests/s", num: true }, { label: "State" }, { label: "Instances", num: true }, { label: "Reported" }],
        data.items.map((k) => [
          h("span", { class: "mono" }, k.cache),
          h("span", { class: "mono", "data-key": k.key }, k.key),
          fmtNum(k.rate, 1),
          k.hot ? badge("hot", "bad", `hot on ${k.hotInstances} instance(s)`) : badge("warm", "plain"),
          k.instances,
          fmtAgo(k.lastSeen),
        ]),
        { caption: "Hot keys", className: "hot-keys", empty: "No key reported." }));
      el.dataset.updated = String(Date.now());
    } catch (err) {
      status.textContent = `Cannot load hot keys: ${err.message}`;
    } finally {
      busy = false;
    }
  }

  tick();
  const timer = setInterval(tick, 1000);
  return { el, stop: () => { stopped = true; clearInterval(timer); } };
}
