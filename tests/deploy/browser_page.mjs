// Open a page in headless Chromium, wait until it sets <body data-state>, print what it shows as JSON and save a
// screenshot. Chromium's --dump-dom and --screenshot do not wait for a model to load, so this drives it through the
// DevTools protocol (WebSocket: node --experimental-websocket on Node 20).
//   node --experimental-websocket tests/browser_page.mjs CHROMIUM URL SCREENSHOT.png [TIMEOUT_S]
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";

const [chromium, url, screenshot, timeout = "120"] = process.argv.slice(2);
// The profile sits beside the screenshot, in the caller's temporary folder, which cleans up whatever is left.
const profile = mkdtempSync(path.join(path.dirname(path.resolve(screenshot)), "chromium-"));
const browser = spawn(chromium, [
  "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0", `--user-data-dir=${profile}`,
  "--window-size=900,640", "about:blank",
]);
const finish = (code, message) => {
  if (message) console.error(message);
  browser.once("exit", () => {
    // Chromium's helper processes can still write the cache after the browser exits: a profile left behind is no
    // failure of the page.
    try {
      rmSync(profile, { recursive: true, force: true, maxRetries: 5 });
    } catch {}
    process.exit(code);
  });
  browser.kill();
};
setTimeout(() => finish(1, `the page set no data-state within ${timeout} s`), Number(timeout) * 1000);

const endpoint = await new Promise((resolve) => {
  let seen = "";
  browser.stderr.on("data", (chunk) => {
    seen += chunk;
    const found = seen.match(/DevTools listening on (ws:\/\/\S+)/);
    if (found) resolve(found[1]);
  });
});
const socket = new WebSocket(endpoint);
await new Promise((resolve) => socket.addEventListener("open", resolve));
let next = 0;
const pending = new Map();
socket.addEventListener("message", (event) => {
  const message = JSON.parse(event.data);
  if (pending.has(message.id)) pending.get(message.id)(message);
});
async function send(method, params = {}, sessionId = undefined) {
  const id = ++next;
  socket.send(JSON.stringify({ id, method, params, sessionId }));
  const reply = await new Promise((resolve) => pending.set(id, resolve));
  if (reply.error) finish(1, `${method}: ${reply.error.message}`);
  return reply.result;
}

const { targetId } = await send("Target.createTarget", { url });
const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true });
const evaluate = async (expression) =>
  (await send("Runtime.evaluate", { expression, returnByValue: true }, sessionId)).result.value;
while (!["done", "error"].includes(await evaluate("document.body?.dataset.state"))) {
  await new Promise((resolve) => setTimeout(resolve, 200));
}
const shown = await evaluate(`({
  state: document.body.dataset.state,
  status: document.getElementById("status").textContent,
  answers: [...document.querySelectorAll("#predictions li")].map((li) =>
    ({ token: Number(li.dataset.token), score: Number(li.dataset.score), text: li.textContent,
       vector: li.dataset.vector && JSON.parse(li.dataset.vector) })),
})`);
const { data } = await send("Page.captureScreenshot", { format: "png" }, sessionId);
writeFileSync(screenshot, Buffer.from(data, "base64"));
console.log(JSON.stringify(shown));
finish(0);
