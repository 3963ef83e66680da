// MQTT.js 5 (the client inside Node-RED) against a running bridge: prints one JSON document of
// what it saw, for tests/integration/test_mqttjs.py to assert on.
//
//   node bridge_client.mjs <broker port> <device topic level>
//
// Two clients: "watcher" subscribes only to the documented trait wildcard <base>/+/+/+/+;
// "actor" does the /set round trip, MQTT 5 request/response with correlation data and a bad
// write answered on its response topic; the README's JSONata paths are evaluated on the device
// JSON document as Node-RED's change and switch nodes would.
import jsonata from "jsonata";
import mqtt from "mqtt";

const [port, device] = process.argv.slice(2);
const base = "aqara";
const url = `mqtt://127.0.0.1:${port}`;
const WAIT_MS = 20000;

function connect(name) {
  return mqtt.connectAsync(url, {
    protocolVersion: 5,
    clientId: `${name}-${process.pid}`,
    reconnectPeriod: 0,
  });
}

// Resolves with the first message for which pred(topic, payload, packet) is true.
function next(client, pred, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.removeListener("message", onMessage);
      reject(new Error(`timed out waiting for ${what}`));
    }, WAIT_MS);
    function onMessage(topic, payload, packet) {
      if (pred(topic, payload, packet)) {
        clearTimeout(timer);
        client.removeListener("message", onMessage);
        resolve({ topic, payload: payload.toString(), packet });
      }
    }
    client.on("message", onMessage);
  });
}

// Every message a client receives up to now, in order (the broker delivers a marker published
// after the subscriptions after everything retained under them).
async function sync(client, seen, tag) {
  const marker = `${base}/_node_sync/${tag}`;
  const arrived = next(client, (t) => t === marker, marker);
  await client.publishAsync(marker, "1", { qos: 1 });
  await arrived;
  return seen.filter((m) => !m.topic.startsWith(`${base}/_node_sync/`));
}

function record(client) {
  const seen = [];
  client.on("message", (topic, payload, packet) => {
    seen.push({
      topic,
      payload: payload.toString(),
      retain: packet.retain,
      contentType: packet.properties?.contentType ?? null,
      payloadFormatIndicator: packet.properties?.payloadFormatIndicator ?? null,
    });
  });
  return seen;
}

async function request(client, topic, payload, correlation) {
  const replyTopic = `node/replies/${process.pid}`;
  const answer = next(
    client,
    (t, _p, packet) => t === replyTopic
      && packet.properties?.correlationData?.toString() === correlation,
    `answer to ${topic}`,
  );
  await client.publishAsync(topic, payload, {
    qos: 1,
    properties: { responseTopic: replyTopic, correlationData: Buffer.from(correlation) },
  });
  const got = await answer;
  return {
    correlation: got.packet.properties.correlationData.toString(),
    contentType: got.packet.properties.contentType ?? null,
    body: JSON.parse(got.payload),
  };
}

const result = {};
const watcher = await connect("watcher");
const actor = await connect("actor");
try {
  const watched = record(watcher);
  await watcher.subscribeAsync([`${base}/+/+/+/+`, `${base}/_node_sync/#`], { qos: 1 });
  await actor.subscribeAsync([`node/replies/${process.pid}`, `${base}/_node_sync/#`], { qos: 1 });

  // the retained state, with content types
  const retained = await sync(watcher, watched, "retained");
  result.retained = retained.map(({ topic, payload, retain, contentType, payloadFormatIndicator }) =>
    ({ topic, payload, retain, contentType, payloadFormatIndicator }));

  // /set round trip: the state topic follows the hub
  const onoff = `${base}/${device}/1/Output/OnOff`;
  const before = retained.find((m) => m.topic === onoff)?.payload;
  const wanted = before === "true" ? "false" : "true";
  const changed = next(watcher, (t, p) => t === onoff && p.toString() === wanted, `${onoff}=${wanted}`);
  await actor.publishAsync(`${onoff}/set`, wanted === "true" ? "ON" : "OFF", { qos: 1 });
  result.round_trip = { before, after: (await changed).payload };

  // MQTT 5 request/response: a management command and a write, then a bad write
  result.health = await request(actor, `${base}/bridge/request/health_check`, "{}", "health-1");
  result.refresh = await request(actor, `${base}/bridge/request/device.refresh`,
    JSON.stringify({ device }), "refresh-2");
  result.write = await request(actor, `${onoff}/set`, before === "true" ? "ON" : "OFF", "write-3");
  result.bad_write = await request(actor, `${onoff}/set`, "banana", "bad-4");

  // the device JSON document through the README's JSONata and function-node paths
  const documentTopic = `${base}/${device}`;
  const document = next(actor, (t) => t === documentTopic, documentTopic);
  await actor.subscribeAsync(documentTopic, { qos: 1 });
  const msg = { payload: JSON.parse((await document).payload) };
  result.jsonata = {};
  for (const expression of ["payload.`1`.Output.OnOff", 'payload."1".Output.OnOff',
    '$lookup(payload, "1").Output.OnOff', "payload.1.Output.OnOff"]) {
    try {
      result.jsonata[expression] = { value: await jsonata(expression).evaluate(msg) };
    } catch (error) {
      result.jsonata[expression] = { error: error.message };
    }
  }
  result.function_node = msg.payload["1"].Output.OnOff;

  // everything the wildcard brought in the meantime (requests and answers went by)
  const all = await sync(watcher, watched, "end");
  result.wildcard_topics = [...new Set(all.map((m) => m.topic))];
} catch (error) {
  result.error = String(error);
} finally {
  await Promise.all([watcher.endAsync(), actor.endAsync()]);
}
process.stdout.write(JSON.stringify(result));
