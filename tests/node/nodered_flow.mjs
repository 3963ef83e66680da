// Node-RED's real runtime, headless, with its stock MQTT nodes against a running bridge: prints
// one JSON line per message an `mqtt in` node delivers, for tests/integration/test_nodered.py.
//
//   node nodered_flow.mjs <broker port> <topic filter>...
//
// One flow, two stock `mqtt-broker` config nodes (MQTT 5 and 3.1.1), and for each of them one
// `mqtt in` node per topic filter with the default output "auto-detect (parsed JSON object,
// string or buffer)". Every node wires into a function node, which reports what it sees:
// {"protocol": 5|4, "topic", "kind" (typeof, or null/array/buffer), "payload" (as JSON),
// "contentType"}. No editor, no HTTP. Stops when stdin closes (or after a minute and a half).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import RED from "node-red";

const [port, ...filters] = process.argv.slice(2);
const LIFETIME_MS = 90000;

// Runs inside Node-RED's function node sandbox: what a user's function node sees.
const REPORT = `
const p = msg.payload;
const kind = p === null ? "null" : Buffer.isBuffer(p) ? "buffer" : Array.isArray(p) ? "array"
    : typeof p;
global.get("report")({
    protocol: Number(node.name), topic: msg.topic, kind,
    payload: Buffer.isBuffer(p) ? p.toString("base64") : p,
    contentType: msg.contentType ?? null,
});
return null;`;

function flow() {
  const nodes = [{ id: "tab", type: "tab", label: "aqara" }];
  for (const version of [5, 4]) {
    nodes.push({
      id: `broker${version}`, type: "mqtt-broker", name: `v${version}`, broker: "127.0.0.1",
      port: String(port), clientid: "", autoConnect: true, usetls: false,
      protocolVersion: String(version), keepalive: "15", cleansession: true,
      birthTopic: "", closeTopic: "", willTopic: "",
    });
    nodes.push({
      id: `report${version}`, type: "function", z: "tab", name: String(version), func: REPORT,
      outputs: 0, wires: [],
    });
    filters.forEach((topic, i) => nodes.push({
      id: `in${version}_${i}`, type: "mqtt in", z: "tab", name: "", topic, qos: "1",
      datatype: "auto-detect", broker: `broker${version}`, nl: false, rap: true, rh: 0,
      inputs: 0, wires: [[`report${version}`]],
    }));
  }
  return nodes;
}

// Node-RED's log goes to stderr: stdout carries only the reports.
function stderrLogger() {
  return (entry) => process.stderr.write(`node-red [${entry.level}] ${entry.msg}\n`);
}

const userDir = mkdtempSync(join(tmpdir(), "aq-nodered-"));
writeFileSync(join(userDir, "flows.json"), JSON.stringify(flow()));
RED.init({
  userDir,
  flowFile: "flows.json",
  httpAdminRoot: false,
  httpNodeRoot: false,
  credentialSecret: false,
  telemetry: { enabled: false },
  logging: { console: { level: "off" }, stderr: { level: "warn", handler: stderrLogger } },
  functionGlobalContext: { report: (line) => process.stdout.write(`${JSON.stringify(line)}\n`) },
});

async function stop() {
  clearTimeout(lifetime);
  await RED.stop();
  rmSync(userDir, { recursive: true, force: true });
  process.exit(0);
}
const lifetime = setTimeout(stop, LIFETIME_MS);
process.stdin.on("end", stop);
process.stdin.resume();
await RED.start();
