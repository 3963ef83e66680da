// MQTT.js 5 (the client inside Node-RED) subscribed to the bridge's momentary events, as a
// Node-RED flow would be: the stream <base>/bridge/events and every device's <base>/+/event.
//
//   node event_client.mjs <broker port> <presses>
//
// Prints "ready" once subscribed, then, when <presses> stream messages and as many per-device
// messages have come (and a sync marker published after them is back), one JSON document of
// every message it got, for tests/integration/test_events.py.
import mqtt from "mqtt";

const [port, presses] = process.argv.slice(2);
const wanted = Number(presses);
const base = "aqara";
const marker = `${base}/_node_sync/events-${process.pid}`;
const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
  protocolVersion: 5,
  clientId: `events-${process.pid}`,
  reconnectPeriod: 0,
});
const messages = [];
const timer = setTimeout(() => {
  process.stderr.write(`timed out with ${JSON.stringify(messages)}\n`);
  process.exit(1);
}, 60000);
let syncing = false;
client.on("message", async (topic, payload, packet) => {
  if (topic === marker) {
    clearTimeout(timer);
    process.stdout.write(JSON.stringify({ messages }));
    await client.endAsync();
    return;
  }
  messages.push({
    topic,
    payload: JSON.parse(payload.toString()),
    retain: packet.retain,
    contentType: packet.properties?.contentType ?? null,
  });
  const stream = messages.filter((m) => m.topic === `${base}/bridge/events`).length;
  if (!syncing && stream >= wanted && messages.length >= 2 * wanted) {
    syncing = true; // anything more the bridge published before now arrives before the marker
    await client.publishAsync(marker, "1", { qos: 1 });
  }
});
await client.subscribeAsync([`${base}/bridge/events`, `${base}/+/event`, marker], { qos: 1 });
process.stdout.write("ready\n");
